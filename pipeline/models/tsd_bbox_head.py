"""The TSD box head: a Shared2FC sibling head (training only) plus task-specific DeltaC / DeltaR branches.

Shape shorthand: N RoIs, C channels, k = ``roi_feat_size``, K = ``num_classes``, L FPN levels.
RoIs are ``(batch_idx, x1, y1, x2, y2)`` in image pixels; ``P`` are the proposals, ``P_r`` the proposals
translated by the regression offsets, ``P_r = P + trans_std * delta_r * (w, h)``.
"""
from __future__ import annotations

import copy
from typing import Sequence

import torch
import torch.nn.functional as F
from mmdet.models.losses import accuracy
from mmdet.models.roi_heads.bbox_heads import Shared2FCBBoxHead
from mmdet.models.task_modules.samplers import SamplingResult
from mmdet.registry import MODELS
from mmdet.structures.bbox import bbox_overlaps, get_box_tensor
from torch import Tensor, nn

from ..ops import deform_roi_pool_levels


def _default_init_cfg() -> list[dict]:
    """The original TSD init (``TSDConvFCBBoxHead.init_weights``): kaiming normal (a=1, fan_in, gain 1) with zero
    bias on every fc, N(0, 0.01) / N(0, 0.001) with zero bias on the sibling's class / box predictors. The TSD
    predictors ``tsd_fc_cls`` / ``tsd_fc_reg`` are in none of its lists and keep PyTorch's default ``nn.Linear``
    init."""
    fcs = ["shared_fcs", "tsd_cls_fcs", "tsd_reg_fcs", "offset_fc", "delta_c", "delta_r"]
    return [
        dict(type="Kaiming", a=1, mode="fan_in", nonlinearity="leaky_relu", distribution="normal", bias=0,
             override=[dict(name=name) for name in fcs]),
        dict(type="Normal", std=0.01, bias=0, override=dict(name="fc_cls")),
        dict(type="Normal", std=0.001, bias=0, override=dict(name="fc_reg")),
    ]


