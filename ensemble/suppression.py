"""Per-class NMS, Soft-NMS and adj-NMS over the boxes of several models. ``nms``, ``soft_nms`` and ``nms_method``
are drop-ins for their ensemble-boxes 1.0.9 namesakes: same signatures (positional order included), the same kept
boxes in the same order, bit for bit.

Shapes: M models, N boxes over all models, K kept boxes. Boxes are normalised ``x1, y1, x2, y2``.

Like ``ensemble_boxes.nms_method``, every function: with ``weights``, replaces each model's scores by
``score * weight / sum(weights)`` (a zero weight makes that model's scores 0); concatenates the models; clips
coordinates to [0, 1], orders each box's corners and drops zero-area boxes; then suppresses each label on its own,
labels in ascending order. Negative scores are kept. The result holds the kept boxes label by label, each label's
boxes in the order they were selected (descending score), in the dtypes of the inputs (scores become float64 when
weighted). The Soft-NMS decay is computed by numpy's vectorised ``np.exp`` on the same values as there (numba's
scalar ``exp`` can differ from it in the last bit, which reorders near-ties).

An addition: the keyword-only ``skip_box_thr`` drops boxes whose raw score is below it, before weighting (default
None: none, as ensemble-boxes).

``suppress_images`` is the ensemble runner's entry: any of these functions on every (image, label) of many images
in one call, image by image in a numba kernel; each pair gets exactly what the function gives for its rows alone.

Differences from ensemble-boxes 1.0.9:
- Soft-NMS (methods 1 and 2) returns the *decayed* scores of the kept boxes, as Soft-NMS is defined (Bodla et
  al., 2017); ensemble-boxes keeps the same boxes in the same order but returns their original scores;
- bad input raises ValueError (see ``ensemble/_inputs.py``), as do a method other than 1, 2, 3 and a gaussian
  ``sigma`` <= 0; no boxes at all give empty arrays instead of an error; the caller's ``scores`` are never modified
  (ensemble-boxes rescales them in place when weighted); nothing is printed about clipped or zero-area boxes.
"""
from __future__ import annotations

import inspect
import math
from collections.abc import Sequence

import numpy as np
from numba import njit

from ._inputs import model_arrays, model_weights

SOFT_METHODS = {"linear": 1, "gaussian": 2, "hard": 3}
_GAUSSIAN, _HARD = SOFT_METHODS["gaussian"], SOFT_METHODS["hard"]
_MATRIX_GROUP_ROWS = 1024  # Soft-NMS: the largest group decayed through its full n x n matrix (float64, 8 MB)
_MATRIX_ENTRIES = 1 << 17  # Soft-NMS: decay matrix entries per call (1 MB: they stay in the L2 cache)


@njit(cache=True, nogil=True)
def _f32(x, in_float32):
    """``x`` rounded to float32 when emulating float32 arithmetic (one float64 operation on float32 values,
    rounded, is exactly the float32 operation)."""
    return np.float64(np.float32(x)) if in_float32 else x


@njit(cache=True, nogil=True)
def _area(x1, y1, x2, y2, in_float32):
    """A box's area, computed in float32 for float32 input, as ensemble-boxes does."""
    return _f32(_f32(x2 - x1, in_float32) * _f32(y2 - y1, in_float32), in_float32)


@njit(cache=True, nogil=True)
def _clean_box(x1, y1, x2, y2, in_float32):
    """One box clipped to [0, 1], its corners ordered, and whether its area (``_area``) is not 0."""
    x1, y1, x2, y2 = min(max(x1, 0.0), 1.0), min(max(y1, 0.0), 1.0), min(max(x2, 0.0), 1.0), min(max(y2, 0.0), 1.0)
    x1, x2 = min(x1, x2), max(x1, x2)
    y1, y2 = min(y1, y2), max(y1, y2)
    return x1, y1, x2, y2, _area(x1, y1, x2, y2, in_float32) != 0


@njit(cache=True, nogil=True)
def _clean(boxes, in_float32):
    """Clip to [0, 1] and order the corners of each box; returns the cleaned boxes and the rows of those whose
    area is not 0."""
    out = np.empty_like(boxes)
    rows = np.empty(boxes.shape[0], np.int64)
    n = 0
    for i in range(boxes.shape[0]):
        out[i, 0], out[i, 1], out[i, 2], out[i, 3], nonzero = _clean_box(boxes[i, 0], boxes[i, 1], boxes[i, 2],
                                                                         boxes[i, 3], in_float32)
        if nonzero:
            rows[n] = i
            n += 1
    return out, rows[:n]


