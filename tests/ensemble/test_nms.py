"""ensemble.suppression against ensemble_boxes.nms / soft_nms / nms_method 1.0.9 and a plain Soft-NMS loop written
from the paper."""
import contextlib
import inspect
import io
import math
from unittest import mock

import ensemble_boxes.ensemble_boxes_nms as reference_module
import numpy as np
import pytest
from ensemble_boxes import nms as reference_nms
from ensemble_boxes import nms_method as reference_nms_method
from ensemble_boxes import soft_nms as reference_soft_nms

import ensemble
from ensemble.suppression import adj_nms, nms, nms_method, soft_nms


def run_reference(fn, boxes, scores, labels, *args, **kwargs):
    with contextlib.redirect_stdout(io.StringIO()):  # it prints a line for every clipped or zero-area box
        return fn(boxes, [s.copy() for s in scores], labels, *args, **kwargs)  # and rescales scores in place


def run_reference_soft(boxes, scores, labels, **kwargs):
    """ensemble_boxes.soft_nms with the *decayed* scores of the kept boxes in place of the original ones it returns:
    read from the score array its Soft-NMS loop decays in place (kept boxes are those whose score is > thresh)."""
    decayed = []
    original = reference_module.cpu_soft_nms_float

    def spy(dets, sc, Nt, sigma, thresh, method):
        keep = original(dets, sc, Nt=Nt, sigma=sigma, thresh=thresh, method=method)
        decayed.append(sc[sc > thresh])
        return keep

    with mock.patch.object(reference_module, "cpu_soft_nms_float", spy):
        boxes, _, labels = run_reference(reference_soft_nms, boxes, scores, labels, **kwargs)
    return boxes, np.concatenate(decayed), labels


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
        # and the decayed scores are those of its Soft-NMS loop, bit for bit
        assert_identical((boxes, scores, labels),
                         run_reference_soft(*data, method={"linear": 1, "gaussian": 2}[method], **kwargs))


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


def test_signatures_match_reference():
    """Same parameter names, defaults and positional order as ensemble-boxes; additions are keyword-only."""
    for ours, ref in ((nms, reference_nms), (soft_nms, reference_soft_nms), (nms_method, reference_nms_method)):
        ref_params = list(inspect.signature(ref).parameters.values())
        our_params = list(inspect.signature(ours).parameters.values())
        assert [(p.name, p.default, p.kind) for p in our_params[:len(ref_params)]] == \
               [(p.name, p.default, p.kind) for p in ref_params]
        assert all(p.kind == p.KEYWORD_ONLY for p in our_params[len(ref_params):])
    assert ensemble.nms_method is nms_method and "nms_method" in ensemble.__all__


