# The harness backbone block every detector config shares. Use it as
#     _base_ = [..., './_base_/harness_backbone.py']
#     model = dict(backbone={{_base_.harness_backbone}}, neck=dict(in_channels=[...]), ...)
# (mmengine forbids the same top-level key, here `model`, in two bases, so the block is a
# variable the detector config places). run_detection fills `backbone` / `backbone_kwargs` /
# `init_checkpoint` and, from the built backbone, the neck channels and the heads' strides.
custom_imports = dict(imports=['downstream.detection.mmdet_backbone'], allow_failed_imports=False)

harness_backbone = dict(
    _delete_=True,
    type='HarnessBackbone',
    backbone='nas',                         # or 'bireal_resnet18', 'module:function'
    backbone_kwargs=dict(stem='imagenet'),  # genotype / C / layers: from the checkpoint
    out_indices=None,                       # or run_detection(backbone_kwargs=...)
    init_checkpoint=None,                   # runs/<profile>/train/<method>/seed<k>/model.pt
    frozen_stages=-1,
    norm_eval=False)
