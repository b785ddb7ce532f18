"""run_prepare end to end: expansion on a hand-computed case, atomic/deterministic reruns, expert subsets, the COCO
export, and the mini dataset checked against counts computed independently from its raw CSVs."""
import csv
import hashlib
import json
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from data_prep.formats import RowError
from contracts.hierarchy import Hierarchy
from data_prep.prepare import run_prepare

H13 = ("ImageID,Source,LabelName,Confidence,XMin,XMax,YMin,YMax,IsOccluded,IsTruncated,IsGroupOf,IsDepiction,"
       "IsInside")
I1, I2, I3 = "1111111111111111", "2222222222222222", "3333333333333333"
# Hand-made hierarchy: A -> {B -> {D, E}, C -> {D, F}}, G alone. D has two parents.
# Class file order (= class index): G0 D1 A2 C3 B4 F5 E6.
CLASSES = [("/m/G", "Gee"), ("/m/D", "Dee"), ("/m/A", "Ay"), ("/m/C", "See"), ("/m/B", "Bee"), ("/m/F", "Eff"),
           ("/m/E", "Ee")]
TREE = {"LabelName": "/m/0bl9f", "Subcategory": [
    {"LabelName": "/m/A", "Subcategory": [
        {"LabelName": "/m/B", "Subcategory": [{"LabelName": "/m/D"}, {"LabelName": "/m/E"}]},
        {"LabelName": "/m/C", "Subcategory": [{"LabelName": "/m/D"}, {"LabelName": "/m/F"}]}]},
    {"LabelName": "/m/G"}]}
BOXES = [  # data rows 0, 1, 2
    f"{I2},xclick,/m/F,1,0.1,0.5,0.2,0.6,0,0,1,0,0",
    f"{I1},xclick,/m/D,1,0.0,0.5,0.0,0.5,1,0,0,0,0",
    f"{I1},xclick,/m/E,1,0.5,1.0,0.5,1.0,0,1,0,0,0",
]
LABELS = [f"{I1},verification,/m/D,1", f"{I1},verification,/m/C,0", f"{I2},verification,/m/A,0",
          f"{I3},verification,/m/G,1"]


def small_dir(root: Path, boxes=BOXES, images=False) -> Path:
    root.mkdir(parents=True)
    (root / "challenge-2019-classes-description-500.csv").write_text("".join(f"{m},{n}\n" for m, n in CLASSES))
    (root / "challenge-2019-label500-hierarchy.json").write_text(json.dumps(TREE))
    (root / "challenge-2019-train-detection-bbox.csv").write_text("\n".join([H13, *boxes]) + "\n")
    (root / "challenge-2019-train-detection-human-imagelabels.csv").write_text(
        "\n".join(["ImageID,Source,LabelName,Confidence", *LABELS]) + "\n")
    if images:
        (root / "train").mkdir()
        for image, size in ((I1, (200, 100)), (I2, (64, 48)), (I3, (32, 32))):
            Image.new("RGB", size, (90, 120, 30)).save(root / "train" / f"{image}.jpg", quality=90)
    return root


TRAIN_ONLY = ("train",)  # small_dir writes the train files only


