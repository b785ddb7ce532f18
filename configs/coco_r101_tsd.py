# COCO 2017: coco_r50_tsd on a ResNet-101 backbone (published: 42.3 box AP vs 38.9 for the baseline).
_base_ = './coco_r50_tsd.py'

model = dict(backbone=dict(depth=101, init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet101')))
