"""Array helpers shared by the metric, the writer and fusion: string-to-index lookup, a counting sort and fast
stable sorts of groups (segments) of items."""
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


@numba.njit(cache=True, nogil=True)
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


_SMALL_SEGMENT = 16  # segments up to this size are sorted by insertion, larger ones by one shared radix sort,
_OWN_RADIX_SORT = 4096  # and from this size each by its own


@numba.njit(cache=True, nogil=True)
def _less(a, b):
    """numpy's float order: NaN last, -0.0 equal to 0.0."""
    return a < b or (np.isnan(b) and not np.isnan(a))


@numba.njit(cache=True, nogil=True)
def _precedes(i, j, primary, secondary, use_secondary):
    if _less(primary[i], primary[j]):
        return True
    if not use_secondary or _less(primary[j], primary[i]):
        return False
    return _less(secondary[i], secondary[j])


@numba.njit(cache=True, nogil=True)
def _radix_keys(values, items):
    """Unsigned keys of ``values[items]`` in numpy's float order (NaN last, -0.0 as 0.0)."""
    clean = np.empty(items.size)
    for p in range(items.size):
        clean[p] = values[items[p]] + 0.0  # -0.0 becomes 0.0
    keys = clean.view(np.uint64)
    for p in range(items.size):
        if np.isnan(clean[p]):
            keys[p] = np.uint64(0xFFFFFFFFFFFFFFFF)
        elif keys[p] >> np.uint64(63):
            keys[p] = ~keys[p]
        else:
            keys[p] |= np.uint64(1 << 63)
    return keys


@numba.njit(cache=True, nogil=True)
def _radix_sort(values, items, position):
    """``position`` (indices into ``items``) stably sorted by ``values[items[position]]``, numpy's float order: a
    least-significant-byte-first radix sort that skips the bytes all keys share."""
    n = position.size
    keys = _radix_keys(values, items[position])
    counts = np.zeros((8, 256), np.int64)
    for p in range(n):
        for b in range(8):
            counts[b, (keys[p] >> np.uint64(8 * b)) & np.uint64(255)] += 1
    other_keys, other_position = np.empty(n, np.uint64), np.empty(n, np.int64)
    for b in range(8):
        if counts[b].max() == n:  # one value of this byte: the pass would change nothing
            continue
        fill = np.zeros(256, np.int64)
        for d in range(1, 256):
            fill[d] = fill[d - 1] + counts[b, d - 1]
        for p in range(n):
            d = (keys[p] >> np.uint64(8 * b)) & np.uint64(255)
            other_keys[fill[d]], other_position[fill[d]] = keys[p], position[p]
            fill[d] += 1
        keys, other_keys = other_keys, keys
        position, other_position = other_position, position
    return position


@numba.njit(cache=True, nogil=True)
def _sort_segment(order, s, e, primary, secondary, use_secondary):
    """``order[s:e]`` sorted alone (a large segment: its radix sort stays in cache)."""
    members = order[s:e].copy()
    position = np.arange(e - s)
    if use_secondary:
        position = _radix_sort(secondary, members, position)
    order[s:e] = members[_radix_sort(primary, members, position)]


@numba.njit(cache=True, nogil=True)
def sort_segments(order, start, primary, secondary):
    """Sort each segment ``order[start[g]:start[g + 1]]`` (indices into ``primary``) stably by ``primary``, then
    ``secondary`` (unless it is empty, ``np.empty(0)``), ascending in numpy's float order (NaN last, -0.0 equal to
    0.0), in place. Small segments by insertion, large ones by radix sorts: each by its own, or (if not that large)
    their members all together by one. (An empty array rather than a flag: one compiled version for every caller.)"""
    use_secondary = secondary.size > 0
    unsorted = np.zeros(start.size - 1, np.bool_)
    n_big = 0
    for g in range(start.size - 1):
        s, e = start[g], start[g + 1]
        if e - s > _SMALL_SEGMENT:
            for p in range(s + 1, e):
                if _precedes(order[p], order[p - 1], primary, secondary, use_secondary):
                    if e - s >= _OWN_RADIX_SORT:
                        _sort_segment(order, s, e, primary, secondary, use_secondary)
                    else:
                        unsorted[g] = True
                        n_big += e - s
                    break
            continue
        for p in range(s + 1, e):
            item = order[p]
            q = p
            while q > s and _precedes(item, order[q - 1], primary, secondary, use_secondary):
                order[q] = order[q - 1]
                q -= 1
            order[q] = item
    if n_big == 0:
        return
    members = np.empty(n_big, np.int64)  # the unsorted large segments' items, and the start of each one's segment
    segment_start = np.empty(n_big, np.int64)
    k = 0
    for g in np.flatnonzero(unsorted):
        s, e = start[g], start[g + 1]
        members[k:k + e - s] = order[s:e]
        segment_start[k:k + e - s] = s
        k += e - s
    position = np.arange(n_big)
    if use_secondary:  # least significant key first: the stable sort by primary keeps its order among ties
        position = _radix_sort(secondary, members, position)
    position = _radix_sort(primary, members, position)
    fill = np.arange(order.size)  # a stable scatter back into each segment, in the sorted order: fill[s] is the
    for p in position:            # next place in the segment that starts at s
        s = segment_start[p]
        order[fill[s]] = members[p]
        fill[s] += 1


@numba.njit(cache=True, nogil=True)
def _grouped_order(group, n_groups, primary, secondary):
    order, start = counting_order(group, n_groups, np.arange(group.size))
    sort_segments(order, start, primary, secondary)
    return order


def grouped_order(group: np.ndarray, n_groups: int, primary: np.ndarray,
                  secondary: np.ndarray | None = None) -> np.ndarray:
    """The stable permutation that sorts by (group, primary, secondary) ascending, ties in input order.

    ``group`` holds ints in [0, n_groups): a counting sort, then ``sort_segments`` (several times faster than
    ``np.lexsort``; segments already in order cost one pass). ``primary`` and ``secondary`` are compared as
    float64, in numpy's order (NaN last)."""
    group = np.ascontiguousarray(group, dtype=np.int64)
    primary = np.ascontiguousarray(primary, dtype=np.float64)
    secondary = np.empty(0) if secondary is None else np.ascontiguousarray(secondary, dtype=np.float64)
    return _grouped_order(group, n_groups, primary, secondary)

