# The mini dataset with the TSD head: mini_baseline's tiny detector, the sibling head swapped for TSD
# (fc 256 in every branch, PC margins 0.3).
_base_ = './mini_baseline.py'

model = dict(
    roi_head=dict(
        type='TSDRoIHead',
        bbox_head=dict(
            type='TSDShared2FCBBoxHead',
            cls_pc_margin=0.3,
            loc_pc_margin=0.3,
            loss_tsd_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
            loss_tsd_bbox=dict(type='SmoothL1Loss', beta=1.0, loss_weight=1.0))))
