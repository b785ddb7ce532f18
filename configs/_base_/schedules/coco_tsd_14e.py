# The original TSD COCO recipe (Sense-X/TSD configs/TSD_configs/faster_rcnn_r50_fpn_TSD_1x.py, also its baselines
# and Mask R-CNN): SGD 0.04 at 32 images (auto_scale_lr scales it to the real batch), momentum 0.9, weight decay
# 1e-4, gradient clip 35; a linear warm-up from 1/32 of the rate over the first epoch (the original's 3,600
# iterations of 32 images are one COCO epoch; counted in epochs it stays one epoch at any batch size); 14 epochs,
# the rate / 10 after epochs 9 and 12.
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=14, val_interval=1)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

param_scheduler = [
    dict(type='LinearLR', start_factor=1.0 / 32, by_epoch=True, begin=0, end=1, convert_to_iter_based=True),
    dict(type='MultiStepLR', begin=0, end=14, by_epoch=True, milestones=[9, 12], gamma=0.1),
]
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.04, momentum=0.9, weight_decay=0.0001),
    clip_grad=dict(max_norm=35, norm_type=2))
auto_scale_lr = dict(enable=True, base_batch_size=32)
