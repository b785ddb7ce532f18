# COCO 2017: Faster R-CNN with the TSD head on ResNeXt-101 64x4d with deformable convolutions in stages c3-c5,
# multi-scale training (shorter side 400-1400, longer side at most 1600), the original's 34-epoch recipe
# (published: 49.2 box AP with multi-scale testing).
_base_ = [
    './_base_/models/faster_rcnn_r50_fpn_tsd.py',
    './_base_/datasets/coco_detection.py',
    './_base_/schedules/coco_tsd_34e.py',
    './_base_/default_runtime.py',
    './_base_/models/resnext101_64x4d_dcn.py',
]

model = dict(backbone=_base_.resnext101_64x4d_dcn)

train_pipeline = [
    dict(type='LoadImageFromFile', color_type='color_ignore_orientation'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='RandomResize', scale=[(1600, 400), (1600, 1400)], keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
