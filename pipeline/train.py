"""Train a detector from a config: ``python -m pipeline.train CONFIG [--work-dir DIR] [--resume] [--amp] ...``.

CONFIG is a path or the name of a file in ``configs/`` (``r50_tsd``, ``mini_tsd``, ...). The work dir
(default ``work/models/{name}``; ``make train`` passes ``WORK/models/MODEL``) receives the resolved config, checkpoints,
``last_checkpoint`` and the logs, written by rank 0 only. One process trains on CPU or one GPU; N processes run
under ``torchrun --nproc-per-node N -m pipeline.train CONFIG --launcher pytorch`` (``make train GPUS=N``) or srun
(``--launcher slurm``, ``tools/slurm_train.sh``), with CUDA or on CPU (``pipeline.distributed``).
"""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
from mmengine.config import Config, DictAction
from mmengine.dist import master_only
from mmengine.runner import Runner

from contracts.cli import INPUT_ERRORS, report_error
from pipeline.checkpoints import TRUST_HELP, checkpoint_seed, latest_checkpoint, use_checkpoint_loader
from pipeline.distributed import is_first_process, use_process_group
from pipeline.num_classes import model_num_classes, set_dataset_num_classes, set_num_classes

REPO = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO / "configs"
OUR_DATASETS = ("OpenImagesPreparedDataset",)


class TrainRunner(Runner):
    """mmengine's Runner, writing each checkpoint to a temporary name renamed into place (a run killed mid-write
    leaves the previous checkpoints and ``last_checkpoint`` as they were), and logging the batch and learning rate
    in use."""

    @master_only
    def save_checkpoint(self, out_dir: str, filename: str, *args, **kwargs) -> None:
        partial = f".{filename}.partial"
        super().save_checkpoint(out_dir, partial, *args, **kwargs)
        os.replace(os.path.join(out_dir, partial), os.path.join(out_dir, filename))

    def scale_lr(self, optim_wrapper, auto_scale_lr: dict | None = None) -> None:
        super().scale_lr(optim_wrapper, auto_scale_lr)
        per_process = self.cfg.train_dataloader.batch_size
        scaling = (f"scaled by auto_scale_lr from base batch {auto_scale_lr['base_batch_size']}"
                   if auto_scale_lr and auto_scale_lr.get("enable") else "auto_scale_lr off")
        rates = ", ".join(f"{name} {sorted(set(values))}" for name, values in optim_wrapper.get_lr().items())
        self.logger.info(f"batch {self.world_size * per_process} ({self.world_size} processes x {per_process} "
                         f"images); {rates} ({scaling})")


def available_configs(config_dir: Path = CONFIG_DIR) -> list[str]:
    """Names of the runnable model configs: the ``configs/*.py`` files (shared pieces live in ``_base_/``)."""
    return sorted(p.stem for p in config_dir.glob("*.py"))


def resolve_config(config: str | Path, config_dir: Path = CONFIG_DIR) -> Path:
    """A config path, given itself or its name in ``configs/``; a clear error lists the available ones."""
    for candidate in (Path(config), config_dir / f"{config}.py"):
        if candidate.is_file():
            return candidate
    names = ", ".join(available_configs(config_dir)) or "(none)"
    raise FileNotFoundError(f"config not found: {config}; available configs in {config_dir}: {names}")


def train_prepared_dir(cfg: Config) -> str | None:
    """The ``prepared_dir`` of the training dataset (through dataset wrappers), if it is one of ours."""
    dataset = (cfg.get("train_dataloader") or {}).get("dataset", {})
    while "dataset" in dataset:
        dataset = dataset["dataset"]
    return dataset.get("prepared_dir") if dataset.get("type") in OUR_DATASETS else None


def check_data(cfg: Config) -> None:
    """Fail early, before any data loads: missing prepared annotations, or a model whose class count differs
    from the prepared ``classes.csv``."""
    from pipeline.datasets import check_num_classes

    counts = model_num_classes(cfg.model)
    for loader in ("train_dataloader", "val_dataloader", "test_dataloader"):
        dataset = (cfg.get(loader) or {}).get("dataset", {})
        while "dataset" in dataset:  # dataset wrappers (RepeatDataset, ...)
            dataset = dataset["dataset"]
        if dataset.get("type") in OUR_DATASETS:
            for num_classes in counts:
                check_num_classes(dataset["prepared_dir"], num_classes)
        elif dataset.get("ann_file"):
            ann_file = Path(dataset.get("data_root") or "") / dataset["ann_file"]
            if not ann_file.is_file():
                raise FileNotFoundError(f"{loader}: annotation file not found: {ann_file} (for the COCO export of "
                                        f"the prepared data run `make prepare` with COCO splits first)")


