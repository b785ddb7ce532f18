"""The Challenge 2019 metric: hand-computed cases (expected AP written out as fractions) and parity with a scalar
pure-Python implementation of the rules on random inputs."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from contracts.hierarchy import Hierarchy
from contracts.metric import evaluate, evaluate_entries, evaluate_expanded, expand_ground_truth, match_entries

from tests.helpers import METADATA

APPLE, FRUIT, VEGETABLE, TOMATO, CARROT = "/m/014j1m", "/m/02xwb", "/m/0f4s2w", "/m/07j87", "/m/0fj52s"
FLAT = Hierarchy.from_json({"LabelName": "/m/0bl9f", "Subcategory": [{"LabelName": "/m/a"}, {"LabelName": "/m/b"}]})


@pytest.fixture(scope="module")
def real():
    classes = pd.read_csv(METADATA / "challenge-2019-classes-description-500.csv", header=None)[0].tolist()
    return Hierarchy.from_json(METADATA / "challenge-2019-label500-hierarchy.json"), classes


def boxes(*rows) -> pd.DataFrame:
    """Ground-truth rows (image, mid, x0, y0, x1, y1, group_of) in the CSV column layout."""
    return pd.DataFrame([(i, m, x0, x1, y0, y1, g) for i, m, x0, y0, x1, y1, g in rows],
                        columns=["ImageID", "LabelName", "XMin", "XMax", "YMin", "YMax", "IsGroupOf"])


def labels(*rows) -> pd.DataFrame:
    return pd.DataFrame(list(rows), columns=["ImageID", "LabelName", "Confidence"])


def dets(*rows) -> pd.DataFrame:
    """Detections (image, mid, score, x0, y0, x1, y1)."""
    return pd.DataFrame(list(rows), columns=["ImageID", "LabelName", "Score", "XMin", "YMin", "XMax", "YMax"])


def ap_of(result, mid: str) -> float:
    return float(result.per_class.set_index("MID").loc[mid, "AP"])


def test_group_of_box_gives_one_tp_at_the_highest_absorbed_score():
    gt = boxes(("i1", "/m/a", 0, 0, .4, .4, 0), ("i1", "/m/a", .5, .5, 1, 1, 1))
    result = evaluate(dets(("i1", "/m/a", .9, 0, 0, .4, .4),       # TP on the normal box
                           ("i1", "/m/a", .85, 0, .6, .1, .7),     # FP (outside both)
                           ("i1", "/m/a", .8, .6, .6, .7, .7),     # inside the group-of box
                           ("i1", "/m/a", .75, .0, .8, .1, .9),    # FP
                           ("i1", "/m/a", .7, .8, .8, .9, .9),     # inside the group-of box
                           ("i1", "/m/a", .5, 0, 0, .4, .4)),      # normal box already taken, not in group: FP
                      gt, labels(), FLAT, ["/m/a", "/m/b"])
    # list: .9 TP, .85 FP, .8 TP (group-of, max score), .75 FP, .5 FP; num_gt = 2
    # precision 1, 1/2, 2/3, 2/4, 2/5; recall 1/2, 1/2, 1, 1, 1 -> AP = 1/2 * 1 + 1/2 * 2/3
    assert ap_of(result, "/m/a") == pytest.approx(1 / 2 + 1 / 2 * 2 / 3, abs=1e-12)
    row = result.per_class.set_index("MID").loc["/m/a"]
    assert (row["num_gt"], row["num_dets"]) == (2, 6)
    assert np.isnan(ap_of(result, "/m/b"))
    assert result.map == pytest.approx(5 / 6, abs=1e-12)  # classes without ground truth are left out


def test_normal_box_match_wins_over_group_of_and_no_second_best_fallback():
    gt = boxes(("i1", "/m/a", 0, 0, .4, .4, 0), ("i1", "/m/a", .1, 0, .5, .4, 0),
               ("i1", "/m/a", 0, 0, .8, .8, 1))
    result = evaluate(dets(("i1", "/m/a", .95, .6, .6, .75, .75),  # IoU 0, inside group-of -> absorbed
                           ("i1", "/m/a", .92, .85, .85, .95, .95),  # outside everything: FP
                           ("i1", "/m/a", .9, 0, 0, .4, .4),     # IoU 1 with box 1 (also inside group-of): TP
                           ("i1", "/m/a", .8, .03, 0, .43, .4)),  # best IoU box 1 (0.86, taken; box 2 0.70) ->
                      gt, labels(), FLAT, ["/m/a"])              # no fallback; inside group-of -> absorbed
    # list: .95 TP (group-of at max .95), .92 FP, .9 TP; num_gt = 3
    # precision 1, 1/2, 2/3; recall 1/3, 1/3, 2/3 -> AP = 1/3 * 1 + 1/3 * 2/3
    assert ap_of(result, "/m/a") == pytest.approx(1 / 3 + 1 / 3 * 2 / 3, abs=1e-12)


def test_iou_of_exactly_one_half_matches():
    result = evaluate(dets(("i1", "/m/a", .3, 0, 0, .25, 1)), boxes(("i1", "/m/a", 0, 0, .5, 1, 0)), labels(),
                      FLAT, ["/m/a"])
    assert ap_of(result, "/m/a") == 1.0


def test_negative_label_verifies_descendants_and_predictions_are_not_expanded(real):
    hierarchy, classes = real
    gt = boxes(("A", APPLE, .1, .1, .5, .5, 0), ("C", CARROT, .1, .1, .5, .5, 0))
    lab = labels(("B", FRUIT, 0))  # verified absent: Fruit and its descendants (Apple, Tomato, ...)
    result = evaluate(dets(("A", APPLE, .6, .1, .1, .5, .5),   # TP
                           ("B", APPLE, .9, .1, .1, .5, .5),   # FP: Apple verified on B through Fruit's negative
                           ("C", APPLE, .95, .1, .1, .5, .5),  # ignored: Apple not verified on C
                           ("Z", APPLE, .99, .1, .1, .5, .5)),  # ignored: Z has no ground truth
                      gt, lab, hierarchy, classes)
    # Apple list: .9 FP, .6 TP; num_gt 1 -> AP = 1 * 1/2
    assert ap_of(result, APPLE) == pytest.approx(1 / 2, abs=1e-12)
    per_class = result.per_class.set_index("MID")
    # the Apple box expands to Fruit, but the Apple detection is not copied to Fruit
    assert (per_class.loc[FRUIT, "num_gt"], per_class.loc[FRUIT, "AP"], per_class.loc[FRUIT, "num_dets"]) == (1, 0, 0)
    assert per_class.loc[APPLE, "num_dets"] == 2
    assert result.num_images == 3


def test_multi_parent_class_expands_to_both_parents(real):
    hierarchy, classes = real
    assert hierarchy.ancestors(TOMATO) == {FRUIT, VEGETABLE}
    gt = boxes(("T", TOMATO, .2, .2, .6, .6, 0), ("W", APPLE, .2, .2, .6, .6, 0))
    lab = labels(("U", TOMATO, 1))  # verified present: Tomato and its ancestors
    result = evaluate(dets(("T", VEGETABLE, .5, .2, .2, .6, .6),  # TP on the Vegetable copy of the Tomato box
                           ("U", VEGETABLE, .8, .2, .2, .6, .6),  # FP: Vegetable verified on U via Tomato's label
                           ("W", VEGETABLE, .9, .2, .2, .6, .6),  # ignored: Apple does not verify Vegetable
                           ("T", FRUIT, .7, .2, .2, .6, .6),      # TP on the Fruit copy
                           ("W", FRUIT, .4, .2, .2, .6, .6)),     # TP on the Fruit copy of the Apple box
                      gt, lab, hierarchy, classes)
    per_class = result.per_class.set_index("MID")
    # Vegetable: .8 FP, .5 TP; num_gt 1 -> 1/2.  Fruit: .7 TP, .4 TP; num_gt 2 -> 1.  Tomato: no dets -> 0
    assert ap_of(result, VEGETABLE) == pytest.approx(1 / 2, abs=1e-12)
    assert ap_of(result, FRUIT) == 1.0
    assert tuple(per_class.loc[TOMATO, ["AP", "num_gt", "num_dets"]]) == (0, 1, 0)
    with_gt = per_class[per_class["num_gt"] > 0]
    assert set(with_gt.index) == {TOMATO, VEGETABLE, FRUIT, APPLE}
    assert result.map == pytest.approx((1 / 2 + 1 + 0 + 0) / 4, abs=1e-12)


def test_invalid_boxes_and_floor_scores_are_dropped():
    gt = boxes(("i1", "/m/a", 0, 0, .5, .5, 0))
    result = evaluate(dets(("i1", "/m/a", .9, .5, 0, .4, .5),     # xmin > xmax: dropped (else an FP above the TP)
                           ("i1", "/m/a", .8, 0, .5, .5, .5),     # ymin == ymax: dropped
                           ("i1", "/m/a", .7, 0, 0, .5, .5),      # TP
                           ("i1", "/m/a", -20, .6, .6, .9, .9),   # score <= -10: dropped by the score filter
                           ("i1", "/m/a", np.nan, .6, .6, .9, .9)),
                      gt, labels(), FLAT, ["/m/a"])
    assert ap_of(result, "/m/a") == 1.0
    assert result.num_detections == 1


def test_at_most_10000_detections_per_class_and_image():
    far = [("i1", "/m/a", .9, .6, .6, .7, .7)] * 10_000
    result = evaluate(dets(*far, ("i1", "/m/a", .1, 0, 0, .5, .5)), boxes(("i1", "/m/a", 0, 0, .5, .5, 0)),
                      labels(), FLAT, ["/m/a"])
    assert ap_of(result, "/m/a") == 0.0  # the TP is the 10,001st by score
    assert result.num_detections == 10_000


def test_score_ties_keep_input_order_then_image_order():
    gt = boxes(("i1", "/m/a", 0, 0, .5, .5, 0))
    # same image: the FP listed first stays first; precision at the TP = 1/2
    result = evaluate(dets(("i1", "/m/a", .5, .6, .6, .9, .9), ("i1", "/m/a", .5, 0, 0, .5, .5)), gt, labels(), FLAT,
                      ["/m/a"])
    assert ap_of(result, "/m/a") == pytest.approx(1 / 2, abs=1e-12)
    # greedy matching among equal scores: the first listed takes the box, the second is an FP
    # list: .5 TP, .5 FP (both i1), then .5 FP on i2 -> AP = 1 (the TP comes first)
    result = evaluate(dets(("i2", "/m/a", .5, 0, 0, .5, .5), ("i1", "/m/a", .5, 0, 0, .5, .5),
                           ("i1", "/m/a", .5, 0, 0, .5, .5)),
                      boxes(("i1", "/m/a", 0, 0, .5, .5, 0), ("i2", "/m/b", 0, 0, .5, .5, 0)),
                      labels(("i2", "/m/a", 0)), FLAT, ["/m/a", "/m/b"])
    assert ap_of(result, "/m/a") == 1.0
    # across images equal scores follow ImageID order: i0's FP before i1's TP -> 1/2
    result = evaluate(dets(("i1", "/m/a", .5, 0, 0, .5, .5), ("i0", "/m/a", .5, 0, 0, .5, .5)),
                      boxes(("i1", "/m/a", 0, 0, .5, .5, 0)), labels(("i0", "/m/a", 0)), FLAT, ["/m/a"])
    assert ap_of(result, "/m/a") == pytest.approx(1 / 2, abs=1e-12)


def test_class_without_detections_scores_zero_and_empty_predictions():
    gt = boxes(("i1", "/m/a", 0, 0, .5, .5, 0), ("i1", "/m/b", 0, 0, .5, .5, 1))
    result = evaluate(dets(("i1", "/m/a", .5, 0, 0, .5, .5)), gt, labels(), FLAT, ["/m/a", "/m/b"])
    assert (ap_of(result, "/m/a"), ap_of(result, "/m/b")) == (1.0, 0.0)
    assert result.map == pytest.approx(1 / 2, abs=1e-12)
    empty = evaluate(dets(), gt, labels(), FLAT, ["/m/a", "/m/b"])
    assert empty.map == 0.0 and empty.num_detections == 0


def test_ground_truth_expansion_counts(real):
    hierarchy, classes = real
    gt = expand_ground_truth(boxes(("T", TOMATO, .2, .2, .6, .6, 1), ("T", CARROT, .2, .2, .6, .6, 0)),
                             labels(("U", FRUIT, 0), ("V", APPLE, 1)), hierarchy, classes)
    index = {m: i for i, m in enumerate(classes)}
    num_gt = {m: gt.num_gt[index[m]] for m in (TOMATO, CARROT, FRUIT, VEGETABLE, APPLE)}
    assert num_gt == {TOMATO: 1, CARROT: 1, FRUIT: 1, VEGETABLE: 2, APPLE: 0}
    assert list(gt.image_ids) == ["T", "U", "V"]
    verified = {(gt.image_ids[k // len(classes)], classes[k % len(classes)]) for k in gt.verified_keys}
    fruits = {"/m/02xwb"} | hierarchy.descendants(FRUIT)
    assert verified == ({("T", m) for m in (TOMATO, CARROT, FRUIT, VEGETABLE)} | {("U", m) for m in fruits}
                        | {("V", APPLE), ("V", FRUIT)})
    assert gt.box_group_of.sum() == 3  # the group-of Tomato box and its two copies


# ------------------------------------------------------------------ scalar reference from the rules


def reference_aps(det_rows, box_rows, label_rows, hierarchy, classes) -> dict[str, float]:
    """Per-class AP written directly from the rules with Python loops."""
    def family(mid, relatives):
        return ({mid} | set(relatives(mid)) if mid in hierarchy else {mid}) & set(classes)

    expanded = [(img, c, x0, y0, x1, y1, g != 0) for img, mid, x0, x1, y0, y1, g in box_rows
                for c in sorted(family(mid, hierarchy.ancestors))]
    verified: dict[str, set] = {}
    for img, c, *_ in expanded:
        verified.setdefault(img, set()).add(c)
    for img, mid, conf in label_rows:
        verified.setdefault(img, set()).update(family(mid, hierarchy.ancestors if conf == 1 else hierarchy.descendants))
    images = sorted({r[0] for r in box_rows} | {r[0] for r in label_rows})
    num_gt = {c: sum(1 for e in expanded if e[1] == c) for c in classes}
    entries: dict[str, list] = {c: [] for c in classes}
    for img in images:
        for c in classes:
            if c not in verified.get(img, set()):
                continue
            ds = [d for d in det_rows if d[0] == img and d[1] == c and d[3] < d[5] and d[4] < d[6] and d[2] > -10]
            ds = sorted(ds, key=lambda d: -d[2])[:10_000]
            normal = [e[2:6] for e in expanded if e[0] == img and e[1] == c and not e[6]]
            group = [e[2:6] for e in expanded if e[0] == img and e[1] == c and e[6]]
            taken = [False] * len(normal)
            group_score = [0.0] * len(group)
            for d in ds:
                x0, y0, x1, y1 = d[3:7]
                area = (y1 - y0) * (x1 - x0)

                def inter(b):
                    return (max(0.0, min(y1, b[3]) - max(y0, b[1])) * max(0.0, min(x1, b[2]) - max(x0, b[0])))

                ious = [inter(b) / (area + (b[3] - b[1]) * (b[2] - b[0]) - inter(b)) for b in normal]
                ioas = [inter(b) / area for b in group]
                if ious and max(ious) >= 0.5 and not taken[ious.index(max(ious))]:
                    taken[ious.index(max(ious))] = True
                    entries[c].append((d[2], 1))
                elif ioas and max(ioas) >= 0.5:
                    k = ioas.index(max(ioas))
                    group_score[k] = max(group_score[k], d[2])
                else:
                    entries[c].append((d[2], 0))
            entries[c] += [(s, 1) for s in group_score if s > 0]
    aps = {}
    for c in classes:
        if num_gt[c] == 0:
            aps[c] = float("nan")
            continue
        ranked = sorted(entries[c], key=lambda e: -e[0])
        tp = fp = 0
        precision, recall = [0.0], [0.0]
        for _, hit in ranked:
            tp, fp = tp + hit, fp + 1 - hit
            precision.append(tp / (tp + fp))
            recall.append(tp / num_gt[c])
        precision.append(0.0)
        recall.append(1.0)
        for k in range(len(precision) - 2, -1, -1):
            precision[k] = max(precision[k], precision[k + 1])
        aps[c] = sum((recall[k] - recall[k - 1]) * precision[k] for k in range(1, len(recall))
                     if recall[k] != recall[k - 1])
    return aps


def random_case(rng, classes, n_images=25, n_dets=600):
    grid = np.linspace(0, 1, 9)  # coarse coordinates: exact IoU ties and shared boxes happen

    def box():
        x = np.sort(rng.choice(grid, 2, replace=False))
        y = np.sort(rng.choice(grid, 2, replace=False))
        return float(x[0]), float(y[0]), float(x[1]), float(y[1])

    images = [f"img{i:02d}" for i in range(n_images)]
    box_rows, label_rows, det_rows = [], [], []
    for img in images[: n_images - 3]:  # the last three images have no ground truth
        for _ in range(rng.integers(0, 6)):
            x0, y0, x1, y1 = box()
            box_rows.append((img, str(rng.choice(classes)), x0, x1, y0, y1, int(rng.random() < 0.3)))
        for _ in range(rng.integers(0, 3)):
            label_rows.append((img, str(rng.choice(classes)), int(rng.integers(0, 2))))
    gt_boxes = [(r[0], r[1], r[2], r[4], r[3], r[5]) for r in box_rows]  # image, mid, x0, y0, x1, y1
    for _ in range(n_dets):
        img = str(rng.choice(images))
        mid = str(rng.choice(classes))
        own = [b for b in gt_boxes if b[0] == img]
        if own and rng.random() < 0.6:  # near a ground-truth box, often of its class
            b = own[rng.integers(len(own))]
            mid = b[1] if rng.random() < 0.7 else mid
            jitter = rng.choice([0, 0, 0.05, -0.05, 0.125], 4)
            x0, y0, x1, y1 = (float(np.clip(v + j, 0, 1)) for v, j in zip(b[2:], jitter))
        else:
            x0, y0, x1, y1 = box()
        if rng.random() < 0.03:
            x0, x1 = x1, x0  # inverted: dropped
        score = float(rng.choice([0.25, 0.5, 0.75, 0.9])) if rng.random() < 0.3 else float(rng.random())
        if rng.random() < 0.02:
            score = -20.0
        det_rows.append((img, mid, score, x0, y0, x1, y1))
    return det_rows, box_rows, label_rows


@pytest.mark.parametrize("seed", range(6))
def test_parity_with_scalar_reference_on_random_inputs(seed, real):
    rng = np.random.default_rng(seed)
    if seed < 3:
        tree = {"LabelName": "/m/0bl9f", "Subcategory": [
            {"LabelName": "/m/p", "Subcategory": [{"LabelName": "/m/c1"}, {"LabelName": "/m/both"}]},
            {"LabelName": "/m/q", "Subcategory": [{"LabelName": "/m/both"}, {"LabelName": "/m/c2"}]},
            {"LabelName": "/m/solo"}]}
        hierarchy = Hierarchy.from_json(tree)
        classes = ["/m/solo", "/m/p", "/m/c1", "/m/both", "/m/q", "/m/c2"]
    else:
        hierarchy, all_classes = real
        classes = [TOMATO, FRUIT, VEGETABLE, APPLE, CARROT, "/m/0fbdv", "/m/0_cp5", "/m/0cjq5", "/m/01g317"]
        classes = [c for c in all_classes if c in classes]
    det_rows, box_rows, label_rows = random_case(rng, classes)
    result = evaluate(dets(*det_rows), boxes(*[(r[0], r[1], r[2], r[4], r[3], r[5], r[6]) for r in box_rows]),
                      labels(*label_rows), hierarchy, classes)
    expected = reference_aps(det_rows, box_rows, label_rows, hierarchy, classes)
    got = result.per_class.set_index("MID")["AP"]
    np.testing.assert_allclose([got[c] for c in classes], [expected[c] for c in classes], rtol=1e-12, atol=1e-15)
    finite = [v for v in expected.values() if not np.isnan(v)]
    assert len(finite) >= 3 and 0 < np.mean(finite) < 1  # the case exercises real matching
    assert result.map == pytest.approx(np.mean(finite), rel=1e-12)


def test_score_cli_reports_the_metric_last(tmp_path, capsys, real):
    from submit.score import main as score_main
    from submit.write import write_submission

    hierarchy, classes = real
    det_rows, box_rows, label_rows = random_case(np.random.default_rng(7), [TOMATO, FRUIT, VEGETABLE, APPLE])
    box_frame = boxes(*[(r[0], r[1], r[2], r[4], r[3], r[5], r[6]) for r in box_rows])
    box_frame.to_csv(tmp_path / "boxes.csv", index=False)
    labels(*label_rows).to_csv(tmp_path / "labels.csv", index=False)
    predictions = dets(*det_rows).query("Score >= 0")
    write_submission(predictions, sorted(set(predictions["ImageID"])), tmp_path / "sub.csv.gz")
    args = ["--submission", str(tmp_path / "sub.csv.gz"), "--boxes", str(tmp_path / "boxes.csv"),
            "--labels", str(tmp_path / "labels.csv"),
            "--hierarchy", str(METADATA / "challenge-2019-label500-hierarchy.json"),
            "--classes", str(METADATA / "challenge-2019-classes-description-500.csv"),
            "--per-class", str(tmp_path / "ap.csv"), "--plot", str(tmp_path / "ap.png")]
    assert score_main(args) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    # the submission rounds coordinates and scores: the reference scores the same rounded boxes
    rounded = dets(*det_rows).query("Score >= 0").copy()
    rounded["Score"] = [float(f"{s:.5g}") for s in rounded["Score"]]
    for c in ("XMin", "YMin", "XMax", "YMax"):
        rounded[c] = np.rint(rounded[c] * 1e4) / 1e4
    rounded = rounded[(rounded["XMin"] < rounded["XMax"]) & (rounded["YMin"] < rounded["YMax"])]
    expected = reference_aps(list(rounded.itertuples(index=False)), box_rows, label_rows, hierarchy, classes)
    expected_map = np.nanmean(list(expected.values()))
    assert last == f"mAP: {expected_map:.6f}"
    table = pd.read_csv(tmp_path / "ap.csv")
    assert list(table.columns) == ["MID", "DisplayName", "AP", "num_gt", "num_dets"] and len(table) == 500
    assert table.set_index("MID").loc[TOMATO, "DisplayName"] == "Tomato"
    assert table["AP"].notna().sum() == sum(not np.isnan(v) for v in expected.values())
    assert (tmp_path / "ap.png").read_bytes()[:4] == b"\x89PNG"
    assert score_main(args[:-4] + ["--quiet"]) == 0
    assert capsys.readouterr().out.strip().splitlines() == [last]


@pytest.mark.parametrize("seed", range(3))
def test_entries_of_image_ranges_give_the_metric_of_the_whole(seed, real):
    """Matching consecutive ranges of images apart, each against its part of the ground truth, then AP over the
    concatenated entries: the same result as the whole, bit for bit (ties included: scores drawn from a few values)."""
    hierarchy, classes = real
    classes = [c for c in classes if c in (TOMATO, FRUIT, VEGETABLE, APPLE, CARROT, "/m/0fbdv", "/m/0_cp5")]
    rng = np.random.default_rng(seed)
    det_rows, box_rows, label_rows = random_case(rng, classes)
    gt = expand_ground_truth(boxes(*[(r[0], r[1], r[2], r[4], r[3], r[5], r[6]) for r in box_rows]),
                             labels(*label_rows), hierarchy, classes)
    frame = dets(*det_rows)
    whole = evaluate_expanded(frame, gt)
    image = pd.Index(gt.image_ids).get_indexer(frame["ImageID"])
    cls = pd.Index(classes).get_indexer(frame["LabelName"])
    order = np.argsort(np.where(image < 0, len(gt.image_ids), image), kind="stable")  # by image, unknown ones last
    cuts = [0, 5, 6, 15, len(gt.image_ids)]
    parts = []
    for lo, hi in zip(cuts[:-1], cuts[1:]):
        rows = order[(image[order] >= lo) & (image[order] < hi)]
        parts.append(match_entries(image[rows], cls[rows], frame["Score"].to_numpy()[rows],
                                   frame[["XMin", "YMin", "XMax", "YMax"]].to_numpy()[rows], gt.of_images(lo, hi)))
    result = evaluate_entries(parts, gt)
    assert result.map == whole.map and 0 < whole.map < 1
    pd.testing.assert_frame_equal(result.per_class, whole.per_class)
    assert result.num_detections == whole.num_detections and result.num_images == whole.num_images
