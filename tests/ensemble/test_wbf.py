"""ensemble.wbf.weighted_boxes_fusion against ensemble_boxes.weighted_boxes_fusion 1.0.9, the reference."""
import itertools
import warnings

import numpy as np
import pytest
from ensemble_boxes import weighted_boxes_fusion as reference_wbf

from ensemble.wbf import CONF_TYPES, fuse_images, pairwise_sum, weighted_boxes_fusion

TOL = 1e-6
# both warn on every swapped, clipped or zero-area box; test_warnings_match_reference checks those warnings
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:ensemble.wbf")


def run_reference(*args, **kwargs):
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return reference_wbf(*args, **kwargs)


def recorded_warnings(fn, *args, **kwargs):
    """fn's result and the (category, message) of every warning it gave."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = fn(*args, **kwargs)
    return result, [(w.category, str(w.message)) for w in caught]


def assert_same(ours, ref):
    """Same shapes and dtypes, identical labels in the same order, boxes and scores within 1e-6."""
    for got, want, what in zip(ours, ref, ("boxes", "scores", "labels")):
        assert got.dtype == want.dtype, what
        assert got.shape == want.shape, what
    np.testing.assert_array_equal(ours[2], ref[2])
    np.testing.assert_allclose(ours[1], ref[1], rtol=0, atol=TOL)
    np.testing.assert_allclose(ours[0], ref[0], rtol=0, atol=TOL)


def random_case(rng, n_models, n_boxes, n_labels, grid=False, tied_scores=False, dirty=False, dtype=np.float32):
    """Per-model boxes scattered around shared objects (so that they cluster), as detectors give them.

    grid: coordinates on a 1/8 grid (equal IoUs); tied_scores: scores in {0.25, 0.5, 0.75, 1}; dirty: reversed
    corners, coordinates outside [0, 1] and zero-area boxes."""
    objects = np.sort(rng.uniform(0, 1, (max(1, n_boxes // 3), 2, 2)), axis=1).transpose(0, 2, 1).reshape(-1, 4)
    object_labels = rng.integers(0, n_labels, len(objects))
    boxes_list, scores_list, labels_list = [], [], []
    for _ in range(n_models):
        n = int(rng.integers(0, n_boxes + 1))
        pick = rng.integers(0, len(objects), n)
        boxes = objects[pick] + rng.normal(0, 0.03, (n, 4))
        labels = np.where(rng.random(n) < 0.1, rng.integers(0, n_labels, n), object_labels[pick])
        if grid:
            boxes = np.round(boxes * 8) / 8
        if dirty:
            flip = rng.random(n) < 0.2
            boxes[flip] = boxes[flip][:, [2, 3, 0, 1]]
            boxes[rng.random(n) < 0.1] *= 1.5
            boxes[rng.random(n) < 0.1] -= 0.2
            flat = rng.random(n) < 0.1
            boxes[flat, 2] = boxes[flat, 0]
        scores = rng.integers(1, 5, n) / 4 if tied_scores else rng.uniform(0, 1, n)
        boxes_list.append(boxes.astype(dtype))
        scores_list.append(scores.astype(dtype))
        labels_list.append(labels)
    return boxes_list, scores_list, labels_list


SETTINGS = list(itertools.product(CONF_TYPES, (False, True), ("none", "float", "int", "float32")))


@pytest.mark.parametrize("conf_type,allows_overflow,weights_kind", SETTINGS)
def test_random_cases_match_reference(conf_type, allows_overflow, weights_kind):
    rng = np.random.default_rng(SETTINGS.index((conf_type, allows_overflow, weights_kind)))
    for case in range(12):
        n_models = int(rng.integers(1, 7))
        kinds = {"none": None, "float": list(rng.uniform(0.2, 3, n_models)),
                 "int": list(rng.integers(1, 4, n_models)),
                 "float32": rng.uniform(0.2, 3, n_models).astype(np.float32)}
        data = random_case(rng, n_models, int(rng.integers(1, 60)), int(rng.integers(1, 8)),
                           grid=case % 3 == 0, tied_scores=case % 4 == 1, dirty=case % 2 == 0,
                           dtype=np.float32 if case % 5 else np.float64)
        kwargs = dict(weights=kinds[weights_kind], iou_thr=float(rng.choice([0.3, 0.55, 0.7])),
                      skip_box_thr=float(rng.choice([0.0, 0.1, 0.5])), conf_type=conf_type,
                      allows_overflow=allows_overflow)
        assert_same(weighted_boxes_fusion(*data, **kwargs), run_reference(*data, **kwargs))


def test_results_are_bit_identical():
    """Beyond the 1e-6 tolerance: the float32 rounding of fused boxes is reproduced, so results agree exactly."""
    rng = np.random.default_rng(2024)
    for case in range(60):
        n_models = int(rng.integers(2, 7))
        data = random_case(rng, n_models, 40, 3, grid=case % 2 == 0, dtype=np.float32 if case % 3 else np.float64)
        kwargs = dict(weights=list(rng.uniform(0.2, 3, n_models)), conf_type=CONF_TYPES[case % 4])
        for got, want in zip(weighted_boxes_fusion(*data, **kwargs), run_reference(*data, **kwargs)):
            np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("n_models,n_boxes,n_labels", [(1, 200, 1), (5, 300, 1), (12, 100, 3), (5, 300, 400)])
def test_large_cases_match_reference(n_models, n_boxes, n_labels):
    rng = np.random.default_rng(n_models * 1000 + n_labels)
    data = random_case(rng, n_models, n_boxes, n_labels)
    for conf_type in CONF_TYPES:
        assert_same(weighted_boxes_fusion(*data, conf_type=conf_type), run_reference(*data, conf_type=conf_type))


def test_sums_over_models_follow_numpy():
    """Weight sums use numpy's pairwise order (it matters from 9 models on), in float32 for float32 weights."""
    rng = np.random.default_rng(9)
    for n in [0, 1, 7, 8, 9, 16, 17, 100, 128, 129, 300, 1000]:
        values = rng.uniform(0, 1, n) * 10.0 ** rng.integers(-6, 6, n)
        assert pairwise_sum(values, False) == values.sum()
        as32 = values.astype(np.float32)
        assert pairwise_sum(as32.astype(np.float64), True) == as32.sum()


