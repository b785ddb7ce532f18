# Open Images Challenge 2019: r50_tsd on ResNeXt-101 64x4d with deformable convolutions in stages c3-c5 and
# multi-scale training (shorter side 400-1400, longer side at most 1600).
_base_ = ['./r50_tsd.py', './_base_/models/resnext101_64x4d_dcn.py']

model = dict(backbone=_base_.resnext101_64x4d_dcn)

train_pipeline = [
    dict(type='LoadImageFromFile', color_type='color_ignore_orientation'),
    dict(type='LoadOpenImagesAnnotations', with_bbox=True),
    dict(type='RandomResize', scale=[(1600, 400), (1600, 1400)], keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
