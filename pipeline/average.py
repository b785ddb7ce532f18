"""Checkpoint averaging: ``python -m pipeline.average CKPT... --out FILE``, or the last K checkpoints of a work dir
(``--work-dir DIR --last K``, what ``make average MODEL=... LAST=K`` runs).

The floating-point parameters and buffers of checkpoints of one model are averaged (in float64, cast back to each
tensor's dtype); integer buffers (``num_batches_tracked``) are taken from the last checkpoint, and so is the meta
(``dataset_meta`` with the class MIDs, iteration, config), with ``averaged_from`` added. Optimizer, scheduler and
message-hub state are dropped, so the output is weights and plain values only and loads anywhere
``pipeline.infer`` loads a checkpoint. Checkpoints of different models (other keys, shapes, dtypes or classes) are
refused with an error naming the key.
"""
from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
from tqdm import tqdm

from contracts.cli import entry_point
from contracts.files import DataError

_CHECKPOINT = re.compile(r"(iter|epoch)_(\d+)\.pth")


def last_checkpoints(work_dir: str | Path, count: int) -> list[Path]:
    """The ``count`` latest ``iter_N.pth`` (or ``epoch_N.pth``) files of an mmengine work dir, oldest first."""
    work_dir = Path(work_dir)
    if not work_dir.is_dir():
        raise FileNotFoundError(f"work dir not found: {work_dir}")
    found = [(m.group(1), int(m.group(2)), p) for p in work_dir.iterdir() if (m := _CHECKPOINT.fullmatch(p.name))]
    kinds = {kind for kind, _, _ in found}
    if len(kinds) > 1:
        raise DataError(f"{work_dir}: holds both iter_*.pth and epoch_*.pth checkpoints; name the files to average")
    if len(found) < count:
        raise DataError(f"{work_dir}: {len(found)} checkpoint(s) (iter_*.pth / epoch_*.pth), fewer than the {count} "
                        "to average (the config's checkpoint hook may keep fewer: max_keep_ckpts)")
    return [p for _, _, p in sorted(found)[-count:]]


def _state_dict(ckpt, path: Path) -> dict[str, torch.Tensor]:
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DataError(f"{path}: not a checkpoint (expected a state dict of tensors)")
    return state


def _mids(ckpt) -> list[str] | None:
    return (((ckpt.get("meta") or {}).get("dataset_meta") or {}).get("mids")) if "state_dict" in ckpt else None


def average_checkpoints(paths: Sequence[str | Path], progress: bool = True) -> dict:
    """The averaged checkpoint ``{"meta": ..., "state_dict": ...}`` of ``paths`` (at least two, of one model)."""
    from pipeline.checkpoints import load_checkpoint

    paths = [Path(p) for p in paths]
    if len(paths) < 2:
        raise ValueError(f"averaging needs at least 2 checkpoints, got {len(paths)}")
    sums: dict[str, torch.Tensor] = {}
    first = None
    for path in tqdm(paths, desc="averaging checkpoints", unit="ckpt", disable=not progress):
        ckpt = load_checkpoint(path, map_location="cpu")
        state = _state_dict(ckpt, path)
        if first is None:
            first, reference = path, {k: (v.shape, v.dtype) for k, v in state.items()}
            reference_mids = _mids(ckpt)
        missing = [k for k in reference if k not in state]
        extra = [k for k in state if k not in reference]
        if missing or extra:
            what = f"lacks {missing[0]}" if missing else f"holds {extra[0]}, which {first} lacks"
            raise DataError(f"{path}: not a checkpoint of the same model as {first}: it {what} "
                            f"({len(missing)} key(s) missing, {len(extra)} extra)")
        if _mids(ckpt) != reference_mids:
            raise DataError(f"{path}: trained on other classes than {first} (dataset_meta mids differ)")
        for k, v in state.items():
            if (v.shape, v.dtype) != reference[k]:
                raise DataError(f"{path}: {k} is {tuple(v.shape)} {v.dtype}, but {tuple(reference[k][0])} "
                                f"{reference[k][1]} in {first}: not a checkpoint of the same model")
            if v.is_floating_point():
                sums.setdefault(k, torch.zeros(v.shape, dtype=torch.float64)).add_(v)
        last, last_state = ckpt, state
    averaged = {k: (sums[k] / len(paths)).to(v.dtype) if k in sums else v for k, v in last_state.items()}
    meta = dict(last.get("meta") or {}) if "state_dict" in last else {}
    meta["averaged_from"] = [str(p) for p in paths]
    return {"meta": meta, "state_dict": averaged}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m pipeline.average",
        description="Average the floating-point weights and buffers of checkpoints of one model (float64, cast "
                    "back); integer buffers and the meta come from the last checkpoint; optimizer and scheduler "
                    "state are dropped. The output loads with `make infer CKPT=FILE`.")
    p.add_argument("checkpoints", nargs="*", type=Path, metavar="CKPT", help="checkpoints to average, oldest first")
    p.add_argument("--work-dir", type=Path, help="average the last --last checkpoints of this mmengine work dir")
    p.add_argument("--last", type=int, metavar="K", help="how many of the work dir's latest checkpoints (with "
                                                         "--work-dir)")
    p.add_argument("--out", type=Path, help="output file (default with --work-dir: WORK_DIR/average_lastK.pth)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    if args.checkpoints and (args.work_dir or args.last is not None):
        p.error("give either checkpoint files or --work-dir with --last, not both")
    if not args.checkpoints and (args.work_dir is None or args.last is None):
        p.error("give the checkpoint files to average, or --work-dir DIR --last K")
    if args.last is not None and args.last < 2:
        p.error("--last must be at least 2")
    if args.out is None:
        if args.work_dir is None:
            p.error("--out is required with checkpoint files")
        args.out = args.work_dir / f"average_last{args.last}.pth"
    return args


@entry_point
def main(argv: Sequence[str] | None = None) -> int:
    from pipeline.checkpoints import save_checkpoint

    args = parse_args(argv)
    paths = args.checkpoints or last_checkpoints(args.work_dir, args.last)
    averaged = average_checkpoints(paths, progress=not args.quiet)
    save_checkpoint(averaged, args.out)
    print(f"wrote {args.out} (the average of {', '.join(p.name for p in paths)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
