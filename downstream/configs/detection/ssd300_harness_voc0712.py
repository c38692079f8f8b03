# SSD300, PASCAL VOC 07+12 trainval -> VOC 2007 test, mmdet's SSD300 VOC schedule, with a 1-bit
# harness backbone: the backbone maps at strides 8 and 16 replace VGG's conv4_3 and fc7
# (run_detection picks them and fills the neck's and head's channels); SSDNeck's four extra
# levels and the six anchor levels are SSD300's. Data: <data_root>/VOC2007, <data_root>/VOC2012
# (default data/VOCdevkit/). Metric: VOC mAP at IoU 0.5 (bbox_mAP = bbox_mAP_50, metric "voc").
_base_ = ['mmdet::pascal_voc/ssd300_voc0712.py', './_base_/harness_ssd.py']
dataset_name = 'voc0712'
model = dict(backbone={{_base_.harness_backbone}}, neck=dict(in_channels=[512, 1024]),
             bbox_head=dict(type='HarnessSSDHead'))
