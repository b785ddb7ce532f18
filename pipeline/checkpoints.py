"""Loading checkpoint files without running the code a foreign file may carry.

``torch.load(..., weights_only=False)`` unpickles whatever a file names, and unpickling can call any function. So
only our own checkpoints load that way. Every other file goes through ``weights_only=True``, which allows tensors,
containers, plain scalars and strings, and the numpy scalars of :data:`SAFE_GLOBALS`, and nothing that runs code.
Such files are an original TSD release given to ``python -m pipeline.convert_tsd``, a ``load_from`` or
``Pretrained`` path, or a checkpoint given to ``python -m pipeline.infer``. ``trust=True`` (the
``--trust-checkpoint`` flags) falls back to full unpickling for a foreign file that needs more.

**Ours** means the file's real path (symlinks resolved) lies in a folder holding an mmengine ``last_checkpoint``
file. That folder is the work dir of a ``python -m pipeline.train`` run: mmengine's ``CheckpointHook`` writes
``last_checkpoint`` into the work dir, where our configs keep the checkpoints too (no ``out_dir``). Those
checkpoints hold objects that ``weights_only`` refuses (the message hub's ``HistoryBuffer``, numpy arrays), and
``--resume`` needs them. Never copy a foreign file into a work dir; convert it instead. Converted files hold only
tensors and plain values, so they load safely anywhere.
"""
from __future__ import annotations

import pickle
import re
from pathlib import Path

import numpy as np
import torch
from mmengine.runner import CheckpointLoader

from contracts.files import atomic_output

WORK_DIR_MARKER = "last_checkpoint"
TRUST_HELP = ("also load checkpoints that are not from our own work dirs (folders with an mmengine "
              "last_checkpoint file) when they hold more than tensors and plain values. This runs full "
              "unpickling, and a malicious file can then run any code as you: use it only for files from a "
              "source you trust")


def _numpy_scalar_globals() -> list:
    """numpy scalars, under their numpy 1 and 2 names; mmcv / mmengine metas hold some (``seed``,
    ``best_score``). ``multiarray.scalar`` rebuilds a value from its dtype and raw bytes and calls nothing else."""
    try:
        from numpy._core.multiarray import scalar  # numpy >= 2
    except ImportError:
        from numpy.core.multiarray import scalar
    dtypes = {type(np.dtype(name)) for name in ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16",
                                                  "uint32", "uint64", "float16", "float32", "float64")}
    return [(scalar, "numpy.core.multiarray.scalar"), (scalar, "numpy._core.multiarray.scalar"), np.dtype,
            *sorted(dtypes, key=lambda t: t.__name__)]


SAFE_GLOBALS = _numpy_scalar_globals()


class UntrustedCheckpointError(ValueError):
    """A foreign checkpoint holds objects that only full unpickling (which may run code) could rebuild."""


def is_own_checkpoint(path: str | Path) -> bool:
    """Whether ``path`` is one of our training checkpoints: its real folder holds an mmengine ``last_checkpoint``."""
    return (Path(path).expanduser().resolve().parent / WORK_DIR_MARKER).is_file()


def load_checkpoint(filename: str | Path, map_location=None, trust: bool = False):
    """Load a local checkpoint: ours in full, any other with ``weights_only=True`` unless ``trust``.

    Raises FileNotFoundError for a missing file and :class:`UntrustedCheckpointError` (naming the refused object)
    for a foreign file that holds more than tensors and plain values while ``trust`` is False; nothing in that file
    has run then.
    """
    path = Path(filename).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if trust or is_own_checkpoint(path):
        return torch.load(path, map_location=map_location, weights_only=False)
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        refused = re.search(r"Unsupported global: GLOBAL (\S+)", str(error))
        detail = f"it names {refused.group(1)}" if refused else str(error).strip().splitlines()[0]
        raise UntrustedCheckpointError(
            f"{path}: refused to load: the file holds more than tensors and plain values ({detail}); loading it "
            f"in full can run code it contains: pass --trust-checkpoint only if you trust its source") from None


def save_checkpoint(checkpoint: dict, path: str | Path) -> None:
    """Write ``checkpoint`` with ``torch.save``, atomically (a temporary file renamed into place)."""
    with atomic_output(path) as f:
        torch.save(checkpoint, f)


def latest_checkpoint(work_dir: str | Path) -> Path | None:
    """The checkpoint a resumed run continues from: the one ``last_checkpoint`` names, else (that file empty or its
    checkpoint gone) the newest ``iter_N.pth`` / ``epoch_N.pth`` in ``work_dir``; None when there is none.

    Training writes each checkpoint to a temporary name and renames it (``pipeline.train.TrainRunner``), so every
    file under a checkpoint name is complete; one being written when a run is killed is never picked."""
    work_dir = Path(work_dir)
    marker = work_dir / WORK_DIR_MARKER
    if not marker.is_file():
        return None
    named = Path(marker.read_text().strip())
    if named.name and named.is_file():
        return named
    numbered = [(int(m.group(2)), p) for p in work_dir.glob("*_*.pth")
                if (m := re.fullmatch(r"(iter|epoch)_(\d+)\.pth", p.name))]
    return max(numbered)[1] if numbered else None


def checkpoint_seed(path: str | Path) -> int | None:
    """The random seed one of our training checkpoints was written with (through a memory map: no tensor is read)."""
    if not is_own_checkpoint(path):
        raise UntrustedCheckpointError(f"{path}: not a checkpoint of a training work dir "
                                       f"(no {WORK_DIR_MARKER} beside it)")
    return torch.load(path, map_location="cpu", weights_only=False, mmap=True)["meta"].get("seed")


def use_checkpoint_loader(trust: bool = False) -> None:
    """Make mmengine load local files (``resume``, ``load_from``, ``Pretrained`` paths) with
    :func:`load_checkpoint` (process-wide: mmengine's loader registry is global)."""

    def load_from_local(filename: str, map_location=None):  # mmengine logs the name after "load_from_"
        return load_checkpoint(filename, map_location, trust)

    CheckpointLoader.register_scheme(prefixes="", loader=load_from_local, force=True)
