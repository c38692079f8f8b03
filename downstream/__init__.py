"""Downstream tasks that use a harness backbone: object detection (mmdet) and person re-ID.

Each task adapts the ``FeatureBackbone`` contract of ``backbones.registry`` to its framework;
the framework imports live in the task sub-packages, so importing ``downstream`` is cheap.
"""
