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
from ensemble.suppression import adj_nms, nms, nms_method, soft_nms, suppress_images


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


@pytest.fixture(params=["matrix", "pairs"])
def soft_path(request, monkeypatch):
    """Soft-NMS's two ways through a group: its full decay matrix (groups up to _MATRIX_GROUP_ROWS boxes, by
    default all of these tests') or its intersecting pairs (larger groups; here every group)."""
    if request.param == "pairs":
        monkeypatch.setattr(ensemble.suppression, "_MATRIX_GROUP_ROWS", 0)
    return request.param


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
def test_soft_nms_keeps_the_reference_boxes_and_decays_scores(method, soft_path):
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


def test_soft_nms_float32_scores_match_reference_selection(soft_path):
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


@pytest.mark.parametrize("sigma", [0.5, 0.25, 2.0, 0.3, 0.7])
def test_gaussian_decay_bits_for_any_sigma(sigma, soft_path):
    """A power-of-two sigma is divided by as a product by its inverse in the decay matrices: the decayed scores keep
    ensemble-boxes' bits for those sigmas as for the others."""
    rng = np.random.default_rng(int(sigma * 100))
    for case in range(12):
        dtype = np.float32 if case % 2 else np.float64
        data = random_case(rng, int(rng.integers(1, 5)), int(rng.integers(5, 70)), int(rng.integers(1, 4)),
                           dtype=dtype)
        kwargs = dict(method=2, sigma=sigma, thresh=0.001)
        assert_identical(soft_nms(*data, **kwargs), run_reference_soft(*data, **kwargs))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_zero_weights_match_reference(dtype, soft_path):
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
def test_negative_scores_are_kept_as_reference(dtype, soft_path):
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


def test_soft_nms_near_tie_follows_numpy_exp(soft_path):
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


def images_case(rng, n_models, n_images, n_labels, n_boxes, dtype, ties=False, negative=False):
    """Rows of several models and images in ``suppress_images``' layout: per model its images one after the other,
    bounds (M, I + 1), and a junk row (NaN box, infinite score) between models that no bound covers. Dirty boxes
    (reversed corners, out of [0, 1], zero area, float32-only zero area), labels absent from some models, images
    without boxes; ``ties``: scores on a grid of a few values; ``negative``: scores shifted below 0."""
    boxes, scores, labels, bounds = [], [], [], np.zeros((n_models, n_images + 1), np.int64)
    at = 0
    for m in range(n_models):
        model_labels = rng.permutation(n_labels)[:int(rng.integers(1, n_labels + 1))]
        for i in range(n_images):
            b, s, _ = random_case(rng, 1, n_boxes, 1, dtype=np.float64)
            b, s = b[0], s[0]
            if rng.random() < 0.2:
                b, s = b[:0], s[:0]
            out_of_range = rng.random(len(b)) < 0.1
            b[out_of_range] += rng.choice([-0.3, 0.3], (int(out_of_range.sum()), 1))
            tiny = rng.random(len(b)) < 0.05  # area 1e-50: 0 in float32, not in float64
            b[tiny] = [0.0, 0.0, 1e-25, 1e-25]
            near = np.flatnonzero(rng.random(len(b)) < 0.3)[1:]  # IoU 0.5 with the box before, up to rounding
            b[near] = b[near - 1] + (b[near - 1, 2] - b[near - 1, 0])[:, None] / 3 * [1, 0, 1, 0]
            if ties:
                s = rng.choice([0.1, 0.3, 0.7, 0.9], len(s))
            boxes.append(b)
            scores.append(s - 0.5 if negative else s)
            labels.append(rng.choice(model_labels, len(b)))
            at += len(b)
            bounds[m, i + 1] = at
        boxes.append(np.full((1, 4), np.nan))
        scores.append(np.array([np.inf]))
        labels.append(np.zeros(1, int))
        at += 1
        if m + 1 < n_models:
            bounds[m + 1, 0] = at
    return (np.concatenate(boxes).astype(dtype), np.concatenate(scores).astype(dtype),
            np.concatenate(labels).astype(np.int32), bounds)


def pair_inputs(case, i, label, skip_box_thr):
    """The per-model lists of image i's rows of ``label`` (raw score >= skip_box_thr when given)."""
    boxes, scores, labels, bounds = case
    rows = [np.arange(b[i], b[i + 1]) for b in bounds]
    rows = [r[labels[r] == label] for r in rows]
    if skip_box_thr is not None:
        rows = [r[~(scores[r] < skip_box_thr)] for r in rows]
    return [boxes[r] for r in rows], [scores[r] for r in rows], [labels[r] for r in rows]


def assert_matches_per_pair(case, got, take, skip_box_thr, single):
    """``got`` (suppress_images' output) holds, for every (image, label) of the taken labels, exactly what
    ``single(boxes_list, scores_list, labels_list)`` gives for those rows alone (None: no box left there)."""
    got_boxes, got_scores, got_image, got_label = got
    assert got_boxes.dtype == case[0].dtype and got_scores.dtype == np.float64
    n_images, seen = case[3].shape[1] - 1, 0
    for i in range(n_images):
        for label in np.flatnonzero(take):
            want = single(*pair_inputs(case, i, label, skip_box_thr))
            pair = (got_image == i) & (got_label == label)
            if want is None:
                assert not pair.any()
                continue
            assert_identical((got_boxes[pair], got_scores[pair]), want[:2])
            assert (want[2] == label).all()
            seen += pair.sum()
    assert seen == len(got_boxes)


