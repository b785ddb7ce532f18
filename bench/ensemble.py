"""Benchmark: `python -m ensemble` end to end on synthetic test predictions, where its time goes, and the limit.

    .venv/bin/python bench/ensemble.py                      # 2,000 images x 5 models x 1,000 boxes, --jobs 2
    .venv/bin/python bench/ensemble.py --images 500 --boxes 300

The recipe is the challenge's: WBF (iou_thr 0.55), ancestor copies with the 500-class hierarchy, score_thr 0.001,
max_per_image 500. Printed, from one run: the CLI's wall time with --jobs N (process start and Parquet in and out
included) and its largest process's peak RSS, projected to the 99,999 Kaggle test images (the fixed cost, a run on
10 images, plus the rest scaled by the number of images); the same stage in one
process split into its phases (scan, read and spill, fuse, order + threshold + ancestor copies + cap, write); the
limit (reading the inputs' Parquet and writing the output's, nothing else); and ensemble-boxes' fusion alone on a
sample of the same images, against ours on the same sample.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import yaml
from ensemble_boxes import weighted_boxes_fusion as reference_wbf

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
from wbf import HIERARCHY, TEST_IMAGES, synthetic_image, write_inputs  # noqa: E402

from contracts.hierarchy import Hierarchy  # noqa: E402
from contracts.predictions import SCHEMA, input_files  # noqa: E402
from ensemble import runner  # noqa: E402
from ensemble.recipe import load_recipe  # noqa: E402
from ensemble.wbf import weighted_boxes_fusion  # noqa: E402


def write_recipe(work: Path, n_models: int) -> Path:
    recipe = work / "bench.yaml"
    recipe.write_text(yaml.safe_dump({
        "inputs": [{"path": f"{{work}}/predictions/model{m}/{{split}}/merged", "weight": 1} for m in range(n_models)],
        "method": "wbf", "params": {"iou_thr": 0.55, "skip_box_thr": 0.0, "conf_type": "avg"},
        "hierarchy": str(HIERARCHY), "score_thr": 0.001, "max_per_image": 500}))
    return recipe


def run_cli(recipe: Path, work: Path, jobs: int) -> tuple[float, float, float]:
    """Wall s, CPU s and the largest child's peak RSS (GiB) of one `python -m ensemble` run (in a fresh process
    tree: RUSAGE_CHILDREN's maxrss is the largest process's)."""
    code = ("import resource, subprocess, sys, time; t = time.perf_counter(); "
            f"subprocess.run([sys.executable, '-m', 'ensemble', '--recipe', {str(recipe)!r}, '--split', 'test', "
            f"'--work', {str(work)!r}, '--jobs', '{jobs}'], check=True, stdout=subprocess.DEVNULL, "
            "stderr=subprocess.DEVNULL); r = resource.getrusage(resource.RUSAGE_CHILDREN); "
            "print(time.perf_counter() - t, r.ru_utime + r.ru_stime, r.ru_maxrss / 2 ** 20)")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    wall, cpu, rss = map(float, done.stdout.split())
    return wall, cpu, rss


def phases(recipe_path: Path, work: Path) -> dict[str, float]:
    """The stage's steps in this process (one worker), timed one by one: what `run_ensemble` does."""
    times = dict.fromkeys(["scan", "read + spill", "chunks read back, sorted by image", "fuse",
                           "order, threshold, copies, cap", "write"], 0.0)
    recipe = load_recipe(recipe_path)
    t = time.perf_counter()
    files = [input_files(str(work / "predictions" / f"model{m}" / "test" / "merged"))
             for m in range(len(recipe.inputs))]
    images, mids = runner.scan_inputs(files)
    classes, expansion = runner.class_list(mids, Hierarchy.from_json(HIERARCHY), str(HIERARCHY))
    fusion = runner.make_fusion(recipe, classes, [None] * len(files), expansion)
    times["scan"] = time.perf_counter() - t
    image_values, class_values = runner.pa.array(images), runner.pa.array(classes)
    with tempfile.TemporaryDirectory(dir=work) as spill:
        t = time.perf_counter()
        runner.partition(files, images, classes, 1000, Path(spill))
        times["read + spill"] = time.perf_counter() - t
        with pq.ParquetWriter(work / "phases.parquet", SCHEMA) as writer:
            blocks = (block for chunk, first in enumerate(range(0, len(images), 1000))
                      for block in runner.chunk_blocks(Path(spill), len(files), chunk, first,
                                                       min(first + 1000, len(images)), 100))
            t = time.perf_counter()
            for k, (rows, bounds, first) in enumerate(blocks):
                times["chunks read back, sorted by image"] += time.perf_counter() - t
                ids = images[first:first + bounds.shape[1] - 1]
                if not k:  # load the compiled kernels first
                    runner.fuse_block(fusion, rows, bounds, first, ids)
                t = time.perf_counter()
                boxes, scores, image, label = runner._fuse_groups(fusion, rows, bounds, first, ids)
                scores = scores.astype(np.float64)
                t2 = time.perf_counter()
                out = runner._output_rows(boxes, scores, image, label, np.ones((0, 0), bool),
                                          bounds.shape[1] - 1, fusion.score_thr, fusion.max_per_image,
                                          expansion.indptr, expansion.indices)
                t3 = time.perf_counter()
                records = np.empty(len(out[0]), runner.RECORD)
                records["image"], records["label"], records["score"], records["box"] = first + out[0], *out[1:]
                writer.write_table(runner._table(records, image_values, class_values))
                times["fuse"] += t2 - t
                times["order, threshold, copies, cap"] += t3 - t2
                times["write"] += time.perf_counter() - t3
                t = time.perf_counter()
    return times


