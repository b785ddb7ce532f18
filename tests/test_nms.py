"""ensemble.nms against ensemble_boxes.nms / soft_nms 1.0.9 and a plain Soft-NMS loop written from the paper."""
import contextlib
import io
import math

import numpy as np
import pytest
from ensemble_boxes import nms as reference_nms
from ensemble_boxes import soft_nms as reference_soft_nms

from ensemble.nms import adj_nms, nms, soft_nms


def run_reference(fn, boxes, scores, labels, **kwargs):
    with contextlib.redirect_stdout(io.StringIO()):  # it prints a line for every clipped or zero-area box
        return fn(boxes, [s.copy() for s in scores], labels, **kwargs)  # and rescales scores in place


def random_case(rng, n_models, n_boxes, n_labels, dtype=np.float32, dirty=True):
    """Boxes scattered around shared objects; dirty: reversed corners, out-of-range and zero-area boxes."""
    objects = np.sort(rng.uniform(0, 1, (max(1, n_boxes // 3), 2, 2)), axis=1).transpose(0, 2, 1).reshape(-1, 4)
    boxes_list, scores_list, labels_list = [], [], []
    for m in range(n_models):
        n = int(rng.integers(1 if m == 0 else 0, n_boxes + 1))
        pick = rng.integers(0, len(objects), n)
        boxes = objects[pick] + rng.normal(0, 0.04, (n, 4))
        if dirty:
            flip = rng.random(n) < 0.2
            boxes[flip] = boxes[flip][:, [2, 3, 0, 1]]
            flat = rng.random(n) < 0.05
            boxes[flat, 2] = boxes[flat, 0]
        else:
            boxes = np.clip(boxes, 0, 0.99)
            boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + 0.005)
        boxes_list.append(boxes.astype(dtype))
        scores_list.append(rng.uniform(0, 1, n).astype(dtype))
        labels_list.append(rng.integers(0, n_labels, n))
    return boxes_list, scores_list, labels_list


def assert_identical(ours, ref):
    for got, want in zip(ours, ref):
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)


def paper_soft_nms(boxes, scores, iou_thr, sigma, thresh, linear):
    """Soft-NMS (Bodla et al., 2017, Algorithm 1) on one label, in float64: (index, decayed score) kept, in order."""
    scores = [float(s) for s in scores]
    remaining, kept = list(range(len(scores))), []
    while remaining:
        best = max(remaining, key=lambda i: scores[i])
        remaining.remove(best)
        kept.append(best)
        for i in remaining:
            a, b = boxes[best], boxes[i]
            inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
            iou = inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)
            scores[i] *= (1 - iou if iou > iou_thr else 1.0) if linear else math.exp(-iou * iou / sigma)
    return [(i, scores[i]) for i in kept if scores[i] > thresh]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nms_matches_reference(dtype):
    rng = np.random.default_rng(1 if dtype == np.float32 else 2)
    for case in range(40):
        n_models = int(rng.integers(1, 6))
        data = random_case(rng, n_models, int(rng.integers(1, 80)), int(rng.integers(1, 6)), dtype=dtype)
        weights = [None, list(rng.uniform(0.5, 3, n_models)), list(rng.integers(1, 4, n_models))][case % 3]
        iou_thr = float(rng.choice([0.3, 0.5, 0.7]))
        assert_identical(nms(*data, weights=weights, iou_thr=iou_thr),
                         run_reference(reference_nms, *data, weights=weights, iou_thr=iou_thr))


@pytest.mark.parametrize("method", ["linear", "gaussian"])
def test_soft_nms_keeps_the_reference_boxes_and_decays_scores(method):
    rng = np.random.default_rng(3 if method == "linear" else 4)
    for case in range(25):
        n_models = int(rng.integers(1, 5))
        data = random_case(rng, n_models, int(rng.integers(1, 50)), int(rng.integers(1, 4)), dtype=np.float64,
                           dirty=False)
        weights = list(rng.uniform(0.5, 3, n_models)) if case % 2 else None
        kwargs = dict(iou_thr=float(rng.choice([0.3, 0.5])), sigma=float(rng.choice([0.1, 0.5])),
                      thresh=float(rng.choice([0.001, 0.2])), weights=weights)
        boxes, scores, labels = soft_nms(*data, method=method, **kwargs)
        ref = run_reference(reference_soft_nms, *data, method={"linear": 1, "gaussian": 2}[method], **kwargs)
        np.testing.assert_array_equal(boxes, ref[0])
        np.testing.assert_array_equal(labels, ref[2])

        all_boxes, all_labels = np.concatenate(data[0]), np.concatenate(data[2])
        w = np.ones(n_models) if weights is None else np.array(weights)
        all_scores = np.concatenate([s * w[m] / (w.sum() if weights else 1) for m, s in enumerate(data[1])])
        expected_rows, expected_scores = [], []
        for label in np.unique(all_labels):
            rows = np.flatnonzero(all_labels == label)
            for i, decayed in paper_soft_nms(all_boxes[rows], all_scores[rows], kwargs["iou_thr"], kwargs["sigma"],
                                             kwargs["thresh"], method == "linear"):
                expected_rows.append(rows[i])
                expected_scores.append(decayed)
        np.testing.assert_array_equal(boxes, all_boxes[expected_rows])
        np.testing.assert_allclose(scores, expected_scores, rtol=0, atol=1e-9)
        # the documented difference: ensemble-boxes returns the kept boxes' original scores
        np.testing.assert_array_equal(ref[1], all_scores[expected_rows])


def test_soft_nms_float32_scores_match_reference_selection():
    """float32 scores are rounded after every decay, as ensemble-boxes does, so the same boxes survive thresh."""
    rng = np.random.default_rng(5)
    for _ in range(25):
        data = random_case(rng, 3, 60, 2, dtype=np.float32)
        boxes, scores, labels = soft_nms(*data, iou_thr=0.4, sigma=0.3, thresh=0.05, method="linear")
        ref = run_reference(reference_soft_nms, *data, iou_thr=0.4, sigma=0.3, thresh=0.05, method=1)
        np.testing.assert_array_equal(boxes, ref[0])
        np.testing.assert_array_equal(labels, ref[2])
        assert scores.dtype == np.float32 and (scores > np.float32(0.05)).all()


def test_hard_soft_nms_is_nms_and_adj_nms_is_nms_then_soft_nms():
    rng = np.random.default_rng(6)
    for _ in range(10):
        data = random_case(rng, 4, 60, 3)
        assert_identical(soft_nms(*data, iou_thr=0.45, method="hard"), nms(*data, iou_thr=0.45))
        b, s, lab = nms(*data, weights=[1, 2, 1, 1], iou_thr=0.6)
        assert_identical(adj_nms(*data, weights=[1, 2, 1, 1], iou_thr=0.6, soft_iou_thr=0.3, thresh=0.01),
                         soft_nms([b], [s], [lab], iou_thr=0.3, thresh=0.01, method="linear"))


def test_skip_box_thr_drops_low_raw_scores_before_weighting():
    rng = np.random.default_rng(8)
    data = random_case(rng, 3, 80, 3)
    kept = [s >= 0.3 for s in data[1]]
    filtered = [[x[k] for x, k in zip(part, kept)] for part in data]
    assert_identical(nms(*data, weights=[3, 1, 1], skip_box_thr=0.3),
                     run_reference(reference_nms, *filtered, weights=[3, 1, 1]))


def test_empty_and_bad_input():
    for fn in (nms, soft_nms, adj_nms):
        boxes, scores, labels = fn([np.zeros((0, 4))], [np.zeros(0)], [np.zeros(0, int)])
        assert boxes.shape == (0, 4) and scores.shape == (0,) and labels.shape == (0,)
    box, score, label = [np.array([[0.1, 0.1, 0.5, 0.5]])], [np.array([0.5])], [np.array([1])]
    with pytest.raises(ValueError, match="method"):
        soft_nms(box, score, label, method="box")
    with pytest.raises(ValueError, match="method"):
        adj_nms(box, score, label, method="hard")
    with pytest.raises(ValueError, match="weights needs one number per model"):
        nms(box, score, label, weights=[1, 1])
    with pytest.raises(ValueError, match="labels must be integer class ids"):
        nms(box, score, [np.array(["cat"])])