def reference_or_none(fn):
    """``fn`` on one pair's per-model lists; None where no box is left after the clean-up (ensemble-boxes fails
    there)."""
    def single(boxes, scores, labels):
        return fn(boxes, scores, labels) if len(nms(boxes, scores, labels)[0]) else None
    return single


SUPPRESS_CASES = [  # (function, params, the reference for one pair given weights)
    ("nms", {"iou_thr": 0.5}, lambda w: lambda *d: run_reference(reference_nms_method, *d, method=3, iou_thr=0.5,
                                                                 weights=w)),
    ("soft_nms", {"method": "linear", "iou_thr": 0.4, "thresh": 0.05},
     lambda w: lambda *d: run_reference_soft(*d, method=1, iou_thr=0.4, thresh=0.05, weights=w)),
    ("nms_method", {"method": 2, "sigma": 0.3, "thresh": 0.01},
     lambda w: lambda *d: run_reference_soft(*d, method=2, sigma=0.3, thresh=0.01, weights=w)),
    ("adj_nms", {"iou_thr": 0.5, "soft_iou_thr": 0.2, "thresh": 0.02, "method": "gaussian"},
     lambda w: lambda *d: adj_nms(*d, iou_thr=0.5, soft_iou_thr=0.2, thresh=0.02, method="gaussian", weights=w)),
]


@pytest.mark.parametrize("function, params, reference", SUPPRESS_CASES, ids=[c[0] for c in SUPPRESS_CASES])
def test_suppress_images_matches_each_pair_alone(function, params, reference, monkeypatch):
    """Every (image, label) gives exactly ensemble-boxes' result for its rows alone (decayed scores for Soft-NMS),
    or our adj_nms's; zero weights, equal and negative scores, float32 and float64, skip_box_thr and take; the
    Soft-NMS pass over several chunks of groups."""
    monkeypatch.setattr(ensemble.suppression, "_MATRIX_ENTRIES", 64)
    monkeypatch.setattr(ensemble.suppression, "_MATRIX_GROUP_ROWS", 12)
    rng = np.random.default_rng(20 + [c[0] for c in SUPPRESS_CASES].index(function))
    for case_number in range(16):
        n_models, n_labels = int(rng.integers(1, 5)), int(rng.integers(1, 5))
        dtype = (np.float32, np.float64)[case_number % 2]
        case = images_case(rng, n_models, int(rng.integers(1, 5)), n_labels, int(rng.integers(1, 40)), dtype,
                           ties=rng.random() < 0.6, negative=rng.random() < 0.3)
        weights = [float(w) for w in rng.uniform(0.5, 2, n_models) * (rng.random(n_models) < 0.7)]
        weights[0] = weights[0] or 1.0
        take = rng.random(n_labels) < 0.8 if case_number % 3 else np.ones(n_labels, bool)
        # 0.7 and -0.2 are above their float32 roundings: scores equal to those are kept in float32 only
        skip_box_thr = (None, 0.3, 0.7, -0.2)[case_number % 4]
        got = suppress_images(*case[:3], case[3], n_labels, weights, function, take=take, skip_box_thr=skip_box_thr,
                              **params)
        assert_matches_per_pair(case, got, take, skip_box_thr, reference_or_none(reference(weights)))


def test_suppress_images_ties_in_large_groups():
    """Groups larger than the insertion-sort limit, with and without equal scores: numba's argsort order."""
    rng = np.random.default_rng(30)
    for ties in (False, True):
        case = images_case(rng, 3, 2, 1, 60, np.float32, ties=ties)
        got = suppress_images(*case[:3], case[3], 1, [1.0, 2.0, 1.0], "nms", iou_thr=0.3)
        assert_matches_per_pair(case, got, np.ones(1, bool), None, reference_or_none(
            lambda *d: run_reference(reference_nms, *d, iou_thr=0.3, weights=[1.0, 2.0, 1.0])))


def test_suppress_images_bad_input():
    box = np.array([[0.1, 0.1, 0.5, 0.5], [np.nan, 0.1, 0.5, 0.5]], np.float32)
    score, label = np.array([0.5, 0.4], np.float32), np.array([0, 1], np.int32)
    bounds = np.array([[0, 1, 2]])
    assert len(suppress_images(box, score, label, bounds, 2, [1.0], "nms", take=np.array([True, False]))[0]) == 1
    with pytest.raises(ValueError, match="model 0: boxes contain NaN"):
        suppress_images(box, score, label, bounds, 2, [1.0], "nms")
    with pytest.raises(ValueError, match="scores must be finite"):
        suppress_images(box[:1], np.array([np.inf], np.float32), label[:1], np.array([[0, 1]]), 1, [1.0], "adj_nms")
    with pytest.raises(ValueError, match="sigma must be positive"):
        suppress_images(box, score, label, bounds, 2, [1.0], "soft_nms", sigma=0)
    with pytest.raises(ValueError, match="bad parameters for nms"):
        suppress_images(box, score, label, bounds, 2, [1.0], "nms", sigma=0.5)
    with pytest.raises(ValueError, match="not all 0"):
        suppress_images(box, score, label, bounds, 2, [0.0], "nms")
    empty = suppress_images(box[:0], score[:0], label[:0], np.zeros((2, 1), int), 2, [1.0, 1.0], "adj_nms")
    assert [a.shape for a in empty] == [(0, 4), (0,), (0,), (0,)]
