"""The Open Images Challenge 2019 detection metric, computed as the official evaluator computes it, vectorised: ground
truth expanded through the hierarchy, predictions taken as given, greedy IoU / group-of IoA matching, VOC 2010 AP.

Shapes: N detections, M expanded ground-truth boxes, C classes, G (image, class) groups with detections; a *key* is
``image_index * C + class_index``. The rules, the details kept from the official code and the tie order:
docs/metric.md.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numba
import numpy as np
import pandas as pd
from tqdm import tqdm

from contracts.arrays import grouped_order, positions, sort_segments
from contracts.expansion import Relatives
from contracts.files import DataError
from contracts.hierarchy import Hierarchy

__all__ = ["Entries", "EvalResult", "FALSE_POSITIVE", "GROUP_OF", "GroundTruth", "IGNORED", "Matching",
           "TRUE_POSITIVE", "evaluate", "evaluate_entries", "evaluate_expanded", "expand_ground_truth",
           "match_detections", "match_entries", "read_gt_boxes", "read_gt_labels"]

GT_BOX_COLUMNS = ["ImageID", "LabelName", "XMin", "XMax", "YMin", "YMax", "IsGroupOf"]
GT_LABEL_COLUMNS = ["ImageID", "LabelName", "Confidence"]
IOU_THRESHOLD = 0.5
MAX_DETECTIONS_PER_CLASS = 10_000
SCORE_FLOOR = -10.0
# per-detection outcomes (Matching.outcome)
IGNORED, FALSE_POSITIVE, TRUE_POSITIVE, GROUP_OF = 0, 1, 2, 3


@dataclass(frozen=True)
class GroundTruth:
    """Expanded ground truth, indexed for matching.

    image_ids (I,) sorted ImageIDs with any ground-truth row; mids (C,) the evaluated classes;
    box_key (M,) int64 sorted (stable: input row order within a key); box_yxyx (M, 4) float64 ymin, xmin, ymax, xmax;
    box_group_of (M,) bool; verified_keys sorted unique int64; num_gt (C,) int64; box_row (M,) int64 the source row
    (position in the box frame) of each expanded box, None when not built by ``expand_ground_truth``."""

    image_ids: np.ndarray
    mids: np.ndarray
    box_key: np.ndarray
    box_yxyx: np.ndarray
    box_group_of: np.ndarray
    verified_keys: np.ndarray
    num_gt: np.ndarray
    box_row: np.ndarray | None = None

    def of_images(self, lo: int, hi: int) -> GroundTruth:
        """The boxes and verified keys of images ``lo .. hi - 1`` alone, numbered as here (for matching those
        images' detections apart: ``match_entries``)."""
        bounds = np.array([lo, hi]) * len(self.mids)
        box, key = np.searchsorted(self.box_key, bounds), np.searchsorted(self.verified_keys, bounds)
        part = slice(*box)
        return GroundTruth(self.image_ids, self.mids, self.box_key[part], self.box_yxyx[part],
                           self.box_group_of[part], self.verified_keys[slice(*key)], self.num_gt,
                           None if self.box_row is None else self.box_row[part])


@dataclass(frozen=True)
class EvalResult:
    """mAP and per-class results (MID, AP, num_gt, num_dets in class-file order; AP is NaN where num_gt = 0).

    num_dets counts the detections that entered matching (verified class, valid box, within the per-image cap)."""

    map: float
    per_class: pd.DataFrame
    num_images: int
    num_detections: int


def _expand(labels: pd.Series, direction: str, hierarchy: Hierarchy,
            mids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Expand label rows to themselves plus their ancestors or descendants. Returns (source row (K,), class index
    (K,)), rows in input order, classes ascending, classes outside ``mids`` left out."""
    row_vocab, vocab = pd.factorize(labels.to_numpy(), use_na_sentinel=False)
    family = Relatives.from_hierarchy(hierarchy, list(vocab), direction, among=mids, include_self=True)
    rows, cls = family.expand(row_vocab)
    return rows, cls.astype(np.int64)


def expand_ground_truth(gt_boxes: pd.DataFrame, gt_labels: pd.DataFrame, hierarchy: Hierarchy,
                        mids: Sequence[str]) -> GroundTruth:
    """Expand boxes and image labels through the hierarchy and index them by (image, class) key."""
    mids = np.asarray(list(mids), dtype=object)
    class_index = pd.Index(mids)
    if not class_index.is_unique:
        raise ValueError("mids lists a MID twice")
    n_classes = len(mids)
    image_ids = np.unique(np.concatenate([gt_boxes["ImageID"].to_numpy(dtype=object),
                                          gt_labels["ImageID"].to_numpy(dtype=object)]).astype(str))
    image_index = pd.Index(image_ids)

    rows, cls = _expand(gt_boxes["LabelName"], "ancestors", hierarchy, mids)
    box_key = positions(gt_boxes["ImageID"], image_index)[rows] * n_classes + cls
    order = np.argsort(box_key, kind="stable")
    rows, box_key = rows[order], box_key[order]
    yxyx = gt_boxes[["YMin", "XMin", "YMax", "XMax"]].to_numpy(dtype=np.float64)[rows]
    group_of = gt_boxes["IsGroupOf"].to_numpy()[rows] != 0  # the official evaluator casts the flag to bool

    label_keys = []
    positive = gt_labels["Confidence"].to_numpy() == 1
    for mask, direction in ((positive, "ancestors"), (~positive, "descendants")):
        part = gt_labels[mask]
        lrows, lcls = _expand(part["LabelName"], direction, hierarchy, mids)
        label_keys.append(positions(part["ImageID"], image_index)[lrows] * n_classes + lcls)
    verified = np.unique(np.concatenate([box_key, *label_keys]))
    num_gt = np.bincount(box_key % n_classes, minlength=n_classes).astype(np.int64)
    return GroundTruth(image_ids, mids, box_key, np.ascontiguousarray(yxyx), group_of, verified, num_gt, rows)


@numba.njit(cache=True, nogil=True)
def _match_groups(group_start, group_end, gt_lo, gt_hi, group_class, det_yxyx, det_score, gt_yxyx, gt_group_of,
                  iou_threshold, out_class, out_score, out_tp, n_out, det_outcome, det_box):
    """Match detections to ground truth for groups ``g`` (detections ``group_start[g]:group_end[g]``, sorted by
    descending score; boxes ``gt_lo[g]:gt_hi[g]``). Appends one (class, score, tp) entry per FP, TP and group-of TP
    to the ``out_*`` arrays from position ``n_out``; returns the new end position. Each detection's outcome and its
    matched or absorbing box (-1 for an FP) go to ``det_outcome[i]`` and ``det_box[i]``."""
    for g in range(len(group_start)):
        c, lo, hi = group_class[g], gt_lo[g], gt_hi[g]
        matched = np.zeros(hi - lo, np.bool_)
        group_best = np.zeros(hi - lo, np.float64)
        for i in range(group_start[g], group_end[g]):
            dy0, dx0, dy1, dx1 = det_yxyx[i, 0], det_yxyx[i, 1], det_yxyx[i, 2], det_yxyx[i, 3]
            det_area = (dy1 - dy0) * (dx1 - dx0)
            best_iou, best_box = 0.0, -1
            best_ioa, best_group = 0.0, -1
            for j in range(lo, hi):
                gy0, gx0, gy1, gx1 = gt_yxyx[j, 0], gt_yxyx[j, 1], gt_yxyx[j, 2], gt_yxyx[j, 3]
                ih = max(0.0, min(dy1, gy1) - max(dy0, gy0))
                iw = max(0.0, min(dx1, gx1) - max(dx0, gx0))
                inter = ih * iw
                if gt_group_of[j]:
                    ioa = inter / det_area
                    if best_group < 0 or ioa > best_ioa:
                        best_ioa, best_group = ioa, j - lo
                else:
                    iou = inter / (det_area + (gy1 - gy0) * (gx1 - gx0) - inter)
                    if best_box < 0 or iou > best_iou:
                        best_iou, best_box = iou, j - lo
            if best_box >= 0 and best_iou >= iou_threshold and not matched[best_box]:
                matched[best_box] = True
                tp = 1.0
                det_outcome[i], det_box[i] = TRUE_POSITIVE, lo + best_box
            elif best_group >= 0 and best_ioa >= iou_threshold:
                group_best[best_group] = max(group_best[best_group], det_score[i])
                det_outcome[i], det_box[i] = GROUP_OF, lo + best_group
                continue
            else:
                tp = 0.0
                det_outcome[i], det_box[i] = FALSE_POSITIVE, -1
            out_class[n_out], out_score[n_out], out_tp[n_out] = c, det_score[i], tp
            n_out += 1
        for j in range(hi - lo):
            if group_best[j] > 0:
                out_class[n_out], out_score[n_out], out_tp[n_out] = c, group_best[j], 1.0
                n_out += 1
    return n_out


@numba.njit(cache=True, nogil=True)
def _average_precisions(tp, order, start, num_gt):
    """VOC 2010 all-point AP per class from TP flags ``tp[order[start[c]:start[c + 1]]]`` (class c's, by descending
    score); NaN where num_gt is 0, 0 where a class has ground truth but no entries."""
    ap = np.full(len(num_gt), np.nan)
    for c in range(len(num_gt)):
        if num_gt[c] == 0:
            continue
        s, e = start[c], start[c + 1]
        precision = np.empty(e - s)
        recall = np.empty(e - s)
        tp_sum, fp_sum = 0.0, 0.0
        for k in range(e - s):
            entry_tp = tp[order[s + k]]
            tp_sum += entry_tp
            fp_sum += 1.0 if entry_tp <= 0 else 0.0
            precision[k] = tp_sum / (tp_sum + fp_sum)
            recall[k] = tp_sum / num_gt[c]
        total, best_precision = 0.0, 0.0
        for k in range(e - s - 1, -1, -1):
            best_precision = max(best_precision, precision[k])
            previous = recall[k - 1] if k > 0 else 0.0
            if recall[k] != previous:
                total += (recall[k] - previous) * best_precision
        ap[c] = total
    return ap


@numba.njit(cache=True, nogil=True)
def _into_class_runs(out_class, out_score, out_tp, fill, negated, tp):
    """Append entries (class, score, tp) to their class's run: the negated score and the TP flag at ``fill[c]``,
    which advances."""
    for i in range(out_class.size):
        p = fill[out_class[i]]
        fill[out_class[i]] += 1
        negated[p], tp[p] = -out_score[i], out_tp[i]


@numba.njit(cache=True, nogil=True)
def _verified(image, cls, score, x0, y0, x1, y1, n_classes, verified_keys):
    """The detections that may enter matching (known image and class, valid box, score above the floor, verified
    (image, class)), in input order, and the position of each one's key among ``verified_keys``."""
    index = np.empty(image.size, np.int64)
    group = np.empty(image.size, np.int64)
    n = 0
    for i in range(image.size):
        if image[i] >= 0 and cls[i] >= 0 and x0[i] < x1[i] and y0[i] < y1[i] and score[i] > SCORE_FLOOR:
            key = image[i] * n_classes + cls[i]
            at = np.searchsorted(verified_keys, key)
            if at < verified_keys.size and verified_keys[at] == key:
                index[n], group[n] = i, at
                n += 1
    return index[:n], group[:n]


@numba.njit(cache=True, nogil=True)
def _first_of_each(index, group, order, most):
    """``index[order]`` and ``group[order]`` (grouped), at most ``most`` of each group."""
    kept_index = np.empty(order.size, np.int64)
    kept_group = np.empty(order.size, np.int64)
    n, rank, previous = 0, 0, -1
    for p in range(order.size):
        g = group[order[p]]
        rank = rank + 1 if g == previous else 0
        previous = g
        if rank < most:
            kept_index[n], kept_group[n] = index[order[p]], g
            n += 1
    return kept_index[:n], kept_group[:n]


def _select(image: np.ndarray, cls: np.ndarray, score: np.ndarray, x0: np.ndarray, y0: np.ndarray, x1: np.ndarray,
            y1: np.ndarray, gt: GroundTruth) -> tuple[np.ndarray, np.ndarray]:
    """``_select_detections`` on arrays: image and class numbers (-1: unknown), float64 scores and corners."""
    index, group = _verified(image, cls, score, x0, y0, x1, y1, len(gt.mids), gt.verified_keys)
    # grouped by (image, class): the position of its key among the sorted verified keys
    order = grouped_order(group, len(gt.verified_keys), -score[index])
    index, group = _first_of_each(index, group, order, MAX_DETECTIONS_PER_CLASS)
    return index, gt.verified_keys[group]


def _select_detections(predictions: pd.DataFrame, gt: GroundTruth):
    """Indices of the detections that enter matching, sorted by (key, descending score, input row), and their
    keys; invalid boxes, unverified classes, unknown images and the per-(image, class) excess are left out."""
    return _select(positions(predictions["ImageID"], pd.Index(gt.image_ids)),
                   positions(predictions["LabelName"], pd.Index(gt.mids)),
                   predictions["Score"].to_numpy(dtype=np.float64),
                   *(predictions[c].to_numpy(dtype=np.float64) for c in ("XMin", "YMin", "XMax", "YMax")), gt)


def _match_selected(key: np.ndarray, det_yxyx: np.ndarray, det_score: np.ndarray, gt: GroundTruth, progress: bool):
    """Matching of the selected detections (keys, ymin xmin ymax xmax, scores; in ``_select``'s order). Returns each
    one's outcome and box, and the AP entries (class, score, tp)."""
    n_classes = len(gt.mids)
    boundary = np.flatnonzero(np.r_[True, key[1:] != key[:-1], True]) if len(key) else np.zeros(1, np.int64)
    group_start, group_end = boundary[:-1], boundary[1:]
    group_key = key[group_start]
    gt_lo = np.searchsorted(gt.box_key, group_key, side="left")
    gt_hi = np.searchsorted(gt.box_key, group_key, side="right")
    group_class = group_key % n_classes

    capacity = len(key) + int(gt.box_group_of.sum())
    out_class = np.empty(capacity, np.int64)
    out_score = np.empty(capacity, np.float64)
    out_tp = np.empty(capacity, np.float64)
    det_outcome = np.empty(len(key), np.int8)
    det_box = np.empty(len(key), np.int32)  # M < 2**31
    n_out = 0
    chunks = np.array_split(np.arange(len(group_start)), max(1, min(100, len(group_start) // 1000)))
    for chunk in tqdm(chunks, desc="matching", unit="chunk", disable=not progress, leave=False):
        if len(chunk):
            sl = slice(chunk[0], chunk[-1] + 1)
            n_out = _match_groups(group_start[sl], group_end[sl], gt_lo[sl], gt_hi[sl], group_class[sl], det_yxyx,
                                  det_score, gt.box_yxyx, gt.box_group_of, IOU_THRESHOLD, out_class, out_score,
                                  out_tp, n_out, det_outcome, det_box)
    return det_outcome, det_box, out_class[:n_out], out_score[:n_out], out_tp[:n_out]


def _match(predictions: pd.DataFrame, gt: GroundTruth, progress: bool):
    """Selection and matching, shared by the mAP and the per-detection outcomes. Returns the selected rows and
    their keys (``_select_detections``), each one's outcome and box, and the AP entries (class, score, tp)."""
    index, key = _select_detections(predictions, gt)
    det_yxyx = np.stack([predictions[c].to_numpy(dtype=np.float64)[index] for c in ("YMin", "XMin", "YMax", "XMax")],
                        axis=1)
    det_score = predictions["Score"].to_numpy(dtype=np.float64)[index]
    return index, key, *_match_selected(key, det_yxyx, det_score, gt, progress)


@dataclass(frozen=True)
class Entries:
    """What the matching of some images gives AP: the number of detections matched per class (C,), and one
    (class, score, tp) entry per FP, TP and group-of TP, in collection order (images in order; in an image,
    classes in order, each class's detections in matching order, then its group-of TPs)."""

    num_dets: np.ndarray
    cls: np.ndarray
    score: np.ndarray
    tp: np.ndarray


def match_entries(image: np.ndarray, cls: np.ndarray, score: np.ndarray, boxes: np.ndarray,
                  gt: GroundTruth) -> Entries:
    """Selection and matching of detections given as arrays: image and class numbers as ``gt`` numbers them (-1:
    unknown), scores, boxes (N, 4) x1 y1 x2 y2. ``gt`` may be the part of the ground truth of these images
    (``GroundTruth.of_images``); the entries of consecutive parts, concatenated in order, are those of the whole."""
    score = np.asarray(score, np.float64)
    x0, y0, x1, y1 = np.asarray(boxes, np.float64).T
    index, key = _select(np.asarray(image, np.int64), np.asarray(cls, np.int64), score, x0, y0, x1, y1, gt)
    det_yxyx = np.stack([y0[index], x0[index], y1[index], x1[index]], axis=1)
    _, _, out_class, out_score, out_tp = _match_selected(key, det_yxyx, score[index], gt, False)
    return Entries(_class_counts(key, gt), out_class, out_score, out_tp)


def evaluate_entries(parts: Sequence[Entries], gt: GroundTruth) -> EvalResult:
    """The metric from the entries of consecutive parts of the images (``match_entries``), in image order."""
    return _result(gt, sum(p.num_dets for p in parts), [(p.cls, p.score, p.tp) for p in parts])


def _result(gt: GroundTruth, num_dets: np.ndarray,
            entries: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> EvalResult:
    """AP per class and mAP from the matching's entries (class, score, tp arrays, in parts, in collection order)
    and the number of detections matched per class. The parts go straight into one run per class (no copy of them
    all end to end), where each class's sort reads only its own memory."""
    n_classes = len(gt.mids)
    entries = [(np.asarray(c, np.int64), np.asarray(s, np.float64), np.asarray(t, np.float64)) for c, s, t in entries]
    start = np.zeros(n_classes + 1, np.int64)
    for cls, _, _ in entries:
        start[1:] += np.bincount(cls, minlength=n_classes)
    start = np.cumsum(start)
    negated, tp, fill = np.empty(start[-1]), np.empty(start[-1]), start[:-1].copy()
    for cls, score, part_tp in entries:
        _into_class_runs(cls, score, part_tp, fill, negated, tp)
    order = np.arange(start[-1])
    sort_segments(order, start, negated, np.empty(0))  # by descending score, ties in collection order
    ap = _average_precisions(tp, order, start, gt.num_gt)
    per_class = pd.DataFrame({"MID": gt.mids.astype(str), "AP": ap, "num_gt": gt.num_gt,
                              "num_dets": np.asarray(num_dets, np.int64)})
    with_gt = gt.num_gt > 0
    mean_ap = float(ap[with_gt].mean()) if with_gt.any() else float("nan")
    return EvalResult(mean_ap, per_class, len(gt.image_ids), int(np.sum(num_dets)))


def _class_counts(key: np.ndarray, gt: GroundTruth) -> np.ndarray:
    return np.bincount(key % len(gt.mids), minlength=len(gt.mids)).astype(np.int64)


def evaluate_expanded(predictions: pd.DataFrame, gt: GroundTruth, progress: bool = False) -> EvalResult:
    """The metric for predictions (ImageID, LabelName, Score, XMin, YMin, XMax, YMax) against expanded ground
    truth."""
    _, key, _, _, out_class, out_score, out_tp = _match(predictions, gt, progress)
    return _result(gt, _class_counts(key, gt), [(out_class, out_score, out_tp)])


@dataclass(frozen=True)
class Matching:
    """What the metric made of each prediction row, and the EvalResult of that same matching.

    outcome (N,) int8 per input row: TRUE_POSITIVE, FALSE_POSITIVE, GROUP_OF (absorbed by a group-of box, which
    counts one TP at its highest absorbed score) or IGNORED (unverified class, image without ground truth, unlisted
    MID, invalid box, floor score, beyond the per-(image, class) cap); box (N,) int64 the matched or absorbing
    expanded ground-truth box (index into ``gt.box_*``), -1 otherwise; box_found (M,) bool the boxes that count as
    found: matched by a TP, or group-of with an absorbed detection scored > 0."""

    outcome: np.ndarray
    box: np.ndarray
    box_found: np.ndarray
    result: EvalResult


def match_detections(predictions: pd.DataFrame, gt: GroundTruth, progress: bool = False) -> Matching:
    """Per-detection outcomes of the metric (see ``Matching``) for predictions against expanded ground truth."""
    index, key, det_outcome, det_box, out_class, out_score, out_tp = _match(predictions, gt, progress)
    outcome = np.full(len(predictions), IGNORED, np.int8)
    box = np.full(len(predictions), -1, np.int64)
    outcome[index], box[index] = det_outcome, det_box
    score = predictions["Score"].to_numpy(dtype=np.float64)[index]
    found = det_box[(det_outcome == TRUE_POSITIVE) | ((det_outcome == GROUP_OF) & (score > 0))]
    box_found = np.zeros(len(gt.box_key), bool)
    box_found[found] = True
    return Matching(outcome, box, box_found, _result(gt, _class_counts(key, gt), [(out_class, out_score, out_tp)]))


def evaluate(predictions: pd.DataFrame, gt_boxes: pd.DataFrame, gt_labels: pd.DataFrame, hierarchy: Hierarchy,
             mids: Sequence[str], progress: bool = False) -> EvalResult:
    """Challenge 2019 mAP of ``predictions`` (ImageID, LabelName, Score, XMin, YMin, XMax, YMax) against the raw
    (unexpanded) box CSV rows ``gt_boxes`` (ImageID, LabelName, XMin, XMax, YMin, YMax, IsGroupOf) and image-label
    rows ``gt_labels`` (ImageID, LabelName, Confidence), over the classes ``mids``."""
    return evaluate_expanded(predictions, expand_ground_truth(gt_boxes, gt_labels, hierarchy, mids), progress)


def _read_csv_columns(path: str | Path, columns: list[str], dtypes: dict) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"file not found: {path}")
    header = pd.read_csv(path, nrows=0).columns
    missing = [c for c in columns if c not in header]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)} (header: {', '.join(header)})")
    try:
        return pd.read_csv(path, usecols=columns, dtype=dtypes, keep_default_na=False)[columns]
    except ValueError as e:
        raise DataError(f"{path}: {e}") from None


def read_gt_boxes(path: str | Path) -> pd.DataFrame:
    """A box CSV (validation 7-column or train 13-column layout) reduced to ImageID, LabelName, XMin, XMax, YMin,
    YMax, IsGroupOf."""
    return _read_csv_columns(path, GT_BOX_COLUMNS, {"ImageID": str, "LabelName": str, "XMin": np.float64,
                                                    "XMax": np.float64, "YMin": np.float64, "YMax": np.float64,
                                                    "IsGroupOf": np.int8})


def read_gt_labels(path: str | Path) -> pd.DataFrame:
    """An image-label CSV reduced to ImageID, LabelName, Confidence."""
    return _read_csv_columns(path, GT_LABEL_COLUMNS, {"ImageID": str, "LabelName": str, "Confidence": np.int8})
