"""Weighted boxes fusion (Solovyev et al., 2021), a fast drop-in for ``ensemble_boxes.weighted_boxes_fusion`` 1.0.9,
bit for bit (same boxes, scores, order and warnings), and ``fuse_images``: WBF of many images in one numba kernel.

Design notes (the algorithm, the numerics kept from the reference, warnings, differences): docs/fusion.md.
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from numba import njit

from contracts.arrays import counting_order, sort_segments

from ._inputs import model_arrays, model_weights

CONF_TYPES = ("avg", "max", "box_and_model_avg", "absent_model_aware_avg")
_MAX, _BOX_AND_MODEL_AVG, _ABSENT_MODEL_AWARE_AVG = 1, 2, 3  # positions in CONF_TYPES ('avg' is 0)
_MAX_LABEL = 2 ** 24  # labels travel through float32 fused boxes
# ensemble-boxes' warnings, in the order it checks a box; bit k of a box's problem flags is message k
_BOX_WARNINGS = (
    "X2 < X1 value in box. Swap them.", "Y2 < Y1 value in box. Swap them.",
    "X1 < 0 in box. Set it to 0.", "X1 > 1 in box. Set it to 1. Check that you normalize boxes in [0, 1] range.",
    "X2 < 0 in box. Set it to 0.", "X2 > 1 in box. Set it to 1. Check that you normalize boxes in [0, 1] range.",
    "Y1 < 0 in box. Set it to 0.", "Y1 > 1 in box. Set it to 1. Check that you normalize boxes in [0, 1] range.",
    "Y2 < 0 in box. Set it to 0.", "Y2 > 1 in box. Set it to 1. Check that you normalize boxes in [0, 1] range.")
_ZERO_AREA = len(_BOX_WARNINGS)  # the flag bit of a skipped zero-area box
# a cluster's state while boxes join it (``_walk_group``): fused box (0-3), float32 sums of key * coordinate (4-7)
_KEY_SUM, _KEY_MAX, _WEIGHT_SUM, _CONF_FIELD, _WEIGHT_FIELD, _STATE = 8, 9, 10, 11, 12, 13


@njit(cache=True, nogil=True)
def _round(x, to_float32):
    return np.float64(np.float32(x)) if to_float32 else x


@njit(cache=True, nogil=True)
def _block_sum(a, lo, n, to_float32):
    """numpy's sum of a run of at most 128 values: plain below 8, else 8 running accumulators."""
    if n < 8:
        res = -0.0
        for i in range(n):
            res = _round(res + a[lo + i], to_float32)
        return res
    r = np.empty(8)
    for k in range(8):
        r[k] = a[lo + k]
    i = 8
    while i < n - n % 8:
        for k in range(8):
            r[k] = _round(r[k] + a[lo + i + k], to_float32)
        i += 8
    left = _round(_round(r[0] + r[1], to_float32) + _round(r[2] + r[3], to_float32), to_float32)
    right = _round(_round(r[4] + r[5], to_float32) + _round(r[6] + r[7], to_float32), to_float32)
    res = _round(left + right, to_float32)
    while i < n:
        res = _round(res + a[lo + i], to_float32)
        i += 1
    return res


