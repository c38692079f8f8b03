# SSD300, COCO 2017, mmdet's SSD300 schedule, with a 1-bit harness backbone (the maps at strides
# 8 and 16 replace VGG's conv4_3 and fc7; see ssd300_harness_voc0712.py). Data as in
# faster-rcnn_harness_fpn_1x_coco.py. For SSD512: base 'mmdet::ssd/ssd512_coco.py' the same way.
_base_ = [
    'mmdet::ssd/ssd300_coco.py',
    './_base_/harness_backbone.py',
]
detector_name = 'ssd'
dataset_name = 'coco'
ssd_backbone_strides = [8, 16]
custom_imports = dict(imports=['downstream.detection.mmdet_backbone', 'downstream.detection.ssd_head'],
                      allow_failed_imports=False)

model = dict(
    backbone={{_base_.harness_backbone}},
    neck=dict(in_channels=[512, 1024]),
    bbox_head=dict(type='HarnessSSDHead'))   # mmdet 3.3's SSDHead cannot predict (ssd_head.py)