def read(path: Path) -> dict:
    return pq.read_table(path).to_pydict()


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_expansion_hand_computed(tmp_path):
    out = tmp_path / "out"
    summary = run_prepare(small_dir(tmp_path / "data"), out, expand_boxes=True, split_names=TRAIN_ONLY,
                          progress=False)
    assert read(out / "train" / "images.parquet") == {
        "image_idx": [0, 1, 2], "ImageID": [I1, I2, I3], "box_start": [0, 7, 10], "box_count": [7, 3, 0]}
    boxes = read(out / "train" / "boxes.parquet")
    # I1: D, E (file order), then D's ancestors A, C, B (class order), E's ancestors A, B; I2: F, then A, C.
    assert boxes["image_idx"] == [0] * 7 + [1] * 3
    assert boxes["label"] == [1, 6, 2, 3, 4, 2, 4, 5, 2, 3]
    assert boxes["IsExpanded"] == [0, 0, 1, 1, 1, 1, 1, 0, 1, 1]
    assert boxes["IsGroupOf"] == [0] * 7 + [1] * 3
    assert boxes["IsOccluded"] == [1, 0, 1, 1, 1, 0, 0, 0, 0, 0]
    assert boxes["XMin"] == [0.0, 0.5, 0.0, 0.0, 0.0, 0.5, 0.5, np.float32(0.1), np.float32(0.1), np.float32(0.1)]
    assert boxes["YMax"] == [0.5, 1.0, 0.5, 0.5, 0.5, 1.0, 1.0, np.float32(0.6), np.float32(0.6), np.float32(0.6)]
    # Labels: I1 D+ -> D,A,B,C +; I1 C- -> C,D,F - (C and D collide: positive wins); I2 A- -> A..F -; I3 G+.
    assert read(out / "train" / "image_labels.parquet") == {
        "image_idx": [0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 2],
        "label": [1, 2, 3, 4, 5, 1, 2, 3, 4, 5, 6, 0],
        "Confidence": [1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 1]}
    assert read(out / "train" / "class_index.parquet") == {
        "label": [1, 2, 2, 3, 3, 4, 5, 6], "image_idx": [0, 0, 1, 0, 1, 0, 1, 0]}
    s = summary["splits"]["train"]
    assert s["image_labels"] == {"before_expansion": 4, "positive": 2, "negative": 2, "after_expansion": 12,
                                 "conflicts": 2}
    assert (s["images"], s["images_with_boxes"], s["boxes"], s["expanded_boxes"], s["group_of"]) == (3, 2, 3, 7, 1)
    assert s["boxes_per_class"] == {"/m/G": 0, "/m/D": 1, "/m/A": 0, "/m/C": 0, "/m/B": 0, "/m/F": 1, "/m/E": 1}
    assert json.loads((out / "summary.json").read_text()) == summary
    assert (out / "classes.csv").read_text() == "".join(f"{m},{n}\n" for m, n in CLASSES)

    schema = pq.read_schema(out / "train" / "boxes.parquet")
    assert [(f.name, str(f.type)) for f in schema] == [
        ("image_idx", "int32"), ("label", "int16"), ("XMin", "float"), ("YMin", "float"), ("XMax", "float"),
        ("YMax", "float"), ("IsGroupOf", "int8"), ("IsOccluded", "int8"), ("IsTruncated", "int8"),
        ("IsDepiction", "int8"), ("IsInside", "int8"), ("IsExpanded", "int8")]


def test_without_box_expansion(tmp_path):
    out = tmp_path / "out"
    run_prepare(small_dir(tmp_path / "data"), out, split_names=TRAIN_ONLY, progress=False)
    boxes = read(out / "train" / "boxes.parquet")
    assert (boxes["image_idx"], boxes["label"], boxes["IsExpanded"]) == ([0, 0, 1], [1, 6, 5], [0, 0, 0])
    assert read(out / "train" / "class_index.parquet") == {"label": [1, 5, 6], "image_idx": [0, 1, 0]}