def io_limit(work: Path, output: Path) -> tuple[float, float]:
    """Seconds to read every input's Parquet (all columns) and to write the output's rows again."""
    t = time.perf_counter()
    for path in sorted((work / "predictions").rglob("*.parquet")):
        pq.read_table(path)
    read = time.perf_counter() - t
    table = pq.read_table(output)
    t = time.perf_counter()
    pq.write_table(table, work / "limit.parquet")
    return read, time.perf_counter() - t


def reference_sample(n_images: int, n_models: int, n_boxes: int) -> tuple[float, float]:
    """Seconds per image of ensemble-boxes' WBF and ours on the same synthetic images (fusion alone)."""
    rng = np.random.default_rng(2)
    images = [synthetic_image(rng, n_models, n_boxes, 500) for _ in range(n_images)]
    weighted_boxes_fusion(*images[0])
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for data in images:
            reference_wbf(*data, iou_thr=0.55)
    ref = (time.perf_counter() - t) / n_images
    t = time.perf_counter()
    for data in images:
        weighted_boxes_fusion(*data, iou_thr=0.55)
    return ref, (time.perf_counter() - t) / n_images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000, help="synthetic test images (default 2,000)")
    parser.add_argument("--models", type=int, default=5)
    parser.add_argument("--boxes", type=int, default=1000, help="boxes per image and model (default 1,000)")
    parser.add_argument("--jobs", type=int, default=2, help="workers of the CLI run (default 2)")
    parser.add_argument("--reference-images", type=int, default=10, help="images fused by ensemble-boxes")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_ensemble_") as tmp:
        small = Path(tmp) / "small"
        write_inputs(small, 10, args.models, args.boxes)
        run_cli(write_recipe(small, args.models), small, args.jobs)  # numba's cache
        start, _, _ = run_cli(write_recipe(small, args.models), small, args.jobs)  # the fixed cost
        work = Path(tmp) / "work"
        write_inputs(work, args.images, args.models, args.boxes)
        recipe = write_recipe(work, args.models)
        wall, cpu, rss = run_cli(recipe, work, args.jobs)
        output = work / "ensemble" / "bench" / "test" / "predictions.parquet"
        out_rows = pq.ParquetFile(output).metadata.num_rows
        steps = phases(recipe, work)
        read, write = io_limit(work, output)
    ref, ours = reference_sample(args.reference_images, args.models, args.boxes)
    scale = TEST_IMAGES / args.images
    print(f"\n{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}. {args.images:,} images x {args.models} "
          f"models x {args.boxes} boxes in, {out_rows:,} rows out ({out_rows / args.images:.0f} per image); "
          f"projections to {TEST_IMAGES:,} images.\n")
    print("| run | s | projected min |")
    print("|---|---|---|")
    projected = (start + (wall - start) * scale) / 60
    print(f"| `python -m ensemble --jobs {args.jobs}`, wall | {wall:.1f} | {projected:.2f} |")
    print(f"| of which process start and workers (a run on 10 images) | {start:.1f} | {start / 60:.2f} |")
    print(f"| same, CPU (all processes) | {cpu:.1f} | {cpu * scale / 60:.2f} |")
    total = sum(steps.values())
    for name, s in steps.items():
        print(f"| one process: {name} | {s:.1f} | {s * scale / 60:.2f} ({s / total:.0%}) |")
    print(f"| one process: total | {total:.1f} | {total * scale / 60:.2f} |")
    print(f"| limit: read the inputs' Parquet | {read:.1f} | {read * scale / 60:.2f} |")
    print(f"| limit: write the output's Parquet | {write:.1f} | {write * scale / 60:.2f} |")
    print(f"\nLargest process's peak RSS: {rss:.2f} GiB. The CLI's wall time is {wall / (read + write):.1f}x the "
          f"Parquet limit (read + write, one process).")
    print(f"Fusion alone, per image ({args.reference_images} images, one core): ensemble-boxes {ref * 1e3:.1f} ms, "
          f"ours {ours * 1e3:.2f} ms ({ref / ours:.0f}x); ensemble-boxes alone would take "
          f"{ref * TEST_IMAGES / 60:.0f} min of one core for the test set.")


if __name__ == "__main__":
    main()
