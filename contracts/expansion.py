"""Hierarchy expansion over class indices: the one implementation of "a class and its ancestors (or descendants)".

``Relatives`` maps class indices to the indices of their relatives (CSR). It expands predictions (a box of class C
is also reported once for every ancestor of C: the official metric does not expand predictions, so every producer
of scored or submitted predictions copies them with ``with_ancestors``), the metric's ground truth and the prepared
image labels.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from contracts.hierarchy import Hierarchy


@dataclass(frozen=True)
class Relatives:
    """The relatives of each source class in CSR form: those of source c are ``indices[indptr[c]:indptr[c + 1]]``,
    positions in a target class list, ascending."""

    indptr: np.ndarray   # int64, (sources + 1,)
    indices: np.ndarray  # int32

    @classmethod
    def none(cls, n_classes: int) -> Relatives:
        return cls(np.zeros(n_classes + 1, np.int64), np.zeros(0, np.int32))

    @classmethod
    def from_hierarchy(cls, hierarchy: Hierarchy, mids: Sequence[str], direction: str = "ancestors",
                       among: Sequence[str] | None = None, include_self: bool = False) -> Relatives:
        """The ancestors (or descendants) of each MID of ``mids`` among the classes ``among`` (default ``mids``);
        ``include_self`` adds the class itself where ``among`` lists it. A MID outside the hierarchy has none."""
        if direction not in ("ancestors", "descendants"):
            raise ValueError(f"direction must be 'ancestors' or 'descendants', got {direction!r}")
        relatives = hierarchy.ancestors if direction == "ancestors" else hierarchy.descendants
        index = {mid: i for i, mid in enumerate(mids if among is None else among)}
        lists = []
        for mid in mids:
            family = set(relatives(mid)) if mid in hierarchy else set()
            if include_self:
                family.add(mid)
            lists.append(sorted(index[m] for m in family if m in index))
        indptr = np.zeros(len(lists) + 1, np.int64)
        indptr[1:] = np.cumsum([len(r) for r in lists])
        return cls(indptr, np.array([i for r in lists for i in r], np.int32))

    def expand(self, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For rows of source class ``labels``: (source row, relative) of every relative of every row, row by row,
        relatives ascending."""
        starts = self.indptr[labels]
        counts = self.indptr[np.asarray(labels) + 1] - starts
        rows = np.repeat(np.arange(len(labels), dtype=np.int64), counts)
        first = np.repeat(np.cumsum(counts) - counts, counts)
        return rows, self.indices[starts[rows] + (np.arange(len(rows), dtype=np.int64) - first)]

    def apply(self, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each row followed by its relatives' copies (``labels`` index sources and targets alike): the source row of
        every output row, and its class."""
        rows, relative = self.expand(labels)
        n_copies = np.diff(self.indptr)[labels]
        out_rows = np.repeat(np.arange(len(labels)), 1 + n_copies)
        out = np.asarray(labels).astype(np.int32)[out_rows]
        copy = np.ones(len(out_rows), bool)
        copy[np.cumsum(1 + n_copies) - (1 + n_copies)] = False  # each run starts with the row itself
        out[copy] = relative
        return out_rows, out


def with_ancestors(predictions: pd.DataFrame, hierarchy: Hierarchy, mids: Sequence[str]) -> pd.DataFrame:
    """A predictions frame with each row followed by its ancestor copies (ancestors among ``mids``); a LabelName
    outside ``mids`` is an error."""
    mids = list(mids)
    labels = pd.Index(mids).get_indexer(np.asarray(predictions["LabelName"].astype(str)))
    if (labels < 0).any():
        raise ValueError(f"predictions hold MID {predictions['LabelName'].iloc[int(np.argmax(labels < 0))]!r}, "
                         f"which is not in the class list")
    rows, expanded = Relatives.from_hierarchy(hierarchy, mids).apply(labels)
    out = predictions.iloc[rows].reset_index(drop=True)
    out["LabelName"] = pd.Categorical.from_codes(expanded, categories=mids)
    return out
