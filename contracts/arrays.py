"""Array helpers shared by the metric, the writer and fusion: string-to-index lookup, a counting sort and a fast
stable grouped sort."""
from __future__ import annotations

import numba
import numpy as np
import pandas as pd


def positions(values: pd.Series | np.ndarray, index: pd.Index) -> np.ndarray:
    """Position of each value in ``index`` (int64), -1 where absent; categoricals are mapped through their
    categories only."""
    if isinstance(getattr(values, "dtype", None), pd.CategoricalDtype):
        lookup = np.append(index.get_indexer(values.cat.categories), -1).astype(np.int64)
        return lookup[values.cat.codes.to_numpy()]  # code -1 (missing) picks the appended -1
    return index.get_indexer(values).astype(np.int64)


@numba.njit(cache=True)
def counting_order(group, n_groups, items):
    """``items`` (int64 indices into ``group``, each once) stably sorted by their group, and where each group starts
    in that order ((n_groups + 1,)): a counting sort."""
    start = np.zeros(n_groups + 1, np.int64)
    for i in items:
        start[group[i] + 1] += 1
    for g in range(n_groups):
        start[g + 1] += start[g]
    fill = start[:-1].copy()
    order = np.empty(items.size, np.int64)
    for i in items:
        order[fill[group[i]]] = i
        fill[group[i]] += 1
    return order, start


@numba.njit(cache=True)
def _grouped_order(group, n_groups, primary, secondary, use_secondary):
    order, start = counting_order(group, n_groups, np.arange(group.size))
    for g in range(n_groups):
        s, e = start[g], start[g + 1]
        if e - s > 1:  # least significant key first: stable sorts keep the earlier orders among ties
            segment = order[s:e]
            if use_secondary:
                segment = segment[np.argsort(secondary[segment], kind="mergesort")]
            order[s:e] = segment[np.argsort(primary[segment], kind="mergesort")]
    return order


def grouped_order(group: np.ndarray, n_groups: int, primary: np.ndarray,
                  secondary: np.ndarray | None = None) -> np.ndarray:
    """The stable permutation that sorts by (group, primary, secondary) ascending, ties in input order.

    ``group`` holds ints in [0, n_groups): a counting sort, then small merge sorts inside each group (several times
    faster than ``np.lexsort`` when groups are small). ``primary`` and ``secondary`` are compared as float64."""
    group = np.ascontiguousarray(group, dtype=np.int64)
    primary = np.ascontiguousarray(primary, dtype=np.float64)
    if secondary is None:
        return _grouped_order(group, n_groups, primary, primary, False)
    return _grouped_order(group, n_groups, primary, np.ascontiguousarray(secondary, dtype=np.float64), True)