@MODELS.register_module()
class TSDShared2FCBBoxHead(Shared2FCBBoxHead):
    """Task-aware spatial disentanglement head (Song et al., CVPR 2020) on the Shared2FC layout.

    Branches, all from the RoIAlign feature ``x`` of the proposals P except the TSD stacks:
        sibling (training only): 2 fc -> ``fc_cls``, ``fc_reg`` (the inherited Shared2FC head);
        offsets: ``offset_fc`` -> ``delta_c`` (2 k k per-bin offsets), ``delta_r`` (2 per-RoI offsets);
        TSD classification: DeltaC pooling of P -> ``tsd_cls_fcs`` (2 fc) -> ``tsd_fc_cls``;
        TSD regression: DeltaR pooling of P -> ``tsd_reg_fcs`` (2 fc) -> ``tsd_fc_reg`` (deltas w.r.t. P_r).
    The progressive constraint asks the TSD branch to beat the sibling by ``cls_pc_margin`` in the gt-class
    probability and by ``loc_pc_margin`` in IoU. ``featmap_strides`` and ``finest_scale`` give the FPN level of
    each RoI; :class:`TSDRoIHead` copies them from its ``bbox_roi_extractor``.
    """

    def __init__(self, *args, trans_std: float = 0.1, sample_per_part: int = 4, cls_pc_margin: float = 0.2,
                 loc_pc_margin: float = 0.2, offset_fc_channels: int = 256,
                 featmap_strides: Sequence[int] = (4, 8, 16, 32), finest_scale: int = 56,
                 loss_tsd_cls: dict = dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0),
                 loss_tsd_bbox: dict = dict(type="SmoothL1Loss", beta=1.0, loss_weight=1.0),
                 loss_pc_cls_weight: float = 1.0, loss_pc_loc_weight: float = 1.0, init_cfg=None, **kwargs):
        super().__init__(*args, init_cfg=_default_init_cfg() if init_cfg is None else init_cfg, **kwargs)
        if not (self.with_cls and self.with_reg) or self.with_avg_pool or self.custom_cls_channels:
            raise ValueError("TSDShared2FCBBoxHead needs with_cls, with_reg, no avg pool and a softmax classifier")
        self.trans_std = trans_std
        self.sample_per_part = sample_per_part
        self.cls_pc_margin = cls_pc_margin
        self.loc_pc_margin = loc_pc_margin
        self.featmap_strides = tuple(featmap_strides)
        self.finest_scale = finest_scale
        self.loss_pc_cls_weight = loss_pc_cls_weight
        self.loss_pc_loc_weight = loss_pc_loc_weight
        self.loss_tsd_cls = MODELS.build(loss_tsd_cls)
        self.loss_tsd_bbox = MODELS.build(loss_tsd_bbox)

        flat_channels = self.in_channels * self.roi_feat_area
        self.offset_fc = nn.Linear(flat_channels, offset_fc_channels)
        self.delta_c = nn.Sequential(nn.Linear(offset_fc_channels, offset_fc_channels), nn.ReLU(inplace=True),
                                     nn.Linear(offset_fc_channels, 2 * self.roi_feat_area))
        self.delta_r = nn.Sequential(nn.Linear(offset_fc_channels, offset_fc_channels), nn.ReLU(inplace=True),
                                     nn.Linear(offset_fc_channels, 2))
        _, self.tsd_cls_fcs, _ = self._add_conv_fc_branch(0, self.num_shared_fcs, self.in_channels, True)
        _, self.tsd_reg_fcs, _ = self._add_conv_fc_branch(0, self.num_shared_fcs, self.in_channels, True)
        # same predictor type and shape as the sibling's, with a fresh draw of PyTorch's default init
        self.tsd_fc_cls = copy.deepcopy(self.fc_cls)
        self.tsd_fc_reg = copy.deepcopy(self.fc_reg)
        self.tsd_fc_cls.reset_parameters()
        self.tsd_fc_reg.reset_parameters()

    def map_roi_levels(self, rois: Tensor, num_levels: int) -> Tensor:
        """(N,) FPN level of each RoI by mmdet's rule: ``floor(log2(sqrt(w h) / finest_scale))`` clamped."""
        scale = torch.sqrt((rois[:, 3] - rois[:, 1]) * (rois[:, 4] - rois[:, 2]))
        return torch.floor(torch.log2(scale / self.finest_scale + 1e-6)).clamp(min=0, max=num_levels - 1).long()

    def translate_rois(self, rois: Tensor, delta_r: Tensor) -> Tensor:
        """P_r (N, 5): the RoIs moved by ``trans_std * delta_r * (w, h)``, differentiable w.r.t. ``delta_r``."""
        shift = self.trans_std * delta_r.to(rois.dtype) * (rois[:, 3:5] - rois[:, 1:3])
        return torch.cat([rois[:, :1], rois[:, 1:3] + shift, rois[:, 3:5] + shift], dim=1)

    def _fc_stack(self, fcs: nn.ModuleList, x: Tensor) -> Tensor:
        x = x.flatten(1)
        for fc in fcs:
            x = self.relu(fc(x))
        return x

    def forward(self, x: Tensor, feats: Sequence[Tensor], rois: Tensor) -> dict[str, Tensor | None]:
        """Both branches of the head.

        Args:
            x: (N, C, k, k) RoIAlign features of the proposals P.
            feats: the FPN maps (B, C, H_l, W_l), finest first; the first ``len(featmap_strides)`` are used.
            rois: (N, 5) the proposals P.
        Returns:
            ``tsd_cls_score`` (N, K + 1), ``tsd_bbox_pred`` (N, 4 or 4 K) deltas w.r.t. ``rois_r`` (N, 5),
            ``delta_c`` (N, 2, k, k), ``delta_r`` (N, 2), and the sibling ``cls_score`` / ``bbox_pred``
            (None in eval mode: the sibling only trains).
        """
        num_rois, k = len(rois), self.roi_feat_size[0]
        offset_feat = F.relu(self.offset_fc(x.flatten(1)))
        delta_c = self.delta_c(offset_feat).view(num_rois, 2, k, k)
        delta_r = self.delta_r(offset_feat)

        num_levels = len(self.featmap_strides)
        levels = self.map_roi_levels(rois, num_levels)
        # DeltaC and DeltaR pooling in one call: the RoIs twice, per-bin offsets then per-RoI offsets.
        pooled = deform_roi_pool_levels(
            feats[:num_levels], torch.cat([rois, rois]),
            torch.cat([delta_c, delta_r[:, :, None, None].expand(-1, -1, k, k)]), torch.cat([levels, levels]),
            [1.0 / s for s in self.featmap_strides], out_size=k, sample_per_part=self.sample_per_part,
            trans_std=self.trans_std)
        cls_feat, reg_feat = pooled.to(x.dtype).split(num_rois)
        results = dict(
            tsd_cls_score=self.tsd_fc_cls(self._fc_stack(self.tsd_cls_fcs, cls_feat)),
            tsd_bbox_pred=self.tsd_fc_reg(self._fc_stack(self.tsd_reg_fcs, reg_feat)),
            rois_r=self.translate_rois(rois, delta_r), delta_c=delta_c, delta_r=delta_r,
            cls_score=None, bbox_pred=None)
        if self.training:
            results["cls_score"], results["bbox_pred"] = super().forward(x)
        return results

    def _gt_class_deltas(self, bbox_pred: Tensor, labels: Tensor) -> Tensor:
        """(P, 4) the deltas of each RoI's gt class (or the class-agnostic ones)."""
        box_dim = self.bbox_coder.encode_size
        if self.reg_class_agnostic:
            return bbox_pred.view(len(bbox_pred), box_dim)
        return bbox_pred.view(len(bbox_pred), -1, box_dim)[torch.arange(len(labels)), labels]

    def loss_and_target(self, cls_score: Tensor, bbox_pred: Tensor, rois: Tensor,
                        sampling_results: list[SamplingResult], rcnn_train_cfg, concat: bool = True,
                        reduction_override: str | None = None, *, tsd_cls_score: Tensor, tsd_bbox_pred: Tensor,
                        rois_r: Tensor) -> dict:
        """The sibling losses of mmdet's BBoxHead plus the TSD and progressive-constraint losses.

        ``rois`` (N, 5) are the sampled proposals P (positives first in each image), ``rois_r`` P_r. The TSD
        regression targets ``encode(P_r, gt)`` keep their graph, so ``delta_r`` also learns through them.
        Returns ``dict(loss_bbox=losses, bbox_targets=(labels, label_weights, bbox_targets, bbox_weights))``
        with losses ``loss_cls, loss_bbox, acc`` (sibling), ``loss_tsd_cls, loss_tsd_bbox, tsd_acc``,
        ``loss_pc_cls, loss_pc_loc``.
        """
        if not concat:
            raise NotImplementedError("TSDShared2FCBBoxHead computes its losses on the concatenated batch only")
        results = super().loss_and_target(cls_score, bbox_pred, rois, sampling_results, rcnn_train_cfg,
                                          concat=concat, reduction_override=reduction_override)
        losses = results["loss_bbox"]
        labels, label_weights, bbox_targets, bbox_weights = results["bbox_targets"]
        pos = (labels >= 0) & (labels < self.num_classes)
        pos_labels = labels[pos]
        box_dim = self.bbox_coder.encode_size
        gt = torch.cat([torch.cat([get_box_tensor(res.pos_gt_bboxes),
                                   rois.new_zeros(len(res.neg_priors), box_dim)]) for res in sampling_results])
        pos_gt = gt[pos]
        pos_rois, pos_rois_r = rois[pos, 1:], rois_r[pos, 1:]

        avg_factor = max(torch.sum(label_weights > 0).float().item(), 1.0)
        losses["loss_tsd_cls"] = self.loss_tsd_cls(tsd_cls_score, labels, label_weights, avg_factor=avg_factor,
                                                   reduction_override=reduction_override)
        losses["tsd_acc"] = accuracy(tsd_cls_score, labels)

        rows = torch.arange(len(labels), device=labels.device)
        p = F.softmax(cls_score.float(), dim=1)[rows, labels].detach()
        p_tsd = F.softmax(tsd_cls_score.float(), dim=1)[rows, labels]
        margin = torch.clamp(1 - p, max=self.cls_pc_margin)
        losses["loss_pc_cls"] = self.loss_pc_cls_weight * F.relu(p + margin - p_tsd).sum() / max(len(labels), 1)

        if pos.any():
            pos_tsd_deltas = self._gt_class_deltas(tsd_bbox_pred[pos], pos_labels)
            tsd_boxes = get_box_tensor(self.bbox_coder.decode(pos_rois_r, pos_tsd_deltas))
            if self.reg_decoded_bbox:
                pred, target = tsd_boxes, pos_gt
            else:
                pred, target = pos_tsd_deltas, self.bbox_coder.encode(pos_rois_r, pos_gt)
            losses["loss_tsd_bbox"] = self.loss_tsd_bbox(pred, target, bbox_weights[pos],
                                                         avg_factor=bbox_targets.size(0),
                                                         reduction_override=reduction_override)
            with torch.no_grad():
                sibling_boxes = get_box_tensor(self.bbox_coder.decode(
                    pos_rois, self._gt_class_deltas(bbox_pred[pos], pos_labels)))
                iou = bbox_overlaps(sibling_boxes.float(), pos_gt.float(), is_aligned=True)
            iou_tsd = bbox_overlaps(tsd_boxes.float(), pos_gt.float(), is_aligned=True)
            margin = torch.clamp(1 - iou, max=self.loc_pc_margin)
            losses["loss_pc_loc"] = self.loss_pc_loc_weight * F.relu(iou + margin - iou_tsd).mean()
        else:  # keep every output in the graph
            losses["loss_tsd_bbox"] = tsd_bbox_pred[pos].sum()
            losses["loss_pc_loc"] = tsd_bbox_pred[pos].sum() + rois_r.sum() * 0
        return results

    def refine_bboxes(self, sampling_results: list[SamplingResult], bbox_results: dict,
                      batch_img_metas: list[dict]) -> list:
        """Next-stage proposals in Cascade R-CNN training: P_r moved by the TSD deltas of the gt class (of the
        TSD classifier's best foreground class for negatives), ground-truth proposals dropped."""
        tsd_results = dict(bbox_results, rois=bbox_results["rois_r"], cls_score=bbox_results["tsd_cls_score"],
                           bbox_pred=bbox_results["tsd_bbox_pred"])
        return super().refine_bboxes(sampling_results, tsd_results, batch_img_metas)