@njit(cache=True, nogil=True)
def _survives(boxes, areas, i, k, iou_thr, in_float32):
    """Whether kept box i leaves box k alive: their IoU is <= ``iou_thr``. The IoU follows the operand types of
    ensemble-boxes' numba kernel: coordinates and areas in the boxes' dtype (float64 holding float32 values when
    ``in_float32``), clipped extents and the ratio in float64."""
    inter_w = max(0.0, _f32(min(boxes[i, 2], boxes[k, 2]) - max(boxes[i, 0], boxes[k, 0]), in_float32))
    inter_h = max(0.0, _f32(min(boxes[i, 3], boxes[k, 3]) - max(boxes[i, 1], boxes[k, 1]), in_float32))
    inter = inter_w * inter_h
    return inter / (_f32(areas[i] + areas[k], in_float32) - inter) <= iou_thr


@njit(cache=True, nogil=True)
def _select(boxes, areas, alive, keep, iou_thr, in_float32):
    """Greedy NMS visiting ``alive`` (n,) (positions, by descending score; overwritten) in order: writes the kept
    positions, in selection order, into ``keep`` and returns their number."""
    n_keep = 0
    n_alive = alive.size
    while n_alive > 0:
        i = alive[0]
        keep[n_keep] = i
        n_keep += 1
        n_next = 0
        for q in range(1, n_alive):
            k = alive[q]
            if _survives(boxes, areas, i, k, iou_thr, in_float32):
                alive[n_next] = k
                n_next += 1
        n_alive = n_next
    return n_keep


@njit(cache=True, nogil=True)
def _greedy(boxes, areas, scores, alive, keep, iou_thr, in_float32):
    """Greedy NMS without sorting: each step keeps the highest score left, found while the boxes it leaves alive
    are gathered. Returns the number of kept positions written into ``keep``, or -1 as soon as a step finds its
    highest score twice (the order among equal scores then decides; see ``_suppress``)."""
    n = scores.size
    top, tied = 0, False
    for k in range(1, n):
        if scores[k] > scores[top]:
            top, tied = k, False
        elif scores[k] == scores[top]:
            tied = True
    for k in range(n):
        alive[k] = k
    n_alive, n_keep = n, 0
    while not tied:
        keep[n_keep] = top
        n_keep += 1
        n_next, best = 0, -1
        for q in range(n_alive):
            k = alive[q]
            if k != top and _survives(boxes, areas, top, k, iou_thr, in_float32):
                alive[n_next] = k
                n_next += 1
                if best < 0 or scores[k] > scores[best]:
                    best, tied = k, False
                elif scores[k] == scores[best]:
                    tied = True
        if n_next == 0:
            return n_keep
        n_alive, top = n_next, best
    return -1


@njit(cache=True, nogil=True)
def _suppress(boxes, areas, scores, alive, keep, iou_thr, in_float32):
    """Greedy NMS of one label's boxes (n, 4), areas (n,) and scores (n,): writes the kept positions, in selection
    order, into ``keep`` (n,) and returns their number; alive (n,): work space. Boxes with equal scores are visited
    in the order of numba's ``argsort``, as ensemble-boxes does; while each step's highest score is unique, that
    order does not matter and no sort is needed."""
    n_keep = _greedy(boxes, areas, scores, alive, keep, iou_thr, in_float32)
    if n_keep >= 0:
        return n_keep
    alive[:] = np.argsort(scores)[::-1]
    return _select(boxes, areas, alive, keep, iou_thr, in_float32)


@njit(cache=True, nogil=True)
def _hard_nms(boxes, scores, iou_thr, in_float32):
    """Greedy NMS of one label's boxes (``_suppress``): positions kept, in selection order (descending score).

    boxes: (n, 4) float64 (float32 values when ``in_float32``), scores: (n,) float64."""
    n = boxes.shape[0]
    areas = np.empty(n)
    for i in range(n):
        areas[i] = _area(boxes[i, 0], boxes[i, 1], boxes[i, 2], boxes[i, 3], in_float32)
    alive = np.empty(n, np.int64)
    keep = np.empty(n, np.int64)
    return keep[:_suppress(boxes, areas, scores, alive, keep, iou_thr, in_float32)]


@njit(cache=True, nogil=True)
def _hard_pass(boxes, scores, rows, starts, iou_thr, in_float32):
    """Hard NMS label by label. boxes: (N, 4), scores: (N,) float64; the rows of label g are
    ``rows[starts[g]:starts[g + 1]]``. Returns the kept rows, in selection order, and their label starts."""
    kept = np.empty(rows.size, np.int64)
    kept_starts = np.zeros(starts.size, np.int64)
    n_kept = 0
    for g in range(starts.size - 1):
        members = rows[starts[g]:starts[g + 1]]
        for row in members[_hard_nms(boxes[members], scores[members], iou_thr, in_float32)]:
            kept[n_kept] = row
            n_kept += 1
        kept_starts[g + 1] = n_kept
    return kept[:n_kept], kept_starts


