# The original TSD Cascade R-CNN COCO recipe (cascade_rcnn_r50_fpn_TSD_20e.py): coco_tsd_14e's rate and warm-up,
# 21 epochs, the rate / 10 after epochs 17 and 20.
_base_ = './coco_tsd_14e.py'

train_cfg = dict(max_epochs=21)
param_scheduler = [
    _base_.param_scheduler[0],
    dict(type='MultiStepLR', begin=0, end=21, by_epoch=True, milestones=[17, 20], gamma=0.1),
]
