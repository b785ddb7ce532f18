# Cascade R-CNN R-50 FPN whose three stages are TSD heads (IoU 0.5 / 0.6 / 0.7, target stds halving per stage,
# every stage's loss at weight 1 as in the original).
_base_ = './faster_rcnn_r50_fpn.py'

stage_target_stds = [[0.1, 0.1, 0.2, 0.2], [0.05, 0.05, 0.1, 0.1], [0.033, 0.033, 0.067, 0.067]]
stage_iou_thrs = [0.5, 0.6, 0.7]
model = dict(
    type='CascadeRCNN',
    roi_head=dict(
        _delete_=True,
        type='TSDCascadeRoIHead',
        num_stages=3,
        stage_loss_weights=[1, 1, 1],
        bbox_roi_extractor=dict(
            type='SingleRoIExtractor',
            roi_layer=dict(type='RoIAlign', output_size=7, sampling_ratio=0),
            out_channels=256,
            featmap_strides=[4, 8, 16, 32]),
        bbox_head=[
            dict(
                type='TSDShared2FCBBoxHead',
                in_channels=256,
                fc_out_channels=1024,
                roi_feat_size=7,
                num_classes=80,
                bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0., 0., 0., 0.], target_stds=stds),
                reg_class_agnostic=True,
                cls_pc_margin=0.3,
                loc_pc_margin=0.3,
                loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
                loss_bbox=dict(type='SmoothL1Loss', beta=1.0, loss_weight=1.0)) for stds in stage_target_stds]),
    train_cfg=dict(
        rpn_proposal=dict(max_per_img=2000),
        rcnn=[
            dict(
                assigner=dict(type='MaxIoUAssigner', pos_iou_thr=iou, neg_iou_thr=iou, min_pos_iou=iou,
                              match_low_quality=False, ignore_iof_thr=-1),
                sampler=dict(type='RandomSampler', num=512, pos_fraction=0.25, neg_pos_ub=-1,
                             add_gt_as_proposals=True),
                pos_weight=-1,
                debug=False) for iou in stage_iou_thrs]))