@njit(cache=True, nogil=True)
def _overlaps(boxes, rows, starts):
    """The intersecting pairs within each label and their IoU, computed as ensemble-boxes' Soft-NMS does (float64).

    boxes: (N, 4) float64; rows, starts: as in ``_hard_pass``. Positions p, q index ``rows``. Returns
    ``pair_starts`` (N + 1,): the pairs (p, q > p) of p are ``pair_starts[p]:pair_starts[p + 1]``; ``second`` (P,)
    int32: their q; ``iou`` (P,). Pairs left out do not intersect: their IoU is 0, their decay 1. Both passes over
    all pairs (count, then fill) are branch-free: a pair is written, then kept or overwritten."""
    x1, y1, x2, y2 = boxes[rows, 0], boxes[rows, 1], boxes[rows, 2], boxes[rows, 3]
    pair_starts = np.zeros(rows.size + 1, np.int64)
    for g in range(starts.size - 1):
        for p in range(starts[g], starts[g + 1]):
            px1, py1, px2, py2 = x1[p], y1[p], x2[p], y2[p]
            n = 0
            for q in range(p + 1, starts[g + 1]):
                n += (min(px2, x2[q]) > max(px1, x1[q])) & (min(py2, y2[q]) > max(py1, y1[q]))
            pair_starts[p + 1] = pair_starts[p] + n
    second = np.empty(pair_starts[-1] + 1, np.int32)
    iou = np.empty(pair_starts[-1] + 1)  # the intersections, divided in place below
    n = 0
    for g in range(starts.size - 1):
        for p in range(starts[g], starts[g + 1]):
            px1, py1, px2, py2 = x1[p], y1[p], x2[p], y2[p]
            for q in range(p + 1, starts[g + 1]):
                inter_w = min(px2, x2[q]) - max(px1, x1[q])
                inter_h = min(py2, y2[q]) - max(py1, y1[q])
                second[n] = q
                iou[n] = inter_h * inter_w
                n += (inter_w > 0) & (inter_h > 0)
    areas = (x2 - x1) * (y2 - y1)
    for p in range(rows.size):
        for e in range(pair_starts[p], pair_starts[p + 1]):
            iou[e] = iou[e] / ((areas[p] + areas[second[e]]) - iou[e])
    return pair_starts, second[:n], iou[:n]


@njit(cache=True, nogil=True)
def _soft_pass(scores, rows, starts, pair_starts, second, decay, thresh, scores_float32):
    """Soft-NMS label by label, given the decay of each intersecting pair (``_overlaps``' pairs).

    scores: (N,) float64; each step takes the label's highest remaining score (the first one in the current order
    on ties, as ensemble-boxes swaps boxes into place) and multiplies the scores of the boxes after it by their
    decay, rounded to float32 when ``scores_float32``; a box is kept when its decayed score is > ``thresh``. A
    label stops at the first step whose highest score is <= ``thresh`` (>= 0): nothing after it can be kept.
    Returns the kept rows (K,), label by label in selection order, and their decayed scores (K,)."""
    # the pairs (p < q) of each q, as p and the pair's decay
    back_starts = np.zeros(rows.size + 1, np.int64)
    for e in range(second.size):
        back_starts[second[e] + 1] += 1
    back_starts = np.cumsum(back_starts)
    back_first = np.empty(second.size, np.int32)
    back_decay = np.empty(second.size)
    fill = back_starts[:-1].copy()
    for p in range(rows.size):
        for e in range(pair_starts[p], pair_starts[p + 1]):
            q = second[e]
            back_first[fill[q]], back_decay[fill[q]] = p, decay[e]
            fill[q] += 1

    kept_rows = np.empty(rows.size, np.int64)
    kept_scores = np.empty(rows.size)
    n_kept = 0
    position = np.empty(rows.size, np.int64)  # of each position of ``rows`` in its label's current order
    for g in range(starts.size - 1):
        lo, n = starts[g], starts[g + 1] - starts[g]
        slot = np.arange(lo, lo + n)
        sc = scores[rows[lo:lo + n]].copy()
        position[lo:lo + n] = np.arange(n)
        for i in range(n):
            top, best = i, sc[i]
            for k in range(i + 1, n):
                if sc[k] > best:
                    top, best = k, sc[k]
            if best <= thresh and thresh >= 0:
                # every score from i on is <= thresh >= 0, and a decay (in [0, 1]) never lifts one above it: none
                # of them is kept, whatever the steps left would do
                break
            if top != i:
                sc[i], sc[top] = sc[top], sc[i]
                slot[i], slot[top] = slot[top], slot[i]
                position[slot[i]], position[slot[top]] = i, top
            # decay the boxes after position i; those before are multiplied by 1, which changes no bit (branch-free)
            a = slot[i]
            for e in range(pair_starts[a], pair_starts[a + 1]):
                k = position[second[e]]
                sc[k] = _f32((decay[e] if k > i else 1.0) * sc[k], scores_float32)
            for j in range(back_starts[a], back_starts[a + 1]):
                k = position[back_first[j]]
                sc[k] = _f32((back_decay[j] if k > i else 1.0) * sc[k], scores_float32)
        for i in range(n):
            if sc[i] > thresh:
                kept_rows[n_kept] = rows[slot[i]]
                kept_scores[n_kept] = sc[i]
                n_kept += 1
    return kept_rows[:n_kept], kept_scores[:n_kept]


