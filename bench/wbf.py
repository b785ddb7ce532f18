"""Benchmark: ensemble.wbf.weighted_boxes_fusion vs ensemble_boxes 1.0.9 per image, and `python -m ensemble` end to
end with a projection to the Kaggle test set (99,999 images).

    .venv/bin/python bench/wbf.py                 # both parts
    .venv/bin/python bench/wbf.py --no-cli        # per-image table only

Synthetic images imitate post-NMS detector output: each model reports about 90% of the same places (jittered,
60 main classes, 20% of the boxes with another of the 500), so clusters hold about one box per model. Both
implementations get the same inputs; their outputs are compared in the same run (max abs difference, labels and
order).
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from ensemble_boxes import weighted_boxes_fusion as reference_wbf

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from ensemble.wbf import weighted_boxes_fusion  # noqa: E402

HIERARCHY = REPO / "data_prep" / "metadata" / "challenge-2019-label500-hierarchy.json"
CLASSES = REPO / "data_prep" / "metadata" / "challenge-2019-classes-description-500.csv"
TEST_IMAGES = 99_999
CASES = [("5 models x 300", 5, 300, 500), ("5 models x 1000", 5, 1000, 500),
         ("12 inputs x 300 (3 models x 4 TTA)", 12, 300, 500), ("5 models x 300, one class", 5, 300, 1)]


def synthetic_image(rng: np.random.Generator, n_models: int, n_boxes: int, n_classes: int):
    """Per-model float32 boxes (n, 4), scores (n,) and int labels (n,) for one image: ``n_boxes`` places, each
    model finding 90% of them (jittered, 20% with another class), as post-NMS detector output looks."""
    centre = rng.uniform(0.05, 0.95, (n_boxes, 2))
    size = rng.uniform(0.02, 0.5, (n_boxes, 2))
    places = np.concatenate([centre - size / 2, centre + size / 2], axis=1)
    place_labels = rng.integers(0, min(n_classes, 60), n_boxes)
    quality = rng.beta(0.5, 3, n_boxes)
    boxes_list, scores_list, labels_list = [], [], []
    for _ in range(n_models):
        found = np.flatnonzero(rng.random(n_boxes) < 0.9)
        extra = rng.integers(0, n_boxes, n_boxes - len(found))  # duplicates fill up to n_boxes
        pick = np.concatenate([found, extra])
        boxes = np.clip(places[pick] + rng.normal(0, 0.05, (n_boxes, 4)) * np.tile(size[pick], 2), 0, 1)
        labels = np.where(rng.random(n_boxes) < 0.2, rng.integers(0, n_classes, n_boxes), place_labels[pick])
        scores = np.clip(quality[pick] * rng.uniform(0.8, 1.2, n_boxes), 0, 1)
        order = np.argsort(-scores)
        boxes_list.append(boxes[order].astype(np.float32))
        scores_list.append(scores[order].astype(np.float32))
        labels_list.append(labels[order])
    return boxes_list, scores_list, labels_list


def per_image_table(n_images: int) -> None:
    print(f"\nPer image, one core, best of 3, median over {n_images} synthetic images (ensemble-boxes 1.0.9 vs "
          f"ensemble.wbf)")
    print(f"| {'case':36s} | ensemble-boxes ms | ours ms | speed-up | max abs diff | labels+order |")
    print(f"|{'-' * 38}|-------------------|---------|----------|--------------|--------------|")
    for name, n_models, n_boxes, n_classes in CASES:
        rng = np.random.default_rng(0)
        images = [synthetic_image(rng, n_models, n_boxes, n_classes) for _ in range(n_images)]
        weighted_boxes_fusion(*images[0])  # compile (or load the cached kernels)
        ref_ms, our_ms, diff, same = [], [], 0.0, True
        for data in images:
            ref_times, our_times = [], []
            for _ in range(3):  # best of 3 for each, interleaved: the machine is shared
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    t0 = time.perf_counter()
                    ref = reference_wbf(*data)
                    t1 = time.perf_counter()
                ours = weighted_boxes_fusion(*data)
                t2 = time.perf_counter()
                ref_times.append(t1 - t0)
                our_times.append(t2 - t1)
            ref_ms.append(min(ref_times) * 1e3)
            our_ms.append(min(our_times) * 1e3)
            same &= ours[0].shape == ref[0].shape and np.array_equal(ours[2], ref[2])
            if same:
                diff = max(diff, float(np.abs(ours[0] - ref[0]).max(initial=0)),
                           float(np.abs(ours[1] - ref[1]).max(initial=0)))
        r, o = float(np.median(ref_ms)), float(np.median(our_ms))
        print(f"| {name:36s} | {r:17.2f} | {o:7.3f} | {r / o:7.0f}x | {diff:12.1e} | "
              f"{'identical' if same else 'DIFFERENT':12s} |")


def write_inputs(root: Path, n_images: int, n_models: int, n_boxes: int) -> None:
    """`make infer`-style inputs: per model a merged/ folder of 4 shards, MIDs from the 500 challenge classes."""
    mids = np.array([line.split(",")[0] for line in CLASSES.read_text().splitlines()])
    rng = np.random.default_rng(1)
    rows: list[list] = [[] for _ in range(n_models)]
    for i in range(n_images):
        for m, (b, s, lab) in enumerate(zip(*synthetic_image(rng, n_models, n_boxes, len(mids)))):
            rows[m].append((np.full(len(b), f"{i:016x}"), mids[lab], s, b))
    for m in range(n_models):
        folder = root / "predictions" / f"model{m}" / "test" / "merged"
        folder.mkdir(parents=True)
        for k, part in enumerate(np.array_split(np.arange(n_images), 4)):
            ids, labels, scores, boxes = (np.concatenate(c) for c in zip(*(rows[m][i] for i in part)))
            table = pa.table({"ImageID": ids, "LabelName": labels, "Score": scores, "XMin": boxes[:, 0],
                              "YMin": boxes[:, 1], "XMax": boxes[:, 2], "YMax": boxes[:, 3]})
            pq.write_table(table, folder / f"shard-{k:03d}-of-004.parquet")


def run_cli(recipe: Path, work: Path, jobs: int) -> tuple[float, float]:
    """Wall and CPU seconds (user + sys, itself and its reaped children) of one `python -m ensemble` run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "ensemble", "--recipe", str(recipe), "--split", "test", "--work", str(work),
                    "--jobs", str(jobs)], cwd=REPO, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   env={**os.environ, "PYTHONPATH": str(REPO)})
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime


