"""Tiny `make train` runs on the mini dataset for the multi-process, resume and Slurm tests.

The training processes import this module through the run's config (``custom_imports``), which registers
:class:`RecordTraining`: every process appends what it trained on to ``WORK_DIR/records-rank{R}.jsonl``, so a test
can compare the images each rank drew, iteration by iteration, across runs.
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from mmengine.dist import get_dist_info
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from tests.helpers import REPO

ITERS = 6
CHECKPOINT_EVERY = 2
PER_PROCESS_BATCH = 2


@HOOKS.register_module()
class RecordTraining(Hook):
    """One JSON line per training iteration (its number, counted from 1, and the batch's image ids) and per
    validation (its metrics), appended by each rank to its own file in the work dir."""

    def _append(self, runner, record: dict) -> None:
        rank = get_dist_info()[0]
        with open(Path(runner.work_dir) / f"records-rank{rank}.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        self._append(runner, {"iter": runner.iter + 1, "images": [s.img_id for s in data_batch["data_samples"]]})

    def after_val_epoch(self, runner, metrics=None) -> None:
        self._append(runner, {"val": dict(metrics or {})})


def write_config(folder: Path, *, validate: bool = False, iters: int = ITERS) -> Path:
    """mini_tsd for a few iterations at a small batch, a checkpoint every CHECKPOINT_EVERY iterations, the
    learning rate scaled to the effective batch, and :class:`RecordTraining`; validation at the end if asked."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "mini_tsd_recorded.py"
    text = (f"_base_ = {str(REPO / 'configs' / 'mini_tsd.py')!r}\n"
            "custom_imports = dict(imports=['pipeline', 'pipeline.evaluation', 'tests.pipeline.train_runs'],\n"
            "                      allow_failed_imports=False)\n"
            "custom_hooks = [dict(type='RecordTraining')]\n"
            f"train_cfg = dict(max_iters={iters}, val_interval={iters})\n"
            f"train_dataloader = dict(batch_size={PER_PROCESS_BATCH})\n"
            "auto_scale_lr = dict(enable=True, base_batch_size=8)\n"
            "randomness = dict(seed=0)\n"
            f"default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval={CHECKPOINT_EVERY}))\n")
    if not validate:
        text += "val_dataloader = val_cfg = val_evaluator = None\n"
    path.write_text(text)
    return path


def make_train(target: str, config: Path, work: Path, data: Path, prepared: Path, *args: str,
               popen: bool = False, env: dict | None = None, timeout: float = 120):
    """``make TARGET`` for ``config`` on the mini data, into ``work/models/CONFIG_NAME``: the finished
    process (or, with ``popen``, the running one, in its own process group)."""
    command = ["make", "--no-print-directory", target, f"MODEL={config.stem}", f"CONFIG={config}", f"WORK={work}",
               f"PREPARED={prepared}", f"DATA={data}", f"IMAGES_ROOT={data}", *args]
    env = dict(os.environ, OMP_NUM_THREADS="1", **(env or {}))
    if popen:
        return subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, start_new_session=True)
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def model_dir(work: Path) -> Path:
    return work / "models" / "mini_tsd_recorded"


def train_dataset(config: Path, prepared: Path, data: Path):
    """The training set of ``config`` on the mini data."""
    from mmdet.registry import DATASETS
    from mmengine.registry import init_default_scope

    from pipeline.train import load_config

    cfg = load_config(config, prepared_dir=str(prepared), img_root=str(data))
    init_default_scope("mmdet")
    return DATASETS.build(cfg.train_dataloader.dataset)


def sampler_order(config: Path, prepared: Path, data: Path) -> list[str]:
    """The image ids the class-aware sampler of one process draws in the first epoch of ``config`` (seed 0)."""
    from pipeline.datasets import OpenImagesClassAwareSampler

    dataset = train_dataset(config, prepared, data)
    return [dataset.get_data_info(i)["img_id"] for i in OpenImagesClassAwareSampler(dataset, seed=0)]


def records(work_dir: Path, rank: int = 0) -> list[dict]:
    path = work_dir / f"records-rank{rank}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def trained(work_dir: Path, rank: int = 0) -> dict[int, list[str]]:
    """Iteration -> image ids of rank ``rank``; an iteration trained twice (after a resume) keeps its last record."""
    return {r["iter"]: r["images"] for r in records(work_dir, rank) if "iter" in r}