def test_sparse_and_negative_label_ids():
    rng = np.random.default_rng(11)
    for _ in range(10):
        boxes, scores, labels = random_case(rng, 4, 50, 6)
        labels = [(lab - 2) * 1_000_003 for lab in labels]  # beyond a lookup table's range
        assert_same(weighted_boxes_fusion(boxes, scores, labels), run_reference(boxes, scores, labels))


def test_ties_follow_numpy_argsort():
    """Equal scores in one label and equal final confidences: the order is numpy's argsort's, not a stable one."""
    rng = np.random.default_rng(7)
    n = 40
    boxes = [np.tile([[0.1, 0.1, 0.5, 0.5]], (n, 1)) + rng.integers(0, 3, (n, 1)) * 0.3 for _ in range(3)]
    scores = [np.full(n, 0.5) for _ in range(3)]
    labels = [np.zeros(n, int) for _ in range(3)]
    for iou_thr in (0.55, 1.0):  # 1.0: nothing merges, every box keeps its tied score
        assert_same(weighted_boxes_fusion(boxes, scores, labels, iou_thr=iou_thr),
                    run_reference(boxes, scores, labels, iou_thr=iou_thr))


def test_equal_ious_join_the_first_cluster():
    """A box exactly between two clusters (IoU 0.6 with both, dyadic coordinates) joins the one created first."""
    boxes = [np.array([[0.0, 0.0, 0.5, 0.25], [0.25, 0.0, 0.75, 0.25], [0.125, 0.0, 0.625, 0.25]])]
    scores, labels = [np.array([0.9, 0.85, 0.7])], [np.array([3, 3, 3])]
    ours = weighted_boxes_fusion(boxes, scores, labels, iou_thr=0.4)
    assert_same(ours, run_reference(boxes, scores, labels, iou_thr=0.4))
    # by hand: the second box stays alone (IoU 1/3 with the first); the third joins the first, giving
    # x = (0.9 * x_first + 0.7 * x_third) / 1.6 and score (0.9 + 0.7) / 2 * min(1 model, 2 boxes) / 1
    np.testing.assert_allclose(ours[0], [[0.25, 0, 0.75, 0.25],
                                         [0.7 * 0.125 / 1.6, 0, (0.9 * 0.5 + 0.7 * 0.625) / 1.6, 0.25]], atol=TOL)
    np.testing.assert_allclose(ours[1], [0.85, 0.8], atol=TOL)


