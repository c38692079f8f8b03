# RetinaNet + FPN (P3-P7), COCO 2017, mmdet's 1x schedule (12 epochs), with a 1-bit harness
# backbone. Data as in faster-rcnn_harness_fpn_1x_coco.py. neck_min_stride=8: the FPN starts
# at the first backbone level of stride >= 8 (run_detection sets neck.start_level).
_base_ = [
    'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py',
    './_base_/harness_backbone.py',
]
detector_name = 'retinanet'
dataset_name = 'coco'
neck_min_stride = 8

model = dict(
    backbone={{_base_.harness_backbone}},
    neck=dict(in_channels=[144, 288, 576], start_level=0),
    bbox_head=dict(anchor_generator=dict(strides=[8, 16, 32, 64, 128])))

optim_wrapper = dict(clip_grad=dict(max_norm=35, norm_type=2))
auto_scale_lr = dict(enable=True, base_batch_size=16)
