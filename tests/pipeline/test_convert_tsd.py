"""``python -m pipeline.convert_tsd`` on state dicts laid out as the original TSD checkpoints, the mmdet v1 pieces of
``configs/released/``, and the safe loading of ``pipeline.checkpoints``.

The original layout is generated from the original code's module structure (Sense-X/TSD at fb1fdd7, mmdetection
1.1; the docs' ``tsd_checkpoints.md``), never from our model: ``backbones/resnet.py`` and ``resnext.py`` (DCN:
``ops/dcn/deform_conv.py`` ``DeformConvPack.conv_offset``), ``necks/fpn.py``, ``anchor_heads/rpn_head.py``,
``bbox_heads/tsd_bbox_head.py`` and ``mask_heads/fcn_mask_head.py``. Real configs are checked on the meta device
(names and shapes only); values are checked on tiny models (8 base channels, 16-channel FPN and heads).
"""
import math
import os
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from mmdet.datasets import CocoDataset
from mmdet.registry import MODELS
from mmdet.testing import demo_mm_inputs
from mmengine.config import Config
from mmengine.logging import HistoryBuffer
from mmengine.registry import init_default_scope
from mmengine.runner import CheckpointLoader

import pipeline  # noqa: F401  (registers the plugin)
from contracts.classes import read_classes
from pipeline import convert_tsd, infer, train
from pipeline.checkpoints import UntrustedCheckpointError, load_checkpoint, use_checkpoint_loader
from pipeline.convert_tsd import ConversionError, convert, main
from pipeline.infer import __main__ as infer_cli
from tests.helpers import REPO

RELEASED = REPO / "configs" / "released"
CLASS_FILE = REPO / "data_prep" / "metadata" / "challenge-2019-classes-description-500.csv"
STAGE_BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}
V1_COCO_NAMES = tuple(name.replace(" ", "_") for name in CocoDataset.METAINFO["classes"])  # v1 wrote underscores
TINY = dict(base=8, fpn=16, fc=32, offset=16)
init_default_scope("mmdet")


# ---------------------------------------------------------------- the original layout


def _norm(shapes: dict, name: str, channels: int) -> None:
    """BatchNorm (v1 names it bn1 / bn2 / bn3 / downsample.1; SyncBN keeps the names)."""
    for suffix in ("weight", "bias", "running_mean", "running_var"):
        shapes[f"{name}.{suffix}"] = (channels,)
    shapes[f"{name}.num_batches_tracked"] = ()


def _conv(shapes: dict, name: str, out: int, inp: int, k: int, bias: bool = True) -> None:
    shapes[f"{name}.weight"] = (out, inp, k, k)
    if bias:
        shapes[f"{name}.bias"] = (out,)


def _linear(shapes: dict, name: str, out: int, inp: int) -> None:
    shapes[f"{name}.weight"] = (out, inp)
    shapes[f"{name}.bias"] = (out,)


