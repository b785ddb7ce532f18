# Open Images Challenge 2019: r50_tsd on ResNeXt-101 64x4d with deformable convolutions in stages c3-c5 and
# multi-scale training (shorter side 400-1400, longer side at most 1600).
_base_ = './r50_tsd.py'

model = dict(
    backbone=dict(
        type='ResNeXt',
        depth=101,
        groups=64,
        base_width=4,
        dcn=dict(type='DCN', deform_groups=1, fallback_on_stride=False),
        stage_with_dcn=(False, True, True, True),
        init_cfg=dict(type='Pretrained', checkpoint='open-mmlab://resnext101_64x4d')))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadOpenImagesAnnotations', with_bbox=True),
    dict(type='RandomResize', scale=[(1600, 400), (1600, 1400)], keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
