"""``python -m data_prep``: raw Open Images annotation files -> prepared Parquet annotations (docs/artifacts.md)."""
from __future__ import annotations

import argparse
import sys

from contracts.cli import entry_point


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m data_prep",
        description="Read the official Open Images files in DATA (Challenge 2019 or V5/V6 names, plain or .gz), "
                    "drop and count bad rows, expand image labels through the hierarchy (positive -> ancestors, "
                    "negative -> descendants; a positive wins over a colliding negative) and write the prepared "
                    "layout: classes.csv, hierarchy.json, summary.json, {split}/images|boxes|image_labels|"
                    "class_index.parquet.")
    p.add_argument("--data-dir", required=True, help="folder with the raw class, hierarchy, box and label files")
    p.add_argument("--out-dir", required=True, help="output folder (written atomically; reruns are byte-identical)")
    p.add_argument("--splits", default="train,validation", metavar="SPLITS",
                   help="comma-separated splits to prepare (default train,validation); each needs its box file, "
                        "a missing one is an error")
    p.add_argument("--expand-boxes", action="store_true",
                   help="add one copy of each box per ancestor class (IsExpanded=1)")
    p.add_argument("--expert-groups", metavar="FILE",
                   help="class groups (CSV 'group,MID' rows or YAML {group: [MID, ...]}): also write "
                        "experts/{group}/ restricted to each group's classes and images")
    p.add_argument("--coco-splits", default=None, metavar="SPLITS",
                   help="comma-separated splits (train,validation) to export as coco/{split}.json; image sizes are "
                        "read from the JPEG headers under the images root (a split without its image folder is "
                        "skipped with a note); default: those DATA/dataset.json names, else none")
    p.add_argument("--images-root", metavar="DIR",
                   help="folder holding train/ and validation/ with <ImageID>.jpg (default: DATA); rows whose "
                        "image is missing are dropped; a split folder that does not exist skips the check")
    p.add_argument("--strict", action="store_true",
                   help="stop at the first bad row (unknown MID, bad coordinates, duplicate, missing image) "
                        "with an error naming file, line and value, instead of dropping and counting it")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="worker processes / threads for reading image sizes and CSV parsing (default: all cores)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p.parse_args(argv)


@entry_point
def main(argv=None) -> int:
    args = parse_args(argv)
    if args.workers is not None:
        if args.workers < 1:
            raise ValueError("--workers must be at least 1")
        import pyarrow

        pyarrow.set_cpu_count(args.workers)
    from .prepare import format_summary, run_prepare

    def names(text: str) -> tuple[str, ...]:
        return tuple(s.strip() for s in text.split(",") if s.strip())

    summary = run_prepare(args.data_dir, args.out_dir, split_names=names(args.splits),
                          coco_splits=None if args.coco_splits is None else names(args.coco_splits), expand_boxes=args.expand_boxes,
                          expert_groups=args.expert_groups, strict=args.strict, images_root=args.images_root,
                          workers=args.workers, progress=not args.quiet)
    print(format_summary(summary))
    print(f"wrote {args.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