@njit(cache=True, nogil=True, error_model="numpy")  # IEEE division, no zero check: the loops vectorise
def _decay_matrices(boxes, starts, gaussian, sigma, by_inverse):
    """Per group g of ``starts`` (n boxes), the IoU of every pair as ``_overlaps`` computes it (0 for pairs that do
    not intersect), or with ``gaussian`` the exponent of its decay, ``-(iou * iou) / sigma``: an n x n row-major
    matrix at ``offsets[g]:offsets[g + 1]``. Returns offsets (G + 1,) and the matrices (float64), one after the
    other. With ``by_inverse`` (sigma a power of two, as the default 0.5), the division is a product by the exact
    inverse: the same bits, one division less per pair."""
    inverse = 1.0 / sigma
    offsets = np.zeros(starts.size, np.int64)
    for g in range(starts.size - 1):
        n = starts[g + 1] - starts[g]
        offsets[g + 1] = offsets[g] + n * n
    out = np.empty(offsets[-1])
    for g in range(starts.size - 1):
        lo, hi = starts[g], starts[g + 1]
        n = hi - lo
        x1, y1, x2, y2 = boxes[lo:hi, 0].copy(), boxes[lo:hi, 1].copy(), boxes[lo:hi, 2].copy(), boxes[lo:hi, 3].copy()
        areas = (x2 - x1) * (y2 - y1)
        for p in range(n):
            row = out[offsets[g] + p * n:offsets[g] + (p + 1) * n]
            px1, py1, px2, py2, area = x1[p], y1[p], x2[p], y2[p], areas[p]
            for q in range(n):
                inter_h = min(py2, y2[q]) - max(py1, y1[q])
                inter_w = min(px2, x2[q]) - max(px1, x1[q])
                inter = (inter_h if inter_h > 0.0 else 0.0) * (inter_w if inter_w > 0.0 else 0.0)
                iou = inter / ((area + areas[q]) - inter)
                if gaussian:
                    row[q] = -(iou * iou) * inverse if by_inverse else -(iou * iou) / sigma
                else:
                    row[q] = iou
    return offsets, out


@njit(cache=True, nogil=True, fastmath={"nnan", "nsz"})  # finite scores: the max reduction vectorises
def _decay_row(sc, decay, row, linear, soft_iou_thr, scores_float32):
    """Multiply the scores ``sc`` of the boxes left (those not -inf) by their decay ``decay[row:row + sc.size]``
    (with ``linear``, the matrix holds IoUs: see ``_matrix_soft_pass``). Returns the highest score left."""
    best = -np.inf
    for j in range(sc.size):
        d = decay[row + j]
        if linear:
            d = 1.0 - d if d > soft_iou_thr else 1.0
        s = sc[j]
        v = _f32(d * s, scores_float32)
        v = s if s == -np.inf else v  # a decay of 0 would make a left-out box NaN
        sc[j] = v
        best = max(best, v)
    return best


@njit(cache=True, nogil=True)
def _first_position(sc, best, position):
    """The lowest position of the boxes scoring ``best``."""
    first = sc.size
    for j in range(sc.size):
        first = min(first, position[j] if sc[j] == best else sc.size)
    return first


@njit(cache=True, nogil=True)
def _matrix_soft_pass(scores, starts, offsets, decay, linear, soft_iou_thr, thresh, scores_float32):
    """``_soft_pass`` given every pair's decay in per-group matrices (``_decay_matrices``' layout; with ``linear``,
    the matrices hold IoUs, and the decay is ``1 - iou`` where iou > ``soft_iou_thr``, else 1). The scores stay in
    box order, so that each step reads its box's matrix row in order: a selected box's score becomes -inf, and the
    positions of ensemble-boxes' swaps (``position``, per box; ``box_at``, per position) break ties. Returns the
    kept positions and their decayed scores, in selection order."""
    kept_rows = np.empty(scores.size, np.int64)
    kept_scores = np.empty(scores.size)
    n_kept = 0
    most = 0
    for g in range(starts.size - 1):
        most = max(most, starts[g + 1] - starts[g])
    group_scores, group_position, group_box_at = np.empty(most), np.empty(most, np.int64), np.empty(most, np.int64)
    for g in range(starts.size - 1):
        lo, n = starts[g], starts[g + 1] - starts[g]
        sc, position, box_at = group_scores[:n], group_position[:n], group_box_at[:n]
        best = -np.inf
        for j in range(n):
            sc[j], position[j], box_at[j] = scores[lo + j], j, j
            best = max(best, sc[j])
        for i in range(n):
            if best <= thresh and thresh >= 0:
                break  # as in _soft_pass
            top = box_at[_first_position(sc, best, position)]
            if position[top] != i:  # the box at position i takes the selected box's
                moved = box_at[i]
                position[moved], box_at[position[top]] = position[top], moved
                position[top], box_at[i] = i, top
            if sc[top] > thresh:
                kept_rows[n_kept] = lo + top
                kept_scores[n_kept] = sc[top]  # not best: the max may give -0.0 for 0.0
                n_kept += 1
            sc[top] = -np.inf
            best = _decay_row(sc, decay, offsets[g] + top * n, linear, soft_iou_thr, scores_float32)
    return kept_rows[:n_kept], kept_scores[:n_kept]


