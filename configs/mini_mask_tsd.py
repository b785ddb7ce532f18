# The mini dataset with Mask R-CNN TSD: mini_tsd's detector plus a mask head, trained on the COCO export of
# `make prepare` (coco/train.json: boxes and the exact polygon of each drawn object; group-of boxes as crowd).
_base_ = './mini_tsd.py'

# the mini classes in classes.csv order: CocoDataset selects categories by display name; the MIDs travel in the
# checkpoint's dataset_meta for inference
classes = ('Vegetable', 'Zucchini', 'Football', 'Banana', 'Carrot', 'Lemon', 'Pumpkin', 'Tomato', 'Fruit',
           'Tennis ball', 'Squash', 'Ball', 'Apple')
mids = ('/m/0f4s2w', '/m/027pcv', '/m/01226z', '/m/09qck', '/m/0fj52s', '/m/09k_b', '/m/05zsy', '/m/07j87',
        '/m/02xwb', '/m/05ctyq', '/m/0dv77', '/m/018xm', '/m/014j1m')

model = dict(
    type='MaskRCNN',
    data_preprocessor=dict(pad_mask=True),
    roi_head=dict(
        mask_roi_extractor=dict(
            type='SingleRoIExtractor',
            roi_layer=dict(type='RoIAlign', output_size=14, sampling_ratio=0),
            out_channels=64,
            featmap_strides=[4, 8, 16, 32]),
        mask_head=dict(
            type='FCNMaskHead',
            num_convs=2,
            in_channels=64,
            conv_out_channels=64,
            num_classes=_base_.num_classes,
            loss_mask=dict(type='CrossEntropyLoss', use_mask=True, loss_weight=1.0))),
    train_cfg=dict(rcnn=dict(mask_size=28)),
    test_cfg=dict(rcnn=dict(mask_thr_binary=0.5)))

train_pipeline = [
    dict(type='LoadImageFromFile', color_type='color_ignore_orientation'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale_factor=1.0),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile', color_type='color_ignore_orientation'),
    dict(type='Resize', scale_factor=1.0),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    sampler=dict(_delete_=True, type='DefaultSampler', shuffle=True),
    dataset=dict(
        _delete_=True,
        type='CocoDataset',
        ann_file=_base_.prepared_dir + '/coco/train.json',
        data_prefix=dict(img=_base_.img_root + '/train/'),
        metainfo=dict(classes=classes, mids=mids),
        filter_cfg=dict(filter_empty_gt=True),
        pipeline=train_pipeline))
val_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type='CocoDataset',
        ann_file=_base_.prepared_dir + '/coco/validation.json',
        data_prefix=dict(img=_base_.img_root + '/validation/'),
        metainfo=dict(classes=classes, mids=mids),
        test_mode=True,
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(
    _delete_=True, type='CocoMetric', ann_file=_base_.prepared_dir + '/coco/validation.json', metric=['bbox', 'segm'])
test_evaluator = val_evaluator
