# The released COCO Faster R-CNN R-50 FPN TSD (Sense-X/TSD faster_rcnn_r50_fpn_TSD_1x.py, 40.9 box AP) once
# converted: coco_r50_tsd with mmdet v1's box conventions and the original's test score threshold (0).
_base_ = ['../coco_r50_tsd.py', './_base_/v1_conventions.py']

model = dict(
    rpn_head=_base_.v1_rpn_head,
    roi_head=dict(bbox_roi_extractor=_base_.v1_roi_extractor, bbox_head=_base_.v1_tsd_head),
    test_cfg=dict(_base_.v1_test_cfg, rcnn=dict(_base_.v1_test_cfg.rcnn, score_thr=0.0)))
