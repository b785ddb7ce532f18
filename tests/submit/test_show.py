"""submit.show and the metric's per-detection outcomes, on the mini dataset's real Challenge-format files and JPEGs,
with predictions made from its ground truth (copies are TPs, shifted copies FPs, unverified classes ignored)."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from contracts.hierarchy import Hierarchy
from contracts.metric import (FALSE_POSITIVE, GROUP_OF, IGNORED, TRUE_POSITIVE, evaluate, expand_ground_truth,
                              match_detections, read_gt_boxes, read_gt_labels)
from submit import show

from tests.contracts.test_metric import FLAT, boxes, dets, labels, random_case

BOXES = "challenge-2019-validation-detection-bbox.csv"
LABELS = "challenge-2019-validation-detection-human-imagelabels.csv"
CLASSES = "challenge-2019-classes-description-500.csv"
HIERARCHY = "challenge-2019-label500-hierarchy.json"


def gt_args(data: Path) -> list[str]:
    return ["--boxes", str(data / BOXES), "--labels", str(data / LABELS), "--classes", str(data / CLASSES),
            "--hierarchy", str(data / HIERARCHY)]


def predictions_from_truth(data: Path, worst: str | None = None) -> pd.DataFrame:
    """Each validation box as a prediction with its ancestor copies; every fourth box shifted by 70% of its width
    (an FP, its box missed), every fifth without ancestor copies; per image one prediction of a class not verified
    there (ignored); on image ``worst`` every box shifted. Scores distinct, from a fixed seed."""
    gt_boxes = read_gt_boxes(data / BOXES)
    hierarchy = Hierarchy.from_json(data / HIERARCHY)
    mids = pd.read_csv(data / CLASSES, header=None)[0].tolist()
    gt = expand_ground_truth(gt_boxes, read_gt_labels(data / LABELS), hierarchy, mids)
    verified = set(gt.verified_keys.tolist())
    rows = []
    for k, r in enumerate(gt_boxes.itertuples()):
        x0, x1 = r.XMin, r.XMax
        if k % 4 == 1 or r.ImageID == worst:
            x0, x1 = min(x0 + 0.7 * (x1 - x0), 0.99), min(x1 + 0.7 * (x1 - x0), 1.0)
        family = [r.LabelName] + ([] if k % 5 == 0 else sorted(hierarchy.ancestors(r.LabelName)))
        rows += [(r.ImageID, mid, x0, r.YMin, x1, r.YMax) for mid in family]
    for i, image_id in enumerate(gt.image_ids):
        unverified = [m for c, m in enumerate(mids) if i * len(mids) + c not in verified]
        if unverified:
            rows.append((image_id, unverified[0], 0.1, 0.1, 0.4, 0.4))
    frame = pd.DataFrame(rows, columns=["ImageID", "LabelName", "XMin", "YMin", "XMax", "YMax"])
    frame.insert(2, "Score", np.random.default_rng(0).permutation(len(frame)) / len(frame) * 0.69 + 0.3)
    return frame


@pytest.fixture(scope="module")
def preds(mini_data, tmp_path_factory) -> tuple[pd.DataFrame, Path]:
    frame = predictions_from_truth(mini_data)
    path = tmp_path_factory.mktemp("show") / "predictions.parquet"
    frame.to_parquet(path)
    return frame, path


@pytest.fixture(scope="module")
def evaluated(mini_data, preds) -> show.Evaluated:
    d = mini_data
    return show.load(preds[1], d / CLASSES, d / BOXES, d / LABELS, d / HIERARCHY)


def voc_ap(entries: list[tuple[float, int]], num_gt: int) -> float:
    """VOC 2010 all-point AP of (score, tp) entries (distinct scores)."""
    tp = fp = 0
    precision, recall = [], []
    for _, hit in sorted(entries, key=lambda e: -e[0]):
        tp, fp = tp + hit, fp + 1 - hit
        precision.append(tp / (tp + fp))
        recall.append(tp / num_gt)
    total, previous = 0.0, 0.0
    for k in range(len(recall)):
        if recall[k] != previous:
            total += (recall[k] - previous) * max(precision[k:])
            previous = recall[k]
    return total


def aggregate(frame: pd.DataFrame, gt, matching) -> dict[str, float]:
    """Per-class AP rebuilt from the per-detection outcomes: TPs and FPs as entries, plus one TP per group-of box
    at its highest absorbed score."""
    n_classes = len(gt.mids)
    entries: dict[int, list] = {c: [] for c in range(n_classes)}
    group_best: dict[int, float] = {}
    for (score, mid), outcome, box in zip(frame[["Score", "LabelName"]].itertuples(index=False), matching.outcome,
                                          matching.box):
        c = list(gt.mids).index(mid) if mid in set(gt.mids) else -1
        if outcome == TRUE_POSITIVE:
            assert gt.box_key[box] % n_classes == c and not gt.box_group_of[box]
            entries[c].append((score, 1))
        elif outcome == FALSE_POSITIVE:
            assert box == -1
            entries[c].append((score, 0))
        elif outcome == GROUP_OF:
            assert gt.box_key[box] % n_classes == c and gt.box_group_of[box]
            group_best[box] = max(group_best.get(box, -np.inf), score)
        else:
            assert outcome == IGNORED and box == -1
    for box, score in group_best.items():
        if score > 0:
            entries[int(gt.box_key[box] % n_classes)].append((score, 1))
    found = sum(hit for es in entries.values() for _, hit in es)
    assert found == matching.box_found.sum()
    return {gt.mids[c]: voc_ap(entries[c], gt.num_gt[c]) if gt.num_gt[c] else math.nan
            for c in range(n_classes)}


def assert_aps_equal(rebuilt: dict[str, float], result) -> None:
    got = result.per_class.set_index("MID")["AP"]
    np.testing.assert_allclose([rebuilt[m] for m in got.index], got.to_numpy(), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("seed", [0, 1])
def test_outcomes_aggregate_to_the_metric_ap_on_random_cases(seed):
    rng = np.random.default_rng(seed)
    classes = ["/m/a", "/m/b"]
    det_rows, box_rows, label_rows = random_case(rng, classes, n_images=20, n_dets=400)
    scores = rng.permutation(len(det_rows)) / len(det_rows)  # distinct scores: no tie order involved
    det_rows = [(*r[:2], -20.0 if r[2] == -20.0 else float(s), *r[3:]) for r, s in zip(det_rows, scores)]
    frame = dets(*det_rows)
    gt_frame = boxes(*[(r[0], r[1], r[2], r[4], r[3], r[5], r[6]) for r in box_rows])
    gt = expand_ground_truth(gt_frame, labels(*label_rows), FLAT, classes)
    matching = match_detections(frame, gt)
    assert set(np.unique(matching.outcome)) == {IGNORED, FALSE_POSITIVE, TRUE_POSITIVE, GROUP_OF}
    expected = evaluate(frame, gt_frame, labels(*label_rows), FLAT, classes)
    assert matching.result.map == expected.map and matching.result.per_class.equals(expected.per_class)
    assert_aps_equal(aggregate(frame, gt, matching), expected)
    assert (matching.outcome != IGNORED).sum() == expected.num_detections


def test_outcomes_on_the_mini_dataset(evaluated, preds):
    frame, gt, m = preds[0], evaluated.gt, evaluated.matching
    assert_aps_equal(aggregate(frame, gt, m), m.result)
    assert 0.3 < m.result.map < 0.95
    image = pd.Index(gt.image_ids).get_indexer(frame["ImageID"])
    key = image * len(gt.mids) + pd.Index(gt.mids).get_indexer(frame["LabelName"])
    unverified = ~np.isin(key, gt.verified_keys)
    assert unverified.sum() >= 30 and (m.outcome[unverified] == IGNORED).all()  # shown as ignored, not as errors
    assert {TRUE_POSITIVE, FALSE_POSITIVE, GROUP_OF} == set(np.unique(m.outcome[~unverified]))


def pixel_rect(box, width, height):
    x0, y0, x1, y1 = box
    return (min(max(math.floor(x0 * width), 0), width - 1), min(max(math.floor(y0 * height), 0), height - 1),
            min(max(math.ceil(x1 * width) - 1, 0), width - 1), min(max(math.ceil(y1 * height) - 1, 0), height - 1))


def ring(rect, shape):
    """Mask of the 1-pixel outline of an inclusive rectangle."""
    x0, y0, x1, y1 = rect
    mask = np.zeros(shape, bool)
    mask[y0:y1 + 1, [x0, x1]] = True
    mask[[y0, y1], x0:x1 + 1] = True
    return mask


def test_drawn_image_differs_from_the_original_only_along_its_boxes(evaluated, mini_data, tmp_path):
    image_id = show.pick_images(evaluated, 1)[0]
    assert show.main(["--predictions", str(evaluated_path(evaluated, tmp_path)), "--images",
                      str(mini_data / "validation"), "--out", str(tmp_path / "out"), "--image-ids", image_id,
                      "--score-thr", "0", *gt_args(mini_data)]) == 0
    with Image.open(mini_data / "validation" / f"{image_id}.jpg") as im:
        original = np.asarray(im.convert("RGB"))
    drawn = np.asarray(Image.open(tmp_path / "out" / f"{image_id}.png"))
    assert drawn.shape == original.shape
    changed = (drawn != original).any(axis=2)
    h, w = changed.shape

    scene = show.scenes(evaluated, [image_id], score_thr=0)[0]
    placed = show.draw_scene(Image.fromarray(original.copy()), scene)
    expected = evaluated.gt_boxes[evaluated.gt_boxes["ImageID"] == image_id]
    frame = evaluated.predictions
    n_preds = int((frame["ImageID"] == image_id).sum())
    assert len(placed) == len(expected) + n_preds  # every box of the image drawn once
    allowed = np.zeros_like(changed)
    for item in placed:
        rect = pixel_rect(item.mark.box, w, h)
        assert item.rect == rect
        outline = ring(rect, changed.shape)
        share = changed[outline].mean()
        assert share >= {"fp": 0.4, "ignored": 0.25}.get(item.mark.kind, 0.9), (item.mark, share)
        x0, y0, x1, y1 = rect
        band = np.zeros_like(changed)
        band[max(y0 - 1, 0):y1 + 2, max(x0 - 1, 0):x1 + 2] = True
        band[y0 + 4:y1 - 3, x0 + 4:x1 - 3] = False  # the box's inside, 4 px from its edges, is left alone
        allowed |= band
        if item.label_rect is not None:
            lx0, ly0, lx1, ly1 = item.label_rect
            assert ly1 - ly0 <= 16 and y0 - 1 <= ly1 and ly0 <= y1 + 1 and lx0 <= x0 <= lx1  # beside its box
            allowed[ly0:ly1 + 1, lx0:lx1 + 1] = True
    assert changed.any() and not (changed & ~allowed).any()
    assert (~allowed).sum() > 0.2 * changed.size  # a real test: much of the image is far from every box


def evaluated_path(evaluated, tmp_path) -> Path:
    path = tmp_path / "predictions.parquet"
    evaluated.predictions.astype({"ImageID": str, "LabelName": str}).to_parquet(path)
    return path


def single_mark(mark, size=(120, 100)) -> tuple[np.ndarray, tuple]:
    """The mark drawn alone on a grey canvas, and its rectangle."""
    canvas = Image.new("RGB", size, (128, 128, 128))
    placed = show.draw_scene(canvas, show.Scene("x", (show.Mark(mark.kind, mark.box, mark.colour, ""),)))
    return np.asarray(canvas), placed[0].rect


def test_matched_and_unmatched_boxes_get_different_styles(evaluated):
    marks = {}
    for scene in show.scenes(evaluated, list(evaluated.gt.image_ids), score_thr=0):
        for mark in scene.marks:
            marks.setdefault(mark.kind, mark)
    assert {"tp", "fp", "group", "ignored", "gt", "gt-missed", "gt-group"} <= set(marks)
    box = (0.2, 0.2, 0.8, 0.8)
    profiles = {}
    for kind, mark in marks.items():
        pixels, (x0, y0, x1, y1) = single_mark(show.Mark(kind, box, mark.colour, ""))
        top = pixels[y0, x0:x1 + 1]  # the outermost row of the outline
        inner = pixels[y0 + 1, x0 + 1:x1]
        profiles[kind] = (top.tobytes(), inner.tobytes())
        lit = (top != 128).any(axis=1)
        if kind in ("tp", "group"):
            assert lit.all() and (top == mark.colour).all()
        elif kind == "fp":
            assert 0.4 < lit.mean() < 0.8 and (top[lit] == mark.colour).all()  # dashed
        elif kind == "ignored":
            assert 0.2 < lit.mean() < 0.5 and (pixels[y0 + 1, x0 + 2:x1 - 1] == 128).all()  # dotted, 1 px
        else:
            assert (top == 0).all()  # ground truth: black edge around a white (found) or red (missed) line
            core = show.GT_MISSED if kind.endswith("missed") else show.GT_FOUND
            assert ((inner == core).all(axis=1).mean() > 0.5) and ((inner == core).all(axis=1).all()
                                                                     == (not kind.startswith("gt-group")))
    assert len({profiles[k] for k in ("tp", "fp", "ignored", "gt", "gt-missed", "gt-group")}) == 6


def test_without_image_ids_the_worst_image_comes_first(mini_data, tmp_path):
    ids = sorted(read_gt_boxes(mini_data / BOXES)["ImageID"].unique())
    worst = ids[len(ids) // 2]
    predictions_from_truth(mini_data, worst=worst).to_parquet(tmp_path / "p.parquet")
    out = tmp_path / "out"
    assert show.main(["--predictions", str(tmp_path / "p.parquet"), "--images", str(mini_data / "validation"),
                      "--out", str(out), "--max-images", "3", *gt_args(mini_data)]) == 0
    drawn = sorted(p.stem for p in out.glob("*.png"))
    assert len(drawn) == 3 and worst in drawn
    page = (out / "index.html").read_text()
    assert page.index(f'src="{worst}.png"') == min(page.index(f'src="{i}.png"') for i in drawn)
    assert "image labels: present" in page and "http" not in page


def test_reads_only_the_images_it_draws_and_caps_the_boxes(evaluated, mini_data, tmp_path, monkeypatch):
    image_id = str(evaluated.gt.image_ids[3])
    rng = np.random.default_rng(1)
    xy = np.sort(rng.random((3000, 2, 2)), axis=1)
    many = pd.DataFrame({"ImageID": image_id, "LabelName": "/m/07j87", "Score": rng.permutation(3000) / 3000,
                         "XMin": xy[:, 0, 0], "YMin": xy[:, 0, 1], "XMax": xy[:, 1, 0], "YMax": xy[:, 1, 1]})
    many.to_parquet(tmp_path / "many.parquet")
    opened = []
    real_open = Image.open
    monkeypatch.setattr(show.Image, "open", lambda path, *a, **k: opened.append(Path(path).name) or
                        real_open(path, *a, **k))
    out = tmp_path / "out"
    assert show.main(["--predictions", str(tmp_path / "many.parquet"), "--images", str(mini_data / "validation"),
                      "--out", str(out), "--max-boxes", "40", "--score-thr", "0.5", "--classes",
                      str(mini_data / CLASSES)]) == 0
    assert opened == [f"{image_id}.jpg"]
    scene = show.scenes(show.load(tmp_path / "many.parquet"), [image_id], 0.5, 40)[0]
    assert [m.kind for m in scene.marks] == ["prediction"] * 40 and scene.predictions == 3000
    top = np.sort(many["Score"].to_numpy())[-40:]
    assert [m.text for m in scene.marks] == [f"/m/07j87 {s:.2f}" for s in top]  # lowest first, highest on top
    named = show.scenes(show.load(tmp_path / "many.parquet", mini_data / CLASSES), [image_id], 0.5, 1)[0]
    assert named.marks[0].text == f"Tomato {top[-1]:.2f}"  # display names from the class file, not MIDs


def test_submission_csv_input_and_identical_reruns(evaluated, mini_data, tmp_path):
    from submit.write import write_submission

    frame = evaluated.predictions
    write_submission(frame, sorted(map(str, frame["ImageID"].unique())), tmp_path / "sub.csv")
    args = ["--predictions", str(tmp_path / "sub.csv"), "--images", str(mini_data / "validation"), "--max-images",
            "2", *gt_args(mini_data)]
    assert show.main([*args, "--out", str(tmp_path / "a")]) == 0
    assert show.main([*args, "--out", str(tmp_path / "b"), "--format", "jpg"]) == 0
    assert show.main([*args, "--out", str(tmp_path / "c"), "--format", "jpg"]) == 0
    files = sorted(p.name for p in (tmp_path / "b").iterdir())
    assert len(files) == 3 and files == sorted(p.name for p in (tmp_path / "c").iterdir())
    assert all((tmp_path / "b" / f).read_bytes() == (tmp_path / "c" / f).read_bytes() for f in files)
    assert sorted(p.stem for p in (tmp_path / "a").glob("*.png")) == [f[:-4] for f in files if f.endswith(".jpg")]


@pytest.mark.parametrize("extra, message", [
    (["--boxes", "B"], "ground truth needs --boxes, --labels, --hierarchy and --classes; missing --labels"),
    (["--image-ids", "0123456789abcdef"], "no image file for ImageID 0123456789abcdef"),
    (["--max-boxes", "0"], "--max-boxes must be at least 1"),
])
def test_bad_input_is_one_error_line(evaluated, mini_data, tmp_path, capsys, extra, message):
    args = ["--predictions", str(evaluated_path(evaluated, tmp_path)), "--images", str(mini_data / "validation"),
            "--out", str(tmp_path / "out"), *extra]
    assert show.main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0]


def test_class_focus_draws_and_ranks_only_that_class(evaluated, mini_data, tmp_path, capsys):
    fruit = "/m/02xwb"  # a parent class: its ground truth is the Fruit copies of the fruit boxes
    ids = show.pick_images(evaluated, 5, focus=fruit)
    losses = show.image_losses(evaluated, focus=fruit).set_index("ImageID")
    assert ids and all(losses.loc[i, "loss"] > 0 for i in ids)
    fruits = {"Apple", "Banana", "Lemon", "Tomato"}  # the mini dataset's fruits (leaves under Fruit)
    for scene in show.scenes(evaluated, ids, focus=fruit):
        assert scene.focus == "Fruit" and scene.gt_boxes == losses.loc[scene.image_id, "gt_boxes"]
        for mark in scene.marks:
            if mark.kind in show.GT_KINDS:
                # found: no label, or "group: <the box's own fruit>"; missed: only the Fruit copy is judged
                assert mark.text in {"", *(f"group: {f}" for f in fruits)} or mark.text.endswith(": Fruit")
            else:
                assert mark.text.split()[1] == "Fruit"
        assert sum(m.kind in show.GT_KINDS for m in scene.marks) <= scene.gt_boxes
    assert {evaluated.name(m) for m in evaluated.gt_boxes["LabelName"]} >= fruits
    args = ["--predictions", str(evaluated_path(evaluated, tmp_path)), "--images", str(mini_data / "validation"),
            "--out", str(tmp_path / "out"), *gt_args(mini_data)]
    assert show.main([*args, "--class", "/m/0000"]) == 2
    assert capsys.readouterr().err.startswith("error: --class /m/0000: not a MID of ")