@njit(cache=True, nogil=True)
def pairwise_sum(a, to_float32):
    """Sum of the 1-D float64 array ``a`` in numpy's order for a contiguous 1-D reduction (``np.add.reduce``), so
    that sums agree to the last bit: runs of up to 128 values summed by ``_block_sum``, longer runs split in halves
    (cut to multiples of 8) and the halves' sums added. ``to_float32`` rounds every partial sum, as numpy does for
    float32 arrays."""
    # numpy recurses on the halves; walk the same tree with an explicit stack (left half first). A task is a run
    # to sum (split 0) or the addition of the two sums on top of the value stack (split 1).
    tasks = np.empty((128, 3), np.int64)
    sums = np.empty(128)
    tasks[0, 0], tasks[0, 1], tasks[0, 2] = 0, a.size, 0
    n_tasks, n_sums = 1, 0
    while n_tasks:
        n_tasks -= 1
        run_lo, run_n, split = tasks[n_tasks, 0], tasks[n_tasks, 1], tasks[n_tasks, 2]
        if split:
            n_sums -= 1
            sums[n_sums - 1] = _round(sums[n_sums - 1] + sums[n_sums], to_float32)
        elif run_n <= 128:
            sums[n_sums] = _block_sum(a, run_lo, run_n, to_float32)
            n_sums += 1
        else:
            half = run_n // 2
            half -= half % 8
            tasks[n_tasks, 0], tasks[n_tasks, 1], tasks[n_tasks, 2] = run_lo, run_n, 1
            tasks[n_tasks + 1, 0], tasks[n_tasks + 1, 1], tasks[n_tasks + 1, 2] = run_lo + half, run_n - half, 0
            tasks[n_tasks + 2, 0], tasks[n_tasks + 2, 1], tasks[n_tasks + 2, 2] = run_lo, half, 0
            n_tasks += 3
    return sums[0]


@njit(cache=True, nogil=True)
def _clip(v):
    """``v`` clipped to [0, 1], and whether it was below 0, above 1 (as ints)."""
    if v < 0:
        return 0.0, 1, 0
    if v > 1:
        return 1.0, 0, 1
    return v, 0, 0


@njit(cache=True, nogil=True)
def _clean_box(x1, y1, x2, y2):
    """One box swapped, clipped to [0, 1] and checked for zero area: the cleaned corners and its problem flags
    (bits as in ``_BOX_WARNINGS`` and ``_ZERO_AREA``; 0: a clean box)."""
    problems = 0
    if x2 < x1:
        x1, x2 = x2, x1
        problems |= 1
    if y2 < y1:
        y1, y2 = y2, y1
        problems |= 2
    # clip one coordinate at a time, in the reference's order (-0.0 is kept, as it does)
    x1, low, high = _clip(x1)
    problems |= low << 2 | high << 3
    x2, low, high = _clip(x2)
    problems |= low << 4 | high << 5
    y1, low, high = _clip(y1)
    problems |= low << 6 | high << 7
    y2, low, high = _clip(y2)
    problems |= low << 8 | high << 9
    if (x2 - x1) * (y2 - y1) == 0.0:
        problems |= 1 << _ZERO_AREA
    return x1, y1, x2, y2, problems


@njit(cache=True, nogil=True)
def _prefilter(boxes, keep):
    """Clean the boxes with ``keep`` set: swap reversed corners, clip to [0, 1], drop zero-area boxes.

    boxes: (N0, 4) float64; keep: (N0,) bool. Returns the cleaned boxes (N, 4), their rows in ``boxes`` (N,) and
    the problem flags of every box (N0,) (0 for a clean box and for one not kept)."""
    out = np.empty((boxes.shape[0], 4))
    rows = np.empty(boxes.shape[0], np.int64)
    problems = np.zeros(boxes.shape[0], np.int64)
    n = 0
    for i in range(boxes.shape[0]):
        if not keep[i]:
            continue
        x1, y1, x2, y2, problems[i] = _clean_box(boxes[i, 0], boxes[i, 1], boxes[i, 2], boxes[i, 3])
        if problems[i] >> _ZERO_AREA & 1:
            continue
        out[n, 0], out[n, 1], out[n, 2], out[n, 3] = x1, y1, x2, y2
        rows[n] = i
        n += 1
    return out[:n], rows[:n], problems


def _box_warnings_ignored() -> bool:
    """Whether the warnings filters ignore every UserWarning of this module, whatever its text and line: then the
    messages need not be built (``warnings.warn`` formats a message before it filters it)."""
    for action, message, category, module, lineno in warnings.filters:
        if not issubclass(UserWarning, category) or (module is not None and not module.match(__name__)):
            continue
        return action == "ignore" and message is None and not lineno  # else the text or line decides: warn
    return warnings.defaultaction == "ignore"


