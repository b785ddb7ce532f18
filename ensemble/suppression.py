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

Differences from ensemble-boxes 1.0.9:
- Soft-NMS (methods 1 and 2) returns the *decayed* scores of the kept boxes, as Soft-NMS is defined (Bodla et
  al., 2017); ensemble-boxes keeps the same boxes in the same order but returns their original scores;
- bad input raises ValueError (see ``ensemble/_inputs.py``), as do a method other than 1, 2, 3 and a gaussian
  ``sigma`` <= 0; no boxes at all give empty arrays instead of an error; the caller's ``scores`` are never modified
  (ensemble-boxes rescales them in place when weighted); nothing is printed about clipped or zero-area boxes.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numba import njit

from ._inputs import model_arrays, model_weights

SOFT_METHODS = {"linear": 1, "gaussian": 2, "hard": 3}
_GAUSSIAN, _HARD = SOFT_METHODS["gaussian"], SOFT_METHODS["hard"]


@njit(cache=True)
def _f32(x, in_float32):
    """``x`` rounded to float32 when emulating float32 arithmetic (one float64 operation on float32 values,
    rounded, is exactly the float32 operation)."""
    return np.float64(np.float32(x)) if in_float32 else x


@njit(cache=True)
def _clean(boxes, in_float32):
    """Clip to [0, 1] and order the corners of each box; returns the cleaned boxes and the rows of those whose
    area (computed in float32 for float32 input, as ensemble-boxes does) is not 0."""
    out = boxes.copy()
    rows = np.empty(boxes.shape[0], np.int64)
    n = 0
    for i in range(boxes.shape[0]):
        for k in range(4):
            out[i, k] = min(max(out[i, k], 0.0), 1.0)
        out[i, 0], out[i, 2] = min(out[i, 0], out[i, 2]), max(out[i, 0], out[i, 2])
        out[i, 1], out[i, 3] = min(out[i, 1], out[i, 3]), max(out[i, 1], out[i, 3])
        width = _f32(out[i, 2] - out[i, 0], in_float32)
        height = _f32(out[i, 3] - out[i, 1], in_float32)
        if _f32(width * height, in_float32) != 0:
            rows[n] = i
            n += 1
    return out, rows[:n]


@njit(cache=True)
def _hard_nms(boxes, scores, iou_thr, in_float32):
    """Greedy NMS of one label's boxes: positions kept, in selection order (descending score).

    boxes: (n, 4) float64 (float32 values when ``in_float32``), scores: (n,) float64. The IoU follows the operand
    types of ensemble-boxes' numba kernel: coordinates and areas in the boxes' dtype, clipped extents and the ratio
    in float64. Boxes with equal scores are visited in the order of numba's ``argsort``, as there."""
    n = boxes.shape[0]
    areas = np.empty(n)
    for i in range(n):
        areas[i] = _f32(_f32(boxes[i, 2] - boxes[i, 0], in_float32) * _f32(boxes[i, 3] - boxes[i, 1], in_float32),
                        in_float32)
    alive = np.argsort(scores)[::-1].copy()
    keep = np.empty(n, np.int64)
    n_keep = 0
    n_alive = n
    while n_alive > 0:
        i = alive[0]
        keep[n_keep] = i
        n_keep += 1
        n_next = 0
        for q in range(1, n_alive):
            k = alive[q]
            inter_w = max(0.0, _f32(min(boxes[i, 2], boxes[k, 2]) - max(boxes[i, 0], boxes[k, 0]), in_float32))
            inter_h = max(0.0, _f32(min(boxes[i, 3], boxes[k, 3]) - max(boxes[i, 1], boxes[k, 1]), in_float32))
            inter = inter_w * inter_h
            if inter / (_f32(areas[i] + areas[k], in_float32) - inter) <= iou_thr:
                alive[n_next] = k
                n_next += 1
        n_alive = n_next
    return keep[:n_keep]


@njit(cache=True)
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


@njit(cache=True)
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


@njit(cache=True)
def _soft_pass(scores, rows, starts, pair_starts, second, decay, thresh, scores_float32):
    """Soft-NMS label by label, given the decay of each intersecting pair (``_overlaps``' pairs).

    scores: (N,) float64; each step takes the label's highest remaining score (the first one in the current order
    on ties, as ensemble-boxes swaps boxes into place) and multiplies the scores of the boxes after it by their
    decay, rounded to float32 when ``scores_float32``; a box is kept when its decayed score is > ``thresh``.
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


def _run(boxes_list, scores_list, labels_list, weights, skip_box_thr, hard_iou_thr=None, soft_method=0,
         soft_iou_thr=0.5, sigma=0.5, thresh=0.001):
    """Suppression with a hard pass at ``hard_iou_thr`` (None: none) and a Soft-NMS pass (``soft_method`` 0:
    none)."""
    if soft_method == _GAUSSIAN and not sigma > 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
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
    pair_starts, second, iou = _overlaps(boxes64, rows, starts)
    # ensemble-boxes' decay expressions, vectorised as there so that np.exp gives the same bits
    if soft_method == _GAUSSIAN:
        decay = np.exp(-(iou * iou) / float(sigma))
    else:
        decay = np.where(iou > float(soft_iou_thr), 1.0 - iou, 1.0)
    # `scores > thresh` compares in the scores' dtype under numpy 2 when thresh is a Python float
    thresh = float(np.asarray(thresh, dtype=np.result_type(scores.dtype, thresh)))
    kept, kept_scores = _soft_pass(scores64, rows, starts, pair_starts, second, decay, thresh,
                                   scores.dtype == np.float32)
    return boxes[kept], kept_scores.astype(scores.dtype), labels[kept]


def _method_number(method: str | int, allowed: tuple[str, ...]) -> int:
    """The method's number (1 linear, 2 gaussian, 3 hard), from its name or number."""
    names = {SOFT_METHODS[name]: name for name in allowed}
    number = SOFT_METHODS.get(method) if isinstance(method, str) else method
    if number not in names:
        raise ValueError(f"method must be one of {list(allowed)} (or {sorted(names)}), got {method!r}")
    return int(number)


def nms_method(boxes: Sequence, scores: Sequence, labels: Sequence, method: int | str = 3, iou_thr: float = 0.5,
               sigma: float = 0.5, thresh: float = 0.001, weights: Sequence[float] | np.ndarray | None = None, *,
               skip_box_thr: float | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-label suppression over all models' boxes, as ``ensemble_boxes.nms_method``.

    method: 3 ('hard') greedy NMS, dropping a box whose IoU with a kept box of higher score is > ``iou_thr``
    (``sigma`` and ``thresh`` unused); 2 ('gaussian') Soft-NMS multiplying the scores of the boxes after the
    selected one by ``exp(-iou**2 / sigma)``; 1 ('linear') by ``1 - iou`` where iou > ``iou_thr``. Soft-NMS keeps
    the boxes whose decayed score is > ``thresh`` and returns those scores.
    Returns the kept ``boxes`` (K, 4), ``scores`` (K,), ``labels`` (K,)."""
    method = _method_number(method, ("linear", "gaussian", "hard"))
    if method == _HARD:
        return _run(boxes, scores, labels, weights, skip_box_thr, hard_iou_thr=iou_thr)
    return _run(boxes, scores, labels, weights, skip_box_thr, soft_method=method, soft_iou_thr=iou_thr, sigma=sigma,
                thresh=thresh)


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
    return _run(boxes, scores, labels, weights, skip_box_thr, hard_iou_thr=iou_thr,
                soft_method=_method_number(method, ("linear", "gaussian")), soft_iou_thr=soft_iou_thr, sigma=sigma,
                thresh=thresh)
