# RetinaNet + FPN with a harness backbone on the generated COCO-format smoke set (CPU-sized).
# neck_min_stride=8: FPN starts at the first backbone level of stride >= 8 (P3-P7 as in mmdet).
_base_ = [
    'mmdet::_base_/models/retinanet_r50_fpn.py',
    'mmdet::_base_/default_runtime.py',
    './_base_/coco_smoke.py',
    './_base_/harness_backbone.py',
]
detector_name = 'retinanet'
neck_min_stride = 8
fpn_channels = 32

model = dict(
    backbone={{_base_.harness_backbone}},
    neck=dict(in_channels=[32, 64, 128], start_level=0, out_channels=fpn_channels,
              add_extra_convs='on_input', num_outs=5),
    bbox_head=dict(
        num_classes=3, in_channels=fpn_channels, feat_channels=fpn_channels, stacked_convs=2,
        anchor_generator=dict(octave_base_scale=2, strides=[8, 16, 32, 64, 128])),
    test_cfg=dict(nms_pre=300, max_per_img=20))

default_hooks = dict(
    logger=dict(type='LoggerHook', interval=5),
    checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=2))
