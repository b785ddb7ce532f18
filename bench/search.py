"""Benchmark: scoring one candidate recipe of the ensemble search (``ensemble.search.Evaluator``) against the naive
loop (``python -m ensemble`` then ``python -m submit.score`` per candidate), in the same run, on the same files.

    .venv/bin/python bench/search.py                # 5% of the validation size (2,081 images): a few minutes
    .venv/bin/python bench/search.py --scale 1.0    # the full 41,620 images

Synthetic validation set (``bench/score.py``'s generator: the real 500 MIDs and hierarchy, ~7 boxes and ~5 image
labels per image) and ``--inputs`` candidates of ``--boxes`` detections per image each (half near a ground-truth
box of its class or an ancestor, a fifth on a verified class, the rest random; each candidate its own draw). Every
recipe is scored both ways; the table gives seconds per candidate, the ratio and both mAPs, which must be equal.
Ours runs in a fresh process (``--ours``), after reading the predictions once (reported apart), with ``--jobs``
workers (wall times; its peak RSS is reported), and again with one process (CPU times).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from score import CLASSES, HIERARCHY, VALIDATION_IMAGES, synthetic_ground_truth, synthetic_predictions  # noqa: E402
from score import write_parquet  # noqa: E402

from contracts.hierarchy import Hierarchy  # noqa: E402
from contracts.metric import expand_ground_truth, read_gt_boxes, read_gt_labels  # noqa: E402

COMMON = {"hierarchy": str(HIERARCHY), "score_thr": 0.001, "max_per_image": 500}


def trials(n_inputs: int) -> list[tuple[str, dict]]:
    """(description, recipe) pairs: all inputs by each method (Soft-NMS and adj-NMS with their defaults), and the
    first three weighted."""
    every = [{"path": f"{{work}}/predictions/m{m}/{{split}}/merged", "weight": 1} for m in range(n_inputs)]
    three = [dict(e, weight=w) for e, w in zip(every[:3], (3, 2, 1))]
    wbf = {"iou_thr": 0.55, "skip_box_thr": 0.0, "conf_type": "avg"}
    return [(f"{n_inputs} inputs, wbf 0.55", {"inputs": every, "method": "wbf", "params": wbf, **COMMON}),
            (f"{n_inputs} inputs, nms 0.5", {"inputs": every, "method": "nms", "params": {"iou_thr": 0.5}, **COMMON}),
            (f"{n_inputs} inputs, soft_nms gaussian", {"inputs": every, "method": "soft_nms", "params": {}, **COMMON}),
            (f"{n_inputs} inputs, adj_nms 0.5 / linear 0.3", {"inputs": every, "method": "adj_nms", "params": {},
                                                               **COMMON}),
            (f"{len(three)} inputs 3:2:1, wbf 0.6", {"inputs": three, "method": "wbf",
                                                      "params": dict(wbf, iou_thr=0.6), **COMMON})]


def detector_like(predictions: pd.DataFrame) -> pd.DataFrame:
    """Corners in order and no zero-area boxes, as a detector's clipped output (the jittered boxes of bench/score.py
    may be reversed or flat)."""
    x, y = predictions[["XMin", "XMax"]].to_numpy(), predictions[["YMin", "YMax"]].to_numpy()
    predictions = predictions.assign(XMin=x.min(axis=1), XMax=x.max(axis=1), YMin=y.min(axis=1), YMax=y.max(axis=1))
    return predictions[(predictions.XMax > predictions.XMin) & (predictions.YMax > predictions.YMin)]


def generate(work: Path, scale: float, n_inputs: int, n_boxes: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    mids = pd.read_csv(CLASSES, header=None)[0].tolist()
    n_images = max(10, round(VALIDATION_IMAGES * scale))
    _, boxes, labels = synthetic_ground_truth(rng, n_images, mids)
    boxes.to_csv(work / "boxes.csv", index=False)
    labels.to_csv(work / "labels.csv", index=False)
    gt = expand_ground_truth(boxes, labels, Hierarchy.from_json(HIERARCHY), mids)
    for m in range(n_inputs):
        folder = work / "predictions" / f"m{m}" / "validation" / "merged"
        folder.mkdir(parents=True, exist_ok=True)
        write_parquet(detector_like(synthetic_predictions(rng, gt, n_boxes)), folder / "shard-000-of-001.parquet")
    print(f"synthetic validation set: {n_images:,} images, {len(boxes):,} boxes, {len(labels):,} image labels; "
          f"{n_inputs} inputs x {n_boxes} detections per image", flush=True)


def run_ours(work: Path, jobs: int) -> None:
    """Time the Evaluator on every trial recipe in this process; print a JSON line. Each trial alone: wall time and
    the CPU time of this process (all the CPU time with ``jobs`` 1); then all trials through ``Evaluator.scores``
    as a search step runs them (the AP of one overlapping the fusion and matching of the next)."""
    from ensemble.recipe import expand_placeholders, parse_recipe
    from ensemble.search import Candidate, Evaluator

    start = time.perf_counter()
    hierarchy = Hierarchy.from_json(HIERARCHY)
    mids = pd.read_csv(CLASSES, header=None)[0].tolist()
    gt = expand_ground_truth(read_gt_boxes(work / "boxes.csv"), read_gt_labels(work / "labels.csv"), hierarchy, mids)
    out = {"gt_s": time.perf_counter() - start, "trials": []}
    candidates = [Candidate(str(p / "validation" / "merged")) for p in sorted((work / "predictions").iterdir())]
    def members(raw: dict) -> list[int]:
        return [candidates.index(Candidate(expand_placeholders(i["path"], work, "validation"))) for i in raw["inputs"]]

    recipes = [(parse_recipe(raw, "bench", "bench"), members(raw)) for _, raw in trials(len(candidates))]
    start = time.perf_counter()
    with Evaluator(candidates, gt, hierarchy, str(HIERARCHY), work, jobs=jobs) as evaluator:
        out["read_s"] = time.perf_counter() - start
        evaluator.score(*recipes[0])  # start the workers
        for recipe, members in recipes:
            wall, cpu = time.perf_counter(), time.process_time()
            value = evaluator.score(recipe, members)
            out["trials"].append({"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu, "map": value})
        wall, cpu = time.perf_counter(), time.process_time()
        assert list(evaluator.scores(recipes)) == [t["map"] for t in out["trials"]]
        out["step_wall"] = (time.perf_counter() - wall) / len(recipes)
        out["step_cpu"] = (time.process_time() - cpu) / len(recipes)
    out["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20
    print(json.dumps(out))


def run_naive(work: Path, raw: dict, jobs: int) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds (with the workers) and mAP of `python -m ensemble` then `python -m submit.score`
    on one recipe."""
    recipe = work / "naive.yaml"
    recipe.write_text(yaml.safe_dump(raw))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "ensemble", "--recipe", str(recipe), "--split", "validation",
                    "--work", str(work), "--jobs", str(jobs)], cwd=REPO, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    done = subprocess.run([sys.executable, "-m", "submit.score", "--submission",
                           str(work / "ensemble" / "naive" / "validation" / "predictions.parquet"), "--boxes",
                           str(work / "boxes.csv"), "--labels", str(work / "labels.csv"), "--hierarchy",
                           str(HIERARCHY), "--classes", str(CLASSES), "--quiet"],
                          cwd=REPO, check=True, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return wall, cpu, float(done.stdout.split()[-1])


def ours(work: Path, jobs: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, __file__, "--ours", str(work), "--jobs", str(jobs)], env=env,
                          check=True, stdout=subprocess.PIPE, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(args: argparse.Namespace, work: Path) -> None:
    generate(work, args.scale, args.inputs, args.boxes, args.seed)
    measured, cpu = ours(work, args.jobs), ours(work, 1)
    run_naive(work, trials(args.inputs)[0][1], args.jobs)  # warm numba's cache in the CLI processes
    rows = []
    for (name, raw), wall, one in zip(trials(args.inputs), measured["trials"], cpu["trials"]):
        naive_wall, naive_cpu, naive_map = run_naive(work, raw, args.jobs)
        rows.append((name, wall["wall"], naive_wall, one["cpu"], naive_cpu, wall["map"], naive_map))
    print(f"\n{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; wall times with --jobs {args.jobs}, CPU "
          f"times with the workers (ours: --jobs 1, one process). Ours, once: ground truth {measured['gt_s']:.1f} s, "
          f"reading the predictions {measured['read_s']:.1f} s; peak RSS {measured['peak_rss_gib']:.2f} GiB.\n")
    print("| recipe | ours s | naive s | ratio | ours CPU s | naive CPU s | CPU ratio | mAP ours | mAP naive |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, our_s, naive_s, our_cpu, naive_cpu, our_map, naive_map in rows:
        print(f"| {name} | {our_s:.2f} | {naive_s:.1f} | {naive_s / our_s:.1f}x | {our_cpu:.2f} | {naive_cpu:.1f} | "
              f"{naive_cpu / our_cpu:.1f}x | {our_map:.6f} | {naive_map:.6f} |")
    mean = [float(np.mean([r[k] for r in rows])) for k in range(1, 5)]
    print(f"| mean | {mean[0]:.2f} | {mean[1]:.1f} | {mean[1] / mean[0]:.1f}x | {mean[2]:.2f} | {mean[3]:.1f} | "
          f"{mean[3] / mean[2]:.1f}x | | |")
    same = all(f"{r[5]:.6f}" == f"{r[6]:.6f}" for r in rows)
    print(f"\nmAPs {'identical' if same else 'DIFFERENT'} (6 decimals, as submit.score prints them). In a search step "
          f"(Evaluator.scores: the AP of a trial overlaps the fusion and matching of the next): "
          f"{measured['step_wall']:.2f} s per candidate (--jobs {args.jobs}); CPU per candidate {mean[2]:.2f} s "
          f"(--jobs 1, one process), i.e. {mean[2] / 2:.2f} s if spread perfectly over 2 cores.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=0.05, help="fraction of the 41,620 validation images")
    parser.add_argument("--inputs", type=int, default=5, help="candidates (default 5)")
    parser.add_argument("--boxes", type=int, default=300, help="detections per image and candidate (default 300)")
    parser.add_argument("--jobs", type=int, default=2, help="workers, ours and naive (default 2)")
    parser.add_argument("--workdir", type=Path, help="where the synthetic files go (default: a temporary folder)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ours", type=Path, help=argparse.SUPPRESS)  # internal: time ours on this folder
    args = parser.parse_args()
    if args.ours:
        run_ours(args.ours, args.jobs)
    elif args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
        run(args, args.workdir)
    else:
        with tempfile.TemporaryDirectory(prefix="bench_search_") as work:
            run(args, Path(work))


if __name__ == "__main__":
    main()
