"""Ancestor copies of predictions: a box of class C is also reported once for every ancestor of C.

The official metric does not expand predictions, so every producer of scored or submitted predictions (the
ensemble stage, the training-time metric, reports) copies each box to its ancestor classes with this one mapping.
The copies of a box follow it directly, ancestors in class order.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from contracts.hierarchy import Hierarchy


@dataclass(frozen=True)
class AncestorExpansion:
    """Ancestors of each class index in CSR form: those of class c are ``indices[indptr[c]:indptr[c + 1]]``."""

    indptr: np.ndarray
    indices: np.ndarray

    @classmethod
    def none(cls, n_classes: int) -> AncestorExpansion:
        return cls(np.zeros(n_classes + 1, np.int64), np.zeros(0, np.int32))

    @classmethod
    def from_hierarchy(cls, hierarchy: Hierarchy, mids: Sequence[str]) -> AncestorExpansion:
        """Ancestors among ``mids`` (a class absent from the hierarchy has none)."""
        index = {mid: i for i, mid in enumerate(mids)}
        ancestors = [sorted(index[a] for a in hierarchy.ancestors(mid) if a in index) if mid in hierarchy else []
                     for mid in mids]
        indptr = np.zeros(len(mids) + 1, np.int64)
        indptr[1:] = np.cumsum([len(a) for a in ancestors])
        return cls(indptr, np.array([a for anc in ancestors for a in anc], np.int32))

    def apply(self, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each box followed by its ancestor copies: the source row of every output row, and its class."""
        n_copies = np.diff(self.indptr)[labels]
        rows = np.repeat(np.arange(len(labels)), 1 + n_copies)
        # position of each output row within its box's run: 0 = the box itself, k = its k-th ancestor
        run_start = np.repeat(np.cumsum(1 + n_copies) - (1 + n_copies), 1 + n_copies)
        within = np.arange(len(rows)) - run_start
        out = labels[rows].astype(np.int32)
        copy = within > 0
        out[copy] = self.indices[self.indptr[labels[rows[copy]]] + within[copy] - 1]
        return rows, out


def with_ancestors(predictions: pd.DataFrame, hierarchy: Hierarchy, mids: Sequence[str]) -> pd.DataFrame:
    """A predictions frame with each row followed by its ancestor copies (ancestors among ``mids``); a LabelName
    outside ``mids`` is an error."""
    mids = list(mids)
    labels = pd.Index(mids).get_indexer(np.asarray(predictions["LabelName"].astype(str)))
    if (labels < 0).any():
        raise ValueError(f"predictions hold MID {predictions['LabelName'].iloc[int(np.argmax(labels < 0))]!r}, "
                         f"which is not in the class list")
    rows, expanded = AncestorExpansion.from_hierarchy(hierarchy, mids).apply(labels)
    out = predictions.iloc[rows].reset_index(drop=True)
    out["LabelName"] = pd.Categorical.from_codes(expanded, categories=mids)
    return out
