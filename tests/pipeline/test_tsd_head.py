"""The TSD heads in small Faster / Mask / Cascade R-CNN models: losses, gradients, the PC losses by hand, and a
test-time path that runs the TSD branch only."""
import math

import pytest
import torch
from mmdet.models.task_modules import AssignResult, SamplingResult
from mmdet.registry import MODELS
from mmdet.testing import demo_mm_inputs
from mmdet.utils import register_all_modules
from mmengine.config import Config, ConfigDict
from mmengine.structures import InstanceData

import pipeline.models  # noqa: F401  (registers the TSD heads)
from tests.helpers import REPO

NUM_CLASSES = 3  # the models' class count here (the hand-computed cases below use 3 classes)
STDS = [0.1, 0.1, 0.2, 0.2]  # the mini and r50 heads' target stds (the first cascade stage's too)
register_all_modules()


def model_config(name: str) -> ConfigDict:
    return Config.fromfile(str(REPO / "configs" / name)).model


def bbox_head(**overrides) -> ConfigDict:
    """mini_tsd's TSD head (fc 256 in every branch, PC margins 0.3) for NUM_CLASSES classes."""
    return ConfigDict(model_config("mini_tsd.py").roi_head.bbox_head, num_classes=NUM_CLASSES, **overrides)


def detector(kind="faster", **head_overrides):
    """A mini config's detector (ResNet-18 with 16 base channels, FPN 64) for NUM_CLASSES classes: mini_tsd
    (faster), mini_mask_tsd (mask), or mini_tsd with cascade_r50_tsd's three-stage TSD head at mini_tsd's sizes
    (cascade, with the RoI sampler in every stage); ``head_overrides`` apply to every box head."""
    model = model_config("mini_mask_tsd.py" if kind == "mask" else "mini_tsd.py")
    model.train_cfg.rcnn.sampler.num = 32  # RoIs per image: enough for every loss and gradient, and fast
    model.train_cfg.rpn_proposal.max_per_img = 100
    if kind == "cascade":
        cascade, mini_head = model_config("cascade_r50_tsd.py"), model.roi_head.bbox_head
        cascade.roi_head.bbox_roi_extractor = model.roi_head.bbox_roi_extractor
        cascade.roi_head.bbox_head = [dict(head, in_channels=mini_head.in_channels,
                                           fc_out_channels=mini_head.fc_out_channels)
                                      for head in cascade.roi_head.bbox_head]
        stages = [dict(stage, sampler=model.train_cfg.rcnn.sampler) for stage in cascade.train_cfg.rcnn]
        model.type, model.roi_head, model.train_cfg.rcnn = cascade.type, cascade.roi_head, stages
    heads = model.roi_head.bbox_head
    for head in heads if isinstance(heads, list) else [heads]:
        head.update(num_classes=NUM_CLASSES, **head_overrides)
    if kind == "mask":
        model.roi_head.mask_head.num_classes = NUM_CLASSES
    return MODELS.build(model)


def batch(model, with_mask=False, seed=0):
    torch.manual_seed(seed)
    packed = demo_mm_inputs(2, [[3, 96, 128], [3, 128, 96]], num_items=[3, 4], num_classes=NUM_CLASSES,
                            with_mask=with_mask)
    return model.data_preprocessor(packed, True)


def train_step(model, data):
    model.train()
    losses = model.loss(data["inputs"], data["data_samples"])
    total, _ = model.parse_losses(losses)
    total.backward()
    return losses


TSD_LOSSES = ["loss_cls", "loss_bbox", "loss_tsd_cls", "loss_tsd_bbox", "loss_pc_cls", "loss_pc_loc", "acc",
              "tsd_acc"]


def assert_all_grads(module):
    for name, param in module.named_parameters():
        assert param.grad is not None, f"{name} got no gradient"
        assert torch.count_nonzero(param.grad) > 0, f"{name} got an all-zero gradient"


def forbid_sibling(head):
    """Make every sibling layer raise: prediction must run the TSD branch only."""
    def boom(*_):
        raise AssertionError("sibling branch ran at test time")
    for layer in [*head.shared_fcs, head.fc_cls, head.fc_reg]:
        layer.register_forward_pre_hook(boom)


