# Open Images Challenge 2019: r50_tsd on a ResNet-152 backbone.
_base_ = './r50_tsd.py'

model = dict(backbone=dict(depth=152, init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet152')))
