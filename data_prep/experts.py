"""Class groups for expert models: ``python -m data_prep.experts --prepared WORK/prepared --out FILE [options]``.

Writes the ``group,MID`` CSV that ``python -m data_prep --expert-groups FILE`` reads
(:func:`data_prep.formats.read_expert_groups`). It uses the training box counts per class of a prepared folder
(``train/boxes.parquet``, ancestor copies not counted) and the per-class AP CSV of ``python -m submit.score
--per-class``. Each option adds groups, and a class may belong to several:

- ``--rarest K``: group ``rarest{K}``, the K classes with the fewest training boxes.
- ``--buckets N``: groups ``bucket{i}of{N}``, i = 1 (rarest) .. N (most frequent). The classes, sorted by training
  box count, are cut into N contiguous runs. With ``--balance boxes`` (default) the runs hold roughly equal numbers
  of boxes: a class goes to bucket ``floor(N * m / total)``, where m is the number of boxes of the classes before it
  plus half its own. A bucket left empty (one class holds too large a share of the boxes) is an error. With
  ``--balance classes`` the runs hold equal numbers of classes (the sizes differ by at most one).
- ``--worst K --per-class CSV``: group ``worst{K}``, the K classes of lowest AP among those with ground truth
  (``num_gt`` > 0).

Classes without training boxes are left out of the frequency groups, because an expert cannot learn them. Ties go
by class-file order. The groups are written in option order, with MIDs in class-file order, so the output is
deterministic.
"""
from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from contracts.classes import ClassList, read_classes
from contracts.cli import entry_point
from contracts.files import DataError, atomic_output, open_text

BALANCES = ("boxes", "classes")


def train_box_counts(prepared: str | Path) -> tuple[ClassList, np.ndarray]:
    """The class list of a prepared folder and its training boxes per class (ancestor copies not counted)."""
    prepared = Path(prepared)
    classes = read_classes(prepared / "classes.csv")
    path = prepared / "train" / "boxes.parquet"
    if not path.is_file():
        raise DataError(f"file not found: {path} (a `make prepare` output folder with a train split is needed)")
    names = pq.read_schema(path).names
    missing = [c for c in ("label", "IsExpanded") if c not in names]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}")
    table = pq.read_table(path, columns=["label", "IsExpanded"])
    labels = table["label"].to_numpy()[table["IsExpanded"].to_numpy() == 0].astype(np.int64)
    if len(labels) and (labels.min() < 0 or labels.max() >= len(classes)):
        raise DataError(f"{path}: class index {int(labels.max())} out of range for the {len(classes)} classes of "
                        f"{classes.source}")
    return classes, np.bincount(labels, minlength=len(classes))


def by_frequency(counts: np.ndarray) -> np.ndarray:
    """Indices of the classes with training boxes, fewest boxes first (ties in class order)."""
    order = np.lexsort((np.arange(len(counts)), counts))
    return order[counts[order] > 0]


def rarest(counts: np.ndarray, k: int) -> list[int]:
    """The ``k`` classes with the fewest training boxes."""
    order = by_frequency(counts)
    if not 1 <= k <= len(order):
        raise ValueError(f"--rarest {k}: need 1 <= K <= {len(order)} (the classes with training boxes)")
    return sorted(order[:k].tolist())


def buckets(counts: np.ndarray, n: int, balance: str, classes: ClassList) -> list[list[int]]:
    """The classes with training boxes in ``n`` frequency buckets, rarest first (see the module docstring)."""
    order = by_frequency(counts)
    if not 1 <= n <= len(order):
        raise ValueError(f"--buckets {n}: need 1 <= N <= {len(order)} (the classes with training boxes)")
    if balance == "classes":
        bucket = np.arange(len(order)) * n // len(order)
    elif balance == "boxes":
        c = counts[order].astype(np.int64)
        before = np.cumsum(c) - c
        bucket = n * (2 * before + c) // (2 * int(c.sum()))  # floor(n * midpoint / total), exactly
        empty = np.setdiff1d(np.arange(n), bucket)
        if len(empty):
            # the class whose boxes span the empty bucket's share of the boxes (its middle)
            big = order[np.argmax(2 * n * np.cumsum(c) > (2 * empty[0] + 1) * int(c.sum()))]
            raise ValueError(f"--buckets {n} --balance boxes: bucket {empty[0] + 1} would be empty: class "
                             f"{classes.mids[big]} ({classes.names[big]}) holds {int(counts[big]):,} of the "
                             f"{int(c.sum()):,} training boxes, too many for {n} buckets of equal box counts; use "
                             "fewer buckets or --balance classes")
    else:
        raise ValueError(f"--balance {balance!r}: expected one of {', '.join(BALANCES)}")
    return [sorted(order[bucket == b].tolist()) for b in range(n)]


