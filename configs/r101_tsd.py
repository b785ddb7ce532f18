# Open Images Challenge 2019: r50_tsd on a ResNet-101 backbone.
_base_ = './r50_tsd.py'

model = dict(backbone=dict(depth=101, init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet101')))
