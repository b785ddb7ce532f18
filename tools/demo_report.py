"""The `make demo` results table: each model's validation mAP at one scale and with TTA, and the ensemble's.

Model predictions are copied to their ancestor classes before scoring (as the ensemble stage does), because the
official metric does not expand predictions: without it a single model would be scored without its parent classes.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from contracts.classes import read_classes
from contracts.expansion import with_ancestors
from contracts.hierarchy import Hierarchy
from contracts.metric import evaluate_expanded, expand_ground_truth, read_gt_boxes, read_gt_labels
from contracts.predictions import read_predictions
from data_prep.sources import read_sources


def single_scale_variant(model_dir: Path) -> Path:
    """The smallest-scale, unflipped TTA variant folder (``s{scale}``) of one model's predictions."""
    variants = [p for p in model_dir.iterdir() if p.is_dir() and p.name.startswith("s") and p.name[1:].isdigit()]
    if not variants:
        raise FileNotFoundError(f"{model_dir}: no s<scale> variant folder (run infer with --keep-variants)")
    return min(variants, key=lambda p: int(p.name[1:]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--work", type=Path, default=Path("work/demo"),
                        help="work folder of the demo (its prepared/ records the validation CSVs)")
    parser.add_argument("--models", nargs="+", default=["mini_tsd", "mini_baseline"])
    parser.add_argument("--recipe", default="mini", help="ensemble recipe name (folder under WORK/ensemble)")
    args = parser.parse_args(argv)

    prepared = args.work / "prepared"
    sources = read_sources(prepared)
    mids = list(read_classes(prepared / "classes.csv").mids)
    hierarchy = Hierarchy.from_json(prepared / "hierarchy.json")
    gt = expand_ground_truth(read_gt_boxes(sources["validation_boxes"]), read_gt_labels(sources["validation_labels"]),
                             hierarchy, mids)

    def score(path: Path, expand: bool) -> float:
        predictions = read_predictions(path)
        return evaluate_expanded(with_ancestors(predictions, hierarchy, mids) if expand else predictions, gt).map

    rows = []
    for model in args.models:
        model_dir = args.work / "predictions" / model / "validation"
        single = score(single_scale_variant(model_dir), expand=True)
        tta = score(model_dir / "merged", expand=True)
        rows.append((model, single, tta))
    fused = score(args.work / "ensemble" / args.recipe / "validation" / "predictions.parquet", expand=False)

    print(f"\nValidation mAP (official Challenge 2019 metric, {len(gt.image_ids)} images)")
    print(f"| {'predictions':<24} | single scale | with TTA | TTA gain |")
    print(f"|{'-' * 26}|--------------|----------|----------|")
    for model, single, tta in rows:
        print(f"| {model:<24} | {single:12.4f} | {tta:8.4f} | {tta - single:+8.4f} |")
    print(f"| {'ensemble: ' + args.recipe:<24} | {'':12} | {fused:8.4f} | {'':8} |")
    best = max(tta for _, _, tta in rows)
    verdict = "above" if fused > best else "NOT above"
    print(f"\nThe ensemble is {verdict} the best single model by {fused - best:+.4f} mAP.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
