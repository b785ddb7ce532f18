# Open Images Challenge 2019: Cascade R-CNN R-50 FPN with TSD heads in all three stages (r50_tsd's data,
# sampling, schedule and test settings). Config lists replace rather than merge, so each stage's head and assigner
# is the base's with the dataset's class count and group-of ignoring.
_base_ = [
    './_base_/models/cascade_rcnn_r50_fpn_tsd.py',
    './_base_/datasets/openimages_challenge.py',
    './_base_/schedules/openimages_1x.py',
    './_base_/default_runtime.py',
]

model = dict(
    roi_head=dict(bbox_head=[dict(head, num_classes=_base_.num_classes) for head in _base_.model.roi_head.bbox_head]),
    train_cfg=dict(
        rpn=dict(assigner=dict(ignore_iof_thr=0.5)),
        rcnn=[dict(stage, assigner=dict(stage.assigner, ignore_iof_thr=0.5)) for stage in _base_.model.train_cfg.rcnn]),
    test_cfg=dict(rcnn=dict(score_thr=0.001, max_per_img=300)))