def replace_path_prefixes(node, moves: dict[str, str]):
    """``node`` (config dicts, lists, tuples, strings) with every path equal to or under a key of ``moves`` moved
    under its value (one move per path); dicts and lists are changed in place."""
    if isinstance(node, str):
        for old, new in moves.items():
            if node == old or node.startswith(old.rstrip("/") + "/"):
                return new + node[len(old):]
        return node
    if isinstance(node, dict):
        for key, value in node.items():
            node[key] = replace_path_prefixes(value, moves)
    elif isinstance(node, list):
        node[:] = [replace_path_prefixes(value, moves) for value in node]
    elif isinstance(node, tuple):
        return tuple(replace_path_prefixes(value, moves) for value in node)
    return node


def set_data_paths(cfg: Config, prepared_dir: str | None = None, img_root: str | None = None) -> None:
    """Point the config at other data: every path under the config's ``prepared_dir`` / ``img_root`` variables
    (datasets, metric, COCO export) moves to the new folder."""
    moves = {}
    for key, new in (("prepared_dir", prepared_dir), ("img_root", img_root)):
        if new is not None:
            if cfg.get(key) is None:
                raise KeyError(f"--{key.replace('_', '-')} given but the config defines no `{key}` variable")
            moves[cfg[key]] = str(new)
    if moves:
        for name in list(cfg.keys()):
            cfg[name] = replace_path_prefixes(cfg[name], moves)


def load_config(config: str | Path, work_dir: str | Path | None = None, cfg_options: dict | None = None,
                resume: bool = False, amp: bool = False, launcher: str = "none", seed: int | None = None,
                prepared_dir: str | None = None, img_root: str | None = None, adapt_classes: bool = False,
                init_from: str | Path | None = None) -> Config:
    """The config with the command-line choices applied (data paths, work dir, resume, AMP, launcher, seed);
    ``adapt_classes`` sets the model's class count to that of the training data (an expert group, the 601 V6
    classes) instead of checking that they agree; ``init_from`` starts from another model's checkpoint with the
    class layers re-initialised (``pipeline.init_from``)."""
    path = resolve_config(config)
    # mmengine formats the config for the log, the config dump and every checkpoint: without yapf's reflowing,
    # which costs 0.25 s a time, the same valid text (its own indentation) in 0.07 s
    cfg = Config.fromfile(str(path), format_python_code=False)
    set_data_paths(cfg, prepared_dir, img_root)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if adapt_classes:
        from pipeline.datasets import prepared_classes

        train_dir = train_prepared_dir(cfg)
        if train_dir is None:
            raise ValueError("--adapt-classes needs a training dataset of type OpenImagesPreparedDataset")
        num_classes = len(prepared_classes(train_dir))
        set_num_classes(cfg.model, num_classes)
        for loader in ("train_dataloader", "val_dataloader", "test_dataloader"):
            set_dataset_num_classes(cfg.get(loader) or {}, num_classes)
    cfg.work_dir = str(work_dir or Path("work") / "models" / path.stem)
    cfg.launcher = launcher
    cfg.resume = False
    if init_from is not None:
        from pipeline.init_from import add_init_from

        add_init_from(cfg, init_from)
    if seed is not None:
        cfg.randomness = dict(cfg.get("randomness") or {}, seed=seed)
    if resume:
        set_resume_point(cfg)
    if amp:
        if not torch.cuda.is_available():
            raise ValueError("--amp needs a CUDA GPU (mixed precision is not used on CPU)")
        cfg.optim_wrapper.type = "AmpOptimWrapper"
        cfg.optim_wrapper.setdefault("loss_scale", "dynamic")
    return cfg


def set_resume_point(cfg: Config) -> None:
    """Resume from the work dir's last complete checkpoint (weights, optimizer, schedulers, iteration) with the
    seed it was written with, so the sampler draws the same images an uninterrupted run would. With no
    checkpoint, one line says so and training starts from the beginning."""
    checkpoint = latest_checkpoint(cfg.work_dir)
    if checkpoint is None:
        if is_first_process():
            print(f"no checkpoint in {cfg.work_dir} to resume from: training from the beginning", file=sys.stderr,
                  flush=True)
        return
    cfg.resume = True
    cfg.load_from = str(checkpoint)
    seed = checkpoint_seed(checkpoint)
    if seed is not None:
        cfg.randomness = dict(cfg.get("randomness") or {}, seed=seed)