def _warn_box_problems(boxes_list: Sequence, counts: list[int], rows: np.ndarray, flags: np.ndarray) -> None:
    """ensemble-boxes' UserWarnings for the flagged boxes (``rows`` of the models' boxes one after the other, their
    problem ``flags``), in its words and order; the zero-area message shows the box as the caller passed it."""
    if not len(rows) or _box_warnings_ignored():
        return
    starts = np.cumsum([0] + counts)
    for i, problems in zip(rows.tolist(), flags.tolist()):
        for bit, message in enumerate(_BOX_WARNINGS):
            if problems >> bit & 1:
                warnings.warn(message)
        if problems >> _ZERO_AREA & 1:
            m = int(np.searchsorted(starts, i, side="right")) - 1
            warnings.warn(f"Zero area box skipped: {boxes_list[m][i - starts[m]]}.")


@njit(cache=True, nogil=True)
def _label_groups_by_table(labels, lo, span):
    """The label group of each box (N,), groups numbered by first appearance, and the number of groups; for
    labels in ``lo .. lo + span - 1`` (a lookup table)."""
    group = np.empty(labels.size, np.int64)
    group_of_label = np.full(span, -1, np.int64)
    n_groups = 0
    for i in range(labels.size):
        if group_of_label[labels[i] - lo] < 0:
            group_of_label[labels[i] - lo] = n_groups
            n_groups += 1
        group[i] = group_of_label[labels[i] - lo]
    return group, n_groups


def _label_groups(labels: np.ndarray) -> tuple[np.ndarray, int]:
    """The label group of each box, groups numbered by first appearance (the reference's dict order)."""
    lo, hi = int(labels.min()), int(labels.max())
    if hi - lo < 4 * labels.size + 1024:
        return _label_groups_by_table(labels, lo, hi - lo + 1)
    _, first_seen, inverse = np.unique(labels, return_index=True, return_inverse=True)
    rank = np.empty(len(first_seen), np.int64)
    rank[np.argsort(first_seen)] = np.arange(len(first_seen))
    return rank[inverse.ravel()], len(first_seen)


@njit(cache=True, nogil=True)
def _processing_order(group, n_groups, keys):
    """The order in which boxes are clustered: label groups by first appearance, keys descending in each.

    group: (N,) label group of each box (numbered by first appearance); keys: (N,) float64. Returns ``order`` (N,)
    (box indices), ``group_starts`` (G + 1,) and ``tied`` (G,) bool: groups holding equal keys, whose order among
    the ties the caller must settle (here it is unspecified)."""
    order, group_starts = counting_order(group, n_groups, np.arange(group.size))
    descending = -keys
    sort_segments(order, group_starts, descending, np.empty(0))
    tied = np.zeros(n_groups, np.bool_)
    for g in range(n_groups):
        for p in range(group_starts[g] + 1, group_starts[g + 1]):
            if keys[order[p]] == keys[order[p - 1]]:
                tied[g] = True
                break
    return order, group_starts, tied


