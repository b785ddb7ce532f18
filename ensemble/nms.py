"""Per-class NMS, Soft-NMS and adj-NMS over the boxes of several models, in the calling convention of
``ensemble.wbf.weighted_boxes_fusion``: lists per model, ``weights``, ``iou_thr``, ``skip_box_thr``.

Shapes: M models, N boxes over all models, K kept boxes. Boxes are normalised ``x1, y1, x2, y2``.

Like ``ensemble_boxes.nms_method`` (1.0.9), every function: drops boxes whose raw score is < ``skip_box_thr``
(an addition: ensemble-boxes has no such filter); with ``weights``, replaces each model's scores by
``score * weight / sum(weights)``; concatenates the models; clips coordinates to [0, 1], orders each box's corners
and drops zero-area boxes; then suppresses each label on its own, labels in ascending order. The result holds the
kept boxes label by label, each label's boxes in the order they were selected (descending score), in the dtypes of
the inputs (scores become float64 when weighted).

Differences from ensemble-boxes 1.0.9:
- ``soft_nms`` returns the *decayed* scores of the kept boxes, as Soft-NMS is defined (Bodla et al., 2017);
  ensemble-boxes keeps the same boxes in the same order but returns their original scores;
- bad input raises ValueError (see ``ensemble/_inputs.py``), and no boxes at all give empty arrays instead of an
  error; the caller's ``scores_list`` is never modified (ensemble-boxes rescales it in place when weighted).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numba import njit

from ._inputs import model_arrays, model_weights

SOFT_METHODS = {"linear": 1, "gaussian": 2, "hard": 3}


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
def _soft_nms(boxes, scores, method, iou_thr, sigma, thresh, scores_float32):
    """Soft-NMS of one label's boxes (method 1 linear, 2 gaussian): positions kept, in selection order, and their
    decayed scores (rounded to float32 after every decay when ``scores_float32``, as ensemble-boxes does).

    boxes: (n, 4) float64, scores: (n,) float64; a box is kept when its decayed score is > ``thresh``. Each step
    takes the highest remaining score (the first one on ties) and decays the boxes after it by their IoU with it."""
    n = boxes.shape[0]
    dets = boxes.copy()
    sc = scores.copy()
    index = np.arange(n)
    areas = (dets[:, 2] - dets[:, 0]) * (dets[:, 3] - dets[:, 1])
    for i in range(n):
        top = i
        for k in range(i + 1, n):
            if sc[k] > sc[top]:
                top = k
        if top != i:
            for c in range(4):
                dets[i, c], dets[top, c] = dets[top, c], dets[i, c]
            sc[i], sc[top] = sc[top], sc[i]
            areas[i], areas[top] = areas[top], areas[i]
            index[i], index[top] = index[top], index[i]
        for k in range(i + 1, n):
            inter_w = max(0.0, min(dets[i, 2], dets[k, 2]) - max(dets[i, 0], dets[k, 0]))
            inter_h = max(0.0, min(dets[i, 3], dets[k, 3]) - max(dets[i, 1], dets[k, 1]))
            inter = inter_h * inter_w
            iou = inter / ((areas[i] + areas[k]) - inter)
            if method == 1:
                decay = 1.0 - iou if iou > iou_thr else 1.0
            else:
                decay = np.exp(-(iou * iou) / sigma)
            sc[k] = _f32(decay * sc[k], scores_float32)
    kept = np.empty(n, np.int64)
    n_kept = 0
    for i in range(n):
        if sc[i] > thresh:
            kept[n_kept] = i
            n_kept += 1
    return index[kept[:n_kept]], sc[kept[:n_kept]]


@njit(cache=True)
def _suppress(boxes, scores, rows, starts, boxes_float32, scores_float32, hard, hard_iou_thr, soft_method,
              soft_iou_thr, sigma, thresh):
    """Suppression label by label: hard NMS at ``hard_iou_thr`` if ``hard``, then Soft-NMS if ``soft_method`` > 0.

    boxes: (N, 4), scores: (N,) float64; the rows of label g are ``rows[starts[g]:starts[g + 1]]``. Returns the kept
    rows (K,) and their scores (K,)."""
    kept_rows = np.empty(rows.size, np.int64)
    kept_scores = np.empty(rows.size)
    n_kept = 0
    for g in range(starts.size - 1):
        members = rows[starts[g]:starts[g + 1]]
        if hard:
            members = members[_hard_nms(boxes[members], scores[members], hard_iou_thr, boxes_float32)]
        if soft_method > 0:
            keep, decayed = _soft_nms(boxes[members], scores[members], soft_method, soft_iou_thr, sigma, thresh,
                                      scores_float32)
            members = members[keep]
        else:
            decayed = scores[members]
        for q in range(members.size):
            kept_rows[n_kept] = members[q]
            kept_scores[n_kept] = decayed[q]
            n_kept += 1
    return kept_rows[:n_kept], kept_scores[:n_kept]


def _concat(boxes_list, scores_list, labels_list, weights, skip_box_thr):
    """Check, filter by raw score, weight and concatenate the models; then clean the boxes."""
    per_model = model_arrays(boxes_list, scores_list, labels_list)
    if weights is not None:
        weights = model_weights(weights, len(per_model))
    boxes, scores, labels = [], [], []
    for m, (b, s, lab) in enumerate(per_model):
        keep = ~(s < skip_box_thr)
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
    if soft_method and not sigma > 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    boxes, scores, labels = _concat(boxes_list, scores_list, labels_list, weights, skip_box_thr)
    # `scores > thresh` compares in the scores' dtype under numpy 2 when thresh is a Python float
    thresh = float(np.asarray(thresh, dtype=np.result_type(scores.dtype, thresh)))
    # labels in ascending order (np.unique's, as ensemble-boxes), each label's rows in input order
    _, group = np.unique(labels, return_inverse=True)
    group = group.ravel()
    rows = np.argsort(group, kind="stable")
    starts = np.concatenate([[0], np.cumsum(np.bincount(group))])
    kept, kept_scores = _suppress(boxes.astype(np.float64), scores.astype(np.float64), rows, starts,
                                  boxes.dtype == np.float32, scores.dtype == np.float32, hard_iou_thr is not None,
                                  float(hard_iou_thr or 0.0), soft_method, float(soft_iou_thr), float(sigma), thresh)
    return boxes[kept], kept_scores.astype(scores.dtype), labels[kept]


def _soft_method(method: str | int, allowed: tuple[str, ...]) -> int:
    """The method's number (1 linear, 2 gaussian, 3 hard), from its name or number."""
    names = {SOFT_METHODS[name]: name for name in allowed}
    number = SOFT_METHODS.get(method) if isinstance(method, str) else method
    if number not in names:
        raise ValueError(f"method must be one of {list(allowed)} (or {sorted(names)}), got {method!r}")
    return int(number)