@pytest.mark.parametrize("boxes_list,scores_list,labels_list", [
    ([], [], []),
    ([np.zeros((0, 4))], [np.zeros(0)], [np.zeros(0)]),
    ([[], np.zeros((0, 4))], [[], []], [[], []]),
    ([[[0.1, 0.1, 0.1, 0.5]]], [[0.9]], [[0]]),  # zero area only
    ([[[0.1, 0.1, 0.3, 0.5]]], [[0.05]], [[0]]),  # below skip_box_thr
])
def test_empty_results(boxes_list, scores_list, labels_list):
    kwargs = dict(skip_box_thr=0.1)
    assert_same(weighted_boxes_fusion(boxes_list, scores_list, labels_list, **kwargs),
                run_reference(boxes_list, scores_list, labels_list, **kwargs))


def test_python_lists_float_labels_and_dirty_boxes():
    boxes = [[[0.5, 0.6, 0.1, 0.2], [-0.1, 0.1, 0.4, 1.3], [0.2, 0.2, 0.2, 0.9]],
             [[0.12, 0.22, 0.48, 0.61], [0.0, 0.1, 0.41, 1.0]]]
    scores = [[0.9, 0.8, 0.7], [0.6, 0.5]]
    labels = [[1.0, 2.7, 1.0], [1.2, 2.0]]  # truncated to ints, as int() does
    for conf_type in CONF_TYPES:
        ours = weighted_boxes_fusion(boxes, scores, labels, weights=[2, 1], conf_type=conf_type)
        assert_same(ours, run_reference(boxes, scores, labels, weights=[2, 1], conf_type=conf_type))
        assert sorted(ours[2].tolist()) == [1.0, 2.0]


def test_zero_scores_are_fused_where_defined():
    """One zero-score box alone is fine (same result as the reference); only all-zero clusters are rejected."""
    boxes = [np.array([[0.1, 0.1, 0.5, 0.5], [0.6, 0.6, 0.9, 0.9]]), np.array([[0.11, 0.1, 0.5, 0.5]])]
    scores, labels = [np.array([0.0, 0.0]), np.array([0.8])], [np.array([0, 0]), np.array([0])]
    assert_same(weighted_boxes_fusion(boxes, scores, labels), run_reference(boxes, scores, labels))


def test_all_zero_scores_raise_where_reference_gives_nan():
    boxes = [np.array([[0.1, 0.1, 0.5, 0.5]]), np.array([[0.11, 0.1, 0.5, 0.5]])]
    scores, labels = [np.zeros(1), np.zeros(1)], [np.zeros(1, int), np.zeros(1, int)]
    with np.errstate(all="ignore"):
        assert np.isnan(run_reference(boxes, scores, labels)[0]).all()
    with pytest.raises(ValueError, match="summing to 0"):
        weighted_boxes_fusion(boxes, scores, labels)


