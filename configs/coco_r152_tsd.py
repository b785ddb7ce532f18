# COCO 2017: coco_r50_tsd on a ResNet-152 backbone (published: 43.7 box AP vs 40.5 for the baseline).
_base_ = './coco_r50_tsd.py'

model = dict(backbone=dict(depth=152, init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet152')))
