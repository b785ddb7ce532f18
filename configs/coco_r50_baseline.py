# COCO 2017: the sibling-head Faster R-CNN R-50 FPN baseline, 1x schedule.
_base_ = [
    './_base_/models/faster_rcnn_r50_fpn.py',
    './_base_/datasets/coco_detection.py',
    './_base_/schedules/coco_1x.py',
    './_base_/default_runtime.py',
]