def test_bad_input_raises_value_error():
    box, score, label = [np.array([[0.1, 0.1, 0.5, 0.5]])], [np.array([0.5])], [np.array([1])]
    with pytest.raises(SystemExit):  # the reference exits the interpreter on mismatched lengths
        run_reference(box, [np.array([0.5, 0.6])], label)
    with pytest.raises(ValueError, match="model 0: 1 boxes but 2 scores"):
        weighted_boxes_fusion(box, [np.array([0.5, 0.6])], label)
    with pytest.raises(ValueError, match="one entry per model"):
        weighted_boxes_fusion(box, score, label + label)
    with pytest.raises(ValueError, match="labels must be integer class ids"):
        weighted_boxes_fusion(box, score, [np.array(["/m/01g317"])])
    with pytest.raises(ValueError, match="weights needs one number per model"):
        weighted_boxes_fusion(box, score, label, weights=[1, 2])
    with pytest.raises(ValueError, match="not all 0"):  # every score would be x / 0
        weighted_boxes_fusion(box, score, label, weights=[0])
    with pytest.raises(ValueError, match="non-negative"):
        weighted_boxes_fusion(box + box, score + score, label + label, weights=[1, -1])
    with pytest.raises(ValueError, match="conf_type"):
        weighted_boxes_fusion(box, score, label, conf_type="mean")
    with pytest.raises(ValueError, match="NaN"):
        weighted_boxes_fusion([np.array([[0.1, np.nan, 0.5, 0.5]])], score, label)
    with pytest.raises(ValueError, match="finite"):
        weighted_boxes_fusion(box, [np.array([np.inf])], label)
    with pytest.raises(ValueError, match=r"2\*\*24"):
        weighted_boxes_fusion(box, score, [np.array([2 ** 24])])
    with pytest.raises(ValueError, match=r"shape \(n, 4\)"):
        weighted_boxes_fusion([np.array([0.1, 0.1, 0.5, 0.5])], score, label)


@pytest.mark.parametrize("conf_type", CONF_TYPES)
def test_zero_weights_match_reference(conf_type):
    """Zero-weight models' boxes join clusters with key 0 (they only count as boxes): bit-identical results. Where
    the reference gives NaN (zero-key boxes fused alone, or a 'box_and_model_avg' cluster of zero-weight boxes
    only), ours raises instead."""
    rng = np.random.default_rng(CONF_TYPES.index(conf_type) + 100)
    identical = raised = 0
    for case in range(40):
        n_models = int(rng.integers(2, 6))
        data = random_case(rng, n_models, 30, 3, dirty=case % 2 == 0, dtype=np.float32 if case % 3 else np.float64)
        weights = list(np.where(rng.random(n_models) < 0.4, 0.0, rng.uniform(0.2, 3, n_models)))
        weights[case % n_models] = 0.0
        weights[(case + 1) % n_models] = 1.0
        kwargs = dict(weights=weights, iou_thr=float(rng.choice([0.3, 0.55])), conf_type=conf_type)
        ref = run_reference(*data, **kwargs)
        if np.isnan(ref[0]).any() or np.isnan(ref[1]).any():
            with pytest.raises(ValueError, match="summing to 0|zero-weight models"):
                weighted_boxes_fusion(*data, **kwargs)
            raised += 1
        else:
            for got, want in zip(weighted_boxes_fusion(*data, **kwargs), ref):
                assert got.dtype == want.dtype
                np.testing.assert_array_equal(got, want)
            identical += 1
    assert raised >= 1 and identical >= (1 if conf_type == "box_and_model_avg" else 10)  # there NaN is common


def test_zero_weight_box_counts_but_does_not_move_the_fused_box():
    boxes = [np.array([[0.1, 0.1, 0.5, 0.5]]), np.array([[0.12, 0.1, 0.5, 0.52]])]
    scores, labels = [np.array([0.8]), np.array([0.9])], [np.array([1]), np.array([1])]
    for conf_type in CONF_TYPES:
        ours = weighted_boxes_fusion(boxes, scores, labels, weights=[1, 0], conf_type=conf_type)
        for got, want in zip(ours, run_reference(boxes, scores, labels, weights=[1, 0], conf_type=conf_type)):
            np.testing.assert_array_equal(got, want)
        np.testing.assert_allclose(ours[0], [[0.1, 0.1, 0.5, 0.5]], atol=TOL)
    ours = weighted_boxes_fusion(boxes, scores, labels, weights=[1, 0])
    np.testing.assert_allclose(ours[1], [0.8 / 2 * 2 / 1], atol=TOL)  # mean key * min(2 models, 2 boxes) / 1


