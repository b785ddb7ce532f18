# COCO 2017: Cascade R-CNN R-50 FPN with TSD heads in all stages, 20-epoch schedule.
_base_ = [
    './_base_/models/cascade_rcnn_r50_fpn_tsd.py',
    './_base_/datasets/coco_detection.py',
    './_base_/schedules/coco_20e.py',
    './_base_/default_runtime.py',
]
