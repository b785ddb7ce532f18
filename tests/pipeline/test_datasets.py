"""OpenImagesPreparedDataset, LoadOpenImagesAnnotations, the class-aware sampler and the Challenge metric wrapper."""
import csv
import tracemalloc
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from mmengine.registry import init_default_scope
from PIL import Image

import pipeline  # noqa: F401  (registers the datasets and transforms)
from contracts.expansion import with_ancestors
from contracts.hierarchy import Hierarchy
from contracts.metric import evaluate, read_gt_boxes, read_gt_labels
from pipeline.datasets import OpenImagesClassAwareSampler, OpenImagesPreparedDataset, check_num_classes
from pipeline.evaluation import OpenImagesChallengeMetric, prepared_ground_truth

LOAD = [dict(type="LoadImageFromFile"), dict(type="LoadOpenImagesAnnotations", with_bbox=True)]
BOX_COLUMNS = ["XMin", "YMin", "XMax", "YMax"]


@pytest.fixture(autouse=True, scope="module")
def mmdet_scope():
    init_default_scope("mmdet")


def write_prepared(root: Path, n_classes: int, images: list[tuple[str, tuple[int, int], list[tuple]]]) -> Path:
    """A prepared directory (docs/artifacts.md layout, train split) written by hand, plus {root}/images/*.jpg.

    images: (ImageID, (width, height), [(label, XMin, YMin, XMax, YMax, IsGroupOf), ...])."""
    split = root / "prepared" / "train"
    split.mkdir(parents=True)
    (root / "images").mkdir()
    with open(root / "prepared" / "classes.csv", "w", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows([(f"/m/c{i}", f"class {i}") for i in range(n_classes)])
    counts = [len(boxes) for _, _, boxes in images]
    starts = np.cumsum([0] + counts[:-1])
    pq.write_table(pa.table({"image_idx": pa.array(range(len(images)), pa.int32()),
                             "ImageID": [image_id for image_id, _, _ in images],
                             "box_start": pa.array(starts, pa.int64()), "box_count": pa.array(counts, pa.int32())}),
                   split / "images.parquet")
    rows = [(i, *box) for i, (_, _, boxes) in enumerate(images) for box in boxes]
    columns = {"image_idx": pa.array([r[0] for r in rows], pa.int32()), "label": pa.array([r[1] for r in rows],
                                                                                          pa.int16())}
    for k, name in enumerate(BOX_COLUMNS):
        columns[name] = pa.array([r[2 + k] for r in rows], pa.float32())
    columns["IsGroupOf"] = pa.array([r[6] for r in rows], pa.int8())
    for name in ("IsOccluded", "IsTruncated", "IsDepiction", "IsInside", "IsExpanded"):
        columns[name] = pa.array([0] * len(rows), pa.int8())
    pq.write_table(pa.table(columns), split / "boxes.parquet")
    pairs = sorted({(r[1], r[0]) for r in rows})
    pq.write_table(pa.table({"label": pa.array([p[0] for p in pairs], pa.int16()),
                             "image_idx": pa.array([p[1] for p in pairs], pa.int32())}),
                   split / "class_index.parquet")
    for image_id, (width, height), _ in images:
        Image.new("RGB", (width, height), (90, 120, 150)).save(root / "images" / f"{image_id}.jpg")
    return root / "prepared"


@pytest.fixture
def handmade(tmp_path):
    """Three images: a normal one, one with a group-of box among normal ones, one with only a group-of box."""
    images = [
        ("aaaa", (200, 100), [(0, 0.25, 0.125, 0.75, 0.875, 0), (1, 0.0, 0.5, 0.5, 1.0, 0)]),
        ("bbbb", (64, 48), [(2, 0.125, 0.25, 0.5, 0.75, 1), (1, 0.5, 0.5, 1.0, 1.0, -1)]),
        ("cccc", (80, 80), [(2, 0.0, 0.0, 1.0, 1.0, 1)]),
    ]
    return write_prepared(tmp_path, 3, images), tmp_path / "images"


def build(prepared, img_dir, **kwargs):
    return OpenImagesPreparedDataset(prepared_dir=str(prepared), img_dir=str(img_dir), pipeline=LOAD, **kwargs)


def test_boxes_become_pixels_of_the_loaded_image(handmade):
    prepared, img_dir = handmade
    first = build(prepared, img_dir)[0]
    assert first["img_shape"] == (100, 200)
    # hand-computed: x * 200, y * 100
    np.testing.assert_array_equal(first["gt_bboxes"].numpy(), [[50, 12.5, 150, 87.5], [0, 50, 100, 100]])
    np.testing.assert_array_equal(first["gt_bboxes_labels"], [0, 1])
    second = build(prepared, img_dir)[1]
    np.testing.assert_array_equal(second["gt_bboxes"].numpy(), [[8, 12, 32, 36], [32, 24, 64, 48]])


def test_annotations_need_the_image_first(handmade):
    prepared, img_dir = handmade
    dataset = OpenImagesPreparedDataset(prepared_dir=str(prepared), img_dir=str(img_dir),
                                        pipeline=[dict(type="LoadOpenImagesAnnotations", with_bbox=True)])
    with pytest.raises(KeyError, match="after LoadImageFromFile"):
        dataset[0]


@pytest.mark.parametrize("group_of, labels, ignored, kept_images", [
    ("ignore", [[0, 1], [2, 1], [2]], [[0, 0], [1, 0], [1]], ["aaaa", "bbbb"]),
    ("keep", [[0, 1], [2, 1], [2]], [[0, 0], [0, 0], [0]], ["aaaa", "bbbb", "cccc"]),
    ("drop", [[0, 1], [1], []], [[0, 0], [0], []], ["aaaa", "bbbb"]),
])
def test_group_of_modes(handmade, group_of, labels, ignored, kept_images):
    prepared, img_dir = handmade
    everything = build(prepared, img_dir, group_of=group_of)
    assert len(everything) == 3
    for idx in range(3):
        info = everything.get_data_info(idx)
        assert [i["bbox_label"] for i in info["instances"]] == labels[idx]
        assert [i["ignore_flag"] for i in info["instances"]] == ignored[idx]
    loaded = everything[1]
    np.testing.assert_array_equal(loaded["gt_ignore_flags"], np.array(ignored[1], bool))
    filtered = build(prepared, img_dir, group_of=group_of, filter_cfg=dict(filter_empty_gt=True))
    assert [filtered.get_data_info(i)["img_id"] for i in range(len(filtered))] == kept_images
    # test mode never filters
    assert len(build(prepared, img_dir, group_of=group_of, filter_cfg=dict(filter_empty_gt=True),
                     test_mode=True)) == 3


def test_unknown_group_of_mode(handmade):
    with pytest.raises(ValueError, match="group_of must be one of"):
        build(*handmade, group_of="merge")


def test_data_info_matches_raw_csv(mini_data, mini_prepared):
    dataset = OpenImagesPreparedDataset(prepared_dir=str(mini_prepared), img_dir=str(mini_data / "train"),
                                        group_of="keep")
    mids = [row[0] for row in csv.reader(open(mini_prepared / "classes.csv"))]
    expected: dict[str, list] = {}
    with open(mini_data / "challenge-2019-train-detection-bbox.csv") as f:
        for row in csv.DictReader(f):
            expected.setdefault(row["ImageID"], []).append(
                (mids.index(row["LabelName"]), *(np.float32(row[c]) for c in BOX_COLUMNS)))
    assert len(dataset) == len({p.stem for p in (mini_data / "train").glob("*.jpg")} & set(expected)) > 0
    seen = set()
    for idx in range(len(dataset)):
        info = dataset.get_data_info(idx)
        got = [(i["bbox_label"], *(np.float32(v) for v in i["bbox"])) for i in info["instances"]]
        assert sorted(got) == sorted(expected[info["img_id"]])
        assert info["img_path"] == str(mini_data / "train" / f"{info['img_id']}.jpg")
        assert dataset.get_cat_ids(idx) == sorted({g[0] for g in got})
        seen.add(info["img_id"])
    assert seen == set(expected)


def test_real_image_pixels(mini_data, mini_prepared):
    """Loaded boxes equal the raw CSV coordinates times the JPEG's size (float32 arithmetic)."""
    dataset = OpenImagesPreparedDataset(prepared_dir=str(mini_prepared), img_dir=str(mini_data / "train"),
                                        group_of="keep", pipeline=LOAD)
    mids = [row[0] for row in csv.reader(open(mini_prepared / "classes.csv"))]
    rows = list(csv.DictReader(open(mini_data / "challenge-2019-train-detection-bbox.csv")))
    for idx in (0, len(dataset) // 2, len(dataset) - 1):
        out = dataset[idx]
        width, height = Image.open(out["img_path"]).size
        scale = np.array([width, height, width, height], np.float32)
        mine = [r for r in rows if r["ImageID"] == out["img_id"]]
        expected = np.array([[np.float32(r[c]) for c in BOX_COLUMNS] for r in mine], np.float32) * scale
        order = np.lexsort(expected.T[::-1])
        got = out["gt_bboxes"].numpy()
        np.testing.assert_array_equal(got[np.lexsort(got.T[::-1])], expected[order])
        assert sorted(out["gt_bboxes_labels"].tolist()) == sorted(mids.index(r["LabelName"]) for r in mine)


def test_no_per_image_dicts_at_init(tmp_path):
    """300k images / 1.2M boxes: the dataset holds column arrays only (a dict per image would need >300 MB)."""
    n_images, per_image = 300_000, 4
    split = tmp_path / "prepared" / "train"
    split.mkdir(parents=True)
    (tmp_path / "prepared" / "classes.csv").write_text("".join(f"/m/c{i},c{i}\n" for i in range(500)))
    rng = np.random.default_rng(0)
    n_boxes = n_images * per_image
    pq.write_table(pa.table({"image_idx": np.arange(n_images, dtype=np.int32),
                             "ImageID": [f"{i:016x}" for i in range(n_images)],
                             "box_start": np.arange(n_images, dtype=np.int64) * per_image,
                             "box_count": np.full(n_images, per_image, np.int32)}), split / "images.parquet")
    corner = rng.random((n_boxes, 2), dtype=np.float32) * 0.5
    pq.write_table(pa.table({"image_idx": np.repeat(np.arange(n_images, dtype=np.int32), per_image),
                             "label": rng.integers(0, 500, n_boxes).astype(np.int16),
                             "XMin": corner[:, 0], "YMin": corner[:, 1], "XMax": corner[:, 0] + 0.5,
                             "YMax": corner[:, 1] + 0.5, "IsGroupOf": np.zeros(n_boxes, np.int8)}),
                   split / "boxes.parquet")
    tracemalloc.start()
    dataset = OpenImagesPreparedDataset(prepared_dir=str(tmp_path / "prepared"), img_dir="img",
                                        filter_cfg=dict(filter_empty_gt=True))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert dataset.data_list == []
    assert len(dataset) == n_images
    assert peak < 120 * 2**20, f"peak {peak / 2**20:.0f} MB while loading"
    info = dataset.get_data_info(123_456)
    assert info["img_id"] == f"{123_456:016x}" and len(info["instances"]) == per_image
    np.testing.assert_array_equal([i["bbox"][:2] for i in info["instances"]],
                                  corner[123_456 * per_image:(123_456 + 1) * per_image])


def test_subsets_and_indices(handmade):
    prepared, img_dir = handmade
    dataset = build(prepared, img_dir)
    assert [dataset.get_subset([2, 0]).get_data_info(i)["img_id"] for i in range(2)] == ["cccc", "aaaa"]
    assert len(dataset) == 3
    assert build(prepared, img_dir, indices=2).get_data_info(-1)["img_id"] == "bbbb"
    with pytest.raises(IndexError):
        dataset.get_data_info(3)


def test_class_count_mismatch(mini_data, mini_prepared):
    n = len((mini_prepared / "classes.csv").read_text().splitlines())
    check_num_classes(mini_prepared, n)
    with pytest.raises(ValueError) as error:
        OpenImagesPreparedDataset(prepared_dir=str(mini_prepared), img_dir=str(mini_data / "train"),
                                  num_classes=500)
    message = str(error.value)
    assert "num_classes=500" in message and f"lists {n} classes" in message
    assert str(mini_prepared / "classes.csv") in message


def test_missing_prepared_dir(tmp_path):
    with pytest.raises(FileNotFoundError, match="make prepare"):
        OpenImagesPreparedDataset(prepared_dir=str(tmp_path / "nowhere"))


# ---------------------------------------------------------------------------------------------- sampler


@pytest.fixture
def skewed(tmp_path):
    """Class 0 in one image, class 1 in 40 images, class 2 only in a group-of-only image."""
    images = [("rare", (32, 32), [(0, 0.1, 0.1, 0.5, 0.5, 0), (1, 0.5, 0.5, 0.9, 0.9, 0)])]
    images += [(f"common{i:02d}", (32, 32), [(1, 0.1, 0.1, 0.5, 0.5, 0)]) for i in range(40)]
    images += [("grouponly", (32, 32), [(2, 0.0, 0.0, 1.0, 1.0, 1)])]
    return write_prepared(tmp_path, 3, images), tmp_path / "images"


def sampler_for(dataset, seed=0, num_samples=None, rank=0, world_size=1, monkeypatch=None):
    monkeypatch.setattr("pipeline.datasets.samplers.get_dist_info", lambda: (rank, world_size))
    return OpenImagesClassAwareSampler(dataset, seed=seed, num_samples=num_samples)


def test_class_aware_sampler_statistics(skewed, monkeypatch):
    dataset = build(*skewed, filter_cfg=dict(filter_empty_gt=True))
    assert len(dataset) == 41  # the group-of-only image is filtered out
    sampler = sampler_for(dataset, num_samples=40_000, monkeypatch=monkeypatch)
    drawn = list(sampler)
    assert len(drawn) == len(sampler) == 40_000
    ids = Counter(dataset.get_data_info(i)["img_id"] for i in set(drawn))
    assert "grouponly" not in ids
    counts = Counter(drawn)
    rare = next(i for i in range(len(dataset)) if dataset.get_data_info(i)["img_id"] == "rare")
    # class 0 is drawn half of the time (always the rare image); class 1 the other half, 1/40 per image,
    # so the rare image gets 1/2 + 1/80 of all draws
    assert counts[rare] / len(drawn) == pytest.approx(0.5 + 1 / 80, abs=0.01)
    common = np.array([counts[i] for i in range(len(dataset)) if i != rare]) / len(drawn)
    assert common.min() > 1 / 80 * 0.7 and common.max() < 1 / 80 * 1.3
    # plain uniform sampling would draw the rare image 1/41 of the time
    assert counts[rare] / len(drawn) > 10 / 41


def test_class_aware_sampler_is_deterministic_and_distributed(skewed, monkeypatch):
    dataset = build(*skewed, filter_cfg=dict(filter_empty_gt=True))
    first = list(sampler_for(dataset, seed=7, monkeypatch=monkeypatch))
    again = sampler_for(dataset, seed=7, monkeypatch=monkeypatch)
    assert list(again) == first and len(first) == len(dataset)
    again.set_epoch(1)
    assert list(again) != first
    assert list(sampler_for(dataset, seed=8, monkeypatch=monkeypatch)) != first
    # two ranks split one draw of 2 x num_samples: rank r takes positions r, r + 2, ...
    whole = list(sampler_for(dataset, seed=7, num_samples=42, monkeypatch=monkeypatch))
    ranks = [list(sampler_for(dataset, seed=7, num_samples=21, rank=r, world_size=2, monkeypatch=monkeypatch))
             for r in range(2)]
    assert ranks[0] == whole[0::2] and ranks[1] == whole[1::2]
    assert len(sampler_for(dataset, seed=7, rank=1, world_size=2, monkeypatch=monkeypatch)) == 21


def test_sampler_needs_prepared_dataset(monkeypatch):
    monkeypatch.setattr("pipeline.datasets.samplers.get_dist_info", lambda: (0, 1))
    with pytest.raises(TypeError, match="OpenImagesPreparedDataset"):
        OpenImagesClassAwareSampler(list(range(5)), seed=0)


# ---------------------------------------------------------------------------------------------- metric


def perturbed_ground_truth(dataset, image_dir, n_classes, rng):
    """Detections made from each image's ground-truth boxes (jittered, some with a wrong class), as the
    ``data_samples`` that a detector's val step hands to a metric (pixel boxes)."""
    samples = []
    for idx in range(len(dataset)):
        info = dataset.get_data_info(idx)
        width, height = Image.open(image_dir / f"{info['img_id']}.jpg").size
        boxes = np.array([i["bbox"] for i in info["instances"]], np.float64).reshape(-1, 4)
        boxes = boxes + rng.normal(0, 0.03, boxes.shape)
        labels = np.array([i["bbox_label"] for i in info["instances"]], np.int64)
        wrong = rng.random(len(labels)) < 0.2
        labels[wrong] = rng.integers(0, n_classes, wrong.sum())
        samples.append(dict(img_id=info["img_id"], ori_shape=(height, width), pred_instances=dict(
            bboxes=torch.tensor(boxes * [width, height, width, height], dtype=torch.float32),
            scores=torch.tensor(rng.random(len(labels)), dtype=torch.float32), labels=torch.tensor(labels))))
    return samples


@pytest.mark.parametrize("subset", [False, True])
def test_metric_on_prepared_ground_truth_equals_official_on_raw_csv(mini_data, mini_prepared, subset):
    """The val-loop metric (ground truth from the prepared split, predictions copied to ancestor classes) gives
    the official evaluator's score on the raw validation CSVs; on a subset of the images, the score of the raw
    ground truth of those images."""
    _, _, hierarchy, mids = prepared_ground_truth(mini_prepared, "validation")
    dataset = OpenImagesPreparedDataset(prepared_dir=str(mini_prepared), split="validation", test_mode=True)
    samples = perturbed_ground_truth(dataset, mini_data / "validation", len(mids), np.random.default_rng(0))
    if subset:
        samples = samples[::3]
    metric = OpenImagesChallengeMetric(prepared_dir=str(mini_prepared), split="validation")
    metric.process({}, samples)
    ours = metric.compute_metrics(metric.results)["mAP"]

    rows = [dict(ImageID=image_id, LabelName=mids[label], Score=score, XMin=box[0], YMin=box[1], XMax=box[2],
                 YMax=box[3])
            for image_id, boxes, scores, labels in metric.results for box, score, label in zip(boxes, scores, labels)]
    gt_boxes = read_gt_boxes(mini_data / "challenge-2019-validation-detection-bbox.csv")
    gt_labels = read_gt_labels(mini_data / "challenge-2019-validation-detection-human-imagelabels.csv")
    if subset:
        seen = {s["img_id"] for s in samples}
        gt_boxes, gt_labels = gt_boxes[gt_boxes.ImageID.isin(seen)], gt_labels[gt_labels.ImageID.isin(seen)]
    official = evaluate(with_ancestors(pd.DataFrame(rows), hierarchy, mids), gt_boxes, gt_labels,
                        Hierarchy.from_json(mini_data / "challenge-2019-label500-hierarchy.json"), mids).map
    assert 0.1 < official < 0.99
    assert ours == official


def test_ancestor_copies(mini_prepared):
    _, _, hierarchy, mids = prepared_ground_truth(mini_prepared, "validation")
    tomato, fruit, vegetable = "/m/07j87", "/m/02xwb", "/m/0f4s2w"
    frame = pd.DataFrame(dict(ImageID=["x"], LabelName=[tomato], Score=[0.5], XMin=[0.1], YMin=[0.2], XMax=[0.3],
                              YMax=[0.4]))
    out = with_ancestors(frame, hierarchy, mids)
    assert out["LabelName"].tolist() == [tomato] + sorted([fruit, vegetable], key=list(mids).index)
    assert (out[["Score", "XMin", "YMin", "XMax", "YMax"]].to_numpy() == [0.5, 0.1, 0.2, 0.3, 0.4]).all()
