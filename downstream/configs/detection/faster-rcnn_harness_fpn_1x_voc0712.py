# Faster R-CNN + FPN, PASCAL VOC 07+12 trainval -> VOC 2007 test, mmdet's VOC schedule
# (4 epochs over the 07+12 set repeated 3 times = 12 epochs, step at 3), with a 1-bit harness
# backbone. Data: <data_root>/VOC2007, <data_root>/VOC2012 (default data/VOCdevkit/).
# Metric: VOC 11-point mAP at IoU 0.5 (metrics.json: bbox_mAP = bbox_mAP_50 = it,
# metric = "voc").
_base_ = [
    'mmdet::pascal_voc/faster-rcnn_r50_fpn_1x_voc0712.py',
    './_base_/harness_backbone.py',
]
detector_name = 'faster_rcnn'
dataset_name = 'voc0712'

model = dict(
    backbone={{_base_.harness_backbone}},
    neck=dict(in_channels=[144, 288, 576]),
    rpn_head=dict(anchor_generator=dict(strides=[8, 16, 32, 64, 128])),
    roi_head=dict(bbox_roi_extractor=dict(featmap_strides=[8, 16, 32, 64])))

optim_wrapper = dict(clip_grad=dict(max_norm=35, norm_type=2))
auto_scale_lr = dict(enable=True, base_batch_size=16)