@njit(cache=True, nogil=True)
def _walk_group(boxes, keys, box_weights, order, lo, hi, first, state, count, assigned, iou_thr, conf_code):
    """Cluster one label group: boxes ``order[lo:hi]`` (keys descending) into clusters numbered from ``first``.

    state: (C, _STATE) float64 per cluster, the columns named at ``_STATE``: fused box, float32 sums of
    key * coordinate, sum and maximum of keys, sum of box weights, and the float32 confidence and weight fields the
    reference keeps; count (C,) boxes per cluster; assigned (N,) each box's cluster. A cluster whose keys sum to 0
    has no fused box (the reference's is NaN): its box is set to NaN, so that no later box joins it. Returns the
    number of clusters after the group."""
    n_clusters = first
    for p in range(lo, hi):
        j = order[p]
        x1, y1, x2, y2 = boxes[j, 0], boxes[j, 1], boxes[j, 2], boxes[j, 3]
        area = (x2 - x1) * (y2 - y1)
        best = -1
        best_iou = -np.inf
        for c in range(first, n_clusters):
            inter_w = min(state[c, 2], x2) - max(state[c, 0], x1)
            inter_h = min(state[c, 3], y2) - max(state[c, 1], y1)
            inter = max(inter_w, 0.0) * max(inter_h, 0.0)
            cluster_area = (state[c, 2] - state[c, 0]) * (state[c, 3] - state[c, 1])
            iou = inter / (cluster_area + area - inter)
            if iou > best_iou:
                best_iou = iou
                best = c
        key = keys[j]
        if best == -1 or best_iou <= iou_thr:
            c = n_clusters
            n_clusters += 1
            for k in range(4):
                state[c, k] = boxes[j, k]
                state[c, 4 + k] = np.float32(0.0 + key * boxes[j, k])
            state[c, _KEY_SUM] = 0.0 + key
            state[c, _KEY_MAX] = key
            state[c, _WEIGHT_SUM] = 0.0 + box_weights[j]
            state[c, _CONF_FIELD] = key
            state[c, _WEIGHT_FIELD] = box_weights[j]
            count[c] = 1
        else:
            c = best
            count[c] += 1
            state[c, _KEY_SUM] += key
            state[c, _KEY_MAX] = max(state[c, _KEY_MAX], key)
            state[c, _WEIGHT_SUM] += box_weights[j]
            if state[c, _KEY_SUM] == 0.0:
                state[c, :4] = np.nan
                assigned[j] = c
                continue
            for k in range(4):
                state[c, 4 + k] = np.float32(state[c, 4 + k] + key * boxes[j, k])
                state[c, k] = np.float64(np.float32(state[c, 4 + k] / state[c, _KEY_SUM]))
            if conf_code == _MAX:
                state[c, _CONF_FIELD] = np.float64(np.float32(state[c, _KEY_MAX]))
            else:
                state[c, _CONF_FIELD] = np.float64(np.float32(state[c, _KEY_SUM] / count[c]))
            state[c, _WEIGHT_FIELD] = np.float64(np.float32(state[c, _WEIGHT_SUM]))
        assigned[j] = c
    return n_clusters


@njit(cache=True, nogil=True)
def _rescale(state, count, present, weights, weights_float32, conf_code, allows_overflow, weight_sum, weight_max,
             conf):
    """The confidence of each cluster (C,) under ``conf_code`` into ``conf`` (NaN where undefined: a
    'box_and_model_avg' cluster of zero-weight boxes only); present (C, M) bool: the models with a box in each
    cluster."""
    n_models = weights.size
    picked = np.empty(n_models)
    for c in range(conf.size):
        size = count[c]
        if conf_code == _BOX_AND_MODEL_AVG:
            if state[c, _WEIGHT_FIELD] == 0.0:
                conf[c] = np.nan
                continue
            n_picked = 0
            for m in range(n_models):
                if present[c, m]:
                    picked[n_picked] = weights[m]
                    n_picked += 1
            exact = weights_float32 and False  # a runtime bool: a literal False would compile one more specialisation
            model_weight_sum = pairwise_sum(picked[:n_picked], exact)
            conf[c] = state[c, _CONF_FIELD] * size / state[c, _WEIGHT_FIELD] * model_weight_sum / weight_sum
        elif conf_code == _ABSENT_MODEL_AWARE_AVG:
            n_picked = 0
            for m in range(n_models):
                if not present[c, m]:
                    picked[n_picked] = weights[m]
                    n_picked += 1
            absent_sum = pairwise_sum(picked[:n_picked], weights_float32)
            conf[c] = state[c, _CONF_FIELD] * size / (state[c, _WEIGHT_FIELD] + absent_sum)
        elif conf_code == _MAX:
            conf[c] = state[c, _CONF_FIELD] / weight_max
        elif not allows_overflow:
            conf[c] = state[c, _CONF_FIELD] * min(n_models, size) / weight_sum
        else:
            conf[c] = state[c, _CONF_FIELD] * size / weight_sum