def test_warnings_match_reference():
    """One UserWarning per swapped or clipped coordinate and per zero-area box, with the reference's messages, in
    its order; boxes below skip_box_thr are not checked."""
    rng = np.random.default_rng(31)
    n_warnings = 0
    for case in range(30):
        data = random_case(rng, int(rng.integers(1, 5)), 30, 3, dirty=True,
                           dtype=np.float32 if case % 2 else np.float64)
        if case % 3 == 0:  # Python lists: the zero-area message shows the box as a list
            data = tuple([part.tolist() for part in parts] for parts in data)
        kwargs = dict(skip_box_thr=float(rng.choice([0.0, 0.3])))
        ours, our_warnings = recorded_warnings(weighted_boxes_fusion, *data, **kwargs)
        ref, ref_warnings = recorded_warnings(reference_wbf, *data, **kwargs)
        assert our_warnings == ref_warnings
        assert_same(ours, ref)
        n_warnings += len(our_warnings)
    assert n_warnings > 100


def test_clean_boxes_give_no_warnings_and_the_filter_silences_them():
    rng = np.random.default_rng(32)
    boxes, scores, labels = random_case(rng, 3, 40, 3)
    boxes = [np.clip(np.concatenate([np.minimum(b[:, :2], b[:, 2:]), np.maximum(b[:, :2], b[:, 2:])], axis=1), 0, 1)
             for b in boxes]
    clean = boxes, scores, labels
    assert recorded_warnings(weighted_boxes_fusion, *clean)[1] == []
    dirty = random_case(rng, 3, 40, 3, dirty=True)
    assert recorded_warnings(weighted_boxes_fusion, *dirty)[1]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.filterwarnings("ignore", category=UserWarning, module="ensemble.wbf")  # as documented
        weighted_boxes_fusion(*dirty)
    assert caught == []
    # a filter on the text or the line leaves the other warnings to the warnings module: same ones as the reference
    for text_filter in (dict(message="Zero area"), dict(lineno=1)):
        with warnings.catch_warnings(record=True) as ours:
            warnings.simplefilter("always")
            warnings.filterwarnings("ignore", category=UserWarning, **text_filter)
            weighted_boxes_fusion(*dirty)
        with warnings.catch_warnings(record=True) as ref:
            warnings.simplefilter("always")
            warnings.filterwarnings("ignore", category=UserWarning, **text_filter)
            reference_wbf(*dirty)
        assert [str(w.message) for w in ours] == [str(w.message) for w in ref] != []


def images_layout(per_image):
    """Cases of several images (each per model: boxes, scores, labels) as fuse_images takes them: the rows of each
    model image by image, the models one after the other, and bounds (M, I + 1)."""
    n_models = len(per_image[0][0])
    boxes, scores, labels, bounds, start = [], [], [], np.zeros((n_models, len(per_image) + 1), np.int64), 0
    for m in range(n_models):
        for i, (b, s, lab) in enumerate(per_image):
            bounds[m, i] = start
            boxes.append(b[m])
            scores.append(s[m])
            labels.append(lab[m])
            start += len(s[m])
        bounds[m, -1] = start
    return np.concatenate(boxes).reshape(-1, 4), np.concatenate(scores), np.concatenate(labels), bounds


def fused_rows(boxes, scores, image, label):
    """(image, label, score, x1, y1, x2, y2) tuples, sorted: a set of fused boxes, whatever their order."""
    return sorted(zip(image.tolist(), label.tolist(), scores.tolist(), *boxes.T.tolist()))