def original_layout(depth=50, base=64, groups=1, base_width=4, dcn=False, fpn=256, fc=1024, offset=256,
                    classes=81, heads=1, mask=False, anchors=3, roi=7) -> dict:
    """Name -> shape of an original TSD detector's state dict (``classes`` counts the background)."""
    shapes: dict = {}
    _conv(shapes, "backbone.conv1", base, 3, 7, bias=False)
    _norm(shapes, "backbone.bn1", base)
    inplanes, outs = base, []
    for stage, blocks in enumerate(STAGE_BLOCKS[depth]):
        planes = base * 2 ** stage
        width = planes if groups == 1 else math.floor(planes * base_width / 64) * groups
        for block in range(blocks):
            p = f"backbone.layer{stage + 1}.{block}."
            _conv(shapes, p + "conv1", width, inplanes, 1, bias=False)
            _norm(shapes, p + "bn1", width)
            _conv(shapes, p + "conv2", width, width // groups, 3, bias=False)
            if dcn and stage > 0:  # DeformConvPack: its offset conv is neither grouped nor bias-free
                _conv(shapes, p + "conv2.conv_offset", 18, width, 3)
            _norm(shapes, p + "bn2", width)
            _conv(shapes, p + "conv3", 4 * planes, width, 1, bias=False)
            _norm(shapes, p + "bn3", 4 * planes)
            if block == 0:
                _conv(shapes, p + "downsample.0", 4 * planes, inplanes, 1, bias=False)
                _norm(shapes, p + "downsample.1", 4 * planes)
            inplanes = 4 * planes
        outs.append(inplanes)
    for i, channels in enumerate(outs):
        _conv(shapes, f"neck.lateral_convs.{i}.conv", fpn, channels, 1)
        _conv(shapes, f"neck.fpn_convs.{i}.conv", fpn, fpn, 3)
    _conv(shapes, "rpn_head.rpn_conv", fpn, fpn, 3)
    _conv(shapes, "rpn_head.rpn_cls", anchors, fpn, 1)  # sigmoid: one channel per anchor
    _conv(shapes, "rpn_head.rpn_reg", 4 * anchors, fpn, 1)
    flat = fpn * roi * roi
    for stage in range(heads):
        p = "bbox_head." + (f"{stage}." if heads > 1 else "")
        _linear(shapes, p + "fc_cls", classes, fc)
        _linear(shapes, p + "fc_reg", 4 * classes, fc)
        _linear(shapes, p + "shared_fc.0", offset, flat)
        _linear(shapes, p + "delta_c.0", offset, offset)
        _linear(shapes, p + "delta_c.2", 2 * roi * roi, offset)
        _linear(shapes, p + "delta_r.0", offset, offset)
        _linear(shapes, p + "delta_r.2", 2, offset)
        for stack in ("shared_fcs", "TSD_pc_fcs", "TSD_pr_fcs"):
            _linear(shapes, f"{p}{stack}.0", fc, flat)
            _linear(shapes, f"{p}{stack}.1", fc, fc)
        _linear(shapes, p + "TSD_fc_cls", classes, fc)
        _linear(shapes, p + "TSD_fc_reg", 4 * classes, fc)
    if mask:
        for i in range(4):
            _conv(shapes, f"mask_head.convs.{i}.conv", fpn, fpn, 3)
        _conv(shapes, "mask_head.upsample", fpn, fpn, 2)  # ConvTranspose2d: (in, out, k, k)
        _conv(shapes, "mask_head.conv_logits", classes, fpn, 1)
    return shapes


def state_dict_of(shapes: dict, device: str = "cpu", seed: int = 0) -> OrderedDict:
    """Tensors of the layout: distinct small random values, positive BN variances (or empty meta tensors); int64
    batch counters."""
    generator = torch.Generator().manual_seed(seed)
    tensors = OrderedDict()
    for name, shape in shapes.items():
        if name.endswith("num_batches_tracked"):
            tensors[name] = torch.tensor(1234, device=device)
        elif device == "meta":
            tensors[name] = torch.empty(shape, device="meta")
        elif name.endswith("running_var"):
            tensors[name] = 0.5 + torch.rand(shape, generator=generator)
        else:
            tensors[name] = 0.05 * torch.randn(shape, generator=generator)
    return tensors


def original_checkpoint(shapes: dict, classes=V1_COCO_NAMES, **kwargs) -> dict:
    """An mmcv v1 checkpoint: meta (mmdet_version, config text, CLASSES, epoch, iter), state_dict, optimizer."""
    return {"meta": {"mmdet_version": "1.1.0+fb1fdd7", "config": "# v1 config text", "CLASSES": classes,
                     "mmcv_version": "0.4.3", "time": "Sat May  2 10:00:00 2020", "epoch": 14, "iter": 51296},
            "state_dict": state_dict_of(shapes, **kwargs),
            "optimizer": {"state": {}, "param_groups": [{"lr": 0.0004, "momentum": 0.9, "params": [0, 1]}]}}


# ---------------------------------------------------------------- configs


def load_released(name: str) -> Config:
    return Config.fromfile(str(RELEASED / f"{name}.py"))


def make_tiny(cfg: Config, num_classes: int | None = None) -> Config:
    """The config's model at TINY sizes (in place): ResNet with 8 base channels, 16-channel FPN and heads."""
    model = cfg.model
    model.backbone.update(base_channels=TINY["base"], init_cfg=None)
    model.neck.update(in_channels=[4 * TINY["base"] * 2 ** i for i in range(4)], out_channels=TINY["fpn"])
    model.rpn_head.update(in_channels=TINY["fpn"], feat_channels=TINY["fpn"])
    heads = model.roi_head.bbox_head
    for head in heads if isinstance(heads, list) else [heads]:
        head.update(in_channels=TINY["fpn"], fc_out_channels=TINY["fc"], offset_fc_channels=TINY["offset"])
        if num_classes:
            head.num_classes = num_classes
    model.roi_head.bbox_roi_extractor.out_channels = TINY["fpn"]
    if "mask_head" in model.roi_head:
        model.roi_head.mask_roi_extractor.out_channels = TINY["fpn"]
        model.roi_head.mask_head.update(in_channels=TINY["fpn"], conv_out_channels=TINY["fpn"])
    return cfg


def tiny_config_file(tmp_path: Path, name: str) -> Path:
    """A config file: configs/released/NAME.py at TINY sizes (single-head models)."""
    path = tmp_path / f"tiny_{name}.py"
    path.write_text(
        f"_base_ = {str(RELEASED / f'{name}.py')!r}\n"
        f"model = dict(backbone=dict(base_channels={TINY['base']}, init_cfg=None),\n"
        f"    neck=dict(in_channels={[4 * TINY['base'] * 2 ** i for i in range(4)]}, out_channels={TINY['fpn']}),\n"
        f"    rpn_head=dict(in_channels={TINY['fpn']}, feat_channels={TINY['fpn']}),\n"
        f"    roi_head=dict(bbox_roi_extractor=dict(out_channels={TINY['fpn']}),\n"
        f"        bbox_head=dict(in_channels={TINY['fpn']}, fc_out_channels={TINY['fc']}, "
        f"offset_fc_channels={TINY['offset']})))\n")
    return path


def write_label_file(path: Path, mids, ids) -> Path:
    """The original's cls-label-description.csv: MID,DisplayName,ID (a name with a comma, quoted)."""
    path.write_text("".join(f'{mid},"Class, {i}",{i}\n' for mid, i in zip(mids, ids)))
    return path


RELEASES = {  # released config -> original layout of its release
    "coco_r50_tsd": dict(),
    "coco_r101_tsd": dict(depth=101),
    "coco_r152_tsd": dict(depth=152),
    "coco_x101_tsd": dict(depth=101, groups=64, base_width=4, dcn=True),
    "coco_mask_r50_tsd": dict(mask=True),
    "coco_cascade_r50_tsd": dict(heads=3),
    "coco_cascade_r101_tsd": dict(depth=101, heads=3),
    "r50_tsd": dict(classes=501),
}


def open_images_files(tmp_path: Path) -> dict:
    """``convert`` arguments for an Open Images release: our class file and a label file (ids 1..500, our order)."""
    mids = read_classes(CLASS_FILE).mids
    return dict(label_file=str(write_label_file(tmp_path / "cls-label-description.csv", mids, range(1, 501))),
                classes_file=str(CLASS_FILE))


@pytest.mark.parametrize("name", sorted(RELEASES))
def test_every_release_maps_one_to_one_onto_its_released_config(name, tmp_path):
    shapes = original_layout(**RELEASES[name])
    if name == "r50_tsd":
        converted = convert(original_checkpoint(shapes, classes=None, device="meta"), load_released(name),
                            **open_images_files(tmp_path))
        assert converted["meta"]["dataset_meta"]["mids"] == read_classes(CLASS_FILE).mids
    else:
        converted = convert(original_checkpoint(shapes, device="meta"), load_released(name))
        assert converted["meta"]["dataset_meta"]["classes"] == CocoDataset.METAINFO["classes"]
    assert len(converted["state_dict"]) == len(shapes)
    assert len(shapes) == {"coco_r50_tsd": 370, "coco_mask_r50_tsd": 382}.get(name, len(shapes))  # the docs' count


def test_a_class_agnostic_cascade_is_refused():
    cfg = Config.fromfile(str(REPO / "configs" / "coco_cascade_r50_tsd.py"))  # ours: reg_class_agnostic=True
    with pytest.raises(ConversionError, match=r"roi_head\.bbox_head\.0\.fc_reg\.weight: .*class-agnostic"):
        convert(original_checkpoint(original_layout(heads=3), device="meta"), cfg)


# ---------------------------------------------------------------- values, on tiny models


@pytest.fixture(scope="module")
def tiny_release(tmp_path_factory):
    """A tiny original Faster R-CNN TSD checkpoint (legacy non-zip format, as 2020 files may be), converted by the
    command line."""
    tmp = tmp_path_factory.mktemp("tiny_release")
    original = original_checkpoint(original_layout(**TINY))
    torch.save(original, tmp / "faster_rcnn_r50_fpn_TSD_1x.pth", _use_new_zipfile_serialization=False)
    config = tiny_config_file(tmp, "coco_r50_tsd")
    assert main([str(tmp / "faster_rcnn_r50_fpn_TSD_1x.pth"), "--config", str(config), "--out",
                 str(tmp / "converted.pth")]) == 0
    return original["state_dict"], config, tmp / "converted.pth"


def test_chosen_weights_land_where_they_must(tiny_release):
    original, _, converted_file = tiny_release
    converted = torch.load(converted_file, weights_only=True)  # plain tensors and values only
    ours = converted["state_dict"]
    head, k = "roi_head.bbox_head.", 80
    for name, theirs in (("fc_cls", "fc_cls"), ("tsd_fc_cls", "TSD_fc_cls")):
        for suffix in ("weight", "bias"):
            new, old = ours[f"{head}{name}.{suffix}"], original[f"bbox_head.{theirs}.{suffix}"]
            assert torch.equal(new[k], old[0])  # the background: first row in v1, last in mmdet 3
            assert torch.equal(new[:k], old[1:])
    for name, theirs in (("fc_reg", "fc_reg"), ("tsd_fc_reg", "TSD_fc_reg")):
        new, old = ours[f"{head}{name}.weight"], original[f"bbox_head.{theirs}.weight"]
        assert new.shape == (4 * k, TINY["fc"]) and torch.equal(new, old[4:])  # the background's 4 rows dropped
        assert torch.equal(new[4 * 7:4 * 8], old[4 * 8:4 * 9])  # class 7 is class 8 of v1
    for new, old in (("roi_head.bbox_head.offset_fc.weight", "bbox_head.shared_fc.0.weight"),
                     ("roi_head.bbox_head.delta_c.2.weight", "bbox_head.delta_c.2.weight"),
                     ("roi_head.bbox_head.tsd_cls_fcs.1.weight", "bbox_head.TSD_pc_fcs.1.weight"),
                     ("roi_head.bbox_head.tsd_reg_fcs.0.bias", "bbox_head.TSD_pr_fcs.0.bias"),
                     ("backbone.layer3.1.conv2.weight", "backbone.layer3.1.conv2.weight"),
                     ("backbone.layer2.0.downsample.1.running_var", "backbone.layer2.0.downsample.1.running_var"),
                     ("neck.fpn_convs.2.conv.weight", "neck.fpn_convs.2.conv.weight"),
                     ("rpn_head.rpn_reg.weight", "rpn_head.rpn_reg.weight")):
        assert torch.equal(ours[new], original[old]), new
    assert converted["meta"]["dataset_meta"]["classes"] == CocoDataset.METAINFO["classes"]
    logits = torch.randn(81, 16, 1, 1)  # the mask head's: v1's background channel is dropped, not moved
    new = convert_tsd.convert_tensor("roi_head.mask_head.conv_logits.weight", logits, torch.empty(80, 16, 1, 1),
                                     range(1, 81))
    assert torch.equal(new, logits[1:])


def test_the_converted_model_loads_safely_and_predicts(tiny_release):
    _, config, converted_file = tiny_release
    cfg = infer.load_config(config, score_thr=0.0, max_per_img=50)
    model, meta = infer.load_detector(cfg, converted_file, "cpu")  # not in a work dir: weights_only
    assert meta["converted_by"] == "pipeline.convert_tsd"
    data = model.data_preprocessor(demo_mm_inputs(1, [(3, 128, 160)], num_classes=80), False)
    with torch.no_grad():
        pred = model.predict(data["inputs"], data["data_samples"])[0].pred_instances
    assert len(pred.bboxes) == 50 and pred.labels.max() < 80


def test_open_images_rows_follow_the_mids(tmp_path):
    mids = read_classes(CLASS_FILE).mids[:5]
    classes_file = tmp_path / "classes.csv"
    classes_file.write_text("".join(f"{mid},Class {i}\n" for i, mid in enumerate(mids)))
    release_ids = [3, 5, 1, 4, 2]  # the release's class id of each of our classes
    label_file = write_label_file(tmp_path / "labels.csv", mids[::-1], release_ids[::-1])  # any row order
    cfg = make_tiny(load_released("r50_tsd"), num_classes=5)
    original = original_checkpoint(original_layout(classes=6, **TINY), classes=None)
    converted = convert(original, cfg, str(label_file), str(classes_file))
    ours, theirs = converted["state_dict"], original["state_dict"]
    for name, old in (("fc_cls", "fc_cls"), ("tsd_fc_cls", "TSD_fc_cls")):
        new, old = ours[f"roi_head.bbox_head.{name}.weight"], theirs[f"bbox_head.{old}.weight"]
        for c, release_id in enumerate(release_ids):
            assert torch.equal(new[c], old[release_id])
        assert torch.equal(new[5], old[0])
    new, old = ours["roi_head.bbox_head.tsd_fc_reg.bias"], theirs["bbox_head.TSD_fc_reg.bias"]
    for c, release_id in enumerate(release_ids):
        assert torch.equal(new[4 * c:4 * c + 4], old[4 * release_id:4 * release_id + 4])
    assert converted["meta"]["dataset_meta"]["mids"] == mids

    with pytest.raises(ConversionError, match=f"our class {mids[2]} is not in the release's label file"):
        convert(original, cfg, str(write_label_file(tmp_path / "l1.csv", mids[:2] + mids[3:], [1, 2, 3, 4])),
                str(classes_file))
    with pytest.raises(ConversionError, match="class /m/0xxxxx of the release's label file .* is not one of ours"):
        convert(original, cfg, str(write_label_file(tmp_path / "l2.csv", [*mids, "/m/0xxxxx"], range(1, 7))),
                str(classes_file))
    with pytest.raises(ConversionError, match="--label-file"):
        convert(original, cfg, None, str(classes_file))


def test_keys_left_over_on_either_side_are_errors_and_nothing_is_written(tiny_release, tmp_path, capsys):
    original, config, _ = tiny_release
    cfg = Config.fromfile(str(config))
    extra = dict(original, **{"bbox_head.TSD_fc_extra.weight": torch.zeros(1)})
    with pytest.raises(ConversionError, match=r"bbox_head\.TSD_fc_extra\.weight \(as roi_head\.bbox_head\."
                                              r"TSD_fc_extra\.weight\)"):
        convert({"state_dict": extra}, cfg)
    with pytest.raises(ConversionError, match=r"original key\(s\) .*: head\.fc\.weight$"):
        convert({"state_dict": dict(original, **{"head.fc.weight": torch.zeros(1)})}, cfg)
    missing = {k: v for k, v in original.items() if k != "neck.fpn_convs.1.conv.bias"}
    with pytest.raises(ConversionError, match=r"no source in the original: neck\.fpn_convs\.1\.conv\.bias$"):
        convert({"state_dict": missing}, cfg)
    wrong = dict(original, **{"bbox_head.delta_r.2.weight": torch.zeros(3, TINY["offset"])})
    with pytest.raises(ConversionError, match=r"roi_head\.bbox_head\.delta_r\.2\.weight: .*\(3, 16\).*\(2, 16\)"):
        convert({"state_dict": wrong}, cfg)
    renamed = dict(zip(V1_COCO_NAMES, V1_COCO_NAMES))
    renamed["traffic_light"] = "traffic_signal"
    with pytest.raises(ConversionError, match="class 9: the release has 'traffic_signal'"):
        convert({"state_dict": original, "meta": {"CLASSES": tuple(renamed.values())}}, cfg)

    torch.save({"state_dict": extra}, tmp_path / "extra.pth")
    out = tmp_path / "out.pth"
    assert main([str(tmp_path / "extra.pth"), "--config", str(config), "--out", str(out)]) == 2
    assert "bbox_head.TSD_fc_extra.weight" in capsys.readouterr().err
    assert not out.exists() and os.listdir(tmp_path) == ["extra.pth"]


# ---------------------------------------------------------------- the mmdet v1 pieces


def test_released_configs_use_the_v1_conventions():
    for path in sorted(RELEASED.glob("*.py")):
        model = Config.fromfile(str(path)).model
        assert model.rpn_head.anchor_generator.type == "LegacyAnchorGenerator", path.name
        assert model.rpn_head.anchor_generator.center_offset == 0.5
        assert model.rpn_head.bbox_coder.type == "LegacyDeltaXYWHBBoxCoder"
        roi_head = model.roi_head
        heads = roi_head.bbox_head if isinstance(roi_head.bbox_head, list) else [roi_head.bbox_head]
        for head in heads:
            assert head.type == "LegacyTSDShared2FCBBoxHead" and not head.reg_class_agnostic, path.name
            assert head.bbox_coder.type == "LegacyDeltaXYWHBBoxCoder"
        for extractor in (roi_head.bbox_roi_extractor, roi_head.get("mask_roi_extractor")):
            if extractor:
                assert extractor.type == "LegacySingleRoIExtractor"
                assert (extractor.roi_layer.aligned, extractor.roi_layer.sampling_ratio) == (False, 2)
        assert model.test_cfg.rpn.nms.offset == model.test_cfg.rcnn.nms.offset == 1
        assert model.test_cfg.rpn.min_bbox_size == -1


def test_v1_level_rule_and_roi_align_end():
    feats = tuple(torch.arange(64 * 64 * s * s, dtype=torch.float).view(1, 1, 64 * s, 64 * s) / 1000
                  for s in (8, 4, 2, 1))
    extractor = dict(roi_layer=dict(type="RoIAlign", output_size=2, sampling_ratio=2, aligned=False),
                     out_channels=1, featmap_strides=[4, 8, 16, 32])
    legacy = MODELS.build(dict(extractor, type="LegacySingleRoIExtractor"))
    plain = MODELS.build(dict(extractor, type="SingleRoIExtractor"))
    head = MODELS.build(dict(type="LegacyTSDShared2FCBBoxHead", in_channels=1, fc_out_channels=8, roi_feat_size=2,
                             num_classes=3, offset_fc_channels=4))
    rois = torch.tensor([[0, 10.0, 20.0, 121.0, 131.0],   # 111 px sides: level 0 for mmdet 3, 112 px and level 1 for v1
                         [0, 5.0, 5.0, 60.0, 300.0]])
    assert plain.map_roi_levels(rois, 4).tolist() == [0, 1]
    assert head.map_roi_levels(rois, 4).tolist() == [1, 1]
    out = legacy(feats, rois)

    def v1_roi_align(feat, roi, scale):  # mmdet 1.1 ROIAlignForwardV1, 2x2 output, 2x2 samples per bin
        x1, y1, x2, y2 = (float(v) * scale for v in roi[1:])
        bw, bh = ((x2 + scale) - x1) / 2, ((y2 + scale) - y1) / 2  # the end is (x2 + 1) * scale
        values = torch.zeros(2, 2)
        for i in range(2):
            for j in range(2):
                for a in range(2):
                    for b in range(2):
                        y, x = y1 + i * bh + (a + 0.5) * bh / 2, x1 + j * bw + (b + 0.5) * bw / 2
                        values[i, j] += torch.nn.functional.grid_sample(  # bilinear, pixel centres at integers
                            feat, torch.tensor([[[[2 * x / (feat.shape[3] - 1) - 1,
                                                   2 * y / (feat.shape[2] - 1) - 1]]]]),
                            align_corners=True)[0, 0, 0, 0] / 4
        return values

    for n in range(2):
        assert torch.allclose(out[n, 0], v1_roi_align(feats[1], rois[n], 1 / 8), atol=1e-5)
    assert not torch.allclose(plain(feats, rois)[1, 0], v1_roi_align(feats[1], rois[1], 1 / 8), atol=1e-3)

    delta_r = torch.tensor([[0.5, -1.0], [0.0, 2.0]])
    moved = head.translate_rois(rois, delta_r)
    sizes = torch.tensor([[112.0, 112.0], [56.0, 296.0]])  # x2 - x1 + 1, y2 - y1 + 1
    assert torch.allclose(moved[:, 1:3], rois[:, 1:3] + 0.1 * delta_r * sizes)
    assert torch.allclose(moved[:, 3:5], rois[:, 3:5] + 0.1 * delta_r * sizes)


@pytest.mark.parametrize("name", ["coco_cascade_r50_tsd", "coco_mask_r50_tsd", "r50_tsd"])
def test_released_models_predict(name):
    cfg = make_tiny(load_released(name), num_classes=5)
    model = MODELS.build(cfg.model).eval()
    data = model.data_preprocessor(demo_mm_inputs(1, [(3, 128, 160)], num_classes=5, with_mask=True), False)
    with torch.no_grad():
        pred = model.predict(data["inputs"], data["data_samples"])[0].pred_instances
    assert len(pred.bboxes) > 0 and pred.labels.max() < 5
    if "mask" in name:
        assert pred.masks.shape[1:] == (128, 160)


# ---------------------------------------------------------------- safe loading


class RunsCode:
    """Unpickling this object runs code: it writes ``marker``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('ran')",)


def own_checkpoint(folder: Path) -> Path:
    """A checkpoint as our training writes it (message hub with a HistoryBuffer) in a work dir."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "iter_2.pth"
    buffer = HistoryBuffer()
    buffer.update(0.5)
    torch.save({"meta": {"iter": 2}, "state_dict": {"w": torch.ones(2)},
                "message_hub": {"log_scalars": {"train/loss": buffer}}}, path)
    (folder / "last_checkpoint").write_text(str(path))
    return path


def test_a_checkpoint_that_runs_code_is_refused_without_the_flag(tmp_path, capsys):
    marker = tmp_path / "marker"
    evil = tmp_path / "release.pth"
    torch.save({"state_dict": {}, "meta": RunsCode(marker)}, evil)
    out = tmp_path / "out.pth"
    config = RELEASED / "coco_r50_tsd.py"
    assert main([str(evil), "--config", str(config), "--out", str(out)]) == 2
    assert "--trust-checkpoint" in capsys.readouterr().err
    with pytest.raises(UntrustedCheckpointError, match=r"\(it names exec\)"):
        infer.load_checkpoint_file(evil)
    assert not marker.exists() and not out.exists()
    load_checkpoint(evil, trust=True)  # the flag unpickles in full: the file really runs code
    assert marker.read_text() == "ran"
    flag = ["--trust-checkpoint"]
    assert convert_tsd.build_parser().parse_args([str(evil), "--config", "c.py", "--out", "o.pth", *flag])\
        .trust_checkpoint
    assert infer_cli.build_parser().parse_args(["c.py", str(evil), "--split", "test", "--images", ".", *flag])\
        .trust_checkpoint
    assert train.parse_args(["mini_tsd", "--trust-checkpoint"]).trust_checkpoint


def test_our_own_checkpoints_still_load_and_only_in_their_work_dir(tmp_path, monkeypatch):
    ours = own_checkpoint(tmp_path / "work" / "models" / "mini_tsd")
    assert load_checkpoint(ours)["message_hub"]["log_scalars"]["train/loss"].current() == 0.5
    copied = tmp_path / "elsewhere" / "iter_2.pth"
    copied.parent.mkdir()
    copied.write_bytes(ours.read_bytes())
    with pytest.raises(UntrustedCheckpointError, match="it names mmengine.logging.history_buffer.HistoryBuffer"):
        load_checkpoint(copied)
    link = ours.parent / "linked.pth"  # judged by where the file really is
    link.symlink_to(copied)
    with pytest.raises(UntrustedCheckpointError):
        load_checkpoint(link)

    monkeypatch.setitem(CheckpointLoader._schemes, "", CheckpointLoader._schemes[""])
    use_checkpoint_loader()
    assert torch.equal(CheckpointLoader.load_checkpoint(str(ours))["state_dict"]["w"], torch.ones(2))
    with pytest.raises(UntrustedCheckpointError):
        CheckpointLoader.load_checkpoint(str(copied))
