# Faster R-CNN + FPN with a harness backbone on the generated COCO-format smoke set (CPU-sized:
# 96-px images, 32-channel FPN, small RoI head). run_detection fills backbone/backbone_kwargs,
# neck.in_channels, the anchor strides and the RoI extractor strides from the built backbone.
_base_ = [
    'mmdet::_base_/models/faster-rcnn_r50_fpn.py',
    'mmdet::_base_/default_runtime.py',
    './_base_/coco_smoke.py',
    './_base_/harness_backbone.py',
]
detector_name = 'faster_rcnn'
fpn_channels = 32

model = dict(
    backbone={{_base_.harness_backbone}},
    neck=dict(in_channels=[32, 64, 128], out_channels=fpn_channels, num_outs=5),
    rpn_head=dict(
        in_channels=fpn_channels, feat_channels=fpn_channels,
        anchor_generator=dict(scales=[4], strides=[8, 16, 32, 64, 128])),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=fpn_channels, featmap_strides=[8, 16, 32, 64]),
        bbox_head=dict(in_channels=fpn_channels, fc_out_channels=64, num_classes=3)),
    train_cfg=dict(
        rpn=dict(sampler=dict(num=64)),
        rpn_proposal=dict(nms_pre=300, max_per_img=100),
        rcnn=dict(sampler=dict(num=64))),
    test_cfg=dict(
        rpn=dict(nms_pre=300, max_per_img=100),
        rcnn=dict(max_per_img=20)))

default_hooks = dict(
    logger=dict(type='LoggerHook', interval=5),
    checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=2))
