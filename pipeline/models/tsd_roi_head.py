"""RoI heads that drive :class:`TSDShared2FCBBoxHead`: Faster / Mask R-CNN and Cascade R-CNN.

Shape shorthand: N RoIs over the batch, K classes. ``bbox_results`` dicts hold the head's outputs
(``cls_score`` / ``bbox_pred`` of the sibling, ``tsd_cls_score`` / ``tsd_bbox_pred`` of the TSD branch,
``rois_r`` = P_r, ``delta_c``, ``delta_r``) plus ``bbox_feats`` (the RoIAlign features of the proposals P).
"""
from __future__ import annotations

from typing import Sequence

import torch
from mmdet.models.roi_heads import CascadeRoIHead, StandardRoIHead
from mmdet.models.task_modules.samplers import SamplingResult
from mmdet.models.utils import empty_instances
from mmdet.registry import MODELS
from mmdet.structures.bbox import bbox2roi, get_box_tensor
from torch import Tensor


def _with_roi_levels(bbox_head: dict, bbox_roi_extractor: dict) -> dict:
    """The head config with the FPN level rule of the RoI extractor, so both map a RoI to the same level."""
    rule = dict(featmap_strides=tuple(bbox_roi_extractor["featmap_strides"]),
                finest_scale=bbox_roi_extractor.get("finest_scale", 56))
    head = dict(bbox_head)
    for key, value in rule.items():
        given = head.get(key, value)
        if (tuple(given) if key == "featmap_strides" else given) != value:
            raise ValueError(f"bbox_head {key}={given} differs from the bbox_roi_extractor's {value}")
    head.update(rule)
    return head


def _tsd_forward(extractor, head, x: Sequence[Tensor], rois: Tensor) -> dict:
    """RoIAlign features of P, then both branches of the TSD head on them and on the FPN maps."""
    feats = x[:extractor.num_inputs]
    bbox_feats = extractor(feats, rois)
    return dict(head(bbox_feats, feats, rois), bbox_feats=bbox_feats)


def _tsd_loss(head, bbox_results: dict, rois: Tensor, sampling_results: list[SamplingResult], train_cfg) -> dict:
    """The head's losses and targets for the sampled proposals P (``rois``), merged into ``bbox_results``."""
    loss_and_target = head.loss_and_target(
        bbox_results["cls_score"], bbox_results["bbox_pred"], rois, sampling_results, train_cfg,
        tsd_cls_score=bbox_results["tsd_cls_score"], tsd_bbox_pred=bbox_results["tsd_bbox_pred"],
        rois_r=bbox_results["rois_r"])
    return dict(bbox_results, rois=rois, **loss_and_target)


@MODELS.register_module()
class TSDRoIHead(StandardRoIHead):
    """StandardRoIHead with a TSD box head (Faster R-CNN; Mask R-CNN with a mask head).

    Training: the sibling and TSD losses on the sampled proposals P; the mask head trains on the positive P.
    Test: only the TSD branch runs; its deltas decode relative to P_r, and masks are predicted on those boxes.
    """

    def init_bbox_head(self, bbox_roi_extractor: dict, bbox_head: dict) -> None:
        super().init_bbox_head(bbox_roi_extractor, _with_roi_levels(bbox_head, bbox_roi_extractor))

    def _bbox_forward(self, x: Sequence[Tensor], rois: Tensor) -> dict:
        if self.with_shared_head:
            raise NotImplementedError("TSDRoIHead has no shared-head (C4) variant")
        return _tsd_forward(self.bbox_roi_extractor, self.bbox_head, x, rois)

    def bbox_loss(self, x: Sequence[Tensor], sampling_results: list[SamplingResult]) -> dict:
        rois = bbox2roi([res.priors for res in sampling_results])
        return _tsd_loss(self.bbox_head, self._bbox_forward(x, rois), rois, sampling_results, self.train_cfg)

    def predict_bbox(self, x: Sequence[Tensor], batch_img_metas: list[dict], rpn_results_list: list,
                     rcnn_test_cfg, rescale: bool = False) -> list:
        """Detections of the TSD branch: its scores, its deltas decoded relative to P_r."""
        proposals = [res.bboxes for res in rpn_results_list]
        rois = bbox2roi(proposals)
        if rois.shape[0] == 0:
            return empty_instances(batch_img_metas, rois.device, task_type="bbox",
                                   box_type=self.bbox_head.predict_box_type, num_classes=self.bbox_head.num_classes,
                                   score_per_cls=rcnn_test_cfg is None)
        results = self._bbox_forward(x, rois)
        per_image = tuple(len(p) for p in proposals)
        return self.bbox_head.predict_by_feat(
            rois=results["rois_r"].split(per_image), cls_scores=results["tsd_cls_score"].split(per_image),
            bbox_preds=results["tsd_bbox_pred"].split(per_image), batch_img_metas=batch_img_metas,
            rcnn_test_cfg=rcnn_test_cfg, rescale=rescale)


@MODELS.register_module()
class TSDCascadeRoIHead(CascadeRoIHead):
    """Cascade R-CNN whose every stage is a TSD head.

    The next stage's proposals are P_r moved by the TSD deltas (training and test); the test score is the mean
    of the stages' TSD logits and the boxes are the last stage's TSD deltas decoded relative to its P_r.
    """

    def init_bbox_head(self, bbox_roi_extractor, bbox_head) -> None:
        stages = range(self.num_stages)
        extractors = bbox_roi_extractor if isinstance(bbox_roi_extractor, list) else [bbox_roi_extractor] * len(stages)
        heads = bbox_head if isinstance(bbox_head, list) else [bbox_head] * len(stages)
        super().init_bbox_head(extractors, [_with_roi_levels(h, e) for h, e in zip(heads, extractors)])

    def _bbox_forward(self, stage: int, x: Sequence[Tensor], rois: Tensor) -> dict:
        return _tsd_forward(self.bbox_roi_extractor[stage], self.bbox_head[stage], x, rois)

    def bbox_loss(self, stage: int, x: Sequence[Tensor], sampling_results: list[SamplingResult]) -> dict:
        rois = bbox2roi([res.priors for res in sampling_results])
        return _tsd_loss(self.bbox_head[stage], self._bbox_forward(stage, x, rois), rois, sampling_results,
                         self.train_cfg[stage])

    def _refine_roi(self, x: Sequence[Tensor], rois: Tensor, batch_img_metas: list[dict],
                    num_proposals_per_img: Sequence[int], **kwargs) -> tuple:
        """Run the stages at test time; returns per-image (P_r of the last stage, mean TSD logits, its deltas)."""
        stage_scores = []
        for stage in range(self.num_stages):
            results = self._bbox_forward(stage, x, rois)
            rois, deltas = results["rois_r"], results["tsd_bbox_pred"]
            stage_scores.append(results["tsd_cls_score"])
            if stage < self.num_stages - 1:
                labels = results["tsd_cls_score"][:, :-1].argmax(dim=1)
                boxes = [get_box_tensor(self.bbox_head[stage].regress_by_class(r[:, 1:], l, d, meta)) if len(r)
                         else r[:, 1:]
                         for r, l, d, meta in zip(rois.split(num_proposals_per_img),
                                                  labels.split(num_proposals_per_img),
                                                  deltas.split(num_proposals_per_img), batch_img_metas)]
                rois = torch.cat([rois[:, :1], torch.cat(boxes)], dim=1)
        scores = sum(stage_scores) / len(stage_scores)
        return (rois.split(num_proposals_per_img), scores.split(num_proposals_per_img),
                deltas.split(num_proposals_per_img))
