# Open Images Challenge 2019 (500 classes): Faster R-CNN R-50 FPN with the TSD head, class-aware sampling,
# the original recipe (SGD 0.00125 per image, warm-up, grad clip 35, 12 epochs). Group-of boxes are ignored
# (neither positive nor background for proposals lying mostly inside them); testing keeps low scores and many
# boxes per image, as the metric rewards recall.
_base_ = [
    './_base_/models/faster_rcnn_r50_fpn_tsd.py',
    './_base_/datasets/openimages_challenge.py',
    './_base_/schedules/openimages_1x.py',
    './_base_/default_runtime.py',
]

model = dict(
    roi_head=dict(bbox_head=dict(num_classes=_base_.num_classes)),
    train_cfg=dict(rpn=dict(assigner=dict(ignore_iof_thr=0.5)), rcnn=dict(assigner=dict(ignore_iof_thr=0.5))),
    test_cfg=dict(rcnn=dict(score_thr=0.001, max_per_img=300)))
