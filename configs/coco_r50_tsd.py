# COCO 2017: Faster R-CNN R-50 FPN with the TSD head, the original's 14-epoch recipe (published: 40.9 box AP vs
# 36.2 for the baseline).
_base_ = [
    './_base_/models/faster_rcnn_r50_fpn_tsd.py',
    './_base_/datasets/coco_detection.py',
    './_base_/schedules/coco_tsd_14e.py',
    './_base_/default_runtime.py',
]
