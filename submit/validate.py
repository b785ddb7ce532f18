"""``python -m submit.validate FILE --classes CLASSES_CSV [--images DIR_OR_LIST]``: check a Kaggle submission.

Checks, each reported with its 1-based line number (the header is line 1): the header; two comma-separated fields
per line; ImageIds present, not duplicated, and (with --images) all listed and none unknown; PredictionString
fields single-space separated, a multiple of 6; each box's MID in the class file, score a finite number,
coordinates numbers within [0, 1] with xmin < xmax and ymin < ymax. Exit status: 0 valid (one summary line),
1 invalid (the offending lines, capped, with a count), 2 unreadable input.

The file is parsed in one numba pass (``contracts.submission_csv``), so a file of tens of millions of boxes takes seconds.
"""
from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from contracts.classes import read_classes
from contracts.cli import INPUT_ERRORS, report_error
from contracts.files import read_bytes, read_image_ids
from contracts.submission_csv import (LINE_BLANK_FIELD, LINE_FIELD_COUNT, LINE_OK, SUBMISSION_HEADER,
                                     ParsedSubmission, line_problem, parse_submission_bytes)

NUMERIC_FIELDS = ("score", "xmin", "ymin", "xmax", "ymax")


@dataclass
class ValidationReport:
    """Problems by line (``None`` for file-wide ones) and what the file holds."""

    path: str
    rows: int = 0
    boxes: int = 0
    mids_used: int = 0
    images_listed: int | None = None
    problems: dict[int | None, list[str]] = field(default_factory=lambda: defaultdict(list))

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        listed = f", all {self.images_listed:,} listed images present" if self.images_listed is not None else ""
        return (f"OK {self.path}: {self.rows:,} rows, {self.boxes:,} boxes, {self.mids_used:,} classes used"
                f"{listed}")

    def report(self, max_listed: int = 20) -> list[str]:
        """The problem lines, file-wide problems last, at most ``max_listed`` numbered lines."""
        numbered = sorted(k for k in self.problems if k is not None)
        out = [f"INVALID {self.path}: {len(numbered):,} line(s) with problems"
               + (", plus file-wide problems" if None in self.problems else "")]
        out += [f"line {n}: {'; '.join(self.problems[n])}" for n in numbered[:max_listed]]
        if len(numbered) > max_listed:
            out.append(f"... and {len(numbered) - max_listed:,} more line(s) with problems")
        out += [f"file: {msg}" for msg in self.problems.get(None, [])]
        return out


def _per_line(report: ValidationReport, parsed: ParsedSubmission, bad: np.ndarray, describe) -> None:
    """Add one message per line holding boxes flagged in ``bad``: the first such box, and how many more."""
    where = np.flatnonzero(bad)
    if not len(where):
        return
    lines, first, count = np.unique(parsed.box_line[where], return_index=True, return_counts=True)
    line_first_box = np.searchsorted(parsed.box_line, lines)
    for line, f, n, line_first in zip(lines, first, count, line_first_box):
        more = f" (and {n - 1:,} more such box(es))" if n > 1 else ""
        b = int(where[f])
        report.problems[int(parsed.line_number[line])].append(
            f"box {b - line_first + 1}: {describe(parsed.box_fields(b))}{more}")


