# The released Open Images Challenge 2019 Faster R-CNN R-50 FPN TSD (Sense-X/TSD OpenImages_configs/
# r50-FPN-1x_classsampling_TSD, 72.2 validation AP) once converted with its label file (`--label-file`): r50_tsd
# with mmdet v1's box conventions and the original's test settings (score threshold 0.01, 100 boxes per image;
# `python -m pipeline.infer` sets its own with --score-thr / --max-per-img).
_base_ = ['../r50_tsd.py', './_base_/v1_conventions.py']

model = dict(
    rpn_head=_base_.v1_rpn_head,
    roi_head=dict(bbox_roi_extractor=_base_.v1_roi_extractor, bbox_head=_base_.v1_tsd_head),
    test_cfg=dict(_base_.v1_test_cfg, rcnn=dict(_base_.v1_test_cfg.rcnn, score_thr=0.01, max_per_img=100)))
