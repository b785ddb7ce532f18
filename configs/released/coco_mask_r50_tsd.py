# The released COCO Mask R-CNN R-50 FPN TSD (Sense-X/TSD mask_rcnn_r50_fpn_TSD_1x.py, 41.2 box / 35.8 mask AP)
# once converted: coco_mask_r50_tsd with mmdet v1's box conventions (both RoI extractors) and the original's test
# score threshold (0). Masks are still pasted the mmdet 3 way.
_base_ = ['../coco_mask_r50_tsd.py', './_base_/v1_conventions.py']

model = dict(
    rpn_head=_base_.v1_rpn_head,
    roi_head=dict(
        bbox_roi_extractor=_base_.v1_roi_extractor,
        bbox_head=_base_.v1_tsd_head,
        mask_roi_extractor=_base_.v1_roi_extractor),
    test_cfg=dict(_base_.v1_test_cfg, rcnn=dict(_base_.v1_test_cfg.rcnn, score_thr=0.0)))
