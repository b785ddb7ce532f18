# The released COCO Faster R-CNN X-101-64x4d DCN FPN TSD (Sense-X/TSD faster_rcnn_x101_64x4d_fpn_TSD.py, 49.2 box AP
# with multi-scale testing) once converted: coco_x101_tsd with mmdet v1's box conventions and the original's test
# score threshold (0).
_base_ = ['../coco_x101_tsd.py', './_base_/v1_conventions.py']

model = dict(
    rpn_head=_base_.v1_rpn_head,
    roi_head=dict(bbox_roi_extractor=_base_.v1_roi_extractor, bbox_head=_base_.v1_tsd_head),
    test_cfg=dict(_base_.v1_test_cfg, rcnn=dict(_base_.v1_test_cfg.rcnn, score_thr=0.0)))