@njit(cache=True, nogil=True)
def _cluster(boxes, keys, box_weights, models, order, group_starts, weights, weights_float32, conf_code, iou_thr,
             allows_overflow, weight_sum, weight_max):
    """Cluster and fuse each label group, then rescale the confidences.

    boxes: (N, 4) float64, keys / box_weights: (N,) float64 (score * weight, weight), models: (N,) int64;
    order, group_starts: from ``_processing_order``; weights: (M,) float64 model weights (float32 values when
    ``weights_float32``). Returns fused boxes (C, 4), confidences (C,) float64, the group of each cluster (C,) and
    the first group with a cluster whose keys sum to 0 (-1 if none). Undefined clusters have a NaN confidence: those
    whose keys sum to 0 (their box is NaN too) and, under 'box_and_model_avg', those of zero-weight boxes only."""
    n = boxes.shape[0]
    state = np.empty((n, _STATE))
    count = np.empty(n, np.int64)
    cluster_group = np.empty(n, np.int64)
    assigned = np.empty(n, np.int64)
    n_clusters = 0
    for g in range(group_starts.size - 1):
        first = n_clusters
        n_clusters = _walk_group(boxes, keys, box_weights, order, group_starts[g], group_starts[g + 1], first, state,
                                 count, assigned, iou_thr, conf_code)
        cluster_group[first:n_clusters] = g
    present = np.zeros((n_clusters, weights.size), np.bool_)
    for j in range(n):
        present[assigned[j], models[j]] = True
    conf = np.empty(n_clusters)
    _rescale(state, count, present, weights, weights_float32, conf_code, allows_overflow, weight_sum, weight_max, conf)
    zero_group = -1
    for c in range(n_clusters - 1, -1, -1):
        if np.isnan(state[c, 0]):
            conf[c] = np.nan
            zero_group = cluster_group[c]
    return state[:n_clusters, :4].copy(), conf, cluster_group[:n_clusters], zero_group