@njit(cache=True, nogil=True)
def _gather_images(boxes, scores, labels, bounds, most, take, skip_box_thr, weights, weight_sum, hard, iou_thr,
                   in_float32):
    """Each image's boxes, one image at a time (its boxes stay in cache), grouped by (image, label).

    boxes (N, 4), scores (N,), labels (N,) ints: rows of M models, those of model m and image i at
    ``bounds[m, i]:bounds[m, i + 1]``, at most ``most`` per image; take (L,) bool: the labels read (rows of others
    are left out); rows whose raw score is below ``skip_box_thr`` are dropped, the others cleaned (``_clean_box``;
    zero-area boxes dropped) and scored ``score * weights[m] / weight_sum`` (float64). Each (image, label) group
    holds its rows in input order (model by model) or, with ``hard``, those greedy NMS at ``iou_thr`` keeps, in
    selection order.

    Returns the groups' boxes (K, 4) float64, scores (K,), image (K,) and label (K,), the groups' starts (P + 1,),
    and the first row read whose box holds NaN or whose score is not finite (-1: none)."""
    n_models, n_images = bounds.shape[0], bounds.shape[1] - 1
    n = 0
    for m in range(n_models):
        n += bounds[m, -1] - bounds[m, 0]
    out_boxes = np.empty((n, 4))
    out_scores = np.empty(n)
    starts = np.zeros(n + 1, np.int64)
    out_image = np.empty(n, np.int64)
    out_label = np.empty(n, np.int64)
    # one image's boxes, as read (group: number by first appearance), then by group
    box = np.empty((most, 4))
    score = np.empty(most)
    group = np.empty(most, np.int64)
    grouped_boxes = np.empty((most, 4))
    grouped_scores = np.empty(most)
    areas = np.empty(most)
    fill = np.empty(most + 1, np.int64)
    label_of_group = np.empty(most, np.int64)
    group_of_label = np.full(take.size, -1, np.int64)
    alive = np.empty(most, np.int64)
    keep = np.empty(most, np.int64)
    n_out, n_groups_out = 0, 0
    for i in range(n_images):
        k, n_groups = 0, 0
        for m in range(n_models):
            for r in range(bounds[m, i], bounds[m, i + 1]):
                label = labels[r]
                if not take[label]:
                    continue
                x1, y1, x2, y2 = (np.float64(boxes[r, 0]), np.float64(boxes[r, 1]), np.float64(boxes[r, 2]),
                                  np.float64(boxes[r, 3]))
                if np.isnan(x1) or np.isnan(y1) or np.isnan(x2) or np.isnan(y2) or not np.isfinite(scores[r]):
                    return out_boxes[:0], out_scores[:0], out_image[:0], out_label[:0], starts[:1], r
                if scores[r] < skip_box_thr:
                    continue
                x1, y1, x2, y2, nonzero = _clean_box(x1, y1, x2, y2, in_float32)
                if not nonzero:
                    continue
                box[k, 0], box[k, 1], box[k, 2], box[k, 3] = x1, y1, x2, y2
                score[k] = np.float64(scores[r]) * weights[m] / weight_sum
                if group_of_label[label] < 0:
                    group_of_label[label] = n_groups
                    label_of_group[n_groups] = label
                    n_groups += 1
                group[k] = group_of_label[label]
                k += 1
        # counting sort by group, stable: each group's rows in input order
        fill[:n_groups + 1] = 0
        for j in range(k):
            fill[group[j] + 1] += 1
        for g in range(n_groups):
            fill[g + 1] += fill[g]
            group_of_label[label_of_group[g]] = -1
        for j in range(k):
            at = fill[group[j]]
            fill[group[j]] += 1
            for c in range(4):
                grouped_boxes[at, c] = box[j, c]
            grouped_scores[at] = score[j]
            areas[at] = _area(box[j, 0], box[j, 1], box[j, 2], box[j, 3], in_float32)
        lo = 0
        for g in range(n_groups):
            hi = fill[g]  # the end of group g, after the fill
            size = hi - lo
            selected = hard and size > 1
            if selected:
                size = _suppress(grouped_boxes[lo:hi], areas[lo:hi], grouped_scores[lo:hi], alive[:size], keep,
                                 iou_thr, in_float32)
            for q in range(size):
                j = lo + (keep[q] if selected else q)
                for c in range(4):
                    out_boxes[n_out, c] = grouped_boxes[j, c]
                out_scores[n_out] = grouped_scores[j]
                out_image[n_out] = i
                out_label[n_out] = label_of_group[g]
                n_out += 1
            n_groups_out += 1
            starts[n_groups_out] = n_out
            lo = hi
    return out_boxes[:n_out], out_scores[:n_out], out_image[:n_out], out_label[:n_out], starts[:n_groups_out + 1], -1


