# ResNeXt-101 64x4d with deformable convolutions in stages c3-c5, ImageNet-pretrained: the X-101 configs' backbone,
# merged over the R-50 one (`model = dict(backbone=_base_.resnext101_64x4d_dcn)`).
resnext101_64x4d_dcn = dict(
    type='ResNeXt',
    depth=101,
    groups=64,
    base_width=4,
    dcn=dict(type='DCN', deform_groups=1, fallback_on_stride=False),
    stage_with_dcn=(False, True, True, True),
    init_cfg=dict(type='Pretrained', checkpoint='open-mmlab://resnext101_64x4d'))
