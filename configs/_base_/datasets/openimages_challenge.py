# Open Images Challenge 2019 (500 classes) from the prepared Parquet annotations (`make prepare`).
# prepared_dir and img_root are replaced everywhere by `python -m pipeline.train --prepared-dir/--img-root` (`make
# train` passes the current dataset's); the defaults are the README walkthrough's `make prepare DATA=/data/oid2019`.
# Images are read from {img_root}/{split}/.
prepared_dir = 'work/oid2019/prepared'
img_root = '/data/oid2019'
num_classes = 500

train_pipeline = [
    dict(type='LoadImageFromFile', color_type='color_ignore_orientation'),
    dict(type='LoadOpenImagesAnnotations', with_bbox=True),
    dict(type='Resize', scale=(1024, 800), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile', color_type='color_ignore_orientation'),
    dict(type='Resize', scale=(1024, 800), keep_ratio=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size=2,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='OpenImagesClassAwareSampler'),
    dataset=dict(
        type='OpenImagesPreparedDataset',
        prepared_dir=prepared_dir,
        split='train',
        img_dir=img_root + '/train',
        group_of='ignore',
        num_classes=num_classes,
        filter_cfg=dict(filter_empty_gt=True),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type='OpenImagesPreparedDataset',
        prepared_dir=prepared_dir,
        split='validation',
        img_dir=img_root + '/validation',
        num_classes=num_classes,
        test_mode=True,
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='OpenImagesChallengeMetric', prepared_dir=prepared_dir, split='validation')
test_evaluator = val_evaluator