def validate_submission(path: str | Path, mids: Sequence[str], image_ids: Sequence[str] | None = None,
                        classes_name: str = "the class file") -> ValidationReport:
    """Check a submission file against the class MIDs and (optionally) the expected image ids."""
    report = ValidationReport(str(path))
    data = read_bytes(path)
    if not data:
        report.problems[1].append(f"empty file (expected the header {SUBMISSION_HEADER!r})")
        return report
    parsed = parse_submission_bytes(data)
    if parsed.header != SUBMISSION_HEADER:
        report.problems[1].append(f"header must be {SUBMISSION_HEADER!r}, found {parsed.header[:60]!r}")
    report.rows = len(parsed.status)
    report.boxes = len(parsed.box_line)
    for i in np.flatnonzero(parsed.status != LINE_OK):
        report.problems[int(parsed.line_number[i])].append(line_problem(parsed, i))
    _check_images(report, parsed, image_ids)

    known_mid = np.isin(parsed.mids, np.asarray(list(mids), dtype=object))
    report.mids_used = int(known_mid[np.unique(parsed.mid_code)].sum()) if len(parsed.mid_code) else 0
    _per_line(report, parsed, ~known_mid[parsed.mid_code],
              lambda f: f"MID {f[0][:40]!r} is not in {classes_name}")
    values, well_formed = parsed.values, parsed.well_formed
    for j, name in enumerate(NUMERIC_FIELDS):
        _per_line(report, parsed, ~well_formed[:, j],
                  lambda f, j=j, name=name: f"{name} {f[j + 1][:40]!r} is not a number")
    _per_line(report, parsed, well_formed[:, 0] & ~np.isfinite(values[:, 0]),
              lambda f: f"score {f[1][:40]!r} is not a finite number")
    outside = well_formed[:, 1:] & ~((values[:, 1:] >= 0) & (values[:, 1:] <= 1))
    for j, name in enumerate(NUMERIC_FIELDS[1:]):
        _per_line(report, parsed, outside[:, j], lambda f, j=j, name=name: f"{name} {f[j + 2]} is outside [0, 1]")
    in_range = well_formed[:, 1:].all(axis=1) & ~outside.any(axis=1)
    for lo, hi in ((1, 3), (2, 4)):
        _per_line(report, parsed, in_range & (values[:, lo] >= values[:, hi]),
                  lambda f, lo=lo, hi=hi: f"{NUMERIC_FIELDS[lo]} {f[lo + 1]} >= {NUMERIC_FIELDS[hi]} {f[hi + 1]} "
                                          "(inverted or empty box)")
    return report


def _check_images(report: ValidationReport, parsed: ParsedSubmission, image_ids: Sequence[str] | None) -> None:
    with_id = np.isin(parsed.status, (LINE_OK, LINE_BLANK_FIELD, LINE_FIELD_COUNT))
    for i in np.flatnonzero(with_id & (parsed.image_id == "")):
        report.problems[int(parsed.line_number[i])].append("empty ImageId")
    ids = pd.Series(parsed.image_id[with_id], index=parsed.line_number[with_id])
    ids = ids[ids != ""]
    duplicated = ids.duplicated().to_numpy()
    first_line = pd.Series(ids.index[~duplicated], index=ids.to_numpy()[~duplicated])
    for line in ids.index[duplicated]:
        report.problems[int(line)].append(f"duplicate ImageId {ids[line]} (first on line {first_line[ids[line]]})")
    if image_ids is None:
        return
    expected = pd.Index(sorted(set(image_ids)))
    report.images_listed = len(expected)
    for line in ids.index[expected.get_indexer(ids.to_numpy()) < 0]:
        report.problems[int(line)].append(f"ImageId {ids[line][:40]!r} is not in the image list")
    missing = expected.difference(pd.Index(ids.unique()))
    if len(missing):
        report.problems[None].append(f"{len(missing):,} listed image(s) have no row, e.g. "
                                     f"{', '.join(missing[:5])}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m submit.validate",
        description="Check a Kaggle submission CSV (plain or .gz) line by line. Exit status 0: valid; 1: problems "
                    "(listed with 1-based line numbers, header = line 1); 2: unreadable input.")
    parser.add_argument("file", help="submission CSV (ImageId,PredictionString)")
    parser.add_argument("--classes", required=True, help="class file (MID,DisplayName, no header)")
    parser.add_argument("--images", help="expected test images: an image folder, a text list of ImageIDs, or "
                                         "sample_submission.csv; checks that every image has exactly one row")
    parser.add_argument("--max-listed", type=int, default=20, help="problem lines to print (default 20)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        mids = list(read_classes(args.classes).mids)
        image_ids = read_image_ids(args.images) if args.images else None
        report = validate_submission(args.file, mids, image_ids, classes_name=Path(args.classes).name)
    except INPUT_ERRORS as e:
        return report_error(e)
    if report.ok:
        print(report.summary())
        return 0
    print("\n".join(report.report(args.max_listed)))
    return 1


if __name__ == "__main__":
    sys.exit(main())
