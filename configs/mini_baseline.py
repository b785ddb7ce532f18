# The bundled mini dataset (data_prep.mini: 13 classes, 128-192 px images): a sibling-head Faster R-CNN small enough
# to learn from random initialisation on 2 CPU cores in minutes. Settings measured to learn fastest: ResNet-18
# with 16 base channels, nothing frozen and BN trained; FPN 64 channels; one anchor scale; fc 256; 128 sampled RoIs;
# 300/100 proposals; native image size with flip; batch 8; SGD 0.04 with a 100-iteration warm-up and then a
# constant rate; grad clip 10; 200 iterations, a checkpoint every 10 for `make average` (measured results:
# docs/demo.md). For CPU speed: 1000 RPN boxes per level into NMS and RoIAlign with 2x2 samples per bin (as in the
# original TSD code).
_base_ = [
    './_base_/models/faster_rcnn_r50_fpn.py',
    './_base_/datasets/openimages_challenge.py',
    './_base_/default_runtime.py',
]

prepared_dir = 'work/mini/prepared'
img_root = 'data/mini'
num_classes = 13
max_iters = 200
# test-time augmentation of `make infer`: short sides (the images are 128-192 px), each also flipped
tta_scales = [160, 224]

model = dict(
    backbone=dict(
        depth=18,
        base_channels=16,
        frozen_stages=-1,
        norm_eval=False,
        init_cfg=None),
    neck=dict(in_channels=[16, 32, 64, 128], out_channels=64),
    rpn_head=dict(in_channels=64, feat_channels=64, anchor_generator=dict(scales=[4])),
    roi_head=dict(
        bbox_roi_extractor=dict(roi_layer=dict(sampling_ratio=2), out_channels=64),
        bbox_head=dict(in_channels=64, fc_out_channels=256, num_classes=num_classes)),
    train_cfg=dict(
        rpn_proposal=dict(nms_pre=1000, max_per_img=300),
        rcnn=dict(sampler=dict(num=128))),
    test_cfg=dict(
        rpn=dict(max_per_img=100),
        rcnn=dict(score_thr=0.001, max_per_img=100)))

# the base's pipelines at the images' native size
train_pipeline = [dict(type='Resize', scale_factor=1.0) if step.type == 'Resize' else step
                  for step in _base_.train_pipeline]
test_pipeline = [dict(type='Resize', scale_factor=1.0) if step.type == 'Resize' else step
                 for step in _base_.test_pipeline]
train_dataloader = dict(
    batch_size=8,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        prepared_dir=prepared_dir,
        img_dir=img_root + '/train',
        num_classes=num_classes,
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        prepared_dir=prepared_dir,
        img_dir=img_root + '/validation',
        num_classes=num_classes,
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(prepared_dir=prepared_dir)
test_evaluator = val_evaluator

train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
param_scheduler = [dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=100)]
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.04, momentum=0.9, weight_decay=0.0001),
    clip_grad=dict(max_norm=10, norm_type=2))
auto_scale_lr = dict(enable=False, base_batch_size=8)

default_hooks = dict(
    logger=dict(interval=25),
    checkpoint=dict(by_epoch=False, interval=10, max_keep_ckpts=3))
log_processor = dict(by_epoch=False, window_size=25)
env_cfg = dict(dist_cfg=dict(backend='gloo'))