def read_per_class_ap(path: str | Path, classes: ClassList) -> dict[int, float]:
    """AP by class index from a ``submit.score --per-class`` CSV, for the classes with ground truth."""
    path = Path(path)
    out: dict[int, float] = {}
    with open_text(path) as f:
        reader = csv.DictReader(f)
        missing = [c for c in ("MID", "AP", "num_gt") if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(f"{path}: line 1: missing column(s) {', '.join(missing)} (expected the CSV of "
                            "python -m submit.score --per-class: MID,DisplayName,AP,num_gt,num_dets)")
        for line, row in enumerate(reader, start=2):
            mid = (row["MID"] or "").strip()
            if mid not in classes.index:
                raise DataError(f"{path}: line {line}: MID {mid!r} is not in {classes.source}")
            try:
                num_gt = int(row["num_gt"])
                ap = float(row["AP"]) if num_gt > 0 else None
            except (TypeError, ValueError):
                raise DataError(f"{path}: line {line}: bad AP {row['AP']!r} or num_gt {row['num_gt']!r}") from None
            if ap is not None:
                if not 0.0 <= ap <= 1.0:
                    raise DataError(f"{path}: line {line}: AP {row['AP']!r} is not in [0, 1]")
                out[classes.index[mid]] = ap
    return out


def worst(ap: dict[int, float], k: int) -> list[int]:
    """The ``k`` classes of lowest AP (ties in class order)."""
    if not 1 <= k <= len(ap):
        raise ValueError(f"--worst {k}: need 1 <= K <= {len(ap)} (the classes with ground truth)")
    return sorted(sorted(ap, key=lambda c: (ap[c], c))[:k])


def write_groups(path: str | Path, groups: dict[str, list[int]], classes: ClassList) -> None:
    """The ``group,MID`` CSV (with header), atomically."""
    lines = ["group,MID"] + [f"{g},{classes.mids[c]}" for g, members in groups.items() for c in members]
    with atomic_output(path) as f:
        f.write(("\n".join(lines) + "\n").encode())


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m data_prep.experts",
        description="Write expert class groups (CSV group,MID, for `python -m data_prep --expert-groups`) from the "
                    "training box counts of a prepared folder and from a per-class AP CSV. Groups: rarest{K}, "
                    "bucket{i}of{N}, worst{K}; classes without training boxes are left out of the first two.")
    p.add_argument("--prepared", required=True, type=Path, help="`make prepare` output (classes.csv, train/)")
    p.add_argument("--out", required=True, type=Path, help="groups CSV to write")
    p.add_argument("--rarest", type=int, metavar="K", help="group of the K classes with the fewest training boxes")
    p.add_argument("--buckets", type=int, metavar="N", help="N groups of classes by training box count, rarest first")
    p.add_argument("--balance", choices=BALANCES, default="boxes",
                   help="the buckets hold roughly equal numbers of boxes (default) or equal numbers of classes")
    p.add_argument("--per-class", type=Path, metavar="CSV", help="per-class AP of python -m submit.score --per-class")
    p.add_argument("--worst", type=int, metavar="K", help="group of the K classes of lowest AP in --per-class "
                                                          "(classes without ground truth are ignored)")
    args = p.parse_args(argv)
    if args.rarest is None and args.buckets is None and args.worst is None:
        p.error("nothing to write: give --rarest K, --buckets N and/or --worst K")
    if (args.worst is None) != (args.per_class is None):
        p.error("--worst K and --per-class CSV go together")
    return args


@entry_point
def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    classes, counts = train_box_counts(args.prepared)
    groups: dict[str, list[int]] = {}
    if args.rarest is not None:
        groups[f"rarest{args.rarest}"] = rarest(counts, args.rarest)
    if args.buckets is not None:
        for i, members in enumerate(buckets(counts, args.buckets, args.balance, classes), start=1):
            groups[f"bucket{i}of{args.buckets}"] = members
    ap = None
    if args.worst is not None:
        ap = read_per_class_ap(args.per_class, classes)
        groups[f"worst{args.worst}"] = worst(ap, args.worst)
    write_groups(args.out, groups, classes)
    for name, members in groups.items():
        scored = [ap[c] for c in members if c in ap] if ap is not None else []
        detail = f", mean AP {np.mean(scored):.4f} over {len(scored)} classes with ground truth" if scored else ""
        print(f"{name}: {len(members)} classes, {int(counts[members].sum()):,} training boxes{detail}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
