"""The mini dataset: deterministic bytes, the real Challenge 2019 formats, polygons that match what is drawn."""
import csv
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from contracts.hierarchy import Hierarchy
from data_prep.mini import (CLASS_SHAPES, FAR_FROM_CLASSES, LEAF_STYLES, LOOK_ALIKES, MAX_OCCLUDED, RARE_WEIGHT,
                            _distractor_colour, main, write_mini_dataset)
from tests.helpers import METADATA

REAL_CLASSES = METADATA / "challenge-2019-classes-description-500.csv"
REAL_HIERARCHY = METADATA / "challenge-2019-label500-hierarchy.json"
BOX_HEADER = {
    "train": "ImageID,Source,LabelName,Confidence,XMin,XMax,YMin,YMax,IsOccluded,IsTruncated,IsGroupOf,"
             "IsDepiction,IsInside",
    "validation": "ImageID,LabelName,XMin,XMax,YMin,YMax,IsGroupOf",
}
LABEL_HEADER = {"train": "ImageID,Source,LabelName,Confidence", "validation": "ImageID,LabelName,Confidence"}
IMAGE_ID = re.compile(r"[0-9a-f]{16}")
SMALL = dict(n_train=12, n_validation=10, n_test=3)


def read_rows(path: Path) -> tuple[str, list[list[str]]]:
    """Header line and the comma-split data rows of a CSV file."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return lines[0], [line.split(",") for line in lines[1:]]


def read_boxes(data: Path, split: str) -> list[dict]:
    with open(data / f"challenge-2019-{split}-detection-bbox.csv", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def all_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def hierarchy(mini_data) -> Hierarchy:
    return Hierarchy.from_json(mini_data / "challenge-2019-label500-hierarchy.json")


@pytest.fixture(scope="module")
def real_hierarchy() -> Hierarchy:
    return Hierarchy.from_json(REAL_HIERARCHY)


def test_same_seed_gives_identical_bytes(mini_data, tmp_path):
    again = write_mini_dataset(tmp_path / "again", seed=0)
    first, second = all_files(mini_data), all_files(again)
    assert sorted(first) == sorted(second)
    assert len([name for name in first if name.endswith(".jpg")]) == 420
    assert [name for name in first if first[name] != second[name]] == []


def test_other_seed_differs_and_masks_flag_only_drops_polygons(tmp_path):
    a = all_files(write_mini_dataset(tmp_path / "a", seed=0, **SMALL))
    b = all_files(write_mini_dataset(tmp_path / "b", seed=1, **SMALL))
    no_masks = all_files(write_mini_dataset(tmp_path / "c", seed=0, masks=False, **SMALL))
    for name in ("challenge-2019-train-detection-bbox.csv", "challenge-2019-validation-detection-bbox.csv",
                 "sample_submission.csv", "mini-train-polygons.csv"):
        assert a[name] != b[name]
    images_a, images_b = ({name for name in files if name.endswith(".jpg")} for files in (a, b))
    assert not images_a & images_b   # other ImageIDs
    assert set(a) - set(no_masks) == {"mini-train-polygons.csv", "mini-validation-polygons.csv"}
    assert [name for name in no_masks if name != "README.txt" and no_masks[name] != a[name]] == []


def test_classes_are_real_and_hierarchy_is_the_real_one_restricted(mini_data, hierarchy, real_hierarchy):
    real_lines = REAL_CLASSES.read_text(encoding="utf-8").splitlines()
    lines = (mini_data / "challenge-2019-classes-description-500.csv").read_text(encoding="utf-8").splitlines()
    assert 10 <= len(lines) <= 15
    assert lines == [line for line in real_lines if line in set(lines)]  # verbatim rows, real file order
    mids = [line.split(",")[0] for line in lines]
    assert hierarchy.mids == set(mids)
    for mid in mids:   # every parent link is a real ancestor link, and no real link between kept classes is lost
        assert hierarchy.ancestors(mid) == real_hierarchy.ancestors(mid) & set(mids)
    two_parents = [m for m in mids if len(hierarchy.parents(m)) >= 2
                   and hierarchy.parents(m) <= real_hierarchy.parents(m)]
    assert two_parents
    chains = [(m, p, g) for m in mids if hierarchy.is_leaf(m) for p in hierarchy.parents(m)
              for g in hierarchy.parents(p)
              if p in real_hierarchy.parents(m) and g in real_hierarchy.parents(p)]
    assert chains


@pytest.mark.parametrize("split", ["train", "validation"])
def test_box_files_follow_the_real_format(mini_data, hierarchy, real_hierarchy, split):
    header, rows = read_rows(mini_data / f"challenge-2019-{split}-detection-bbox.csv")
    assert header == BOX_HEADER[split]
    assert {len(row) for row in rows} == {len(header.split(","))}
    boxes = read_boxes(mini_data, split)
    ids = [b["ImageID"] for b in boxes]
    assert ids == sorted(ids) and all(IMAGE_ID.fullmatch(i) for i in ids)
    assert set(ids) == {p.stem for p in (mini_data / split).glob("*.jpg")}   # every image has a box
    assert len(set(ids)) == {"train": 300, "validation": 60}[split]
    coordinate = re.compile(r"[01]\.\d{6}") if split == "train" else re.compile(r"[01]\.\d+")
    for b in boxes:
        values = [b["XMin"], b["XMax"], b["YMin"], b["YMax"]]
        assert all(coordinate.fullmatch(v) for v in values), values
        if split == "validation":   # float32 values written with the fewest digits that round-trip
            assert [np.format_float_positional(np.float32(v), unique=True, trim="0") for v in values] == values
        x0, x1, y0, y1 = map(float, values)
        assert 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1
        assert b["IsGroupOf"] in ("0", "1")
        assert hierarchy.is_leaf(b["LabelName"]) and real_hierarchy.is_leaf(b["LabelName"])
        if split == "train":
            assert (b["Source"], b["Confidence"]) == ("xclick", "1")
            assert all(b[f] in ("0", "1") for f in ("IsOccluded", "IsTruncated", "IsDepiction", "IsInside"))
    assert sum(b["IsGroupOf"] == "1" for b in boxes) >= 5
    if split == "train":   # truncated exactly when the box reaches the image border
        touching = [min(float(b["XMin"]), float(b["YMin"])) == 0 or max(float(b["XMax"]), float(b["YMax"])) == 1
                    for b in boxes]
        assert [b["IsTruncated"] == "1" for b in boxes] == touching
        assert sum(touching) >= 5


def test_every_class_has_validation_ground_truth(mini_data, hierarchy):
    labels = {b["LabelName"] for b in read_boxes(mini_data, "validation")}
    for mid in hierarchy.mids:   # through expansion to ancestors for the non-leaf classes
        assert ({mid} | hierarchy.descendants(mid)) & labels, mid
    assert labels == set(LEAF_STYLES)


@pytest.mark.parametrize("split", ["train", "validation"])
def test_image_labels_are_consistent_with_the_boxes(mini_data, hierarchy, split):
    header, rows = read_rows(mini_data / f"challenge-2019-{split}-detection-human-imagelabels.csv")
    assert header == LABEL_HEADER[split]
    assert {len(row) for row in rows} == {len(header.split(","))}
    if split == "train":
        assert {row[1] for row in rows} == {"verification"}
        rows = [[row[0], *row[2:]] for row in rows]
    present: dict[str, set[str]] = {}
    for b in read_boxes(mini_data, split):
        present.setdefault(b["ImageID"], set()).add(b["LabelName"])
    positives: dict[str, set[str]] = {}
    kinds = set()
    for image_id, mid, confidence in rows:
        assert confidence in ("0", "1") and mid in hierarchy
        if confidence == "1":   # present itself or through a descendant with a box
            assert ({mid} | hierarchy.descendants(mid)) & present[image_id], (image_id, mid)
            positives.setdefault(image_id, set()).add(mid)
        else:                   # verified absent: neither it nor any descendant has a box
            assert not ({mid} | hierarchy.descendants(mid)) & present[image_id], (image_id, mid)
        kinds.add((confidence, hierarchy.is_leaf(mid)))
    assert kinds == {("1", True), ("1", False), ("0", True), ("0", False)}
    assert all(present[i] <= positives.get(i, set()) for i in present)   # every boxed class is verified


def test_rare_classes_are_rare_in_train_only(mini_data):
    """Lemon, Carrot and Football are drawn RARE_WEIGHT times as often as the other classes in train (a few dozen
    boxes each, as Open Images' long tail); validation draws all classes equally often, so each AP is measurable."""
    rare = {mid for mid, style in LEAF_STYLES.items() if style.train_weight < 1}
    assert len(rare) == 3 and {LEAF_STYLES[mid].train_weight for mid in rare} == {RARE_WEIGHT}
    for split in ("train", "validation"):
        counts = {mid: 0 for mid in LEAF_STYLES}
        for b in read_boxes(mini_data, split):
            counts[b["LabelName"]] += 1
        common = [n for mid, n in counts.items() if mid not in rare]
        if split == "train":
            assert all(10 <= counts[mid] <= 0.25 * min(common) for mid in rare), counts
        else:
            # equal odds: about 31 boxes per class, and the rare classes no rarer than the others
            assert min(counts.values()) >= 15, counts
            assert all(counts[mid] >= 0.5 * np.median(common) for mid in rare), counts


def test_look_alikes_are_close_in_the_hierarchy_and_verified_absent(mini_data, hierarchy):
    """Look-alike classes share a shape or (within 40 per channel) a colour, most are siblings, and an image
    showing one usually has the other verified absent, so that confusing them costs precision."""
    for a, b in LOOK_ALIKES:
        sa, sb = LEAF_STYLES[a], LEAF_STYLES[b]
        assert sa.shape == sb.shape or np.abs(np.subtract(sa.colour, sb.colour)).max() <= 40, (sa, sb)
    assert sum(bool(hierarchy.parents(a) & hierarchy.parents(b)) for a, b in LOOK_ALIKES) >= 3
    present: dict[str, set[str]] = {}
    for b in read_boxes(mini_data, "validation"):
        present.setdefault(b["ImageID"], set()).add(b["LabelName"])
    _, rows = read_rows(mini_data / "challenge-2019-validation-detection-human-imagelabels.csv")
    negatives = {(image_id, mid) for image_id, mid, confidence in rows if confidence == "0"}
    chances = [(image_id, other) for image_id, shown in present.items() for a, b in LOOK_ALIKES
               for one, other in ((a, b), (b, a)) if one in shown and other not in shown]
    verified = sum(chance in negatives for chance in chances)
    assert len(chances) >= 50 and verified >= 0.5 * len(chances)


def test_occluded_objects_are_flagged_and_stay_mostly_visible(mini_data):
    """Rows are in drawing order: where a later object's polygon covers pixels of an earlier one in the same image,
    the earlier one is IsOccluded=1, and all later objects together cover at most MAX_OCCLUDED of it (distractors
    drawn over it count towards that limit too, so the annotated ones alone stay below it)."""
    boxes = read_boxes(mini_data, "train")
    _, rows = read_rows(mini_data / "mini-train-polygons.csv")
    masks: dict[str, list[tuple[int, np.ndarray]]] = {}
    for image_id, box_row, polygon in rows:
        with Image.open(mini_data / "train" / f"{image_id}.jpg") as image:
            w, h = image.size
        xy = np.array(polygon.split(" "), dtype=np.float64).reshape(-1, 2)
        mask = Image.new("1", (w, h))
        ImageDraw.Draw(mask).polygon([(x * w - 0.5, y * h - 0.5) for x, y in xy], fill=1)
        masks.setdefault(image_id, []).append((int(box_row), np.asarray(mask, dtype=bool)))
    checked = 0
    for objects in masks.values():
        for k, (row, mask) in enumerate(objects):
            later = np.zeros_like(mask)
            for _, other in objects[k + 1:]:
                later |= other
            covered = np.count_nonzero(mask & later)
            if covered >= 3:   # a few pixels of slack for re-rasterising the quantised polygons
                assert boxes[row]["IsOccluded"] == "1", row
                assert covered <= MAX_OCCLUDED * np.count_nonzero(mask) + 3, row
                checked += 1
    occluded = sum(b["IsOccluded"] == "1" for b in boxes)
    assert checked >= 20 and 0.1 * len(boxes) <= occluded <= 0.5 * len(boxes)


def test_class_shaped_distractors_have_no_class_colour():
    rng = np.random.default_rng(0)
    colours = np.array([_distractor_colour(rng, far_from_classes=True) for _ in range(500)])
    class_colours = np.array([style.colour for style in LEAF_STYLES.values()])
    distance = np.abs(colours[:, None, :] - class_colours[None, :, :]).max(axis=2)   # (colour, class)
    assert distance.min() > FAR_FROM_CLASSES
    assert set(CLASS_SHAPES) == {style.shape for style in LEAF_STYLES.values()}


@pytest.mark.parametrize("split", ["train", "validation"])
def test_polygons_lie_in_their_boxes_and_match_the_pixels(mini_data, split):
    boxes = read_boxes(mini_data, split)
    header, rows = read_rows(mini_data / f"mini-{split}-polygons.csv")
    assert header == "ImageID,BoxRow,Polygon"
    assert sorted(int(r[1]) for r in rows) == [k for k, b in enumerate(boxes) if b["IsGroupOf"] == "0"]
    colour_errors = []
    for image_id, box_row, polygon in rows:
        box = boxes[int(box_row)]
        assert box["ImageID"] == image_id
        xy = np.array(polygon.split(" "), dtype=np.float64).reshape(-1, 2)
        assert len(xy) >= 3
        # the box is the polygon's bounding box, exactly (both written from the same quantised values)
        assert (xy[:, 0].min(), xy[:, 0].max(), xy[:, 1].min(), xy[:, 1].max()) == tuple(
            float(box[k]) for k in ("XMin", "XMax", "YMin", "YMax"))
        if split == "validation":
            image = Image.open(mini_data / split / f"{image_id}.jpg")
            w, h = image.size
            mask = Image.new("L", (w, h))
            ImageDraw.Draw(mask).polygon([(x * w - 0.5, y * h - 0.5) for x, y in xy], fill=1)
            inside = np.asarray(mask, dtype=bool)
            core = inside.copy()   # the pixels whose 4 neighbours are inside too (blur mixes the edge ones)
            core[1:] &= inside[:-1]
            core[:-1] &= inside[1:]
            core[:, 1:] &= inside[:, :-1]
            core[:, :-1] &= inside[:, 1:]
            if core.sum() >= 30:
                median = np.median(np.asarray(image.convert("RGB"))[core], axis=0)
                colour_errors.append(np.abs(median - LEAF_STYLES[box["LabelName"]].colour).max())
    if split == "validation":
        # fill colour = class colour +-20 per channel, plus noise, blur and JPEG loss; later shapes hide at most
        # MAX_OCCLUDED of an object, which can move the median by a few more levels (26 before occlusion)
        assert len(colour_errors) >= 150 and max(colour_errors) <= 28


@pytest.mark.parametrize("split", ["train", "validation", "test"])
def test_images_decode_to_the_sizes_the_annotations_imply(mini_data, split):
    paths = sorted((mini_data / split).glob("*.jpg"))
    assert len(paths) == {"train": 300, "validation": 60, "test": 60}[split]
    sizes = {}
    for path in paths:
        with Image.open(path) as image:
            assert image.format == "JPEG" and image.mode == "RGB"
            sizes[path.stem] = image.size
    assert all(128 <= w <= 192 and 128 <= h <= 192 and w != h for w, h in sizes.values())
    if split == "test":
        header, rows = read_rows(mini_data / "sample_submission.csv")
        assert header == "ImageId,PredictionString"
        assert rows == [[image_id, ""] for image_id in sorted(sizes)]
        return
    # single objects within the image are 8-64 px on their longest side, in the decoded image's pixels
    sides = []
    for b in read_boxes(mini_data, split):
        x0, x1, y0, y1 = (float(b[k]) for k in ("XMin", "XMax", "YMin", "YMax"))
        if b["IsGroupOf"] == "0" and 0 < min(x0, y0) and max(x1, y1) < 1:
            w, h = sizes[b["ImageID"]]
            sides.append(max((x1 - x0) * w, (y1 - y0) * h))
    assert 8 - 1e-3 <= min(sides) and max(sides) <= 64 + 1e-3
    assert min(sides) < 10 and max(sides) > 55
    assert np.median(sides) < 30   # most objects are small (sizes are skewed towards 8 px)


def test_image_ids_are_unique_across_splits(mini_data):
    ids = [p.stem for split in ("train", "validation", "test") for p in (mini_data / split).glob("*.jpg")]
    assert len(ids) == len(set(ids)) == 420


def test_readme_names_the_data_and_licence(mini_data):
    text = (mini_data / "README.txt").read_text(encoding="utf-8")
    assert "Synthetic" in text and "CC BY 4.0" in text and "seed 0" in text


def test_cli_replaces_a_mini_dataset_but_not_other_folders(tmp_path, capsys):
    out = tmp_path / "mini"
    args = ["--out", str(out), "--seed", "5", "--train", "9", "--validation", "9", "--test", "2"]
    main(args)
    first = all_files(out)
    main(args)   # rerun over its own output
    assert all_files(out) == first
    main(args + ["--no-masks"])
    assert not (out / "mini-train-polygons.csv").exists()
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("x")
    with pytest.raises(SystemExit):
        main(["--out", str(other)])
    assert "is not a mini dataset" in capsys.readouterr().err
    assert [p.name for p in other.iterdir()] == ["keep.txt"]
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path / "few"), "--validation", "3"])
    assert "validation: need at least 9 images" in capsys.readouterr().err
