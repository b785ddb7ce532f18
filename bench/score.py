"""Benchmark of the submission writer and the Challenge 2019 metric against mmdetection's ``eval_map``.

Synthetic inputs of validation size (41,620 images x ``--scale``; the real 500 MIDs and hierarchy; ~7 boxes and
~5 image labels per image; ``--dets`` detections per image, half of them near a ground-truth box of the box's class
or an ancestor). Times, in one run:
  - ``python -m submit`` writing the Kaggle CSV from the predictions Parquet, and ``python -m submit.validate``
    checking it (subprocesses, end to end);
  - ``python -m submit.score`` end to end from the CSV and from the Parquet (subprocess; after a small warm-up run
    that fills numba's cache);
  - ``contracts.metric.evaluate_expanded`` and mmdet's ``eval_map(..., use_group_of=True, ioa_thr=0.5)`` on the first
    ``--mmdet-images`` images, fed the same expanded ground truth and the detections of verified classes (mmdet does
    not know verified classes); mmdet's full-size time is extrapolated linearly from that subset.

Usage: python bench/score.py [--scale 1.0] [--dets 300] [--mmdet-images 1000] [--workdir DIR]
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from contracts.hierarchy import Hierarchy  # noqa: E402
from contracts.metric import _select_detections, evaluate_expanded, expand_ground_truth  # noqa: E402

METADATA = REPO / "data_prep" / "metadata"
CLASSES = METADATA / "challenge-2019-classes-description-500.csv"
HIERARCHY = METADATA / "challenge-2019-label500-hierarchy.json"
VALIDATION_IMAGES = 41_620


def random_boxes(rng, n: int, min_size: float = 0.02) -> np.ndarray:
    """(n, 4) float64 x0, y0, x1, y1 inside [0, 1]."""
    x0, y0 = rng.random(n) * (1 - min_size), rng.random(n) * (1 - min_size)
    x1 = x0 + min_size + rng.random(n) * (1 - min_size - x0)
    y1 = y0 + min_size + rng.random(n) * (1 - min_size - y0)
    return np.stack([x0, y0, x1, y1], axis=1)


def synthetic_ground_truth(rng, n_images: int, mids: list[str]) -> tuple[np.ndarray, pd.DataFrame, pd.DataFrame]:
    image_ids = np.char.mod("%016x", np.arange(n_images) * 7919 + 12345).astype(object)
    popularity = 1.0 / (np.arange(len(mids)) + 10.0)
    popularity = rng.permutation(popularity / popularity.sum())
    per_image = rng.poisson(7, n_images)
    img = np.repeat(np.arange(n_images), per_image)
    cls = rng.choice(len(mids), len(img), p=popularity)
    xyxy = random_boxes(rng, len(img))
    boxes = pd.DataFrame({"ImageID": image_ids[img], "LabelName": np.asarray(mids, dtype=object)[cls],
                          "XMin": xyxy[:, 0], "XMax": xyxy[:, 2], "YMin": xyxy[:, 1], "YMax": xyxy[:, 3],
                          "IsGroupOf": (rng.random(len(img)) < 0.1).astype(np.int8)})
    positive = np.unique(img * len(mids) + cls)
    neg_img = np.repeat(np.arange(n_images), 3)
    negative = neg_img * len(mids) + rng.choice(len(mids), len(neg_img), p=popularity)
    keys = np.r_[positive, negative]
    labels = pd.DataFrame({"ImageID": image_ids[keys // len(mids)],
                           "LabelName": np.asarray(mids, dtype=object)[keys % len(mids)],
                           "Confidence": np.r_[np.ones(len(positive)), np.zeros(len(negative))].astype(np.int8)})
    return image_ids, boxes, labels


def synthetic_predictions(rng, gt, dets_per_image: int) -> pd.DataFrame:
    """Half near an expanded ground-truth box (its class), a fifth on a verified class anywhere, the rest random."""
    n_images, n_classes = len(gt.image_ids), len(gt.mids)
    img = np.repeat(np.arange(n_images), dets_per_image)
    n = len(img)
    kind = rng.choice(3, n, p=[0.5, 0.2, 0.3])
    cls = rng.integers(0, n_classes, n)
    xyxy = random_boxes(rng, n)
    score = rng.random(n) * 0.6

    lo = np.searchsorted(gt.box_key, img * n_classes)
    hi = np.searchsorted(gt.box_key, (img + 1) * n_classes)
    near = np.flatnonzero((kind == 0) & (hi > lo))
    pick = lo[near] + (rng.random(len(near)) * (hi - lo)[near]).astype(np.int64)
    cls[near] = gt.box_key[pick] % n_classes
    yxyx = gt.box_yxyx[pick] + rng.normal(0, 0.03, (len(near), 4))
    xyxy[near] = np.clip(yxyx[:, [1, 0, 3, 2]], 0, 1)
    score[near] = 0.2 + 0.8 * rng.random(len(near))

    vlo = np.searchsorted(gt.verified_keys, img * n_classes)
    vhi = np.searchsorted(gt.verified_keys, (img + 1) * n_classes)
    verified = np.flatnonzero((kind == 1) & (vhi > vlo))
    pick = vlo[verified] + (rng.random(len(verified)) * (vhi - vlo)[verified]).astype(np.int64)
    cls[verified] = gt.verified_keys[pick] % n_classes
    return pd.DataFrame({
        "ImageID": pd.Categorical.from_codes(img, categories=gt.image_ids),
        "LabelName": pd.Categorical.from_codes(cls, categories=gt.mids),
        "Score": score.astype(np.float32),
        "XMin": xyxy[:, 0].astype(np.float32), "YMin": xyxy[:, 1].astype(np.float32),
        "XMax": xyxy[:, 2].astype(np.float32), "YMax": xyxy[:, 3].astype(np.float32)})


def write_parquet(predictions: pd.DataFrame, path: Path) -> None:
    table = pa.Table.from_pandas(predictions, preserve_index=False)
    table = table.cast(pa.schema([(c, pa.string() if c in ("ImageID", "LabelName") else pa.float32())
                                  for c in table.column_names]))
    pq.write_table(table, path)


def run_cli(args: list[str]) -> tuple[str, str]:
    """Run ``python ARGS``; returns ("wall s (CPU s)", last output line)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode:
        raise SystemExit(f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return f"{elapsed:.1f} s wall ({cpu:.1f} s CPU)", done.stdout.strip().splitlines()[-1]


def mmdet_inputs(predictions: pd.DataFrame, gt, n_images: int):
    """Per-image lists of per-class (k, 5) x0, y0, x1, y1, score arrays (verified classes only, valid boxes) and
    annotation dicts with the expanded ground truth."""
    n_classes = len(gt.mids)
    index, key = _select_detections(predictions, gt)
    inside = key < n_images * n_classes
    index, key = index[inside], key[inside]
    det = np.stack([predictions[c].to_numpy(np.float64)[index] for c in ("XMin", "YMin", "XMax", "YMax", "Score")],
                   axis=1).astype(np.float32)
    empty = np.zeros((0, 5), np.float32)
    det_results = [[empty] * n_classes for _ in range(n_images)]
    bounds = np.flatnonzero(np.r_[True, key[1:] != key[:-1], True])
    for a, b in zip(bounds[:-1], bounds[1:]):
        det_results[key[a] // n_classes][key[a] % n_classes] = det[a:b]
    annotations = []
    for i in range(n_images):
        lo, hi = np.searchsorted(gt.box_key, [i * n_classes, (i + 1) * n_classes])
        annotations.append({"bboxes": gt.box_yxyx[lo:hi][:, [1, 0, 3, 2]].astype(np.float32),
                            "labels": (gt.box_key[lo:hi] % n_classes).astype(np.int64),
                            "bboxes_ignore": np.zeros((0, 4), np.float32), "labels_ignore": np.zeros(0, np.int64),
                            "gt_is_group_ofs": gt.box_group_of[lo:hi].copy()})
    return det_results, annotations


def subset(predictions: pd.DataFrame, boxes: pd.DataFrame, labels: pd.DataFrame, image_ids: np.ndarray):
    keep = set(image_ids)
    return (predictions[predictions["ImageID"].isin(keep)], boxes[boxes["ImageID"].isin(keep)],
            labels[labels["ImageID"].isin(keep)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the 41,620 validation images")
    parser.add_argument("--dets", type=int, default=300, help="detections per image (default 300)")
    parser.add_argument("--mmdet-images", type=int, default=1000, help="images timed with mmdet (default 1000)")
    parser.add_argument("--workdir", type=Path, help="where the synthetic files go (default: a temporary folder)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
        run(args, args.workdir)
    else:
        with tempfile.TemporaryDirectory(prefix="bench_score_") as work:
            run(args, Path(work))


def run(args: argparse.Namespace, work: Path) -> None:
    rng = np.random.default_rng(args.seed)
    mids = pd.read_csv(CLASSES, header=None)[0].tolist()
    hierarchy = Hierarchy.from_json(HIERARCHY)
    n_images = max(10, round(VALIDATION_IMAGES * args.scale))

    t = time.perf_counter()
    image_ids, boxes, labels = synthetic_ground_truth(rng, n_images, mids)
    gt = expand_ground_truth(boxes, labels, hierarchy, mids)
    predictions = synthetic_predictions(rng, gt, args.dets)
    files = {name: work / name for name in ("boxes.csv", "labels.csv", "predictions.parquet", "submission.csv",
                                            "small.parquet", "small_boxes.csv", "small_labels.csv")}
    boxes.to_csv(files["boxes.csv"], index=False)
    labels.to_csv(files["labels.csv"], index=False)
    write_parquet(predictions, files["predictions.parquet"])
    (work / "images.txt").write_text("\n".join(image_ids) + "\n")
    (work / "small_images.txt").write_text("\n".join(image_ids[:50]) + "\n")
    small = subset(predictions, boxes, labels, image_ids[:50])
    write_parquet(small[0], files["small.parquet"])
    small[1].to_csv(files["small_boxes.csv"], index=False)
    small[2].to_csv(files["small_labels.csv"], index=False)
    print(f"synthetic inputs: {n_images:,} images, {len(boxes):,} boxes ({len(gt.box_key):,} expanded), "
          f"{len(labels):,} image labels, {len(predictions):,} detections ({time.perf_counter() - t:.0f} s) in {work}")

    score_args = ["--hierarchy", str(HIERARCHY), "--classes", str(CLASSES), "--quiet"]
    # warm-up runs on 50 images: fill numba's cache
    run_cli(["-m", "submit", "--predictions", str(files["small.parquet"]), "--images", str(work / "small_images.txt"),
             "--out", str(work / "small.csv"), "--quiet"])
    run_cli(["-m", "submit.validate", str(work / "small.csv"), "--classes", str(CLASSES)])
    run_cli(["-m", "submit.score", "--submission", str(work / "small.csv"), "--boxes",
             str(files["small_boxes.csv"]), "--labels", str(files["small_labels.csv"]), *score_args])
    write_s, _ = run_cli(["-m", "submit", "--predictions", str(files["predictions.parquet"]), "--images",
                          str(work / "images.txt"), "--out", str(files["submission.csv"]), "--quiet"])
    csv_mb = files["submission.csv"].stat().st_size / 1e6
    validate_s, validate_out = run_cli(["-m", "submit.validate", str(files["submission.csv"]), "--classes",
                                        str(CLASSES), "--images", str(work / "images.txt")])
    gt_args = ["--boxes", str(files["boxes.csv"]), "--labels", str(files["labels.csv"]), *score_args]
    csv_s, csv_map = run_cli(["-m", "submit.score", "--submission", str(files["submission.csv"]), *gt_args])
    parquet_s, parquet_map = run_cli(["-m", "submit.score", "--submission", str(files["predictions.parquet"]),
                                      *gt_args])

    from mmdet.evaluation.functional import eval_map

    k = min(args.mmdet_images, n_images)
    sub_preds, sub_boxes, sub_labels = subset(predictions, boxes, labels, image_ids[:k])
    sub_gt = expand_ground_truth(sub_boxes, sub_labels, hierarchy, mids)
    t = time.perf_counter()
    ours = evaluate_expanded(sub_preds, sub_gt)
    ours_s = time.perf_counter() - t
    det_results, annotations = mmdet_inputs(sub_preds, sub_gt, k)
    t = time.perf_counter()
    mmdet_map, _ = eval_map(det_results, annotations, iou_thr=0.5, ioa_thr=0.5, use_group_of=True, nproc=2,
                            logger="silent")
    mmdet_s = time.perf_counter() - t
    full_mmdet_s = mmdet_s * n_images / k

    full_ours_s = float(csv_s.split()[0])
    rows = [
        (f"metric only, first {k:,} images (s)", f"{ours_s:.2f}", f"{mmdet_s:.1f}", f"{mmdet_s / ours_s:.0f}x"),
        (f"{n_images:,} images (s)", f"{full_ours_s:.1f} (whole CLI from the CSV)",
         f"{full_mmdet_s:.0f} (metric only, extrapolated)", f"{full_mmdet_s / full_ours_s:.0f}x"),
        (f"mAP, first {k:,} images", f"{ours.map:.6f}", f"{mmdet_map:.6f}", f"diff {abs(ours.map - mmdet_map):.1e}"),
    ]
    print(f"\n{len(predictions):,} detections, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    print(f"python -m submit (Parquet -> {csv_mb:.0f} MB CSV): {write_s}")
    print(f"python -m submit.validate: {validate_s}, {validate_out[:2]}")
    print(f"python -m submit.score from the CSV: {csv_s}, {csv_map}")
    print(f"python -m submit.score from the Parquet: {parquet_s}, {parquet_map}\n")
    widths = [max(len(r[i]) for r in rows + [("", "ours", "mmdet eval_map", "ratio")]) for i in range(4)]
    for r in [("", "ours", "mmdet eval_map", "ratio"), tuple("-" * w for w in widths), *rows]:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |")


if __name__ == "__main__":
    main()
