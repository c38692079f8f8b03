# RetinaNet + FPN (P3-P7), PASCAL VOC 07+12 -> VOC 2007 test, mmdet's VOC schedule (4 epochs x
# 3 repeats = 12 epochs), with a 1-bit harness backbone. Data as in
# faster-rcnn_harness_fpn_1x_voc0712.py. Metric: VOC mAP at IoU 0.5 (bbox_mAP = bbox_mAP_50).
_base_ = [
    'mmdet::pascal_voc/retinanet_r50_fpn_1x_voc0712.py',
    './_base_/harness_backbone.py',
]
detector_name = 'retinanet'
dataset_name = 'voc0712'
neck_min_stride = 8

model = dict(
    backbone={{_base_.harness_backbone}},
    neck=dict(in_channels=[144, 288, 576], start_level=0),
    bbox_head=dict(anchor_generator=dict(strides=[8, 16, 32, 64, 128])))

optim_wrapper = dict(clip_grad=dict(max_norm=35, norm_type=2))
auto_scale_lr = dict(enable=True, base_batch_size=16)
