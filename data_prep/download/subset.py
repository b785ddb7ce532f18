"""Which images to fetch: classes by display name or MID (with their hierarchy descendants), a per-class cap, a
seeded sample and an image list in the official downloader's ``split/ImageID`` format."""
from __future__ import annotations

import csv
import difflib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from contracts.classes import ClassList
from contracts.files import DataError, open_text
from contracts.hierarchy import Hierarchy

SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class Subset:
    """What the user asked for; every field None means whole splits."""

    classes: frozenset[str] | None = None  # MIDs, descendants included
    max_per_class: int | None = None
    max_images: int | None = None
    seed: int = 0
    image_list: dict[str, frozenset[str]] | None = None  # split -> ImageIDs

    @property
    def whole(self) -> bool:
        return self.classes is None and self.max_per_class is None and self.max_images is None \
            and self.image_list is None


def resolve_classes(names: Sequence[str], classes: ClassList, hierarchy: Hierarchy) -> frozenset[str]:
    """MIDs of ``names`` (display names in any case, or MIDs) and of all their descendants; an unknown name is an
    error listing the closest display names."""
    by_name = {name.lower(): mid for mid, name in zip(classes.mids, classes.names)}
    chosen: set[str] = set()
    for name in names:
        mid = name if name in classes.index else by_name.get(name.strip().lower())
        if mid is None:
            close = difflib.get_close_matches(name.strip().lower(), by_name, n=5, cutoff=0.5)
            hint = ", ".join(classes.name_of(by_name[c]) for c in close) or "none"
            raise DataError(f"--classes: unknown class {name!r} (closest: {hint})")
        chosen.add(mid)
        if mid in hierarchy:
            chosen |= hierarchy.descendants(mid) & set(classes.mids)
    return frozenset(chosen)


def read_image_list(path: str | Path) -> dict[str, frozenset[str]]:
    """``split/ImageID`` lines (the official downloader's input; a ``.jpg`` suffix is tolerated) by split."""
    found: dict[str, set[str]] = {}
    with open_text(Path(path)) as f:
        for line_no, line in enumerate(f, start=1):
            line = line.strip()
            if not line:
                continue
            split, _, image_id = line.partition("/")
            image_id = image_id.removesuffix(".jpg")
            if split not in SPLITS or not image_id or "/" in image_id:
                raise DataError(f"{path}: line {line_no}: expected 'split/ImageID' with split one of "
                                f"{', '.join(SPLITS)}, got {line!r}")
            found.setdefault(split, set()).add(image_id)
    return {split: frozenset(ids) for split, ids in found.items()}


def select(box_csv: Path | None, candidates: Iterable[str] | None, subset: Subset, split: str) -> list[str]:
    """The split's ImageIDs, sorted: those of ``box_csv`` (streamed) or of ``candidates`` (the test folder's
    listing), within the image list, by class with at most ``max_per_class`` each (the first by ImageID, a random
    hex id), then a seeded sample of ``max_images``."""
    listed = subset.image_list.get(split, frozenset()) if subset.image_list is not None else None
    by_class = box_csv is not None and (subset.classes is not None or subset.max_per_class is not None)
    if box_csv is not None:
        ids = _ids_by_class(box_csv, subset, listed) if by_class else _all_ids(box_csv, listed)
    else:
        ids = {i for i in candidates if listed is None or i in listed}
    chosen = sorted(ids)
    if subset.max_images is not None and len(chosen) > subset.max_images:
        rng = np.random.default_rng(subset.seed)
        chosen = sorted(rng.choice(np.array(chosen, dtype=object), subset.max_images, replace=False).tolist())
    return chosen


def _rows(box_csv: Path) -> Iterator[tuple[str, str]]:
    """(ImageID, LabelName) of every row of a box file, streamed."""
    with open_text(box_csv) as f:
        reader = csv.reader(f)
        header = next(reader, [])
        if "ImageID" not in header or "LabelName" not in header:
            raise DataError(f"{box_csv}: line 1: expected the ImageID and LabelName columns, got {','.join(header)!r}")
        image_col, label_col = header.index("ImageID"), header.index("LabelName")
        for row in reader:
            if row:
                yield row[image_col], row[label_col]


def _all_ids(box_csv: Path, listed: frozenset[str] | None) -> set[str]:
    return {image_id for image_id, _ in _rows(box_csv) if listed is None or image_id in listed}


def _ids_by_class(box_csv: Path, subset: Subset, listed: frozenset[str] | None) -> set[str]:
    """Images with a box of a chosen class; with a cap, the ``max_per_class`` smallest ImageIDs of each class."""
    cap = subset.max_per_class
    per_class: dict[str, set[str]] = {}
    for image_id, mid in _rows(box_csv):
        if subset.classes is not None and mid not in subset.classes:
            continue
        if listed is not None and image_id not in listed:
            continue
        ids = per_class.setdefault(mid, set())
        ids.add(image_id)
        if cap is not None and len(ids) > 2 * cap + 64:  # keep memory bounded: prune to the cap's candidates
            per_class[mid] = set(sorted(ids)[:cap])
    return {i for ids in per_class.values() for i in (sorted(ids)[:cap] if cap is not None else ids)}
