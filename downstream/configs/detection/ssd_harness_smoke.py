# SSD (mmdet's SSDNeck + SSDHead) with a harness backbone on the generated COCO-format smoke set
# (96-px images, CPU-sized). run_detection picks the backbone maps at strides 8 and 16 (where
# SSD300 taps VGG) and fills the neck's and head's channels and the anchors' strides; the neck
# adds two stride-2 extra levels (12, 6, 3, 2 px maps at 96 px: SSD300's six levels need 300 px).
_base_ = [
    'mmdet::_base_/models/ssd300.py',
    'mmdet::_base_/default_runtime.py',
    './_base_/coco_smoke.py',
    './_base_/harness_ssd.py',
]
input_size = 96

model = dict(
    data_preprocessor=dict(std=[58.395, 57.12, 57.375]),   # a 1-bit body wants unit-scale input
    backbone={{_base_.harness_backbone}},
    neck=dict(in_channels=[32, 64], out_channels=[32, 64, 64, 64], level_strides=[2, 2],
              level_paddings=[1, 1], l2_norm_scale=20),
    bbox_head=dict(
        type='HarnessSSDHead',     # mmdet 3.3's SSDHead cannot predict (downstream/detection/ssd_head.py)
        in_channels=[32, 64, 64, 64], num_classes=3,
        # SSD's box sizes at 10 / 20 / 40 / 60 / 90 % of the input (the 300/512 presets only)
        anchor_generator=dict(input_size=input_size, strides=[8, 16, 32, 48],
                              ratios=[[2], [2, 3], [2, 3], [2]],
                              min_sizes=[10, 19, 38, 58], max_sizes=[19, 38, 58, 86])),
    test_cfg=dict(nms_pre=300, max_per_img=20))

default_hooks = dict(
    logger=dict(type='LoggerHook', interval=5),
    checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=2))
