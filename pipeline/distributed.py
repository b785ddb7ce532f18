"""The process group of a multi-process training run, formed before mmengine's Runner is built.

``python -m pipeline.train --launcher pytorch`` (torchrun) or ``--launcher slurm`` (srun) forms it here: with CUDA,
NCCL (or the config's backend) and one device per process (the process's local rank); without CUDA, gloo on CPU
processes, the same code path. mmengine's own launcher helpers assume CUDA (``torch.cuda.set_device``, a division
by ``torch.cuda.device_count()``); its Runner skips them when a group already exists. ``python -m
pipeline.distributed GPUS`` checks a process count against the visible devices before anything starts.
"""
from __future__ import annotations

import argparse
import datetime
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from contracts.cli import report_error

LAUNCHERS = ("pytorch", "slurm")
DEFAULT_PORT = 29500


@dataclass(frozen=True)
class Placement:
    """Where one process sits: its global rank, its rank on its node, and the process counts."""
    rank: int
    local_rank: int
    world_size: int
    local_world_size: int


def parse_process_count(value: str | int, name: str = "GPUS") -> int:
    """A process count given by the user: a positive integer, else a ValueError naming the value."""
    text = str(value).strip()
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"{name}={value}: the number of processes must be a positive integer (1, 2, 8, ...)")
    return int(text)


def is_first_process() -> bool:
    """Whether this is rank 0 (or the only process), before any group exists: from the launcher's variables."""
    return os.environ.get("RANK", os.environ.get("SLURM_PROCID", "0")) == "0"


def check_devices(processes_per_node: int) -> None:
    """With CUDA, one device per process: a ValueError naming both counts when the node has fewer."""
    visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if visible and processes_per_node > visible:
        shown = os.environ.get("CUDA_VISIBLE_DEVICES", "unset")
        raise ValueError(f"{processes_per_node} processes on this node need {processes_per_node} CUDA devices, but "
                         f"{visible} are visible (CUDA_VISIBLE_DEVICES={shown})")


def _env_int(name: str) -> int:
    value = os.environ.get(name)
    if value is None or not value.strip().lstrip("-").isdigit():
        raise ValueError(f"environment variable {name}={value!r}: expected an integer set by the launcher")
    return int(value)


def placement(launcher: str) -> Placement:
    """This process's placement, from torchrun's variables (``pytorch``) or Slurm's (``slurm``)."""
    if launcher == "pytorch":
        world_size = _env_int("WORLD_SIZE")
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world_size))
        return Placement(_env_int("RANK"), _env_int("LOCAL_RANK"), world_size, local_world)
    if launcher == "slurm":
        world_size = _env_int("SLURM_NTASKS")
        local_rank = _env_int("SLURM_LOCALID")
        local_world = int(os.environ.get("SLURM_NTASKS_PER_NODE", "").split("(")[0] or local_rank + 1)
        return Placement(_env_int("SLURM_PROCID"), local_rank, world_size, local_world)
    raise ValueError(f"launcher {launcher!r}: expected one of {', '.join(LAUNCHERS)}")


def _slurm_rendezvous() -> None:
    """MASTER_ADDR (the step's first node) and MASTER_PORT (from the job id, so jobs sharing a node do not
    collide) for an srun step; values already in the environment win."""
    if "MASTER_ADDR" not in os.environ:
        nodes = subprocess.run(["scontrol", "show", "hostnames", os.environ["SLURM_NODELIST"]], check=True,
                               capture_output=True, text=True).stdout.split()
        os.environ["MASTER_ADDR"] = nodes[0]
    if "MASTER_PORT" not in os.environ:
        os.environ["MASTER_PORT"] = str(20000 + int(os.environ.get("SLURM_JOB_ID", DEFAULT_PORT)) % 20000)


def init_process_group(launcher: str, backend: str = "nccl", timeout_s: float | None = None) -> Placement:
    """Form the default process group for ``launcher`` and return this process's placement.

    With CUDA: device ``local_rank`` and ``backend``. Without: gloo, whatever ``backend`` says (NCCL needs CUDA).
    The device check runs first, so a run asking for more GPUs than the node has stops before any rendezvous.
    """
    where = placement(launcher)
    check_devices(where.local_world_size)
    if launcher == "slurm":
        _slurm_rendezvous()
    # the same variables torchrun sets: mmengine's model wrapper reads LOCAL_RANK
    os.environ.update(RANK=str(where.rank), LOCAL_RANK=str(where.local_rank), WORLD_SIZE=str(where.world_size))
    if torch.cuda.is_available():
        torch.cuda.set_device(where.local_rank)
    else:
        backend = "gloo"
    options = {} if timeout_s is None else {"timeout": datetime.timedelta(seconds=timeout_s)}
    dist.init_process_group(backend=backend, init_method="env://", rank=where.rank, world_size=where.world_size,
                            **options)
    return where


@HOOKS.register_module()
class ValidateCheckpointedModel(Hook):
    """Before each validation, every rank takes rank 0's buffers (BN running statistics, which each rank updates
    from its own batches), so validation on all ranks scores the model the checkpoint of that iteration holds."""

    def before_val_epoch(self, runner) -> None:
        for buffer in runner.model.buffers():
            dist.broadcast(buffer, src=0)


def use_process_group(cfg, launcher: str) -> Placement:
    """Form the group for a training config (its ``env_cfg.dist_cfg`` backend and timeout), add
    :class:`ValidateCheckpointedModel` and, on CPU processes, wrap the model without device ids (mmengine passes
    ``device_ids=[LOCAL_RANK]``, which is for GPU modules)."""
    dist_cfg = (cfg.get("env_cfg") or {}).get("dist_cfg") or {}
    where = init_process_group(launcher, dist_cfg.get("backend", "nccl"), dist_cfg.get("timeout"))
    cfg.custom_hooks = [*(cfg.get("custom_hooks") or []), dict(type="ValidateCheckpointedModel")]
    if not torch.cuda.is_available():
        wrapper = dict(type="MMDistributedDataParallel", broadcast_buffers=False,
                       find_unused_parameters=cfg.get("find_unused_parameters", False))
        cfg.model_wrapper_cfg = dict(wrapper, **(cfg.get("model_wrapper_cfg") or {}), device_ids=None)
    return where


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.distributed",
        description="Check a training process count before launching: a positive integer, and with CUDA no more "
                    "than the visible devices (one device per process). Prints nothing when it fits.")
    parser.add_argument("gpus", help="processes to start on this machine (make train GPUS=N)")
    args = parser.parse_args(argv)
    try:
        check_devices(parse_process_count(args.gpus))
    except ValueError as error:
        return report_error(error)
    return 0


if __name__ == "__main__":
    sys.exit(main())