def test_faster_rcnn_trains_and_predicts_with_the_tsd_branch_only():
    torch.manual_seed(0)
    model = detector("faster")
    model.init_weights()
    data = batch(model)
    losses = train_step(model, data)
    assert sorted(k for k in losses if not k.startswith("loss_rpn")) == sorted(TSD_LOSSES)
    for key in TSD_LOSSES:
        assert torch.isfinite(torch.as_tensor(losses[key])).all(), key
    assert_all_grads(model.roi_head)

    model.eval()
    forbid_sibling(model.roi_head.bbox_head)
    with torch.no_grad():
        results = model.predict(data["inputs"], data["data_samples"])
    assert len(results) == 2 and all(len(r.pred_instances) > 0 for r in results)


def test_predictions_decode_tsd_deltas_relative_to_translated_proposals():
    torch.manual_seed(0)
    model = detector("faster").eval()
    model.init_weights()
    head = model.roi_head
    # Larger regression offsets than at init, so that P_r differs visibly from P.
    torch.nn.init.normal_(head.bbox_head.delta_r[2].weight, std=0.5)
    data = batch(model)
    proposals = [InstanceData(bboxes=torch.tensor([[10.0, 12.0, 60.0, 70.0], [30.0, 5.0, 90.0, 40.0]]))
                 for _ in range(2)]
    metas = [s.metainfo for s in data["data_samples"]]
    with torch.no_grad():
        x = model.extract_feat(data["inputs"])
        got = head.predict_bbox(x, metas, proposals, rcnn_test_cfg=None)
        rois = torch.cat([torch.tensor([[0.0], [0.0], [1.0], [1.0]]), torch.cat([p.bboxes for p in proposals])], 1)
        out = head._bbox_forward(x, rois)
    rois_r = head.bbox_head.translate_rois(rois, out["delta_r"])
    assert (rois_r - rois)[:, 1:].abs().max() > 1
    want = head.bbox_head.bbox_coder.decode(rois_r[:, None, 1:].expand(-1, NUM_CLASSES, -1).reshape(-1, 4),
                                            out["tsd_bbox_pred"].reshape(-1, 4)).reshape(4, -1)
    want_scores = torch.softmax(out["tsd_cls_score"], 1)
    for i, res in enumerate(got):
        rows = slice(2 * i, 2 * i + 2)
        shape = metas[i]["img_shape"]
        clipped = want[rows].reshape(2, -1, 2).clone()
        clipped[..., 0].clamp_(0, shape[1])
        clipped[..., 1].clamp_(0, shape[0])
        torch.testing.assert_close(res.bboxes, clipped.reshape(2, -1))
        torch.testing.assert_close(res.scores, want_scores[rows])


def test_level_mapping_matches_the_roi_extractor():
    extractor_cfg = model_config("mini_tsd.py").roi_head.bbox_roi_extractor
    extractor = MODELS.build(extractor_cfg)
    head = MODELS.build(bbox_head())
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(500, 2, generator=g) * 800
    wh = torch.exp(torch.rand(500, 2, generator=g) * 7)
    rois = torch.cat([torch.zeros(500, 1), xy, xy + wh], 1)
    rois[:4, 3:] = rois[:4, 1:3] + torch.tensor([[56.0, 56.0], [112.0, 112.0], [224.0, 224.0], [448.0, 448.0]])
    torch.testing.assert_close(head.map_roi_levels(rois, 4), extractor.map_roi_levels(rois, 4), rtol=0, atol=0)
    roi_head = MODELS.build(dict(type="TSDRoIHead", bbox_roi_extractor=dict(extractor_cfg, finest_scale=40),
                                 bbox_head=bbox_head()))
    assert roi_head.bbox_head.finest_scale == 40 and roi_head.bbox_head.featmap_strides == (4, 8, 16, 32)
    with pytest.raises(ValueError, match=r"featmap_strides=\(8, 16, 32, 64\) differs"):
        MODELS.build(dict(type="TSDRoIHead", bbox_roi_extractor=extractor_cfg,
                          bbox_head=bbox_head(featmap_strides=(8, 16, 32, 64))))


