# What every SSD config with a harness backbone shares (on top of harness_backbone.py):
# run_detection feeds SSDNeck the backbone maps at these strides (where SSD300 taps VGG's
# conv4_3 and fc7), and the head is HarnessSSDHead (mmdet 3.3's SSDHead cannot predict:
# downstream/detection/ssd_head.py). Place `bbox_head=dict(type='HarnessSSDHead')` in the model.
_base_ = ['./harness_backbone.py']
detector_name = 'ssd'
ssd_backbone_strides = [8, 16]
custom_imports = dict(imports=['downstream.detection.mmdet_backbone', 'downstream.detection.ssd_head'],
                      allow_failed_imports=False)
