# SSD300, COCO 2017, mmdet's SSD300 schedule, with a 1-bit harness backbone (the maps at strides
# 8 and 16 replace VGG's conv4_3 and fc7; see ssd300_harness_voc0712.py). Data as in
# faster-rcnn_harness_fpn_1x_coco.py. For SSD512: base 'mmdet::ssd/ssd512_coco.py' the same way.
_base_ = ['mmdet::ssd/ssd300_coco.py', './_base_/harness_ssd.py']
dataset_name = 'coco'
model = dict(backbone={{_base_.harness_backbone}}, neck=dict(in_channels=[512, 1024]),
             bbox_head=dict(type='HarnessSSDHead'))