def test_init_follows_the_original():
    """Sense-X/TSD ``TSDConvFCBBoxHead.init_weights``: kaiming normal (a=1) with zero bias on the fc stacks and
    the offset nets, ``BBoxHead.init_weights`` N(0, 0.01) / N(0, 0.001) with zero bias on the sibling's fc_cls /
    fc_reg; TSD_fc_cls / TSD_fc_reg are in neither and keep PyTorch's default nn.Linear init."""
    torch.manual_seed(0)
    head = MODELS.build(dict(bbox_head(), num_classes=80))
    head.init_weights()
    for name in ["shared_fcs.0", "shared_fcs.1", "tsd_cls_fcs.0", "tsd_reg_fcs.1", "offset_fc", "delta_c.0",
                 "delta_c.2", "delta_r.0", "delta_r.2"]:
        layer = head.get_submodule(name)
        assert torch.count_nonzero(layer.bias) == 0, name
        expected = 1 / math.sqrt(layer.in_features)  # kaiming normal, a = 1, fan_in: gain 1
        assert abs(layer.weight.std().item() / expected - 1) < (0.3 if layer.weight.numel() < 100 else 0.05), name
    for name, std in [("fc_cls", 0.01), ("fc_reg", 0.001)]:
        layer = head.get_submodule(name)
        assert abs(layer.weight.std().item() / std - 1) < 0.05 and torch.count_nonzero(layer.bias) == 0, name
    for name in ["tsd_fc_cls", "tsd_fc_reg"]:  # nn.Linear.reset_parameters: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
        layer = head.get_submodule(name)
        bound = 1 / math.sqrt(layer.in_features)
        for values in (layer.weight, layer.bias):
            assert values.abs().max() <= bound and abs(values.std().item() / (bound / math.sqrt(3)) - 1) < 0.1
    assert not torch.equal(head.fc_cls.weight, head.tsd_fc_cls.weight)


def _softmax(logits):
    e = [math.exp(v) for v in logits]
    return [v / sum(e) for v in e]