def _concat(boxes_list, scores_list, labels_list, weights, skip_box_thr):
    """Check, filter by raw score, weight and concatenate the models; then clean the boxes."""
    per_model = model_arrays(boxes_list, scores_list, labels_list)
    if weights is not None:
        weights = model_weights(weights, len(per_model))
    boxes, scores, labels = [], [], []
    for m, (b, s, lab) in enumerate(per_model):
        keep = slice(None) if skip_box_thr is None else ~(s < skip_box_thr)
        if weights is not None:
            s = s * weights[m] / weights.sum()
        boxes.append(b[keep])
        scores.append(s[keep])
        labels.append(lab[keep])
    if not per_model:
        return np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64)
    boxes = np.concatenate(boxes)
    cleaned, rows = _clean(boxes.astype(np.float64), boxes.dtype == np.float32)
    return cleaned[rows].astype(boxes.dtype), np.concatenate(scores)[rows], np.concatenate(labels)[rows]


def _compared(value, dtype: np.dtype) -> float:
    """``value`` as numpy compares it with an array of ``dtype`` (a Python float in that dtype, under numpy 2)."""
    return float(np.asarray(value, dtype=np.result_type(dtype, value)))


def _pair_soft(boxes, scores, starts, soft_method, soft_iou_thr, sigma, thresh, scores_float32):
    """The Soft-NMS pass over the intersecting pairs of each group (``_overlaps``, ``_soft_pass``)."""
    rows = np.arange(len(scores))
    pair_starts, second, iou = _overlaps(boxes, rows, starts)
    # ensemble-boxes' decay expressions, vectorised as there so that np.exp gives the same bits
    if soft_method == _GAUSSIAN:
        decay = np.exp(-(iou * iou) / float(sigma))
    else:  # 1 - iou where iou > soft_iou_thr, else 1: a decay of 1 changes no score, those pairs are left out
        above = iou > float(soft_iou_thr)
        first = np.repeat(np.arange(len(scores)), np.diff(pair_starts))[above]
        pair_starts = np.concatenate([[0], np.cumsum(np.bincount(first, minlength=len(scores)))])
        second, decay = second[above], 1.0 - iou[above]
    return _soft_pass(scores, rows, starts, pair_starts, second, decay, thresh, scores_float32)


def _matrix_soft(boxes, scores, starts, soft_method, soft_iou_thr, sigma, thresh, scores_float32):
    """The Soft-NMS pass over each group's full decay matrix (``_decay_matrices``, ``_matrix_soft_pass``)."""
    gaussian = soft_method == _GAUSSIAN
    exact_inverse = math.frexp(sigma)[0] == 0.5 and math.isfinite(1.0 / sigma)  # a power of two, 1 / sigma finite
    offsets, decay = _decay_matrices(boxes, starts, gaussian, float(sigma), exact_inverse)
    if gaussian:  # ensemble-boxes' np.exp, vectorised as there, so that it gives the same bits
        np.exp(decay, out=decay)
    return _matrix_soft_pass(scores, starts, offsets, decay, not gaussian, float(soft_iou_thr), thresh,
                             scores_float32)


def _soft(boxes, scores, starts, soft_method, soft_iou_thr, sigma, thresh, scores_float32):
    """The Soft-NMS pass over groups of rows: boxes (N, 4) and scores (N,) float64, group g at
    ``starts[g]:starts[g + 1]``; thresh: as compared (``_compared``). Returns the kept rows (K,) and their decayed
    scores (K,) float64. Groups of up to ``_MATRIX_GROUP_ROWS`` boxes go through their full decay matrices, about
    ``_MATRIX_ENTRIES`` entries at a time (they stay in cache); a larger group goes alone through its intersecting
    pairs, which take less memory."""
    sizes = np.diff(starts)
    by_matrix = sizes <= _MATRIX_GROUP_ROWS
    cost = np.where(by_matrix, sizes * sizes, _MATRIX_ENTRIES)
    chunk = (np.cumsum(cost) - cost) // _MATRIX_ENTRIES
    cuts = np.unique(np.r_[0, np.flatnonzero((np.diff(chunk) != 0) | (np.diff(by_matrix) != 0)) + 1, len(sizes)])
    kept, decayed = [np.zeros(0, np.int64)], [np.zeros(0)]
    for a, z in zip(cuts[:-1], cuts[1:]):
        lo, hi = starts[a], starts[z]
        run = _matrix_soft if by_matrix[a] else _pair_soft
        rows, chunk_scores = run(boxes[lo:hi], scores[lo:hi], starts[a:z + 1] - lo, soft_method, soft_iou_thr,
                                 sigma, thresh, scores_float32)
        kept.append(rows + lo)
        decayed.append(chunk_scores)
    return np.concatenate(kept), np.concatenate(decayed)


