# The released COCO Cascade R-CNN R-50 FPN TSD (Sense-X/TSD cascade_rcnn_r50_fpn_TSD_20e.py, 42.0 box AP) once
# converted: coco_cascade_r50_tsd with mmdet v1's box conventions, class-specific regression in every stage (the
# release has it; ours trains class-agnostic) and the original's test score threshold (0).
_base_ = ['../coco_cascade_r50_tsd.py', './_base_/v1_conventions.py']

model = dict(
    rpn_head=_base_.v1_rpn_head,
    roi_head=dict(
        bbox_roi_extractor=_base_.v1_roi_extractor,
        bbox_head=[
            dict(head, type=_base_.v1_tsd_head.type, reg_class_agnostic=False,
                 bbox_coder=dict(head.bbox_coder, **_base_.v1_tsd_head.bbox_coder))
            for head in _base_.model.roi_head.bbox_head]),
    test_cfg=dict(_base_.v1_test_cfg, rcnn=dict(_base_.v1_test_cfg.rcnn, score_thr=0.0)))