def _iou(a, b):
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _decode(box, delta):
    """DeltaXYWH decoding with means 0 and stds STDS, by hand."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    w, h = box[2] - box[0], box[3] - box[1]
    dx, dy, dw, dh = (d * s for d, s in zip(delta, STDS))
    cx, cy, w, h = cx + dx * w, cy + dy * h, w * math.exp(dw), h * math.exp(dh)
    return [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]


def test_progressive_constraint_losses_by_hand():
    head = MODELS.build(bbox_head())
    priors = torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 40.0, 30.0], [50.0, 50.0, 60.0, 60.0],
                           [5.0, 30.0, 15.0, 45.0]])
    gts = torch.tensor([[0.0, 0.0, 10.0, 12.0], [21.0, 19.0, 41.0, 31.0]])
    assign = AssignResult(num_gts=2, gt_inds=torch.tensor([1, 2, 0, 0]), max_overlaps=torch.tensor([0.8, 0.7, 0, 0]),
                          labels=torch.tensor([1, 2, -1, -1]))
    sampling = SamplingResult(pos_inds=torch.tensor([0, 1]), neg_inds=torch.tensor([2, 3]), priors=priors,
                              gt_bboxes=gts, assign_result=assign, gt_flags=torch.zeros(4, dtype=torch.uint8))
    rois = torch.cat([torch.zeros(4, 1), priors], 1)
    rois_r = rois + torch.tensor([[0.0, 1.0, 0.0, 1.0, 0.0], [0.0, -0.5, 1.0, -0.5, 1.0], [0.0] * 5, [0.0] * 5])
    cls_logits = [[0.2, 1.5, -0.3, 0.1], [0.0, 0.3, 2.0, -1.0], [0.5, 0.1, 0.0, 0.4], [-0.2, 0.3, 0.9, 2.5]]
    tsd_logits = [[0.1, 1.2, 0.0, 0.2], [0.0, 0.1, 3.0, -1.0], [0.2, 0.2, 0.1, 1.9], [0.0, 0.0, 0.0, 0.0]]
    bbox_pred = torch.zeros(4, 4 * NUM_CLASSES)
    tsd_bbox_pred = torch.zeros(4, 4 * NUM_CLASSES)
    bbox_pred[1, 8:12] = torch.tensor([0.5, -0.3, 0.2, 0.1])  # gt class 2 of RoI 1
    tsd_bbox_pred[0, 4:8] = torch.tensor([-0.2, 0.4, -0.1, 0.3])  # gt class 1 of RoI 0
    tsd_bbox_pred[0, 0:4] = torch.tensor([9.0, 9.0, 9.0, 9.0])  # another class: must be ignored
    losses = head.loss_and_target(torch.tensor(cls_logits), bbox_pred, rois, [sampling], ConfigDict(pos_weight=-1),
                                  tsd_cls_score=torch.tensor(tsd_logits), tsd_bbox_pred=tsd_bbox_pred,
                                  rois_r=rois_r)["loss_bbox"]

    labels = [1, 2, NUM_CLASSES, NUM_CLASSES]
    pc_cls = []
    for logits, tsd, label in zip(cls_logits, tsd_logits, labels):
        p, p_tsd = _softmax(logits)[label], _softmax(tsd)[label]
        pc_cls.append(max(0.0, p + min(1 - p, 0.3) - p_tsd))
    pc_loc = []
    for n in range(2):
        label = labels[n]
        sib = _decode(priors[n].tolist(), bbox_pred[n, 4 * label:4 * label + 4].tolist())
        tsd = _decode(rois_r[n, 1:].tolist(), tsd_bbox_pred[n, 4 * label:4 * label + 4].tolist())
        iou, iou_tsd = _iou(sib, gts[n].tolist()), _iou(tsd, gts[n].tolist())
        pc_loc.append(max(0.0, iou + min(1 - iou, 0.3) - iou_tsd))
    assert min(pc_cls) == 0 < max(pc_cls) and min(pc_loc) > 0  # both sides of the hinge are exercised
    assert losses["loss_pc_cls"].item() == pytest.approx(sum(pc_cls) / 4, abs=1e-6)
    assert losses["loss_pc_loc"].item() == pytest.approx(sum(pc_loc) / 2, abs=1e-6)


def test_regression_targets_keep_the_graph_to_delta_r():
    head = MODELS.build(bbox_head())
    priors = torch.tensor([[0.0, 0.0, 10.0, 10.0], [50.0, 50.0, 60.0, 60.0]])
    gts = torch.tensor([[1.0, 0.0, 11.0, 12.0]])
    assign = AssignResult(num_gts=1, gt_inds=torch.tensor([1, 0]), max_overlaps=torch.tensor([0.8, 0.0]),
                          labels=torch.tensor([0, -1]))
    sampling = SamplingResult(pos_inds=torch.tensor([0]), neg_inds=torch.tensor([1]), priors=priors, gt_bboxes=gts,
                              assign_result=assign, gt_flags=torch.zeros(2, dtype=torch.uint8))
    rois = torch.cat([torch.zeros(2, 1), priors], 1)
    delta_r = torch.zeros(2, 2, requires_grad=True)
    losses = head.loss_and_target(torch.zeros(2, NUM_CLASSES + 1), torch.zeros(2, 4 * NUM_CLASSES), rois,
                                  [sampling], ConfigDict(pos_weight=-1), tsd_cls_score=torch.zeros(2, NUM_CLASSES + 1),
                                  tsd_bbox_pred=torch.zeros(2, 4 * NUM_CLASSES),
                                  rois_r=head.translate_rois(rois, delta_r))["loss_bbox"]
    (grad,) = torch.autograd.grad(losses["loss_tsd_bbox"], delta_r)
    # target dx = (cx_gt - cx_r) / (w * 0.1) = (1 - 0.1 * w * delta) / (0.1 w): moving right lowers |target|.
    assert grad[0, 0] < 0 and grad[1].abs().sum() == 0


@pytest.mark.parametrize("kind", ["mask", "cascade"])
def test_mask_and_cascade_train_and_predict(kind):
    torch.manual_seed(0)
    model = detector(kind)
    model.init_weights()
    data = batch(model, with_mask=kind == "mask")
    losses = train_step(model, data)
    stages = ["s0.", "s1.", "s2."] if kind == "cascade" else [""]
    for prefix in stages:
        for key in TSD_LOSSES:
            assert torch.isfinite(torch.as_tensor(losses[prefix + key])).all(), prefix + key
    if kind == "mask":
        assert torch.isfinite(losses["loss_mask"])
    assert_all_grads(model.roi_head)

    model.eval()
    for head in (model.roi_head.bbox_head if kind == "cascade" else [model.roi_head.bbox_head]):
        forbid_sibling(head)
    with torch.no_grad():
        results = model.predict(data["inputs"], data["data_samples"])
    for res in results:
        assert len(res.pred_instances) > 0
        if kind == "mask":
            assert res.pred_instances.masks.shape[0] == len(res.pred_instances)


@pytest.mark.parametrize("class_agnostic", [True, False])  # cascade_r50_tsd's / the released COCO cascade's
def test_cascade_prediction_chains_translated_proposals_moved_by_tsd_deltas(class_agnostic):
    torch.manual_seed(0)
    model = detector("cascade", reg_class_agnostic=class_agnostic)
    model.init_weights()
    heads = model.roi_head.bbox_head
    for head in heads:  # visible offsets and deltas
        torch.nn.init.normal_(head.delta_r[2].weight, std=0.5)
        torch.nn.init.normal_(head.tsd_fc_reg.weight, std=0.05)
    data = batch(model)
    metas = [s.metainfo for s in data["data_samples"]]
    seen = []
    forward = model.roi_head._bbox_forward

    def spy(stage, x, rois):
        out = forward(stage, x, rois)
        seen.append((stage, rois, out))
        return out

    model.roi_head._bbox_forward = spy
    # Test time: the rois of stage s + 1 are stage s's P_r decoded with its TSD deltas (of the argmax class when
    # regression is class-specific).
    model.eval()
    with torch.no_grad():
        model.predict(data["inputs"], data["data_samples"])
    assert [stage for stage, _, _ in seen] == [0, 1, 2]
    for (stage, _, out), (_, next_rois, _) in zip(seen, seen[1:]):
        labels = out["tsd_cls_score"][:, :-1].argmax(1)
        deltas = out["tsd_bbox_pred"].view(len(labels), -1, 4)
        deltas = deltas[:, 0] if class_agnostic else deltas[torch.arange(len(labels)), labels]
        for image, meta in enumerate(metas):
            rows = out["rois_r"][:, 0] == image
            want = heads[stage].bbox_coder.decode(out["rois_r"][rows, 1:], deltas[rows], max_shape=meta["img_shape"])
            torch.testing.assert_close(next_rois[rows, 1:], want)
        assert (out["rois_r"] - seen[stage][1]).abs().max() > 0.5  # P_r really differs from P


def test_training_refinement_uses_translated_proposals_and_tsd_deltas():
    head = MODELS.build(bbox_head())
    priors = torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 40.0, 30.0], [50.0, 50.0, 60.0, 60.0]])
    gts = torch.tensor([[0.0, 0.0, 10.0, 12.0], [21.0, 19.0, 41.0, 31.0]])
    assign = AssignResult(num_gts=2, gt_inds=torch.tensor([1, 2, 0]), max_overlaps=torch.tensor([0.8, 0.7, 0.0]),
                          labels=torch.tensor([1, 2, -1]))
    sampling = SamplingResult(pos_inds=torch.tensor([0, 1]), neg_inds=torch.tensor([2]), priors=priors,
                              gt_bboxes=gts, assign_result=assign, gt_flags=torch.zeros(3, dtype=torch.uint8))
    g = torch.Generator().manual_seed(0)
    rois = torch.cat([torch.zeros(3, 1), priors], 1)
    rois_r = rois + torch.tensor([[0.0, 1.0, -1.0, 1.0, -1.0]])
    tsd_cls_score = torch.tensor([[0.0, 0.0, 0.0, 5.0], [0.0, 0.0, 0.0, 5.0], [0.0, 0.0, 2.0, 5.0]])
    results = dict(rois=rois, rois_r=rois_r, cls_score=torch.randn(3, NUM_CLASSES + 1, generator=g),
                   bbox_pred=torch.randn(3, 4 * NUM_CLASSES, generator=g), tsd_cls_score=tsd_cls_score,
                   tsd_bbox_pred=torch.randn(3, 4 * NUM_CLASSES, generator=g) * 0.3,
                   bbox_targets=(torch.tensor([1, 2, NUM_CLASSES]), None, None, None))
    (refined,) = head.refine_bboxes([sampling], results, [dict(img_shape=(100, 100))])
    labels = torch.tensor([1, 2, 2])  # gt classes, then the TSD classifier's best foreground class
    deltas = results["tsd_bbox_pred"].view(3, -1, 4)[torch.arange(3), labels]
    want = head.bbox_coder.decode(rois_r[:, 1:], deltas, max_shape=(100, 100))
    torch.testing.assert_close(refined.bboxes, want)
