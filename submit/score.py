"""``python -m submit.score``: the Challenge 2019 mAP of a submission (or predictions Parquet) on validation.

Prints progress lines, then ``mAP: 0.xxxxxx`` as the last line. ``--per-class`` writes MID, DisplayName, AP,
num_gt, num_dets per class (class-file order; AP empty where num_gt = 0); ``--plot`` a bar chart of the best and
worst classes; ``--report DIR`` a self-contained HTML page (``submit.report``), with drawn examples of the worst
classes when ``--images`` names the image folder. The metric is ``contracts.metric.evaluate`` (see there for the
rules and tie order).
"""
from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from contracts.classes import ClassList, read_classes
from contracts.cli import INPUT_ERRORS, report_error
from contracts.files import DataError, atomic_output
from contracts.hierarchy import Hierarchy
from contracts.metric import (EvalResult, evaluate_expanded, expand_ground_truth, match_detections, read_gt_boxes,
                              read_gt_labels)
from contracts.predictions import read_predictions
from submit.report import Examples, write_report
from submit.show import Evaluated


def per_class_table(result: EvalResult, classes: ClassList) -> pd.DataFrame:
    """The per-class results with display names: MID, DisplayName, AP, num_gt, num_dets."""
    table = result.per_class.merge(classes.frame(), on="MID", how="left", sort=False)
    return table[["MID", "DisplayName", "AP", "num_gt", "num_dets"]]


def write_per_class(table: pd.DataFrame, path: str | Path) -> None:
    with atomic_output(path) as f:
        f.write(table.to_csv(index=False, float_format="%.6f", lineterminator="\n").encode())


def plot_per_class(table: pd.DataFrame, path: str | Path, count: int = 25) -> None:
    """Horizontal bars of the ``count`` best and ``count`` worst classes by AP (classes with ground truth)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scored = table[table["num_gt"] > 0].sort_values("AP", ascending=False, kind="stable")
    best, worst = scored.head(count), scored.tail(min(count, max(len(scored) - count, 0)))
    panels = [(best, f"best {len(best)}")] + ([(worst, f"worst {len(worst)}")] if len(worst) else [])
    height = max(3.0, 0.22 * max(len(p) for p, _ in panels) + 1.2)
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), height), squeeze=False)
    mean_ap = scored["AP"].mean()
    for ax, (part, title) in zip(axes[0], panels):
        ax.barh(np.arange(len(part)), part["AP"], color="tab:blue")
        ax.set_yticks(np.arange(len(part)), [f"{n} ({g})" for n, g in zip(part["DisplayName"], part["num_gt"])],
                      fontsize=7)
        ax.invert_yaxis()
        ax.set_xlim(0, 1)
        ax.axvline(mean_ap, color="tab:red", linewidth=1, label=f"mAP {mean_ap:.4f}")
        ax.set_xlabel("AP (label: class (num_gt))")
        ax.set_title(f"{title} of {len(scored)} classes")
        ax.legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=110, metadata={"Software": None})
    plt.close(fig)
    with atomic_output(path) as f:
        f.write(png.getvalue())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m submit.score",
        description="Open Images Challenge 2019 detection mAP (the official evaluator's rules: hierarchy-expanded "
                    "ground truth, verified classes only, group-of boxes, VOC 2010 AP). Last output line: "
                    "'mAP: 0.xxxxxx'.")
    parser.add_argument("--submission", required=True,
                        help="Kaggle submission CSV (plain or .gz), or predictions Parquet file / folder of shards")
    parser.add_argument("--boxes", required=True, help="validation box CSV (challenge-2019-validation-detection-bbox)")
    parser.add_argument("--labels", required=True,
                        help="validation image-label CSV (challenge-2019-validation-detection-human-imagelabels)")
    parser.add_argument("--hierarchy", required=True, help="label hierarchy JSON")
    parser.add_argument("--classes", required=True, help="class file (MID,DisplayName, no header)")
    parser.add_argument("--per-class", help="write per-class AP to this CSV")
    parser.add_argument("--plot", help="write a bar plot of the best and worst classes to this PNG")
    parser.add_argument("--report", metavar="DIR", help="write an HTML evaluation report to DIR/index.html")
    parser.add_argument("--images", metavar="DIR",
                        help="the validation image folder: the report draws the worst classes' images (needs --report)")
    parser.add_argument("--quiet", action="store_true", help="print only the mAP line")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.images and not args.report:
        parser.error("--images is for the report's pictures: give --report DIR too")
    say = (lambda *a: None) if args.quiet else (lambda msg: print(msg, flush=True))
    start = time.perf_counter()
    try:
        if args.images and not Path(args.images).is_dir():
            raise DataError(f"image folder not found: {args.images}")
        classes = read_classes(args.classes)
        hierarchy = Hierarchy.from_json(args.hierarchy)
        gt_boxes, gt_labels = read_gt_boxes(args.boxes), read_gt_labels(args.labels)
        gt = expand_ground_truth(gt_boxes, gt_labels, hierarchy, list(classes.mids))
        say(f"ground truth: {len(gt.image_ids):,} images, {len(gt.box_key):,} boxes after expansion, "
            f"{int((gt.num_gt > 0).sum())} of {len(classes)} classes with boxes ({time.perf_counter() - start:.1f} s)")
        t = time.perf_counter()
        predictions = read_predictions(args.submission)
        say(f"predictions: {len(predictions):,} boxes on {predictions['ImageID'].nunique():,} images "
            f"({time.perf_counter() - t:.1f} s)")
        t = time.perf_counter()
        if args.images:  # the report's pictures need every detection's outcome: the same matching, kept
            matching = match_detections(predictions, gt, progress=not args.quiet)
            result = matching.result
        else:
            result = evaluate_expanded(predictions, gt, progress=not args.quiet)
        say(f"evaluated {result.num_detections:,} detections on verified classes ({time.perf_counter() - t:.1f} s)")
        table = per_class_table(result, classes)
        if args.per_class:
            write_per_class(table, args.per_class)
            say(f"per-class AP: {args.per_class}")
        if args.plot:
            plot_per_class(table, args.plot)
            say(f"plot: {args.plot}")
        if args.report:
            examples = (Examples(Evaluated(predictions, classes, gt_boxes, gt_labels, gt, matching), Path(args.images))
                        if args.images else None)
            settings = [("predictions", args.submission),
                        ("predictions read", f"{len(predictions):,} boxes on {predictions['ImageID'].nunique():,} "
                                             "images"),
                        ("ground-truth boxes", args.boxes), ("image labels", args.labels),
                        ("hierarchy", args.hierarchy), ("classes", args.classes),
                        ("images", args.images or "not given (no example pictures)")]
            say(f"report: {write_report(args.report, table, result, hierarchy, settings, examples)}")
    except INPUT_ERRORS as e:
        return report_error(e)
    say(f"total {time.perf_counter() - start:.1f} s")
    print(f"mAP: {result.map:.6f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
