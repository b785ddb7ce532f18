# Faster R-CNN R-50 FPN with the TSD head (Shared2FC variant): the sibling head trains alongside, only the TSD
# branch predicts. Progressive-constraint margins 0.3 as in every published TSD config.
_base_ = './faster_rcnn_r50_fpn.py'

model = dict(
    roi_head=dict(
        type='TSDRoIHead',
        bbox_head=dict(
            type='TSDShared2FCBBoxHead',
            cls_pc_margin=0.3,
            loc_pc_margin=0.3,
            loss_tsd_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
            loss_tsd_bbox=dict(type='SmoothL1Loss', beta=1.0, loss_weight=1.0))))