def train(config: str | Path, work_dir: str | Path | None = None, cfg_options: dict | None = None,
          resume: bool = False, amp: bool = False, launcher: str = "none", seed: int | None = None,
          prepared_dir: str | None = None, img_root: str | None = None) -> Runner:
    """Train ``config`` and return the finished runner (its ``model`` holds the trained weights)."""
    return run(load_config(config, work_dir, cfg_options, resume, amp, launcher, seed, prepared_dir, img_root))


def build_runner(cfg: Config, trust_checkpoint: bool = False) -> TrainRunner:
    """The runner for a loaded config (see :func:`load_config`), its process group formed first when the config
    names a launcher. Local checkpoints load through :func:`pipeline.checkpoints.load_checkpoint`: ours in full
    (resume), others safely unless ``trust_checkpoint``."""
    check_data(cfg)
    use_checkpoint_loader(trust_checkpoint)
    if cfg.launcher != "none" and not torch.distributed.is_initialized():
        use_process_group(cfg, cfg.launcher)
    os.makedirs(cfg.work_dir, exist_ok=True)
    return TrainRunner.from_cfg(cfg)


def run(cfg: Config, trust_checkpoint: bool = False) -> Runner:
    """Train a loaded config and return the finished runner."""
    runner = build_runner(cfg, trust_checkpoint)
    runner.train()
    return runner


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.train",
        description="Train a detector from a config with mmengine's Runner; the work dir receives the resolved "
                    "config, checkpoints (iter_*.pth / epoch_*.pth, last_checkpoint) and logs.",
        epilog=f"available configs: {', '.join(available_configs()) or '(none)'}")
    parser.add_argument("config", help="config file or name in configs/ (e.g. r50_tsd, mini_tsd)")
    parser.add_argument("--work-dir", help="output folder (default work/models/CONFIG_NAME; `make train` passes "
                                           "WORK/models/MODEL, WORK = work/<dataset name>)")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the work dir's last complete checkpoint (model, optimizer, scheduler, "
                             "iteration, the sampler's position and seed); with none, says so and starts afresh")
    parser.add_argument("--amp", action="store_true", help="mixed-precision training (GPU only)")
    parser.add_argument("--launcher", choices=["none", "pytorch", "slurm"], default="none",
                        help="distributed launcher: none (one process), pytorch (torchrun), slurm (srun)")
    parser.add_argument("--seed", type=int, help="random seed (overrides the config's randomness.seed)")
    parser.add_argument("--prepared-dir", help="`make prepare` output to train on, replacing the config's "
                                               "prepared_dir (`make train` passes WORK/prepared, that is "
                                               "work/<dataset name>/prepared)")
    parser.add_argument("--img-root", help="folder holding the train/ and validation/ image folders "
                                           "(replaces the config's img_root)")
    parser.add_argument("--adapt-classes", action="store_true",
                        help="set the model's num_classes to the class count of the training data (an expert group "
                             "of `make prepare --expert-groups`, the 601 V6 classes) instead of requiring them equal")
    parser.add_argument("--init-from", metavar="CKPT",
                        help="start from this checkpoint (e.g. a global model's, for an expert): every weight loads "
                             "strictly except the class-count-dependent layers, which are re-initialised "
                             "(replaces the config's load_from; a resumed run keeps its own weights)")
    parser.add_argument("--trust-checkpoint", action="store_true", help=f"load_from / Pretrained files: {TRUST_HELP}")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction, metavar="KEY=VALUE",
                        help="override config entries, e.g. train_dataloader.batch_size=4 train_cfg.max_iters=200")
    args = parser.parse_args(argv)
    if args.launcher == "pytorch" and "LOCAL_RANK" not in os.environ:
        parser.error("--launcher pytorch must be started by torchrun (LOCAL_RANK is not set)")
    if args.launcher == "slurm" and "SLURM_PROCID" not in os.environ:
        parser.error("--launcher slurm must be started by srun (SLURM_PROCID is not set)")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Input mistakes (missing files, bad values, a config naming unknown types) end in one ``error:`` line and
    status 2, before training starts; anything failing during training (out of memory, a bug) keeps its
    traceback."""
    args = parse_args(argv)
    try:
        cfg = load_config(args.config, args.work_dir, args.cfg_options, args.resume, args.amp, args.launcher,
                          args.seed, args.prepared_dir, args.img_root, args.adapt_classes, args.init_from)
        runner = build_runner(cfg, args.trust_checkpoint)
    except (*INPUT_ERRORS, KeyError) as error:  # mmengine's registries report unknown types as KeyError
        return report_error(error)
    runner.train()
    return 0


if __name__ == "__main__":
    sys.exit(main())
