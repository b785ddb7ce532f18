# The Open Images recipe of the original TSD code: SGD at 0.00125 per image (0.02 at 16 images, scaled to the
# real batch by auto_scale_lr), momentum 0.9, weight decay 1e-4, gradient clip 35, linear warm-up from 1/64 over
# the first epoch (26,000 iterations of 64 images originally), 12 epochs with steps after 8 and 11.
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=12, val_interval=12)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

param_scheduler = [
    dict(type='LinearLR', start_factor=1.0 / 64, by_epoch=True, begin=0, end=1, convert_to_iter_based=True),
    dict(type='MultiStepLR', begin=0, end=12, by_epoch=True, milestones=[8, 11], gamma=0.1),
]
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.02, momentum=0.9, weight_decay=0.0001),
    clip_grad=dict(max_norm=35, norm_type=2))
auto_scale_lr = dict(enable=True, base_batch_size=16)
