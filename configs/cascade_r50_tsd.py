# Open Images Challenge 2019: Cascade R-CNN R-50 FPN with TSD heads in all three stages (r50_tsd's data,
# sampling, schedule and test settings). Config lists replace rather than merge, so the stage heads and
# assigners are restated here with 500 classes and group-of ignoring.
_base_ = [
    './_base_/models/cascade_rcnn_r50_fpn_tsd.py',
    './_base_/datasets/openimages_challenge.py',
    './_base_/schedules/openimages_1x.py',
    './_base_/default_runtime.py',
]

stage_target_stds = [[0.1, 0.1, 0.2, 0.2], [0.05, 0.05, 0.1, 0.1], [0.033, 0.033, 0.067, 0.067]]
stage_iou_thrs = [0.5, 0.6, 0.7]
model = dict(
    roi_head=dict(bbox_head=[
        dict(
            type='TSDShared2FCBBoxHead',
            in_channels=256,
            fc_out_channels=1024,
            roi_feat_size=7,
            num_classes=500,
            bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0., 0., 0., 0.], target_stds=stds),
            reg_class_agnostic=True,
            cls_pc_margin=0.3,
            loc_pc_margin=0.3,
            loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
            loss_bbox=dict(type='SmoothL1Loss', beta=1.0, loss_weight=1.0)) for stds in stage_target_stds]),
    train_cfg=dict(
        rpn=dict(assigner=dict(ignore_iof_thr=0.5)),
        rcnn=[
            dict(
                assigner=dict(type='MaxIoUAssigner', pos_iou_thr=iou, neg_iou_thr=iou, min_pos_iou=iou,
                              match_low_quality=False, ignore_iof_thr=0.5),
                sampler=dict(type='RandomSampler', num=512, pos_fraction=0.25, neg_pos_ub=-1,
                             add_gt_as_proposals=True),
                pos_weight=-1,
                debug=False) for iou in stage_iou_thrs]),
    test_cfg=dict(rcnn=dict(score_thr=0.001, max_per_img=300)))
