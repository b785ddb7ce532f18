# The released COCO Cascade R-CNN R-101 FPN TSD (Sense-X/TSD cascade_rcnn_r101_fpn_TSD_20e.py, 42.9 box AP) once
# converted: the converted Cascade R-50 on coco_cascade_r101_tsd's backbone.
_base_ = './coco_cascade_r50_tsd.py'

model = dict(backbone=dict(depth=101, init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet101')))
