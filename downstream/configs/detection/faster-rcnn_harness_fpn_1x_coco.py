# Faster R-CNN + FPN, COCO 2017, mmdet's 1x schedule (12 epochs, SGD 0.02 for a total batch of
# 16, steps at 8 and 11), with a 1-bit harness backbone.
# Data: <data_root>/annotations/instances_{train,val}2017.json, <data_root>/{train,val}2017/
# (default data/coco/; run_detection(data_root=...) rebases it).
# The placeholders below (neck.in_channels, strides) are those of the default NAS backbone
# (DARTS cells, C=36, 20 layers, ImageNet stem: strides 8/16/32); run_detection fills them
# from the backbone actually built.
_base_ = [
    'mmdet::_base_/models/faster-rcnn_r50_fpn.py',
    'mmdet::_base_/datasets/coco_detection.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py',
    './_base_/harness_backbone.py',
]
detector_name = 'faster_rcnn'
dataset_name = 'coco'

model = dict(
    backbone={{_base_.harness_backbone}},
    neck=dict(in_channels=[144, 288, 576]),
    rpn_head=dict(anchor_generator=dict(strides=[8, 16, 32, 64, 128])),
    roi_head=dict(bbox_roi_extractor=dict(featmap_strides=[8, 16, 32, 64])))

# binary bodies have spiky gradients early on: clip as mmdet does for RetinaNet
optim_wrapper = dict(clip_grad=dict(max_norm=35, norm_type=2))
# lr 0.02 is for 8 GPUs x 2 images; scale it linearly with the real total batch
auto_scale_lr = dict(enable=True, base_batch_size=16)