def test_positional_arguments_as_reference():
    rng = np.random.default_rng(12)
    for case in range(10):
        data = random_case(rng, 3, 60, 3, dtype=np.float64)
        weights = [2.0, 1.0, 0.5]
        assert_identical(nms(*data, 0.3), run_reference(reference_nms, *data, 0.3))
        assert_identical(nms(*data, 0.4, weights), run_reference(reference_nms, *data, 0.4, weights))
        assert_identical(nms_method(*data, 3, 0.4, 0.3, 0.01, weights),
                         run_reference(reference_nms_method, *data, 3, 0.4, 0.3, 0.01, weights))
        for method in (1, 2):
            args = (method, 0.4, 0.3, 0.01, weights)
            ref = run_reference_soft(*data, method=method, iou_thr=0.4, sigma=0.3, thresh=0.01, weights=weights)
            assert_identical(soft_nms(*data, *args), ref)
            assert_identical(nms_method(*data, *args), ref)
            assert_identical(run_reference(reference_soft_nms, *data, *args)[0], ref[0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_zero_weights_match_reference(dtype):
    """A zero weight makes that model's scores 0: its boxes still suppress, and are kept by hard NMS."""
    rng = np.random.default_rng(13 if dtype == np.float32 else 14)
    for case in range(20):
        n_models = int(rng.integers(2, 5))
        data = random_case(rng, n_models, 50, 3, dtype=dtype)
        weights = list(rng.uniform(0.5, 2, n_models) * (rng.random(n_models) < 0.5))
        weights[case % n_models] = 0.0 if case % 2 else 1.0
        if not any(weights):
            weights[0] = 1.0
        assert_identical(nms(*data, weights=weights), run_reference(reference_nms, *data, weights=weights))
        for method in (1, 2):
            kwargs = dict(method=method, iou_thr=0.4, sigma=0.3, thresh=0.01, weights=weights)
            assert_identical(soft_nms(*data, **kwargs), run_reference_soft(*data, **kwargs))
    with pytest.raises(ValueError, match="not all 0"):  # every score would be 0 / 0
        nms(*data, weights=[0] * len(data[0]))
    with pytest.raises(ValueError, match="non-negative"):
        nms(*data, weights=[-1] + [1] * (len(data[0]) - 1))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_negative_scores_are_kept_as_reference(dtype):
    rng = np.random.default_rng(15)
    for case in range(20):
        data = random_case(rng, 3, 60, 3, dtype=dtype)
        data[1][:] = [(s - 0.5).astype(dtype) for s in data[1]]
        weights = [None, [1, 2, 0.5]][case % 2]
        ours = nms(*data, weights=weights)
        assert_identical(ours, run_reference(reference_nms, *data, weights=weights))
        assert (ours[1] < 0).any()
        kwargs = dict(method=2, thresh=-0.2, weights=weights)  # thresh < 0 keeps some negative decayed scores
        assert_identical(soft_nms(*data, **kwargs), run_reference_soft(*data, **kwargs))
        assert_identical(adj_nms(*data, weights=weights, soft_iou_thr=0.3, thresh=-1.0),
                         soft_nms([ours[0]], [ours[1]], [ours[2]], method=1, iou_thr=0.3, thresh=-1.0))


def test_soft_nms_near_tie_follows_numpy_exp():
    """The gaussian decay comes from numpy's vectorised exp, as in ensemble-boxes. Box B overlaps the top box A
    and is decayed by d = np.exp(-iou**2 / sigma); box C overlaps neither and scores d exactly: a tie, which goes
    to the box first in line. Where the scalar exp (libm's, numba's) differs from numpy's in the last bit (numpy's
    AVX512F exp does for about one IoU in ten), it breaks the tie the other way: C is put first in line when the
    scalar exp is larger, B when it is smaller."""
    sigma = 0.5
    box_a, box_c = [0.1, 0.1, 0.5, 0.5], [0.7, 0.7, 0.9, 0.9]

    def area(box):
        return (box[2] - box[0]) * (box[3] - box[1])

    def exponent(shift):
        """-iou**2 / sigma of A and B, computed as ensemble-boxes does (float64)."""
        b = [0.1 + shift, 0.1, 0.5 + shift, 0.5]
        inter = (max(0.0, min(box_a[3], b[3]) - max(box_a[1], b[1])) *
                 max(0.0, min(box_a[2], b[2]) - max(box_a[0], b[0])))
        iou = inter / ((area(box_a) + area(b)) - inter)
        return -(iou * iou) / sigma

    shifts = [k / 1000 for k in range(1, 400)]
    differing = [t for t in shifts if math.exp(exponent(t)) != np.exp(np.array([exponent(t)]))[0]]
    for shift in (differing or shifts)[:10]:
        box_b = [0.1 + shift, 0.1, 0.5 + shift, 0.5]
        decay = np.exp(np.array([exponent(shift)]))[0]
        c_first = math.exp(exponent(shift)) > decay
        boxes = [np.array([box_a, box_c, box_b] if c_first else [box_a, box_b, box_c])]
        scores = [np.array([1.0, decay, 1.0] if c_first else [1.0, 1.0, decay])]
        labels = [np.zeros(3, int)]
        ours = soft_nms(boxes, scores, labels, sigma=sigma)
        ref = run_reference_soft(boxes, scores, labels, sigma=sigma)
        assert_identical(ours, ref)
        assert ours[1][1] == decay  # the tie: the first in line is selected second, undecayed or decayed to d