def nms(boxes_list: Sequence, scores_list: Sequence, labels_list: Sequence,
        weights: Sequence[float] | np.ndarray | None = None, iou_thr: float = 0.5,
        skip_box_thr: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-label greedy NMS over all models' boxes (as ``ensemble_boxes.nms``): a box is dropped when its IoU with
    a kept box of higher score is > ``iou_thr``. Returns the kept ``boxes`` (K, 4), ``scores`` (K,), ``labels``
    (K,)."""
    return _run(boxes_list, scores_list, labels_list, weights, skip_box_thr, hard_iou_thr=float(iou_thr))


def soft_nms(boxes_list: Sequence, scores_list: Sequence, labels_list: Sequence,
             weights: Sequence[float] | np.ndarray | None = None, iou_thr: float = 0.5, skip_box_thr: float = 0.0,
             sigma: float = 0.5, thresh: float = 0.001,
             method: str | int = "gaussian") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-label Soft-NMS over all models' boxes (as ``ensemble_boxes.soft_nms``, returning decayed scores).

    method: 'gaussian' (2) multiplies the scores of the boxes after the selected one by ``exp(-iou**2 / sigma)``;
    'linear' (1) by ``1 - iou`` where iou > ``iou_thr``; 'hard' (3) by 0 where iou > ``iou_thr``.
    thresh: boxes whose decayed score is not above it are dropped ('hard' ignores it, as ensemble-boxes does).
    Returns ``boxes``, ``scores``, ``labels``."""
    method = _soft_method(method, ("linear", "gaussian", "hard"))
    if method == SOFT_METHODS["hard"]:
        return nms(boxes_list, scores_list, labels_list, weights, iou_thr, skip_box_thr)
    return _run(boxes_list, scores_list, labels_list, weights, skip_box_thr, soft_method=method,
                soft_iou_thr=iou_thr, sigma=sigma, thresh=thresh)


def adj_nms(boxes_list: Sequence, scores_list: Sequence, labels_list: Sequence,
            weights: Sequence[float] | np.ndarray | None = None, iou_thr: float = 0.5, skip_box_thr: float = 0.0,
            soft_iou_thr: float = 0.3, sigma: float = 0.5, thresh: float = 0.001,
            method: str | int = "linear") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """adj-NMS, the suppression of the Open Images 2019 winners: per label, hard NMS at ``iou_thr`` removes near
    duplicates, then Soft-NMS re-scores the survivors that still overlap.

    iou_thr: IoU above which the hard pass drops a lower-scored box; soft_iou_thr, sigma, method, thresh: the
    Soft-NMS pass (see ``soft_nms``; 'linear' decays by ``1 - iou`` above ``soft_iou_thr``, 'gaussian' by
    ``exp(-iou**2 / sigma)``). The defaults are starting points, to be tuned on validation.
    Returns ``boxes``, ``scores`` (decayed), ``labels``."""
    return _run(boxes_list, scores_list, labels_list, weights, skip_box_thr, hard_iou_thr=float(iou_thr),
                soft_method=_soft_method(method, ("linear", "gaussian")), soft_iou_thr=soft_iou_thr, sigma=sigma,
                thresh=thresh)