@pytest.mark.parametrize("conf_type", CONF_TYPES)
def test_fuse_images_is_wbf_image_by_image(conf_type):
    """fuse_images on many images at once gives, bit for bit, weighted_boxes_fusion of each image alone: with
    tied scores (the images left to weighted_boxes_fusion itself), dirty boxes, the score filter and a subset of the
    labels (``take``)."""
    rng = np.random.default_rng(CONF_TYPES.index(conf_type))
    for case in range(4):
        n_models, n_labels = int(rng.integers(1, 6)), int(rng.integers(1, 9))
        per_image = [random_case(rng, n_models, int(rng.integers(0, 40)), n_labels, grid=i % 3 == 0,
                                 tied_scores=i % 4 == 1, dirty=i % 2 == 0) for i in range(30)]
        kwargs = dict(iou_thr=float(rng.choice([0.3, 0.55, 0.7])), skip_box_thr=float(rng.choice([0.0, 0.3])),
                      conf_type=conf_type, allows_overflow=bool(case % 2))
        weights = list(rng.uniform(0.2, 3, n_models))
        take = None if case < 2 else rng.random(n_labels) < 0.6  # then only these labels are fused
        want = []
        for i, (b, s, lab) in enumerate(per_image):
            if take is not None:
                b, s, lab = zip(*[(bm[take[lm]], sm[take[lm]], lm[take[lm]]) for bm, sm, lm in zip(b, s, lab)])
            fused, conf, labels = weighted_boxes_fusion(b, s, lab, weights, **kwargs)
            want += fused_rows(fused, conf, np.full(len(conf), i), labels.astype(np.int64))
        got = fuse_images(*images_layout(per_image), n_labels, weights, take=take, **kwargs)
        assert got[0].dtype == got[1].dtype == np.float64
        assert fused_rows(*got) == sorted(want)


def test_fuse_images_warns_and_raises_as_wbf():
    boxes, scores, labels, bounds = images_layout([([np.array([[0.5, 0.5, 0.2, 0.7], [0.1, 0.1, 0.1, 0.4]])],
                                                    [np.array([0.9, 0.8])], [np.array([0, 1])])])
    _, caught = recorded_warnings(fuse_images, boxes, scores, labels, bounds, 2, [1.0])
    _, want = recorded_warnings(weighted_boxes_fusion, [boxes], [scores], [labels], [1.0])
    assert caught == want and len(caught) == 2
    zero = np.array([[0.1, 0.1, 0.4, 0.4], [0.1, 0.1, 0.4, 0.4]])
    with pytest.raises(ValueError, match="summing to 0"):
        weighted_boxes_fusion([zero], [np.zeros(2)], [np.zeros(2, int)], [1.0])
    fused = fuse_images(zero, np.zeros(2), np.zeros(2, int), np.array([[0, 2]]), 1, [1.0])
    assert [len(column) for column in fused] == [0, 0, 0, 0]  # the runner leaves undefined clusters out


@pytest.mark.parametrize("conf_type", CONF_TYPES)
def test_fuse_images_leaves_zero_key_clusters_out(conf_type):
    """A model of weight 0 whose boxes overlap only each other: ensemble-boxes gives NaN boxes (keys summing to 0;
    under 'box_and_model_avg' every cluster of its boxes alone has a NaN score), fuse_images leaves those clusters
    out and gives ensemble-boxes' other clusters, bit for bit, in images fused by the kernel and in images with tied
    scores (fused by weighted_boxes_fusion's code)."""
    rng = np.random.default_rng(7)
    per_image, want = [], []
    for i in range(12):
        b, s, lab = random_case(rng, 2, 30, 3, tied_scores=i % 2 == 1)
        offset = rng.uniform(0, 0.05, (4, 4))
        off = np.clip(np.array([[0.9, 0.9, 0.99, 0.99]] * 4) - offset * [1, 1, 0, 0], 0, 1)  # overlapping each other
        per_image.append(([*b, off], [*s, rng.uniform(0.1, 1, 4)], [*lab, np.array([0, 0, 1, 2])]))
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            fused, conf, labels = reference_wbf(*per_image[-1], weights=[2.0, 1.0, 0.0], conf_type=conf_type)
        defined = ~np.isnan(conf) & ~np.isnan(fused).any(axis=1)
        assert not defined.all() or conf_type != "box_and_model_avg"
        want += fused_rows(fused[defined], conf[defined], np.full(defined.sum(), i), labels[defined].astype(int))
    got = fuse_images(*images_layout(per_image), 3, [2.0, 1.0, 0.0], conf_type=conf_type)
    assert fused_rows(*got) == sorted(want)
