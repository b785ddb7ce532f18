"""pipeline.infer: coordinate mapping, sharding, fusion, the Parquet contract, resuming, and the CLI end to end."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from contracts.classes import read_classes
from contracts.files import DataError
from pipeline import infer
from pipeline.infer import Detections, Variant
from pipeline.infer.__main__ import main as infer_main
from tests.helpers import REPO

MINI_CONFIG = REPO / "configs" / "mini_tsd.py"
METADATA = REPO / "data_prep" / "metadata"

MIDS = ["/m/01g317", "/m/0199g", "/m/0k4j", "/m/04_sv", "/m/0cmf2"]
SCALES = (64, 96)
EXPECTED_SCHEMA = pa.schema([("ImageID", pa.string()), ("LabelName", pa.string()), ("Score", pa.float32()),
                             ("XMin", pa.float32()), ("YMin", pa.float32()), ("XMax", pa.float32()),
                             ("YMax", pa.float32())])

# ---------------------------------------------------------------- pure functions


def test_to_normalised_hand_computed():
    boxes = np.array([[10, 20, 30, 60], [-5, 0, 110, 90]], np.float32)
    np.testing.assert_array_equal(infer.to_normalised(boxes, 100, 80, flipped=False),
                                  np.array([[0.1, 0.25, 0.3, 0.75], [0, 0, 1, 1]], np.float32))
    # mirrored image: x -> 100 - x, so the box [10, 30] of the mirrored image is [70, 90] of the original
    np.testing.assert_array_equal(infer.to_normalised(boxes, 100, 80, flipped=True),
                                  np.array([[0.7, 0.25, 0.9, 0.75], [0, 0, 1, 1]], np.float32))


def test_to_normalised_undoes_mmdet_flip():
    from mmdet.structures.bbox import bbox_flip

    rng = np.random.default_rng(0)
    width, height = 137, 91
    xy = rng.uniform(0, 1, (50, 4)) * [width, height, width, height]
    boxes = np.concatenate([np.minimum(xy[:, :2], xy[:, 2:]), np.maximum(xy[:, :2], xy[:, 2:])], axis=1)
    mirrored = bbox_flip(torch.from_numpy(boxes), (height, width), "horizontal").numpy()
    np.testing.assert_allclose(infer.to_normalised(mirrored, width, height, flipped=True),
                               infer.to_normalised(boxes, width, height, flipped=False), atol=1e-7)


def test_shard_bounds_disjoint_and_covering():
    for num_items in range(0, 23):
        for num_shards in range(1, 8):
            parts = [range(*infer.shard_bounds(num_items, k, num_shards)) for k in range(num_shards)]
            assert [i for p in parts for i in p] == list(range(num_items))
            assert max(map(len, parts)) - min(map(len, parts)) <= 1


def test_parse_arguments():
    assert infer.parse_shard("3/8") == (3, 8)
    assert infer.parse_scales("800,1000,1200") == [800, 1000, 1200]
    for bad in ("8/8", "-1/2", "1", "a/b", "0/0"):
        with pytest.raises(ValueError, match="--shard"):
            infer.parse_shard(bad)
    for bad in ("", "800,x", "0", "800,800"):
        with pytest.raises(ValueError, match="--scales"):
            infer.parse_scales(bad)


def test_resize_scale_keeps_the_config_aspect():
    assert infer.resize_scale(800, (1333, 800)) == (1333, 800)
    assert infer.resize_scale(1000, (1333, 800)) == (1666, 1000)  # 1666.25
    assert infer.resize_scale(1200, (800, 1333)) == (2000, 1200)  # 1999.5 rounds half up
    assert infer.resize_scale(96, (64, 64)) == (96, 96)
    assert infer.resize_scale(160, None) == (infer.NO_LONG_CAP, 160)  # native-size config: no long cap


def test_variant_names():
    assert [v.name for v in infer.make_variants([800, 1000], flip=True)] == ["s800", "s800_flip", "s1000",
                                                                           "s1000_flip"]
    assert [v.name for v in infer.make_variants([800], flip=False)] == ["s800"]


def _random_detections(rng, n, num_classes=3):
    xy = rng.uniform(0, 1, (n, 4))
    boxes = np.concatenate([np.minimum(xy[:, :2], xy[:, 2:]), np.maximum(xy[:, :2], xy[:, 2:])], axis=1)
    return Detections(boxes.astype(np.float32), rng.uniform(0.01, 1, n).astype(np.float32),
                      rng.integers(0, num_classes, n))


def test_merge_variants_matches_ensemble_boxes():
    from ensemble_boxes import nms, weighted_boxes_fusion

    rng = np.random.default_rng(1)
    variants = [_random_detections(rng, n) for n in (40, 35, 0, 50)]
    args = ([d.boxes for d in variants], [d.scores for d in variants], [d.labels for d in variants])
    for method, reference in (("wbf", weighted_boxes_fusion(*args, iou_thr=0.55)), ("nms", nms(*args, iou_thr=0.5))):
        ref_boxes, ref_scores, ref_labels = reference
        ours = infer.merge_variants(variants, method, max_per_img=1000)
        order = np.argsort(-ref_scores, kind="stable")
        assert len(ours.scores) == len(ref_scores)
        np.testing.assert_allclose(ours.scores, ref_scores[order], atol=1e-6)
        np.testing.assert_allclose(ours.boxes, ref_boxes[order], atol=1e-6)
        np.testing.assert_array_equal(ours.labels, ref_labels[order].astype(np.int64))
    capped = infer.merge_variants(variants, "wbf", max_per_img=7)
    np.testing.assert_array_equal(capped.scores, infer.merge_variants(variants, "wbf", max_per_img=1000).scores[:7])


def test_merged_boxes_stay_inside_the_image():
    """Six variants' boxes at the right edge: WBF's float32 weighted mean of x2 = 1.0 gives 1.0000001."""
    scores = [0.8631789088249207, 0.5414612293243408, 0.2997118830680847, 0.42268723249435425, 0.028319671750068665,
              0.12428327649831772]
    variants = [Detections(np.array([[0.5, 0.2, 1.0, 0.9]], np.float32), np.array([s], np.float32), np.zeros(1, int))
                for s in scores]
    from ensemble import FUSION_METHODS
    raw, _, _ = FUSION_METHODS["wbf"]([d.boxes for d in variants], [d.scores for d in variants],
                                      [d.labels for d in variants])
    assert np.float32(raw[0, 2]) > 1  # the case this test is about
    merged = infer.merge_variants(variants, "wbf")
    assert merged.boxes[0, 2] == 1.0
    np.testing.assert_array_equal(merged.boxes, np.clip(raw.astype(np.float32), 0.0, 1.0))


def test_merge_single_variant_is_kept_and_capped():
    dets = _random_detections(np.random.default_rng(2), 20)
    merged = infer.merge_variants([dets], "wbf", max_per_img=5)
    order = np.argsort(-dets.scores, kind="stable")[:5]
    np.testing.assert_array_equal(merged.boxes, dets.boxes[order])
    np.testing.assert_array_equal(merged.scores, dets.scores[order])
    assert len(infer.merge_variants([infer.empty_detections()] * 3, "wbf").scores) == 0


def test_detections_table_contract():
    dets = [Detections(np.array([[0.1, 0.2, 0.3, 0.4]], np.float32), np.array([0.5], np.float32), np.array([2])),
            infer.empty_detections(),
            Detections(np.array([[0, 0, 1, 1], [0.5, 0.5, 0.6, 0.7]], np.float32), np.array([0.9, 0.1], np.float32),
                       np.array([0, 4]))]
    table = infer.detections_table(["a", "b", "c"], dets, MIDS)
    assert table.schema == EXPECTED_SCHEMA
    assert table.to_pydict() == {
        "ImageID": ["a", "c", "c"], "LabelName": [MIDS[2], MIDS[0], MIDS[4]],
        "Score": [np.float32(0.5).item(), np.float32(0.9).item(), np.float32(0.1).item()],
        "XMin": [np.float32(0.1).item(), 0.0, 0.5], "YMin": [np.float32(0.2).item(), 0.0, 0.5],
        "XMax": [np.float32(0.3).item(), 1.0, np.float32(0.6).item()],
        "YMax": [np.float32(0.4).item(), 1.0, np.float32(0.7).item()]}
    with pytest.raises(ValueError, match="class index 4 out of range"):
        infer.detections_table(["c"], dets[2:], MIDS[:3])


def test_list_images(tmp_path):
    for name in ("b2.JPG", "a1.jpg", "c3.png"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "notes.txt").write_text("")
    assert [p.name for p in infer.list_images(tmp_path)] == ["a1.jpg", "b2.JPG", "c3.png"]
    listing = tmp_path / "list.csv"
    listing.write_text("ImageId,PredictionString\nc3,\nb2.jpg\n\n")
    assert [p.stem for p in infer.list_images(tmp_path, listing)] == ["b2", "c3"]
    listing.write_text("a1\nzz\n")
    with pytest.raises(DataError, match=r"list.csv:2: image 'zz' not found in "):
        infer.list_images(tmp_path, listing)


# ---------------------------------------------------------------- resuming (model-independent)


def _fake_predict(calls):
    """A deterministic stand-in for the model: two variants, boxes derived from the ImageID."""
    def predict(paths):
        for path in paths:
            calls.append(path.stem)
            seed = int(path.stem[3:])
            rng = np.random.default_rng(seed)
            yield [_random_detections(rng, 1 + seed % 4, num_classes=5) for _ in range(2)]
    return predict


def _settings(**kwargs):
    return infer.InferSettings(config="c.py", checkpoint=str(Path(__file__)),
                               variants=infer.make_variants([64], flip=True), **kwargs)


def test_resume_after_interruption_gives_identical_shard(tmp_path):
    paths = [tmp_path / f"img{i:02d}.jpg" for i in range(7)]
    settings = _settings(chunk_size=2, keep_variants=True)
    full_calls = []
    assert infer.run_shard(tmp_path / "full", 0, 1, paths, _fake_predict(full_calls), MIDS, settings, progress=False)
    assert full_calls == [p.stem for p in paths]

    def dies_in_second_chunk(paths_):
        for n, item in enumerate(_fake_predict([])(paths_)):
            yield item
            if n == 0 and paths_[0].stem == "img02":
                raise KeyboardInterrupt

    out = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        infer.run_shard(out, 0, 1, paths, dies_in_second_chunk, MIDS, settings, progress=False)
    assert not (out / "merged" / "shard-000-of-001.parquet").exists()
    assert sorted(p.name for p in (out / ".partial" / "shard-000-of-001" / "merged").iterdir()) == [
        "chunk-00000.parquet"]
    # a rename interrupted by the kill leaves only a hidden temporary file, never a shard
    (out / "merged" / ".shard-000-of-001.parquet.tmp1").parent.mkdir(parents=True, exist_ok=True)
    (out / "merged" / ".shard-000-of-001.parquet.tmp1").write_bytes(b"half")

    calls = []
    assert infer.run_shard(out, 0, 1, paths, _fake_predict(calls), MIDS, settings, progress=False)
    assert calls == [p.stem for p in paths[2:]]  # chunk 0 (img00, img01) was finished
    for name in ("merged", "s64", "s64_flip"):
        assert (out / name / "shard-000-of-001.parquet").read_bytes() == \
            (tmp_path / "full" / name / "shard-000-of-001.parquet").read_bytes()
    assert not (out / ".partial").exists()

    calls.clear()  # finished: skipped, unless overwritten
    assert not infer.run_shard(out, 0, 1, paths, _fake_predict(calls), MIDS, settings, progress=False)
    assert calls == []
    assert infer.run_shard(out, 0, 1, paths, _fake_predict(calls), MIDS, settings, overwrite=True, progress=False)
    assert len(calls) == 7


def test_partial_shard_of_other_settings_is_redone(tmp_path):
    paths = [tmp_path / f"img{i:02d}.jpg" for i in range(5)]

    def dies(paths_):
        yield from _fake_predict([])(paths_[:1])
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        infer.run_shard(tmp_path, 0, 1, paths, dies, MIDS, _settings(chunk_size=1), progress=False)
    calls = []
    infer.run_shard(tmp_path, 0, 1, paths, _fake_predict(calls), MIDS, _settings(chunk_size=1, max_per_img=2),
                    progress=False)
    assert calls == [p.stem for p in paths]
    merged = pq.read_table(tmp_path / "merged" / "shard-000-of-001.parquet").to_pandas()
    assert merged.groupby("ImageID").size().max() <= 2


def test_empty_shard_writes_an_empty_file(tmp_path):
    paths = [tmp_path / "img00.jpg"]  # of two shards, shard 0 gets no image
    infer.run_shard(tmp_path, 0, 2, paths, _fake_predict([]), MIDS, _settings(), progress=False)
    table = pq.read_table(tmp_path / "merged" / "shard-000-of-002.parquet")
    assert table.schema == EXPECTED_SCHEMA and table.num_rows == 0


# ---------------------------------------------------------------- with a real (tiny) detector


@pytest.fixture(scope="module")
def mini_model(tmp_path_factory):
    """The mini TSD detector, randomly initialised, and a checkpoint of it with mmengine-style metadata."""
    from mmengine.registry import init_default_scope
    from mmdet.registry import MODELS

    cfg = infer.load_config(MINI_CONFIG, score_thr=0.0, max_per_img=100)
    init_default_scope("mmdet")
    torch.manual_seed(0)
    model = MODELS.build(cfg.model).eval()
    checkpoint = tmp_path_factory.mktemp("mini_model") / "iter_1.pth"
    mids = list(read_classes(METADATA / "challenge-2019-classes-description-500.csv").mids)[:13]
    # numpy values in the meta are what torch >= 2.6's weights_only default refuses to load
    torch.save({"state_dict": model.state_dict(),
                "meta": {"dataset_meta": {"mids": tuple(mids)}, "seed": np.int64(0)}}, checkpoint)
    return cfg, model, checkpoint, mids


def test_classes_from_checkpoint_meta_or_file(mini_model, tmp_path):
    cfg, _, checkpoint, mids = mini_model
    assert infer.resolve_classes(None, infer.load_checkpoint_file(checkpoint)["meta"], cfg) == mids
    with pytest.raises(ValueError, match="--classes"):
        infer.resolve_classes(None, {"dataset_meta": {"classes": ("Tomato",)}}, cfg)
    classes_file = tmp_path / "classes.csv"
    classes_file.write_text("".join(f"{mid},class {i}\n" for i, mid in enumerate(mids[::-1])))
    assert infer.resolve_classes(classes_file, {"dataset_meta": {"mids": mids}}, cfg) == mids[::-1]
    classes_file.write_text("/m/07j87,Tomato\n/m/014j1m,Apple\n")
    with pytest.raises(ValueError, match="lists 2 classes but the model has num_classes=13"):
        infer.resolve_classes(classes_file, {}, cfg)


def test_cli_shards_variants_and_rerun(mini_model, mini_data, tmp_path):
    _, _, checkpoint, _ = mini_model
    image_ids = sorted(p.stem for p in (mini_data / "validation").glob("*.jpg"))[:3]
    image_list = tmp_path / "images.txt"
    image_list.write_text("\n".join(image_ids[::-1]) + "\n")
    classes_file = mini_data / "challenge-2019-classes-description-500.csv"
    mids = list(read_classes(classes_file).mids)
    out = tmp_path / "pred"
    common = [str(MINI_CONFIG), str(checkpoint), "--split", "validation", "--images", str(mini_data / "validation"),
              "--image-list", str(image_list), "--classes", str(classes_file), "--out", str(out),
              "--scales", "128,160", "--score-thr", "0.0", "--max-per-img", "40", "--keep-variants",
              "--device", "cpu", "--batch-size", "2"]
    for k in range(2):
        assert infer_main(common + ["--shard", f"{k}/2"]) == 0

    shard_ids = []
    for k in range(2):
        merged = pq.read_table(out / "merged" / f"shard-{k:03d}-of-002.parquet")
        assert merged.schema == EXPECTED_SCHEMA
        shard_ids.append(set(merged.column("ImageID").to_pylist()))
        variants = {}
        for name in ("s128", "s128_flip", "s160", "s160_flip"):
            table = pq.read_table(out / name / f"shard-{k:03d}-of-002.parquet")
            assert table.schema == EXPECTED_SCHEMA
            variants[name] = table.to_pandas()
        for df in [merged.to_pandas(), *variants.values()]:
            assert len(df) > 0
            assert set(df.LabelName) <= set(mids)
            coords = df[["XMin", "YMin", "XMax", "YMax"]].to_numpy()
            assert coords.min() >= 0 and coords.max() <= 1
            assert (df.XMin < df.XMax).all() and (df.YMin < df.YMax).all()
            assert df.groupby("ImageID").size().max() <= 40
        # the merged shard is the WBF of the variant shards (reference: ensemble-boxes on the written variants)
        _assert_merged_is_wbf_of(merged.to_pandas(), variants, mids)
    assert shard_ids[0].isdisjoint(shard_ids[1]) and sorted(shard_ids[0] | shard_ids[1]) == image_ids
    assert not (out / ".partial").exists()

    shard = out / "merged" / "shard-000-of-002.parquet"  # one image
    before = shard.read_bytes()
    os.utime(shard, ns=(0, 0))
    assert infer_main(common + ["--shard", "0/2"]) == 0  # finished: skipped
    assert shard.stat().st_mtime_ns == 0
    assert infer_main(common + ["--shard", "0/2", "--overwrite"]) == 0
    assert shard.stat().st_mtime_ns != 0 and shard.read_bytes() == before  # redone, byte-identical


def _assert_merged_is_wbf_of(merged, variants, mids):
    from ensemble_boxes import weighted_boxes_fusion

    mid_index = {m: i for i, m in enumerate(mids)}
    for image_id, got in merged.groupby("ImageID", sort=False):
        parts = [df[df.ImageID == image_id] for df in variants.values()]
        boxes, scores, labels = weighted_boxes_fusion(
            [p[["XMin", "YMin", "XMax", "YMax"]].to_numpy() for p in parts], [p.Score.to_numpy() for p in parts],
            [p.LabelName.map(mid_index).to_numpy() for p in parts], iou_thr=0.55)
        keep = (boxes[:, 0] < boxes[:, 2]) & (boxes[:, 1] < boxes[:, 3])
        order = np.argsort(-scores[keep], kind="stable")[:40]
        np.testing.assert_allclose(got.Score.to_numpy(), scores[keep][order], atol=1e-6)
        np.testing.assert_allclose(got[["XMin", "YMin", "XMax", "YMax"]].to_numpy(), boxes[keep][order], atol=1e-6)
        assert got.LabelName.tolist() == [mids[int(i)] for i in labels[keep][order]]


@pytest.mark.parametrize("scale", [150, 180])
def test_flipped_variant_on_mirrored_image_mirrors_the_boxes(mini_model, tmp_path, scale):
    """flip(resize(mirror(I))) is resize(I): the flipped variant of the mirrored image sees the same input as the
    plain variant of the original, so its boxes, mapped back to the mirrored image, must be the mirror image."""
    cfg, model, _, _ = mini_model
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 255, (150, 170, 3), dtype=np.uint8)  # 150 is the native short side
    pixels[30:90, 40:100] = (215, 30, 30)
    original, mirrored = tmp_path / "original.png", tmp_path / "mirrored.png"  # lossless: an exact mirror
    Image.fromarray(pixels).save(original)
    Image.fromarray(pixels[:, ::-1]).save(mirrored)

    [(plain,)] = infer.predict_images(model, infer.VariantLoader(cfg, [Variant(scale, False)]), [original], 1)
    [(flipped,)] = infer.predict_images(model, infer.VariantLoader(cfg, [Variant(scale, True)]), [mirrored], 1)
    assert len(plain.scores) > 0
    np.testing.assert_array_equal(flipped.scores, plain.scores)
    np.testing.assert_array_equal(flipped.labels, plain.labels)
    expected = np.stack([1 - plain.boxes[:, 2], plain.boxes[:, 1], 1 - plain.boxes[:, 0], plain.boxes[:, 3]], 1)
    np.testing.assert_allclose(flipped.boxes, expected, atol=1e-6)


@pytest.mark.parametrize("broken", ["images", "config", "checkpoint", "classes", "state_dict"])
def test_cli_input_errors_are_one_line_and_status_2(mini_model, mini_data, tmp_path, capsys, broken):
    _, model, checkpoint, _ = mini_model
    args = {"config": str(MINI_CONFIG), "checkpoint": str(checkpoint), "images": str(mini_data / "validation"),
            "classes": str(mini_data / "challenge-2019-classes-description-500.csv")}
    expected = {"images": "image folder not found", "config": "config not found",
                "checkpoint": "checkpoint not found", "classes": "file not found",
                "state_dict": "missing keys in source state_dict: rpn_head"}[broken]
    if broken == "state_dict":
        bad = tmp_path / "iter_2.pth"
        torch.save({"state_dict": {k: v for k, v in model.state_dict().items() if "rpn" not in k}, "meta": {}}, bad)
        args["checkpoint"] = str(bad)
    else:
        args[broken] = str(tmp_path / f"missing-{broken}")
    out = tmp_path / "pred"
    status = infer_main([args["config"], args["checkpoint"], "--split", "validation", "--images", args["images"],
                         "--classes", args["classes"], "--out", str(out), "--device", "cpu"])
    err = capsys.readouterr().err
    assert status == 2
    assert err.startswith("error: ") and expected in err and "Traceback" not in err
    assert not out.exists()


def test_cli_other_errors_keep_their_traceback(mini_model, mini_data, tmp_path, monkeypatch):
    """Only user mistakes become a one-line error: a failure of the run itself (here an out-of-memory stand-in)
    propagates with its traceback."""
    import pipeline.infer.__main__ as cli

    _, _, checkpoint, _ = mini_model

    def out_of_memory(*args, **kwargs):
        raise RuntimeError("CUDA out of memory")

    monkeypatch.setattr(cli, "load_detector", out_of_memory)
    with pytest.raises(RuntimeError, match="CUDA out of memory"):
        infer_main([str(MINI_CONFIG), str(checkpoint), "--split", "validation", "--images",
                    str(mini_data / "validation"), "--out", str(tmp_path / "pred"), "--device", "cpu"])