def _run(boxes_list, scores_list, labels_list, weights, skip_box_thr, hard_iou_thr=None, soft_method=0,
         soft_iou_thr=0.5, sigma=0.5, thresh=0.001):
    """Suppression with a hard pass at ``hard_iou_thr`` (None: none) and a Soft-NMS pass (``soft_method`` 0:
    none), as ``_passes`` gives them."""
    boxes, scores, labels = _concat(boxes_list, scores_list, labels_list, weights, skip_box_thr)
    # labels in ascending order (np.unique's, as ensemble-boxes), each label's rows in input order
    _, group = np.unique(labels, return_inverse=True)
    group = group.ravel()
    rows = np.argsort(group, kind="stable")
    starts = np.concatenate([[0], np.cumsum(np.bincount(group))]).astype(np.int64)
    boxes64, scores64 = boxes.astype(np.float64), scores.astype(np.float64)
    if hard_iou_thr is not None:
        rows, starts = _hard_pass(boxes64, scores64, rows, starts, float(hard_iou_thr), boxes.dtype == np.float32)
    if not soft_method:
        return boxes[rows], scores[rows], labels[rows]
    kept, kept_scores = _soft(boxes64[rows], scores64[rows], starts, soft_method, soft_iou_thr, sigma,
                              _compared(thresh, scores.dtype), scores.dtype == np.float32)
    return boxes[rows[kept]], kept_scores.astype(scores.dtype), labels[rows[kept]]


def _method_number(method: str | int, allowed: tuple[str, ...]) -> int:
    """The method's number (1 linear, 2 gaussian, 3 hard), from its name or number."""
    names = {SOFT_METHODS[name]: name for name in allowed}
    number = SOFT_METHODS.get(method) if isinstance(method, str) else method
    if number not in names:
        raise ValueError(f"method must be one of {list(allowed)} (or {sorted(names)}), got {method!r}")
    return int(number)


def _soft_passes(method: int, soft_iou_thr: float, sigma: float, thresh: float) -> dict:
    """``_run``'s Soft-NMS settings."""
    if method == _GAUSSIAN and not sigma > 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    return {"soft_method": method, "soft_iou_thr": soft_iou_thr, "sigma": sigma, "thresh": thresh}


def _method_passes(method: int | str, iou_thr: float, sigma: float, thresh: float) -> dict:
    """``_run``'s settings for ``nms_method``'s parameters."""
    method = _method_number(method, ("linear", "gaussian", "hard"))
    if method == _HARD:
        return {"hard_iou_thr": iou_thr}
    return _soft_passes(method, iou_thr, sigma, thresh)


def _adj_passes(iou_thr: float, soft_iou_thr: float, sigma: float, thresh: float, method: int | str) -> dict:
    """``_run``'s settings for ``adj_nms``'s parameters."""
    return {"hard_iou_thr": iou_thr,
            **_soft_passes(_method_number(method, ("linear", "gaussian")), soft_iou_thr, sigma, thresh)}


