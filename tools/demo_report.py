"""The `make demo` results table: each model's validation mAP at one scale and with TTA, and the ensemble's.

Model predictions are copied to their ancestor classes before scoring (as the ensemble stage does), because the
official metric does not expand predictions: without it a single model would be scored without its parent classes.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from data_prep.formats import read_classes
from data_prep.hierarchy import Hierarchy
from ensemble.runner import Expansion
from submit.files import read_gt_boxes, read_gt_labels
from submit.metric import evaluate_expanded, expand_ground_truth, load_predictions


def with_ancestors(predictions: pd.DataFrame, expansion: Expansion, mids: list[str]) -> pd.DataFrame:
    """Each prediction followed by one copy per ancestor class of its label."""
    labels = pd.Index(mids).get_indexer(predictions["LabelName"].astype(str))
    if (labels < 0).any():
        raise ValueError(f"unknown MID {predictions['LabelName'][labels < 0].iloc[0]!r} in predictions")
    rows, expanded = expansion.apply(labels)
    out = predictions.iloc[rows].reset_index(drop=True)
    out["LabelName"] = np.asarray(mids, dtype=object)[expanded]
    return out


def single_scale_variant(model_dir: Path) -> Path:
    """The smallest-scale, unflipped TTA variant folder (``s{scale}``) of one model's predictions."""
    variants = [p for p in model_dir.iterdir() if p.is_dir() and p.name.startswith("s") and p.name[1:].isdigit()]
    if not variants:
        raise FileNotFoundError(f"{model_dir}: no s<scale> variant folder (run infer with --keep-variants)")
    return min(variants, key=lambda p: int(p.name[1:]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=Path("data/mini"), help="raw data folder (validation CSVs)")
    parser.add_argument("--work", type=Path, default=Path("work"))
    parser.add_argument("--models", nargs="+", default=["mini_tsd", "mini_baseline"])
    parser.add_argument("--recipe", default="mini", help="ensemble recipe name (folder under WORK/ensemble)")
    args = parser.parse_args(argv)

    mids = [mid for mid, _ in read_classes(args.data / "challenge-2019-classes-description-500.csv")]
    hierarchy = Hierarchy.from_json(args.data / "challenge-2019-label500-hierarchy.json")
    gt = expand_ground_truth(read_gt_boxes(args.data / "challenge-2019-validation-detection-bbox.csv"),
                             read_gt_labels(args.data / "challenge-2019-validation-detection-human-imagelabels.csv"),
                             hierarchy, mids)
    expansion = Expansion.from_hierarchy(hierarchy, mids)

    def score(path: Path, expand: bool) -> float:
        predictions = load_predictions(path)
        return evaluate_expanded(with_ancestors(predictions, expansion, mids) if expand else predictions, gt).map

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
