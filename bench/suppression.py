"""Benchmark: the NMS family per image, one core: ensemble_boxes.nms_method 1.0.9 vs ensemble.suppression's
drop-ins (one call per image) vs ``suppress_images`` (the runner's entry: many images in one call, the time per
image amortised), and adj_nms (no ensemble-boxes twin) ours per image vs ``suppress_images``.

    .venv/bin/python bench/suppression.py

Synthetic images from bench/wbf.py (post-NMS detector output: each model reports about 90% of the same places,
jittered, 60 main classes of 500). Outputs are compared in the same run: ensemble-boxes' kept boxes and labels (it
returns the original scores where Soft-NMS decays them), and ``suppress_images``' boxes, scores, labels and order
per (image, label) against the drop-in's on that image alone.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import time
from pathlib import Path

import numpy as np
from ensemble_boxes import nms_method as reference_nms_method

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
from wbf import synthetic_image  # noqa: E402

from ensemble.suppression import adj_nms, nms_method, suppress_images  # noqa: E402

SIZES = [("5 models x 300", 5, 300), ("5 models x 1000", 5, 1000)]
N_CLASSES = 500
METHODS = [  # name, ensemble-boxes method number (None: no twin), the drop-in, suppress_images' function and params
    ("nms 0.5", 3, lambda *d, w: nms_method(*d, method=3, iou_thr=0.5, weights=w), "nms", {"iou_thr": 0.5}),
    ("soft_nms gaussian", 2, lambda *d, w: nms_method(*d, method=2, weights=w), "soft_nms", {}),
    ("soft_nms linear 0.5", 1, lambda *d, w: nms_method(*d, method=1, iou_thr=0.5, weights=w), "soft_nms",
     {"method": "linear", "iou_thr": 0.5}),
    ("adj_nms", None, lambda *d, w: adj_nms(*d, weights=w), "adj_nms", {}),
]


def best_of(fn, repeats: int = 3):
    """Seconds of the fastest of ``repeats`` calls, and the result."""
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def as_rows(images: list) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-image per-model lists as ``suppress_images``' rows: per model its images one after the other."""
    n_models = len(images[0][0])
    boxes, scores, labels, bounds = [], [], [], np.zeros((n_models, len(images) + 1), np.int64)
    at = 0
    for m in range(n_models):
        bounds[m, 0] = at
        for i, (b, s, lab) in enumerate(images):
            boxes.append(b[m])
            scores.append(s[m])
            labels.append(lab[m])
            at += len(b[m])
            bounds[m, i + 1] = at
    return np.concatenate(boxes), np.concatenate(scores), np.concatenate(labels), bounds


def same_as_per_image(got, per_image: list) -> bool:
    """Whether ``suppress_images``' output equals the drop-in's on each image (labels ascending, as it gives them)."""
    boxes, scores, image, label = got
    for i, want in enumerate(per_image):
        rows = np.flatnonzero(image == i)
        rows = rows[np.argsort(label[rows], kind="stable")]  # pairs come in no particular order, each in order
        if not (np.array_equal(boxes[rows], want[0]) and np.array_equal(scores[rows], want[1])
                and np.array_equal(label[rows], want[2]) and boxes.dtype == want[0].dtype):
            return False
    return True


def table(n_timed: int, n_images: int) -> None:
    print(f"\nPer image, one core; ensemble-boxes and the drop-ins: best of 3, median over {n_timed} images; "
          f"suppress_images: best of 3 of one call on {n_images} images, per image. Load average "
          f"{os.getloadavg()[0]:.1f} (before).\n")
    print("| case | method | ensemble-boxes ms | ours ms | suppress_images ms | ours vs ensemble-boxes | "
          "suppress_images vs ensemble-boxes | suppress_images vs ours | outputs |")
    print("|---|---|---|---|---|---|---|---|---|")
    for size, n_models, n_boxes in SIZES:
        rng = np.random.default_rng(0)
        images = [synthetic_image(rng, n_models, n_boxes, N_CLASSES) for _ in range(n_images)]
        rows = as_rows(images)
        weights = [1.0] * n_models
        for name, number, ours, function, params in METHODS:
            per_image = [ours(*data, w=weights) for data in images]  # also compiles (or loads the cached kernels)
            got = suppress_images(*rows, N_CLASSES, weights, function, **params)
            same = same_as_per_image(got, per_image)
            ours_ms = float(np.median([best_of(lambda: ours(*data, w=weights))[0]
                                       for data in images[:n_timed]])) * 1e3
            images_ms = best_of(lambda: suppress_images(*rows, N_CLASSES, weights, function, **params))[0]
            images_ms *= 1e3 / n_images
            ref_cell = ratio_cell = images_ratio_cell = "-"
            if number is not None:
                ref_ms = []
                iou_thr = {"iou_thr": params["iou_thr"]} if "iou_thr" in params else {}
                for (boxes, scores, labels), want in zip(images[:n_timed], per_image):
                    with contextlib.redirect_stdout(io.StringIO()):  # it prints a line per clipped box
                        seconds, ref = best_of(lambda: reference_nms_method(
                            boxes, [s.copy() for s in scores], labels, method=number, weights=weights, **iou_thr))
                    ref_ms.append(seconds)
                    # ensemble-boxes returns Soft-NMS's kept boxes with their original scores
                    same &= np.array_equal(ref[0], want[0]) and np.array_equal(ref[2], want[2])
                    same &= number != 3 or np.array_equal(ref[1], want[1])
                ref = float(np.median(ref_ms)) * 1e3
                ref_cell, ratio_cell = f"{ref:.2f}", f"{ref / ours_ms:.0f}x"
                images_ratio_cell = f"{ref / images_ms:.0f}x"
            print(f"| {size} | {name} | {ref_cell} | {ours_ms:.3f} | {images_ms:.3f} | {ratio_cell} | "
                  f"{images_ratio_cell} | {ours_ms / images_ms:.1f}x | {'identical' if same else 'DIFFERENT'} |",
                  flush=True)
    print(f"\nLoad average {os.getloadavg()[0]:.1f} (after).")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timed", type=int, default=15, help="images timed one by one (default 15)")
    parser.add_argument("--images", type=int, default=200, help="images in the suppress_images call (default 200)")
    args = parser.parse_args()
    table(args.timed, args.images)


if __name__ == "__main__":
    main()