@njit(cache=True, nogil=True)
def _fuse_images(boxes, scores, skip_box_thr, take, labels, bounds, weights, conf_code, iou_thr, allows_overflow,
                 weight_sum, weight_max):
    """WBF of every (image, label) of many images, one image at a time (its boxes stay in cache).

    boxes (N, 4), scores (N,), labels (N,) ints: rows of M models, those of model m and image i at
    ``bounds[m, i]:bounds[m, i + 1]``; skip_box_thr: in the scores' dtype; take (L,) bool: the labels fused (rows of
    others are left out); weights (M,) float64. Returns the fused boxes (K, 4), confidences (K,), image (K,) and
    label (K,) of the clusters (less the undefined ones, see ``_cluster``), the rows with box problems and their
    flags (as ``_prefilter``'s), and the images left out (I,) bool: those whose result depends on numpy's order
    among equal keys."""
    n_models, n_images = bounds.shape[0], bounds.shape[1] - 1
    weights_float32 = allows_overflow and False  # float64 weights; a runtime bool, as weighted_boxes_fusion's call
    most, n = 0, 0
    for i in range(n_images):
        rows = 0
        for m in range(n_models):
            rows += bounds[m, i + 1] - bounds[m, i]
        most = max(most, rows)
        n += rows
    problem_rows = np.empty(n, np.int64)
    problem_flags = np.empty(n, np.int64)
    n_problems = 0
    left_out = np.zeros(n_images, np.bool_)
    out_box = np.empty((n, 4))
    out_conf = np.empty(n)
    out_image = np.empty(n, np.int64)
    out_label = np.empty(n, np.int64)
    # one image's boxes: cleaned, with key, weight, model and label group
    clean = np.empty((most, 4))
    key = np.empty(most)
    box_weight = np.empty(most)
    model = np.empty(most, np.int64)
    group = np.empty(most, np.int64)
    group_label = np.empty(most, np.int64)
    group_of_label = np.full(take.size, -1, np.int64)
    n_out = 0
    for i in range(n_images):
        k = 0
        n_groups = 0
        for m in range(n_models):
            for r in range(bounds[m, i], bounds[m, i + 1]):
                if scores[r] < skip_box_thr or not take[labels[r]]:
                    continue
                x1, y1, x2, y2, flags = _clean_box(np.float64(boxes[r, 0]), np.float64(boxes[r, 1]),
                                                   np.float64(boxes[r, 2]), np.float64(boxes[r, 3]))
                if flags:
                    problem_rows[n_problems], problem_flags[n_problems] = r, flags
                    n_problems += 1
                    if flags >> _ZERO_AREA & 1:
                        continue
                clean[k, 0], clean[k, 1], clean[k, 2], clean[k, 3] = x1, y1, x2, y2
                key[k] = np.float64(scores[r]) * weights[m]
                box_weight[k] = weights[m]
                model[k] = m
                label = labels[r]
                if group_of_label[label] < 0:  # label groups numbered by first appearance, as the reference's dict
                    group_of_label[label] = n_groups
                    group_label[n_groups] = label
                    n_groups += 1
                group[k] = group_of_label[label]
                k += 1
        for g in range(n_groups):
            group_of_label[group_label[g]] = -1
        if k == 0:
            continue
        # np.int64: numba would type n_groups as the literal 0 here and compile one more specialisation
        order, group_starts, tied = _processing_order(group[:k], np.int64(n_groups), key[:k])
        if tied.any():
            left_out[i] = True
            continue
        fused, conf, cluster_group, _ = _cluster(
            clean[:k], key[:k], box_weight[:k], model[:k], order, group_starts, weights, weights_float32, conf_code,
            iou_thr, allows_overflow, weight_sum, weight_max)
        for c in range(conf.size):
            if not np.isnan(conf[c]):
                out_box[n_out] = fused[c]
                out_conf[n_out] = conf[c]
                out_image[n_out] = i
                out_label[n_out] = group_label[cluster_group[c]]
                n_out += 1
    return (out_box[:n_out], out_conf[:n_out], out_image[:n_out], out_label[:n_out], problem_rows[:n_problems],
            problem_flags[:n_problems], left_out)


_LEFT_OUT_IMAGES = 8  # images per weighted_boxes_fusion call for the images _fuse_images leaves out


