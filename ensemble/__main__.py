"""python -m ensemble: fuse several models' predictions with a recipe (see docs/fusion.md)."""
from __future__ import annotations

import argparse
import sys

from contracts.cli import entry_point

from .recipe import load_recipe
from .runner import run_ensemble


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ensemble",
        description="Fuse the predictions of several models image by image (WBF, NMS, Soft-NMS or adj-NMS), copy "
                    "each fused box to every ancestor class of the hierarchy, drop low scores, cap the boxes per "
                    "image, and write WORK/ensemble/RECIPE/SPLIT/predictions.parquet.",
        epilog="Recipe format: see configs/ensemble/challenge.yaml and docs/fusion.md (an input "
               "with 'classes: FILE' is an expert: each class is fused over the inputs covering it). To search "
               "a recipe on validation: python -m ensemble.search --help.")
    parser.add_argument("--recipe", required=True, help="recipe YAML, e.g. configs/ensemble/mini.yaml; its file "
                                                        "name (without .yaml) names the output folder")
    parser.add_argument("--split", required=True, choices=["validation", "test"], help="which predictions to fuse")
    parser.add_argument("--work", default="work", help="work directory holding predictions/ (default: work)")
    parser.add_argument("--prepared", help="prepared dataset for the recipe's {prepared} placeholder "
                                           "(default: WORK/prepared)")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes (default: 2)")
    parser.add_argument("--chunk-images", type=int, default=1000,
                        help="images per worker task, each worker holding one chunk in memory (default: "
                             "1000); bounds memory on large splits")
    return parser


@entry_point
def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.jobs < 1 or args.chunk_images < 1:
        parser.error("--jobs and --chunk-images must be at least 1")
    out = run_ensemble(load_recipe(args.recipe), args.split, work=args.work, jobs=args.jobs,
                       chunk_images=args.chunk_images, prepared=args.prepared)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