def nms_method(boxes: Sequence, scores: Sequence, labels: Sequence, method: int | str = 3, iou_thr: float = 0.5,
               sigma: float = 0.5, thresh: float = 0.001, weights: Sequence[float] | np.ndarray | None = None, *,
               skip_box_thr: float | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-label suppression over all models' boxes, as ``ensemble_boxes.nms_method``.

    method: 3 ('hard') greedy NMS, dropping a box whose IoU with a kept box of higher score is > ``iou_thr``
    (``sigma`` and ``thresh`` unused); 2 ('gaussian') Soft-NMS multiplying the scores of the boxes after the
    selected one by ``exp(-iou**2 / sigma)``; 1 ('linear') by ``1 - iou`` where iou > ``iou_thr``. Soft-NMS keeps
    the boxes whose decayed score is > ``thresh`` and returns those scores.
    Returns the kept ``boxes`` (K, 4), ``scores`` (K,), ``labels`` (K,)."""
    return _run(boxes, scores, labels, weights, skip_box_thr, **_method_passes(method, iou_thr, sigma, thresh))


def nms(boxes: Sequence, scores: Sequence, labels: Sequence, iou_thr: float = 0.5,
        weights: Sequence[float] | np.ndarray | None = None, *,
        skip_box_thr: float | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-label greedy NMS over all models' boxes (as ``ensemble_boxes.nms``): ``nms_method`` with method 3."""
    return nms_method(boxes, scores, labels, method=_HARD, iou_thr=iou_thr, weights=weights,
                      skip_box_thr=skip_box_thr)


def soft_nms(boxes: Sequence, scores: Sequence, labels: Sequence, method: int | str = 2, iou_thr: float = 0.5,
             sigma: float = 0.5, thresh: float = 0.001, weights: Sequence[float] | np.ndarray | None = None, *,
             skip_box_thr: float | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-label Soft-NMS over all models' boxes (as ``ensemble_boxes.soft_nms``, returning decayed scores):
    ``nms_method`` with method 2 ('gaussian') by default."""
    return nms_method(boxes, scores, labels, method=method, iou_thr=iou_thr, sigma=sigma, thresh=thresh,
                      weights=weights, skip_box_thr=skip_box_thr)


def adj_nms(boxes: Sequence, scores: Sequence, labels: Sequence, iou_thr: float = 0.5, soft_iou_thr: float = 0.3,
            sigma: float = 0.5, thresh: float = 0.001, method: int | str = "linear",
            weights: Sequence[float] | np.ndarray | None = None, *,
            skip_box_thr: float | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """adj-NMS, the suppression of the Open Images 2019 winners: per label, hard NMS at ``iou_thr`` removes near
    duplicates, then Soft-NMS re-scores the survivors that still overlap.

    iou_thr: IoU above which the hard pass drops a lower-scored box; soft_iou_thr, sigma, method, thresh: the
    Soft-NMS pass (see ``nms_method``; 'linear' decays by ``1 - iou`` above ``soft_iou_thr``, 'gaussian' by
    ``exp(-iou**2 / sigma)``). The defaults are starting points, to be tuned on validation.
    Returns ``boxes``, ``scores`` (decayed), ``labels``."""
    return _run(boxes, scores, labels, weights, skip_box_thr,
                **_adj_passes(iou_thr, soft_iou_thr, sigma, thresh, method))


_FUNCTIONS = {"nms": nms, "soft_nms": soft_nms, "nms_method": nms_method, "adj_nms": adj_nms}


def _passes(function: str, params: dict) -> dict:
    """``_run``'s settings, skip_box_thr included, for the function named ``function`` called with ``params``
    (its keyword arguments, weights excepted)."""
    if function not in _FUNCTIONS:
        raise ValueError(f"function must be one of {sorted(_FUNCTIONS)}, got {function!r}")
    if "weights" in params:
        raise ValueError("weights are an argument of their own, not a parameter")
    try:
        bound = inspect.signature(_FUNCTIONS[function]).bind(None, None, None, **params)
    except TypeError as e:
        raise ValueError(f"bad parameters for {function}: {e}") from None
    bound.apply_defaults()
    p = bound.arguments
    if function == "adj_nms":
        passes = _adj_passes(p["iou_thr"], p["soft_iou_thr"], p["sigma"], p["thresh"], p["method"])
    elif function == "nms":
        passes = {"hard_iou_thr": p["iou_thr"]}
    else:
        passes = _method_passes(p["method"], p["iou_thr"], p["sigma"], p["thresh"])
    return {"skip_box_thr": p["skip_box_thr"], **passes}


def suppress_images(boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, bounds: np.ndarray, n_labels: int,
                    weights: Sequence[float], function: str, *, take: np.ndarray | None = None,
                    **params) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``function`` ('nms', 'soft_nms', 'nms_method' or 'adj_nms') with ``params`` on each (image, label) of many
    images, in one call: the ensemble runner's entry.

    boxes (N, 4), scores (N,) (floats) and labels (N,) (ints in [0, n_labels)) hold rows of M models, those of
    model m and image i at ``bounds[m, i]:bounds[m, i + 1]`` ((M, I + 1) ints; other rows are not read); weights:
    (M,), taken as float64; take: (n_labels,) bool, the labels to fuse (None: all). Returns the kept boxes (K, 4)
    (in the boxes' dtype), scores (K,) float64, and the image (K,) and label (K,) int64 of each: for every (image,
    label), the boxes and scores that ``function`` returns for those rows alone with these weights, in the same
    order (pairs in no particular order). ValueError where it raises."""
    passes = _passes(function, params)
    n_models = bounds.shape[0]
    weights = model_weights(weights, n_models).astype(np.float64)
    bounds = np.ascontiguousarray(bounds, np.int64)
    take = np.ones(n_labels, bool) if take is None else np.asarray(take, bool)
    skip_box_thr = -np.inf if passes["skip_box_thr"] is None else _compared(passes["skip_box_thr"], scores.dtype)
    hard = passes.get("hard_iou_thr") is not None
    most = int(np.diff(bounds).sum(axis=0).max(initial=0))  # rows of the largest image
    kept_boxes, kept_scores, image, label, starts, bad = _gather_images(
        boxes, scores, labels, bounds, most, take, skip_box_thr, weights, float(weights.sum()), hard,
        float(passes["hard_iou_thr"]) if hard else 0.0, boxes.dtype == np.float32)
    if bad >= 0:
        model = int(np.flatnonzero(((bounds[:, :-1] <= bad) & (bad < bounds[:, 1:])).any(axis=1))[0])
        problem = "boxes contain NaN" if np.isnan(boxes[bad]).any() else f"scores must be finite, got {scores[bad]}"
        raise ValueError(f"model {model}: {problem}")
    if passes.get("soft_method"):
        kept, kept_scores = _soft(kept_boxes, kept_scores, starts, passes["soft_method"], passes["soft_iou_thr"],
                                  passes["sigma"], float(passes["thresh"]), False)
        kept_boxes, image, label = kept_boxes[kept], image[kept], label[kept]
    return kept_boxes.astype(boxes.dtype), kept_scores, image, label
