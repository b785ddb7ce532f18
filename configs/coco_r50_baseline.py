# COCO 2017: the sibling-head Faster R-CNN R-50 FPN baseline, the TSD recipe (as the original's baselines).
_base_ = [
    './_base_/models/faster_rcnn_r50_fpn.py',
    './_base_/datasets/coco_detection.py',
    './_base_/schedules/coco_tsd_14e.py',
    './_base_/default_runtime.py',
]
