"""Object detection with a harness backbone inside mmdet 3.x detectors.

- ``body``: build a harness backbone for a detector (checkpoint init, stems, probing channels
  and strides) -- plain torch, no mmdet import;
- ``mmdet_backbone``: ``HarnessBackbone``, registered in mmdet's ``MODELS`` (name it in a
  config with ``custom_imports=dict(imports=['downstream.detection.mmdet_backbone'])``);
- ``smoke_data``: a generated COCO-format data set for smoke runs;
- ``run``: ``run_detection`` (train + evaluate through mmengine's Runner, write metrics.json).
"""
