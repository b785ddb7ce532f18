"""The class list: the class file (no header, ``MID,DisplayName`` per row), whose row order is the class order."""
from __future__ import annotations

import csv
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import pandas as pd

from contracts.files import DataError, open_text


@dataclass(frozen=True)
class ClassList:
    """MIDs and display names by class index (row i of the class file = class i)."""

    mids: tuple[str, ...]
    names: tuple[str, ...]
    source: str = field(default="", compare=False)

    def __len__(self) -> int:
        return len(self.mids)

    @cached_property
    def index(self) -> dict[str, int]:
        """MID -> class index."""
        return {mid: i for i, mid in enumerate(self.mids)}

    def name_of(self, mid: str) -> str:
        return self.names[self.index[mid]]

    def frame(self) -> pd.DataFrame:
        """Columns MID, DisplayName in class order."""
        return pd.DataFrame({"MID": list(self.mids), "DisplayName": list(self.names)})


def read_classes(path: str | Path) -> ClassList:
    """Read a class file (plain or .gz); a malformed row or a repeated MID is an error naming the line."""
    path = Path(path)
    mids: list[str] = []
    names: list[str] = []
    seen: dict[str, int] = {}
    with open_text(path) as f:
        for line, row in enumerate(csv.reader(f), start=1):
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if len(row) != 2 or not row[0].strip():
                raise DataError(f"{path}: line {line}: expected 'MID,DisplayName', got {','.join(row)!r}")
            mid, name = row[0].strip(), row[1].strip()
            if mid in seen:
                raise DataError(f"{path}: line {line}: MID {mid} repeats line {seen[mid]}")
            seen[mid] = line
            mids.append(mid)
            names.append(name)
    if not mids:
        raise DataError(f"{path}: empty file (no classes)")
    return ClassList(tuple(mids), tuple(names), str(path))