def test_reruns_are_identical_and_atomic(tmp_path):
    data = small_dir(tmp_path / "data", images=True)
    groups = tmp_path / "groups.csv"
    groups.write_text("g1,/m/D\n")
    out = tmp_path / "out"
    options = dict(expand_boxes=True, expert_groups=groups, coco_splits=("train",), split_names=TRAIN_ONLY,
                   progress=False)
    run_prepare(data, out, **options)
    first = tree_digest(out)
    run_prepare(data, out, **options)
    assert tree_digest(out) == first
    run_prepare(data, tmp_path / "elsewhere", **options)
    assert tree_digest(tmp_path / "elsewhere") == first

    # A failing run leaves the previous output untouched and no temporary folder behind.
    bad = data / "challenge-2019-train-detection-bbox.csv"
    bad.write_text(bad.read_text() + f"{I1},xclick,/m/unknown,1,0.1,0.2,0.1,0.2,0,0,0,0,0\n")
    with pytest.raises(RowError, match="line 5: unknown MID"):
        run_prepare(data, out, strict=True, **options)
    assert tree_digest(out) == first
    assert sorted(p.name for p in out.iterdir()) == ["classes.csv", "coco", "experts", "hierarchy.json",
                                                     "sources.json", "sources.mk", "summary.json", "train"]
    # A rerun without experts or COCO removes their stale folders.
    run_prepare(data, out, split_names=TRAIN_ONLY, progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["classes.csv", "hierarchy.json", "sources.json", "sources.mk",
                                                     "summary.json", "train"]


def test_expert_subsets(tmp_path):
    groups = tmp_path / "groups.yaml"
    groups.write_text("g1: [/m/B, /m/D]\ng2: [/m/G]\n")
    out = tmp_path / "out"
    summary = run_prepare(small_dir(tmp_path / "data"), out, expand_boxes=True, expert_groups=groups,
                          split_names=TRAIN_ONLY, progress=False)
    g1 = out / "experts" / "g1"
    assert (g1 / "classes.csv").read_text() == "/m/D,Dee\n/m/B,Bee\n"  # class-file order: D before B
    assert json.loads((g1 / "hierarchy.json").read_text()) == {
        "LabelName": "/m/0bl9f", "Subcategory": [{"LabelName": "/m/B", "Subcategory": [{"LabelName": "/m/D"}]}]}
    # Only I1 has a D or B box: D (original), B copied from D, B copied from E.
    assert read(g1 / "train" / "images.parquet") == {"image_idx": [0], "ImageID": [I1], "box_start": [0],
                                                     "box_count": [3]}
    boxes = read(g1 / "train" / "boxes.parquet")
    assert (boxes["label"], boxes["IsExpanded"], boxes["XMin"]) == ([0, 1, 1], [0, 1, 1], [0.0, 0.0, 0.5])
    assert read(g1 / "train" / "image_labels.parquet") == {"image_idx": [0, 0], "label": [0, 1],
                                                           "Confidence": [1, 1]}
    assert read(g1 / "train" / "class_index.parquet") == {"label": [0, 1], "image_idx": [0, 0]}
    assert summary["experts"]["g1"] == {"classes": ["/m/D", "/m/B"],
                                        "splits": {"train": {"images": 1, "boxes": 1, "expanded_boxes": 2}}}
    g2 = out / "experts" / "g2"
    assert read(g2 / "train" / "images.parquet")["ImageID"] == []
    assert json.loads((g2 / "summary.json").read_text())["splits"]["train"]["boxes_per_class"] == {"/m/G": 0}


@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # inside pycocotools
def test_coco_export(tmp_path):
    data = small_dir(tmp_path / "data", images=True)
    (data / "mini-train-polygons.csv").write_text(f"ImageID,BoxRow,Polygon\n{I1},1,0.0 0.0 0.5 0.0 0.25 0.5\n")
    out = tmp_path / "out"
    run_prepare(data, out, coco_splits=("train",), split_names=TRAIN_ONLY, progress=False)
    coco = json.loads((out / "coco" / "train.json").read_text())
    assert coco["categories"] == [{"id": i + 1, "name": n, "mid": m} for i, (m, n) in enumerate(CLASSES)]
    assert coco["images"] == [{"id": 1, "file_name": f"{I1}.jpg", "width": 200, "height": 100},
                              {"id": 2, "file_name": f"{I2}.jpg", "width": 64, "height": 48},
                              {"id": 3, "file_name": f"{I3}.jpg", "width": 32, "height": 32}]
    assert coco["annotations"] == [
        {"id": 1, "image_id": 1, "category_id": 2, "bbox": [0.0, 0.0, 100.0, 50.0], "area": 5000.0, "iscrowd": 0,
         "segmentation": [[0.0, 0.0, 100.0, 0.0, 50.0, 50.0]]},
        {"id": 2, "image_id": 1, "category_id": 7, "bbox": [100.0, 50.0, 100.0, 50.0], "area": 5000.0,
         "iscrowd": 0, "segmentation": [[100.0, 50.0, 200.0, 50.0, 200.0, 100.0, 100.0, 100.0]]},
        {"id": 3, "image_id": 2, "category_id": 6, "bbox": [6.4, 9.6, 25.6, 19.2], "area": 491.52, "iscrowd": 1,
         "segmentation": [[6.4, 9.6, 32.0, 9.6, 32.0, 28.8, 6.4, 28.8]]},
    ]
    from pycocotools.coco import COCO

    api = COCO(str(out / "coco" / "train.json"))
    assert int(api.annToMask(api.loadAnns(1)[0]).sum()) > 0
    (data / "mini-train-polygons.csv").unlink()
    run_prepare(data, out, coco_splits=("train",), split_names=TRAIN_ONLY, progress=False)
    coco = json.loads((out / "coco" / "train.json").read_text())
    assert all("segmentation" not in a for a in coco["annotations"])


def test_coco_polygon_must_match_its_box_row(tmp_path):
    data = small_dir(tmp_path / "data", images=True)
    path = data / "mini-train-polygons.csv"
    path.write_text(f"ImageID,BoxRow,Polygon\n{I2},1,0.0 0.0 0.5 0.0 0.25 0.5\n")
    with pytest.raises(ValueError, match=f"{path}: line 2: BoxRow 1 belongs to image {I1}, not {I2}"):
        run_prepare(data, tmp_path / "out", coco_splits=("train",), split_names=TRAIN_ONLY, progress=False)


def test_cli(tmp_path, capsys):
    from data_prep.__main__ import main

    data = small_dir(tmp_path / "data")
    assert main(["--data-dir", str(data), "--out-dir", str(tmp_path / "out"), "--expand-boxes", "--splits", "train", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert ("train: 3 images, 3 boxes (1 group-of, +7 ancestor copies), image labels 4 -> 12 after expansion "
            "(2 positive/negative conflicts, kept positive)") in printed
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["options"]["expand_boxes"] is True
    assert main(["--data-dir", str(tmp_path / "nope"), "--out-dir", str(tmp_path / "o2"), "--quiet"]) == 2
    assert "error: data directory not found" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------- mini dataset


def raw_rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def prepared_table(out: Path, split: str, name: str) -> tuple[list[str], list[str], dict]:
    with open(out / "classes.csv", newline="") as f:
        mids = [r[0] for r in csv.reader(f)]
    ids = read(out / split / "images.parquet")["ImageID"]
    return mids, ids, read(out / split / name)


@pytest.mark.parametrize("split", ["train", "validation"])
def test_mini_counts_match_the_raw_csvs(mini_data, mini_prepared, split):
    boxes_raw = raw_rows(mini_data / f"challenge-2019-{split}-detection-bbox.csv")
    labels_raw = raw_rows(mini_data / f"challenge-2019-{split}-detection-human-imagelabels.csv")
    mids, ids, boxes = prepared_table(mini_prepared, split, "boxes.parquet")
    summary = json.loads((mini_prepared / "summary.json").read_text())["splits"][split]
    assert summary["dropped"] == {"boxes": {}, "image_labels": {}}

    per_class = Counter(r["LabelName"] for r in boxes_raw)
    assert summary["boxes_per_class"] == {m: per_class.get(m, 0) for m in mids}
    assert Counter(mids[k] for k in boxes["label"]) == per_class
    per_image = Counter(r["ImageID"] for r in boxes_raw)
    images = read(mini_prepared / split / "images.parquet")
    assert ids == sorted(set(per_image) | {r["ImageID"] for r in labels_raw})
    assert dict(zip(ids, images["box_count"])) == {i: per_image.get(i, 0) for i in ids}
    assert summary["group_of"] == sum(r["IsGroupOf"] == "1" for r in boxes_raw)
    class_index = read(mini_prepared / split / "class_index.parquet")
    expected = sorted({(mids.index(r["LabelName"]), ids.index(r["ImageID"])) for r in boxes_raw})
    assert list(zip(class_index["label"], class_index["image_idx"])) == expected

    # Image labels, expanded by a scalar loop over the hierarchy: positive -> ancestors, negative -> descendants,
    # a positive wins over a colliding negative.
    h = Hierarchy.from_json(mini_data / "challenge-2019-label500-hierarchy.json")
    pos, neg = set(), set()
    for r in labels_raw:
        if r["Confidence"] == "1":
            pos |= {(r["ImageID"], m) for m in {r["LabelName"]} | h.ancestors(r["LabelName"])}
        else:
            neg |= {(r["ImageID"], m) for m in {r["LabelName"]} | h.descendants(r["LabelName"])}
    _, _, labels = prepared_table(mini_prepared, split, "image_labels.parquet")
    got = {(ids[i], mids[k], c) for i, k, c in zip(labels["image_idx"], labels["label"], labels["Confidence"])}
    assert got == {(i, m, 1) for i, m in pos} | {(i, m, 0) for i, m in neg - pos}
    assert summary["image_labels"]["conflicts"] == len(pos & neg)
    assert summary["image_labels"]["before_expansion"] == len(labels_raw)
    assert len(labels["label"]) == len(got)


@pytest.mark.parametrize("split", ["train", "validation"])
def test_mini_coco_export(mini_data, mini_prepared, split):
    boxes_raw = raw_rows(mini_data / f"challenge-2019-{split}-detection-bbox.csv")
    coco = json.loads((mini_prepared / "coco" / f"{split}.json").read_text())
    mids = [c["mid"] for c in coco["categories"]]
    sizes = {im["id"]: (im["width"], im["height"]) for im in coco["images"]}
    for im in coco["images"][:5]:
        with Image.open(mini_data / split / im["file_name"]) as f:
            assert f.size == (im["width"], im["height"])
    # Annotations follow boxes.parquet: raw rows sorted by ImageID, file order within an image. Each box and
    # polygon in pixels from its raw row (float32 coordinates, as read), rounded to 0.01 px.
    polygons = defaultdict(list)
    for r in raw_rows(mini_data / f"mini-{split}-polygons.csv"):
        polygons[int(r["BoxRow"])].append([float(v) for v in r["Polygon"].split()])
    order = sorted(range(len(boxes_raw)), key=lambda k: (boxes_raw[k]["ImageID"], k))
    names = {im["id"]: im["file_name"][:-4] for im in coco["images"]}
    assert len(coco["annotations"]) == len(order)
    for a, k in zip(coco["annotations"], order):
        r = boxes_raw[k]
        assert (names[a["image_id"]], mids[a["category_id"] - 1]) == (r["ImageID"], r["LabelName"])
        w, h = sizes[a["image_id"]]
        x0, x1, y0, y1 = (float(np.float32(r[c])) for c in ("XMin", "XMax", "YMin", "YMax"))
        assert a["bbox"] == [round(x0 * w, 2), round(y0 * h, 2), round((x1 - x0) * w, 2), round((y1 - y0) * h, 2)]
        if r["IsGroupOf"] == "1":
            assert a["iscrowd"] == 1 and len(a["segmentation"]) == 1 and len(a["segmentation"][0]) == 8
        else:
            assert a["iscrowd"] == 0
            assert a["segmentation"] == [[round(v * (w if i % 2 == 0 else h), 2) for i, v in enumerate(poly)]
                                         for poly in polygons[k]]
