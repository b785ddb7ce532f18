# COCO 2017: Mask R-CNN R-50 FPN with the TSD box head, the original's 14-epoch recipe (published: 41.2 box /
# 35.8 mask AP).
_base_ = [
    './_base_/models/mask_rcnn_r50_fpn_tsd.py',
    './_base_/datasets/coco_instance.py',
    './_base_/schedules/coco_tsd_14e.py',
    './_base_/default_runtime.py',
]
