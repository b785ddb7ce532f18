# The original TSD X-101-64x4d DCN COCO recipe (faster_rcnn_x101_64x4d_fpn_TSD.py): coco_tsd_14e's rate and
# warm-up, 34 epochs, the rate / 10 after epochs 24 and 33.
_base_ = './coco_tsd_14e.py'

train_cfg = dict(max_epochs=34)
param_scheduler = [
    _base_.param_scheduler[0],
    dict(type='MultiStepLR', begin=0, end=34, by_epoch=True, milestones=[24, 33], gamma=0.1),
]
