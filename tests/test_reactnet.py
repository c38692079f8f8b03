"""ReActNet-A (backbones/reactnet.py): the published structure, counted the papers' way, and
the backbone contract the detectors and re-ID models rely on."""
from __future__ import annotations

import pytest
import torch

from backbones.binary import BinaryConv2d
from backbones.registry import check_feature_backbone, create_backbone
from harness.costs import model_cost

torch.set_num_threads(1)


def test_costs_match_the_papers_table() -> None:
    """Liu et al. (ECCV 2020) Table 3: BOPs 4.82e9, FLOPs 0.12e8, OPs 0.87e8 at 224x224, 1000
    classes; parameters: 29.34 M counted from the official code's structure (the paper does not
    list them), 28.25 M of them binary."""
    net = create_backbone("reactnet_a", num_classes=1000)
    cost = model_cost(net, (3, 224, 224))
    assert round(cost.bops_m / 1e3, 2) == 4.82
    assert round(cost.flops_m / 1e2, 2) == 0.12
    assert round(cost.ops_m / 1e2, 2) == 0.87
    assert sum(p.numel() for p in net.parameters()) == 29_343_592
    convs = [m for m in net.modules() if isinstance(m, BinaryConv2d)]
    assert sum(m.weight.numel() for m in convs) == 28_253_184
    assert len(convs) == 13 + 13 + 5   # a 3x3 and a 1x1 per block, two 1x1 where channels double
    assert all(m.binary_input and m.binarizer == "mean_abs" for m in convs)


def test_feature_contract_and_gradients() -> None:
    net = create_backbone("reactnet_a", num_classes=5, width=4, stem="imagenet")
    check_feature_backbone(net, "reactnet_a")
    x = torch.randn(2, 3, 64, 64)
    feats = net.forward_features(x)
    assert [f.shape[1] for f in feats] == net.out_channels == [16, 32, 64, 128]
    assert [64 // f.shape[-1] for f in feats] == [4, 8, 16, 32]
    assert net.forward_embedding(x).shape == (2, net.num_features)
    net(x).sum().backward()
    shifts = [p for n, p in net.named_parameters() if n.endswith("shift")]
    assert shifts and all(p.grad is not None for p in shifts)
    cifar = create_backbone("reactnet_a", num_classes=10, width=4, stem="cifar")
    assert [f.shape[-1] for f in cifar.forward_features(torch.randn(1, 3, 32, 32))] == [16, 8, 4, 2]
    with pytest.raises(ValueError, match="stem"):
        create_backbone("reactnet_a", stem="tiny")
