# The box conventions of mmdetection 1.1, which the original TSD code was built on. A model converted from one of
# its checkpoints (`python -m pipeline.convert_tsd`) predicts what the original predicted only with them. The
# configs beside this file merge these pieces into the project config they inherit from:
# - anchors centred at (stride - 1) / 2 with rounded corners (LegacyAnchorGenerator);
# - box sizes x2 - x1 + 1 in the box coder (LegacyDeltaXYWHBBoxCoder) and in NMS (offset=1);
# - RoIAlign with 2x2 samples per bin, ending at x2 + 1, and the FPN level of sqrt((w + 1)(h + 1)), in the RoI
#   extractor and in the TSD head, whose P_r also moves by (w + 1, h + 1) (pipeline/models/legacy.py);
# - no RPN box-size filter (v1 skipped it at min_bbox_size=0; mmdet 3 drops empty boxes there).
v1_rpn_head = dict(
    anchor_generator=dict(type='LegacyAnchorGenerator', center_offset=0.5),
    bbox_coder=dict(type='LegacyDeltaXYWHBBoxCoder'))
v1_roi_extractor = dict(
    type='LegacySingleRoIExtractor', roi_layer=dict(type='RoIAlign', aligned=False, sampling_ratio=2))
v1_tsd_head = dict(type='LegacyTSDShared2FCBBoxHead', bbox_coder=dict(type='LegacyDeltaXYWHBBoxCoder'))
v1_nms = dict(type='nms', offset=1)
v1_test_cfg = dict(rpn=dict(nms=v1_nms, min_bbox_size=-1), rcnn=dict(nms=v1_nms))
