# COCO 2017: Cascade R-CNN R-50 FPN with TSD heads in all stages, the original's 21-epoch recipe (published:
# 42.0 box AP).
_base_ = [
    './_base_/models/cascade_rcnn_r50_fpn_tsd.py',
    './_base_/datasets/coco_detection.py',
    './_base_/schedules/coco_tsd_21e.py',
    './_base_/default_runtime.py',
]
