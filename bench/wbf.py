"""Benchmark: ensemble.wbf.weighted_boxes_fusion vs ensemble_boxes 1.0.9 per image (`python -m ensemble` end to end:
bench/ensemble.py, which takes its synthetic inputs from here).

    .venv/bin/python bench/wbf.py

Synthetic images imitate post-NMS detector output: each model reports about 90% of the same places (jittered,
60 main classes, 20% of the boxes with another of the 500), so clusters hold about one box per model. Both
implementations get the same inputs; their outputs are compared in the same run (max abs difference, labels and
order).
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
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


def dirty(data, rng: np.random.Generator, share: float = 0.1):
    """``data`` with ``share`` of each model's boxes made bad: corners swapped, out of [0, 1] or of zero area."""
    boxes_list = []
    for boxes in data[0]:
        boxes = boxes.copy()
        bad = np.flatnonzero(rng.random(len(boxes)) < share)
        kind = rng.integers(0, 3, len(bad))
        boxes[bad[kind == 0]] = boxes[bad[kind == 0]][:, [2, 3, 0, 1]]
        boxes[bad[kind == 1], 2] += 0.6
        boxes[bad[kind == 2], 2] = boxes[bad[kind == 2], 0]
        boxes_list.append(boxes)
    return boxes_list, *data[1:]


def warning_cost(n_images: int) -> None:
    """The box check's cost: clean vs dirty inputs, warnings ignored by the filter, and dirty with every message
    built (what ignoring them cost before the filter was consulted first)."""
    import ensemble.wbf as wbf

    rng = np.random.default_rng(3)
    clean_images = [synthetic_image(rng, 5, 1000, 500) for _ in range(n_images)]
    dirty_images = [dirty(d, rng) for d in clean_images]
    always_build = wbf._box_warnings_ignored

    def per_image(images, build: bool) -> float:
        wbf._box_warnings_ignored = (lambda: False) if build else always_build
        best = np.inf
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for _ in range(3):
                t0 = time.perf_counter()
                for data in images:
                    weighted_boxes_fusion(*data)
                best = min(best, time.perf_counter() - t0)
        wbf._box_warnings_ignored = always_build
        return best / len(images) * 1e3

    clean_ms, dirty_ms, built_ms = (per_image(clean_images, False), per_image(dirty_images, False),
                                    per_image(dirty_images, True))
    print(f"\nBox check, 5 models x 1000, warnings ignored by the filter, best of 3 over {n_images} images: clean "
          f"{clean_ms:.3f} ms, 10% bad boxes {dirty_ms:.3f} ms (+{dirty_ms / clean_ms - 1:.0%}); with the messages "
          f"built and then ignored {built_ms:.3f} ms (+{built_ms / clean_ms - 1:.0%})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=15, help="images per case in the per-image table")
    args = parser.parse_args()
    per_image_table(args.images)
    warning_cost(args.images)


if __name__ == "__main__":
    main()
