"""Paths and small builders the tests share (fixtures live in tests/conftest.py)."""
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
METADATA = REPO / "data_prep" / "metadata"
FIXTURES = REPO / "tests" / "data"
SHARED = REPO.parent / "shared"  # optional extras only; every test must pass without it


def write_random_detector(folder: Path, num_classes: int = 13) -> tuple[Path, Path]:
    """The mini TSD detector with random weights (seed 0) saved as FOLDER/random.pth, and FOLDER/classes.csv naming
    its classes (the first challenge MIDs): enough for inference whose rows only have to be compared."""
    import torch
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmdet.registry import MODELS

    from contracts.classes import read_classes

    folder.mkdir(parents=True, exist_ok=True)
    cfg = Config.fromfile(str(REPO / "configs" / "mini_tsd.py"))
    init_default_scope("mmdet")
    torch.manual_seed(0)
    checkpoint, classes = folder / "random.pth", folder / "classes.csv"
    torch.save({"state_dict": MODELS.build(cfg.model).state_dict(), "meta": {}}, checkpoint)
    mids = list(read_classes(METADATA / "challenge-2019-classes-description-500.csv").mids)[:num_classes]
    classes.write_text("".join(f"{mid},class {i}\n" for i, mid in enumerate(mids)))
    return checkpoint, classes


INFER_ENV = {"OMP_NUM_THREADS": "1", "MAKEFLAGS": "--no-print-directory"}  # one thread: equal rows in any process


def make_infer_args(root: Path, out: Path) -> list[str]:
    """``make infer``/``infer-slurm`` variables predicting the images of ``prepare_infer_case(root)`` into ``out``."""
    case = root / "infer-case"
    return [f"CKPT={case / 'random.pth'}", f"INFER_CONFIG={REPO / 'configs' / 'mini_tsd.py'}",
            f"IMAGES={case / 'images'}", f"PREPARED={case}", f"WORK={case / 'work'}", f"PREDICTIONS={out}",
            "INFER_OPTS=--scales 96 --device cpu --chunk-size 1"]


def run_make(*args: str, timeout: float, check: bool = True, env: dict | None = None):
    """``make ARGS`` in the repository (stdout and stderr captured); with ``check``, fails the test on an error."""
    import os
    import subprocess

    result = subprocess.run(["make", *args], cwd=REPO, env=dict(os.environ, **INFER_ENV, **(env or {})),
                            capture_output=True, text=True, timeout=timeout)
    assert not check or result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def prepare_infer_case(root: Path, num_images: int = 6) -> Path:
    """Once per ``root``: tiny images, a random detector (``write_random_detector``) and the one-process ``make
    infer`` of them; returns that reference merged shard (ROOT/infer-case/one/merged/shard-000-of-001.parquet)."""
    import numpy as np
    from PIL import Image

    case = root / "infer-case"
    reference = case / "one" / "merged" / "shard-000-of-001.parquet"
    if not reference.is_file():
        write_random_detector(case)
        (case / "images").mkdir(exist_ok=True)
        rng = np.random.default_rng(0)
        for i in range(num_images):
            pixels = rng.integers(0, 255, (90 + 7 * i, 120, 3), dtype=np.uint8)
            pixels[20:60, 30 + i:90] = (200, 40, 40)
            Image.fromarray(pixels).save(case / "images" / f"{i:016x}.jpg")
        run_make("infer", *make_infer_args(root, case / "one"), timeout=120)
    return reference


def merged_rows(out: Path, num_shards: int):
    """The merged predictions of shards 0..N-1 of ``out``, concatenated in shard order (each shard must exist)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    return pa.concat_tables([pq.read_table(out / "merged" / f"shard-{k:03d}-of-{num_shards:03d}.parquet")
                             for k in range(num_shards)])
