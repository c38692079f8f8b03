"""mmdet 3.3's SSDHead, able to predict.

``BaseDenseHead._predict_by_feat_single`` reads ``self.loss_cls``, which SSDHead never sets
(it computes its cross-entropy itself), so every SSD validation or inference in mmdet 3.3.0
raises ``AttributeError: 'SSDHead' object has no attribute 'loss_cls'`` (open-mmlab/mmdetection
issues 11063 and 11780; the fix, PR 11524, is not released). ``HarnessSSDHead`` is SSDHead with
``loss_cls = None``: the check then falls through to SSD's own softmax scores, as in mmdet 3.0.
Nothing else changes; configs name it ``type='HarnessSSDHead'``.
"""
from __future__ import annotations

from typing import Any

from mmdet.models.dense_heads import SSDHead
from mmdet.registry import MODELS


@MODELS.register_module()
class HarnessSSDHead(SSDHead):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.loss_cls = None
