"""Benchmark `python -m data_prep` on a synthetic Challenge 2019 train set of the real size.

Generates (once per scale, cached under --out) a box file in the real 13-column format with real MIDs from the
bundled 500-class file, a Zipf-like class skew, ~5% group-of boxes and 16-hex-digit ImageIDs sorted like the
real file, plus a matching 4-column image-label file; then runs `python -m data_prep` on it as a subprocess and, as
the reference, a plain `pandas.read_csv` of the same box file. Prints wall time and peak RSS of both.

    python bench/prepare.py [--scale 1.0] [--out bench/out/prepare]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

REPO = Path(__file__).resolve().parents[1]
METADATA = REPO / "data_prep" / "metadata"
FULL_IMAGES = 1_743_042
FULL_BOXES = 12_200_000
FULL_LABELS = 5_500_000
GROUP_OF_SHARE = 0.05
CHUNK = 1 << 20
H13 = ("ImageID,Source,LabelName,Confidence,XMin,XMax,YMin,YMax,IsOccluded,IsTruncated,IsGroupOf,IsDepiction,"
       "IsInside")
GENERATOR_VERSION = 1


def challenge_mids() -> list[str]:
    with open(METADATA / "challenge-2019-classes-description-500.csv", encoding="utf-8") as f:
        return [line.split(",", 1)[0] for line in f if line.strip()]


def image_ids(rng: np.random.Generator, n: int) -> pa.Array:
    """``n`` distinct random 16-hex-digit ImageIDs, sorted."""
    values = np.unique(rng.integers(0, 2**64, size=n, dtype=np.uint64))
    while len(values) < n:  # a repeat among 64-bit draws: practically never
        values = np.unique(np.concatenate([values, rng.integers(0, 2**64, size=n - len(values), dtype=np.uint64)]))
    return pa.array([f"{v:016x}" for v in values.tolist()], pa.string())


def zipf_classes(rng: np.random.Generator, n_classes: int, size: int) -> np.ndarray:
    weights = 1.0 / np.arange(1, n_classes + 1) ** 1.1
    weights = weights[rng.permutation(n_classes)]
    return rng.choice(n_classes, size=size, p=weights / weights.sum())


def write_csv(path: Path, header: str, tables) -> None:
    with open(path, "wb") as f:
        f.write((header + "\n").encode())
        for table in tables:
            pacsv.write_csv(table, f, pacsv.WriteOptions(include_header=False, quoting_style="none"))


def generate(data: Path, scale: float, seed: int = 0) -> None:
    """The synthetic raw folder: class file, hierarchy, train box file and train image-label file."""
    rng = np.random.default_rng(seed)
    data.mkdir(parents=True, exist_ok=True)
    for name in ("challenge-2019-classes-description-500.csv", "challenge-2019-label500-hierarchy.json"):
        shutil.copyfile(METADATA / name, data / name)
    mids = pa.array(challenge_mids(), pa.string())
    n_images = max(1, round(FULL_IMAGES * scale))
    ids = image_ids(rng, n_images)
    per_image = 1 + rng.poisson(FULL_BOXES / FULL_IMAGES - 1, size=n_images)
    image_of_box = np.repeat(np.arange(n_images), per_image)

    def box_chunks():
        for start in range(0, len(image_of_box), CHUNK):
            img = image_of_box[start:start + CHUNK]
            n = len(img)
            x0, y0 = rng.uniform(0, 0.9, n), rng.uniform(0, 0.9, n)
            x1 = x0 + (1 - x0) * rng.uniform(0.05, 1, n)
            y1 = y0 + (1 - y0) * rng.uniform(0.05, 1, n)
            yield pa.table({
                "ImageID": ids.take(pa.array(img)),
                "Source": pa.array(np.where(rng.random(n) < 0.9, "xclick", "activemil")),
                "LabelName": mids.take(pa.array(zipf_classes(rng, len(mids), n))),
                "Confidence": np.ones(n, np.int8),
                "XMin": np.round(x0, 6), "XMax": np.round(x1, 6), "YMin": np.round(y0, 6), "YMax": np.round(y1, 6),
                "IsOccluded": (rng.random(n) < 0.6).astype(np.int8),
                "IsTruncated": (rng.random(n) < 0.25).astype(np.int8),
                "IsGroupOf": (rng.random(n) < GROUP_OF_SHARE).astype(np.int8),
                "IsDepiction": (rng.random(n) < 0.05).astype(np.int8),
                "IsInside": (rng.random(n) < 0.01).astype(np.int8),
            })

    write_csv(data / "challenge-2019-train-detection-bbox.csv", H13, box_chunks())

    n_labels = round(FULL_LABELS * scale)
    keys = np.unique(rng.integers(0, n_images, n_labels).astype(np.int64) * len(mids)
                     + zipf_classes(rng, len(mids), n_labels))

    def label_chunks():
        for start in range(0, len(keys), CHUNK):
            k = keys[start:start + CHUNK]
            n = len(k)
            yield pa.table({
                "ImageID": ids.take(pa.array(k // len(mids))),
                "Source": pa.array(np.where(rng.random(n) < 0.7, "verification", "crowdsource-verification")),
                "LabelName": mids.take(pa.array(k % len(mids))),
                "Confidence": (rng.random(n) < 0.55).astype(np.int8),
            })

    write_csv(data / "challenge-2019-train-detection-human-imagelabels.csv", "ImageID,Source,LabelName,Confidence",
              label_chunks())


def measure(cmd: list[str]) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds (user + system) and peak RSS (GiB) of one child process (``os.wait4``: that
    child's rusage only)."""
    start = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - start
        if proc.returncode:
            err.seek(0)
            raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err.read().decode()[-3000:]}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 2**20


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scale", type=float, default=1.0, help="fraction of the real train size (default 1.0)")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "prepare",
                   help="working folder (the generated data is cached there per scale)")
    args = p.parse_args()
    data = args.out / f"data-scale{args.scale:g}"
    stamp = data / "generated.json"
    spec = {"scale": args.scale, "version": GENERATOR_VERSION}
    if not stamp.is_file() or json.loads(stamp.read_text()) != spec:
        t = time.perf_counter()
        print(f"generating {data} ...", flush=True)
        generate(data, args.scale)
        stamp.write_text(json.dumps(spec))
        print(f"  generated in {time.perf_counter() - t:.0f} s", flush=True)
    box_file = data / "challenge-2019-train-detection-bbox.csv"
    label_file = data / "challenge-2019-train-detection-human-imagelabels.csv"
    out = args.out / f"prepared-scale{args.scale:g}"
    load = os.getloadavg()[0]

    ref = measure([sys.executable, "-c", "import sys, pandas; print(len(pandas.read_csv(sys.argv[1])))",
                   str(box_file)])
    ours = measure([sys.executable, "-m", "data_prep", "--data-dir", str(data), "--out-dir", str(out), "--quiet"])
    s = json.loads((out / "summary.json").read_text())["splits"]["train"]
    print(f"\nbox file {box_file.stat().st_size / 1e9:.2f} GB ({s['boxes']:,} boxes, {s['images']:,} images), "
          f"label file {label_file.stat().st_size / 1e6:.0f} MB ({s['image_labels']['before_expansion']:,} rows "
          f"-> {s['image_labels']['after_expansion']:,} expanded), {os.cpu_count()} CPUs")
    print(f"load average before the runs: {load:.1f}")
    print(f"\n| {'run':<48} | {'wall s':>8} | {'CPU s':>8} | {'peak RSS GiB':>12} |")
    print(f"|{'-' * 50}|{'-' * 10}|{'-' * 10}|{'-' * 14}|")
    for name, (wall, cpu, rss) in (("pandas.read_csv(box file)  [reference]", ref),
                                   ("python -m data_prep (boxes + labels, all steps)", ours)):
        print(f"| {name:<48} | {wall:8.1f} | {cpu:8.1f} | {rss:12.2f} |")
    ratio = [o / r for o, r in zip(ours, ref)]
    print(f"| {'ratio ours / reference':<48} | {ratio[0]:8.2f} | {ratio[1]:8.2f} | {ratio[2]:12.2f} |")


if __name__ == "__main__":
    main()
