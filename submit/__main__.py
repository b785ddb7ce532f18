"""``python -m submit``: write the Kaggle submission CSV from predictions.

Example::

    python -m submit --predictions work/ensemble/best/test/predictions.parquet \\
        --images data/sample_submission.csv --out work/submission/best.csv.gz
"""
from __future__ import annotations

import argparse
import sys
import time

from contracts.cli import INPUT_ERRORS, report_error
from contracts.files import read_image_ids
from contracts.predictions import read_predictions
from submit.write import COORD_DECIMALS, SCORE_DIGITS, write_submission


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m submit",
        description="Write the Kaggle submission (ImageId,PredictionString; one row per test image, boxes as "
                    f"'MID score xmin ymin xmax ymax', coordinates with {COORD_DECIMALS} decimals, scores with "
                    f"{SCORE_DIGITS} significant digits). Check it with python -m submit.validate.")
    parser.add_argument("--predictions", required=True,
                        help="predictions Parquet file or folder of shards (or a submission CSV to rewrite)")
    parser.add_argument("--images", required=True,
                        help="the test images: an image folder, a text list of ImageIDs, or sample_submission.csv")
    parser.add_argument("--out", required=True, help="output CSV; gzipped when it ends in .gz")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    start = time.perf_counter()
    try:
        image_ids = read_image_ids(args.images)
        predictions = read_predictions(args.predictions)
        stats = write_submission(predictions, image_ids, args.out, progress=not args.quiet)
    except INPUT_ERRORS as e:
        return report_error(e)
    note = f", {stats.dropped_empty:,} empty or inverted boxes left out" if stats.dropped_empty else ""
    print(f"wrote {args.out}: {stats.images:,} images ({stats.images_with_boxes:,} with boxes), "
          f"{stats.boxes:,} boxes{note} in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