def cli_projection(n_images: int, jobs: int) -> None:
    print(f"\n`python -m ensemble` end to end on synthetic test images: WBF, expansion with the 500-class hierarchy,"
          f" score_thr 0.001, no cap, Parquet in and out. Projections to {TEST_IMAGES:,} images: from the wall time"
          f" with --jobs {jobs} (as measured, on this machine's load) and from the CPU time of a one-process run"
          f" (--jobs 1) spread over 2 idle cores.")
    print(f"| case            | images | rows/image | jobs 1 wall s | jobs 1 CPU s | jobs {jobs} wall s | "
          f"projected, jobs {jobs} wall | projected, CPU / 2 |")
    print("|-----------------|--------|------------|---------------|--------------|---------------|"
          "----------------------|--------------------|")
    for n_models, n_boxes, images in ((5, 300, n_images), (5, 1000, max(1, n_images // 4))):
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            write_inputs(work, images, n_models, n_boxes)
            recipe = work / "bench.yaml"
            recipe.write_text(yaml.safe_dump({
                "inputs": [{"path": f"{{work}}/predictions/model{m}/{{split}}/merged", "weight": 1}
                           for m in range(n_models)],
                "method": "wbf", "params": {"iou_thr": 0.55, "skip_box_thr": 0.0, "conf_type": "avg"},
                "hierarchy": str(HIERARCHY), "score_thr": 0.001}))
            wall_1, cpu_1 = run_cli(recipe, work, 1)
            wall_n, _ = run_cli(recipe, work, jobs)
            rows = pq.ParquetFile(work / "ensemble" / "bench" / "test" / "predictions.parquet").metadata.num_rows
        scale = TEST_IMAGES / images / 60
        print(f"| {n_models} models x {n_boxes:<4d} | {images:6d} | {rows / images:10.0f} | {wall_1:13.1f} | "
              f"{cpu_1:12.1f} | {wall_n:13.1f} | {wall_n * scale:16.1f} min | {cpu_1 / 2 * scale:14.1f} min |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=15, help="images per case in the per-image table")
    parser.add_argument("--cli-images", type=int, default=2000, help="images for the end-to-end runs (5 x 300; "
                                                                     "a quarter as many for 5 x 1000)")
    parser.add_argument("--jobs", type=int, default=2, help="workers of the end-to-end run")
    parser.add_argument("--no-cli", action="store_true", help="skip the end-to-end run")
    args = parser.parse_args()
    per_image_table(args.images)
    if not args.no_cli:
        cli_projection(args.cli_images, args.jobs)


if __name__ == "__main__":
    main()
