# Open Images Challenge 2019: the sibling-head Faster R-CNN R-50 FPN that r50_tsd is compared with (same data,
# sampling and schedule).
_base_ = [
    './_base_/models/faster_rcnn_r50_fpn.py',
    './_base_/datasets/openimages_challenge.py',
    './_base_/schedules/openimages_1x.py',
    './_base_/default_runtime.py',
]

model = dict(
    roi_head=dict(bbox_head=dict(num_classes=_base_.num_classes)),
    train_cfg=dict(rpn=dict(assigner=dict(ignore_iof_thr=0.5)), rcnn=dict(assigner=dict(ignore_iof_thr=0.5))),
    test_cfg=dict(rcnn=dict(score_thr=0.001, max_per_img=300)))