def fuse_images(boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, bounds: np.ndarray, n_labels: int,
                weights: Sequence[float], iou_thr: float = 0.55, skip_box_thr: float = 0.0, conf_type: str = "avg",
                allows_overflow: bool = False,
                take: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``weighted_boxes_fusion`` of each (image, label) of many images, in one call: the ensemble runner's entry.

    boxes (N, 4), scores (N,) (floats) and labels (N,) (ints in [0, n_labels)) hold rows of M models, those of model
    m and image i at ``bounds[m, i]:bounds[m, i + 1]`` ((M, I + 1) ints; other rows are not read); weights: (M,),
    positive; take: (n_labels,) bool, the labels to fuse (None: all). Returns the fused boxes (K, 4) and scores (K,)
    float64, and the image (K,) and label (K,) of each, in no particular order: for every (image, label), the boxes
    and scores that ``weighted_boxes_fusion`` returns for those rows alone (same warnings; ValueError where it
    raises), except that the clusters it finds undefined are left out instead: those whose keys sum to 0 (boxes of
    zero score or weight only: no later box joins them) and, under 'box_and_model_avg', those of zero-weight models'
    boxes only. Images holding equal keys in a label, whose result depends on numpy's sort, are fused by
    ``weighted_boxes_fusion``'s own code."""
    if conf_type not in CONF_TYPES:
        raise ValueError(f"conf_type must be one of {CONF_TYPES}, got {conf_type!r}")
    weights = np.asarray(weights, np.float64)
    bounds = np.ascontiguousarray(bounds, np.int64)
    take = np.ones(n_labels, bool) if take is None else np.asarray(take, bool)
    # the score filter compares in the scores' dtype, as weighted_boxes_fusion's `score < skip_box_thr` does
    fused, conf, image, label, problem_rows, problem_flags, left_out = _fuse_images(
        boxes, scores, scores.dtype.type(skip_box_thr), take, labels, bounds, weights, CONF_TYPES.index(conf_type),
        float(iou_thr), bool(allows_overflow), float(weights.sum()), float(weights.max()))
    _warn_box_problems([boxes], [len(boxes)], problem_rows, problem_flags)
    parts = [(fused, conf, image, label)]
    left_out = np.flatnonzero(left_out)
    for run in np.array_split(left_out, -(-len(left_out) // _LEFT_OUT_IMAGES)) if len(left_out) else []:
        rows = [np.concatenate([np.arange(b[i], b[i + 1]) for i in run]) for b in bounds]
        within = [np.repeat(np.arange(len(run)), [b[i + 1] - b[i] for i in run]) for b in bounds]
        taken = [take[labels[r]] for r in rows]
        rows, within = [r[t] for r, t in zip(rows, taken)], [w[t] for w, t in zip(within, taken)]
        with warnings.catch_warnings():  # given above, for every row
            warnings.simplefilter("ignore", UserWarning)
            run_boxes, run_scores, run_labels = _weighted_boxes_fusion(
                [boxes[r] for r in rows], [scores[r] for r in rows],
                [w * n_labels + labels[r].astype(np.int64) for r, w in zip(rows, within)], weights, iou_thr,
                skip_box_thr, conf_type, allows_overflow, drop_undefined=True)
        position, run_label = np.divmod(run_labels.astype(np.int64), n_labels)
        parts.append((run_boxes, run_scores, run[position], run_label))
    return parts[0] if len(parts) == 1 else tuple(np.concatenate(column) for column in zip(*parts))


def weighted_boxes_fusion(boxes_list: Sequence, scores_list: Sequence, labels_list: Sequence,
                          weights: Sequence[float] | np.ndarray | None = None, iou_thr: float = 0.55,
                          skip_box_thr: float = 0.0, conf_type: str = "avg",
                          allows_overflow: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fuse the boxes of several models; same arguments and results as ``ensemble_boxes.weighted_boxes_fusion``.

    boxes_list: per model an (n_m, 4) array of normalised x1, y1, x2, y2; scores_list / labels_list: per model
    (n_m,) scores and integer labels; weights: per model, >= 0 (default ones); iou_thr: a box joins a cluster when
    their IoU is > iou_thr; skip_box_thr: boxes with a lower raw score are dropped; conf_type: 'avg', 'max',
    'box_and_model_avg' or 'absent_model_aware_avg'; allows_overflow: for 'avg', let confidence exceed 1 when one
    model gives several boxes to a cluster. Warns (UserWarning) as it does on swapped, clipped or zero-area boxes.

    Returns float64 ``boxes`` (C, 4), ``scores`` (C,) and ``labels`` (C,), sorted by score, descending.
    """
    return _weighted_boxes_fusion(boxes_list, scores_list, labels_list, weights, iou_thr, skip_box_thr, conf_type,
                                  allows_overflow, drop_undefined=False)


def _weighted_boxes_fusion(boxes_list: Sequence, scores_list: Sequence, labels_list: Sequence,
                           weights: Sequence[float] | np.ndarray | None, iou_thr: float, skip_box_thr: float,
                           conf_type: str, allows_overflow: bool,
                           drop_undefined: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``weighted_boxes_fusion``; undefined clusters (see ``_cluster``) raise ValueError or, with
    ``drop_undefined``, are left out."""
    if conf_type not in CONF_TYPES:
        raise ValueError(f"conf_type must be one of {CONF_TYPES}, got {conf_type!r}")
    per_model = model_arrays(boxes_list, scores_list, labels_list)
    n_models = len(per_model)
    weights = model_weights(weights, n_models)
    counts = [len(s) for _, s, _ in per_model]
    if not sum(counts):
        return np.zeros((0, 4)), np.zeros((0,)), np.zeros((0,))
    # score * weight in the weights' dtype, as `float(score) * weights[m]` computes it under numpy 2; the raw-score
    # filter compares in each model's score dtype, as `score < skip_box_thr` does
    if weights.dtype.kind == "f":
        keys = [s.astype(weights.dtype) * weights[m] for m, (_, s, _) in enumerate(per_model)]
    else:
        keys = [s.astype(np.float64) * float(weights[m]) for m, (_, s, _) in enumerate(per_model)]
    keep = np.concatenate([~(s < skip_box_thr) for _, s, _ in per_model])
    boxes, rows, problems = _prefilter(np.concatenate([b for b, _, _ in per_model]).astype(np.float64), keep)
    flagged = np.flatnonzero(problems)
    _warn_box_problems(boxes_list, counts, flagged, problems[flagged])
    if not len(rows):
        return np.zeros((0, 4)), np.zeros((0,)), np.zeros((0,))
    keys = np.concatenate(keys).astype(np.float64)[rows]
    models = np.repeat(np.arange(n_models), counts)[rows]
    box_weights = weights.astype(np.float64)[models]
    labels = np.concatenate([lab for _, _, lab in per_model])[rows]
    if labels.dtype.kind == "f":
        labels = np.trunc(labels)  # int(label), as the reference takes it
    if np.abs(labels).max() >= _MAX_LABEL:
        raise ValueError(f"labels must be below 2**24 in magnitude, got {np.abs(labels).max()}")
    labels = labels.astype(np.int64)

    order, group_starts, tied = _processing_order(*_label_groups(labels), keys)
    for g in np.flatnonzero(tied):
        members = np.sort(order[group_starts[g]:group_starts[g + 1]])
        order[group_starts[g]:group_starts[g + 1]] = members[np.argsort(keys[members])[::-1]]

    fused, conf, cluster_group, zero_group = _cluster(
        boxes, keys, box_weights, models, order, group_starts, weights.astype(np.float64),
        weights.dtype == np.float32, CONF_TYPES.index(conf_type), float(iou_thr), bool(allows_overflow),
        float(weights.sum()), float(weights.max()))
    if drop_undefined:
        defined = ~np.isnan(conf)
        fused, conf, cluster_group = fused[defined], conf[defined], cluster_group[defined]
    elif zero_group >= 0:
        raise ValueError(f"boxes of label {labels[order[group_starts[zero_group]]]} with score * weight summing to "
                         f"0 overlap: their fused box is undefined (raise skip_box_thr above 0 to drop zero scores, "
                         f"or drop the zero-weight models)")
    if np.isnan(conf).any():
        raise ValueError(f"conf_type 'box_and_model_avg': a fused box of label "
                         f"{labels[order[group_starts[cluster_group[np.isnan(conf).argmax()]]]]} holds only boxes of "
                         f"zero-weight models, its confidence is undefined (0 / 0)")
    final = np.argsort(conf)[::-1]
    group_labels = labels[order[group_starts[:-1]]].astype(np.float64)
    return fused[final], conf[final], group_labels[cluster_group[final]]
