"""Supernet and final network: shapes, alpha bookkeeping, multi-scale features."""
import pytest
import torch

from backbones.registry import UnknownBackboneError, create_backbone
from backbones.supernet import Supernet


@pytest.mark.parametrize("binary", [False, True])
def test_supernet_forward_backward_reaches_alpha(binary):
    torch.manual_seed(0)
    net = Supernet(C=4, num_classes=10, layers=3, binary=binary)
    assert [c.reduction for c in net.cells] == [False, True, True]
    out = net(torch.randn(2, 3, 16, 16))
    assert out.shape == (2, 10)
    out.sum().backward()
    assert net.alpha_normal.grad is not None and net.alpha_reduce.grad.abs().sum() > 0
    assert len(list(net.weight_parameters())) + 2 == len(list(net.parameters()))


def test_partial_channel_supernet_keeps_shapes():
    net = Supernet(C=8, num_classes=10, layers=3, binary=True, partial_channels=4)
    assert net(torch.randn(2, 3, 16, 16)).shape == (2, 10)


@pytest.mark.parametrize("stem, size, strides", [("cifar", 32, (1, 2, 4)),
                                                  ("imagenet", 64, (8, 16, 32))])
def test_network_multiscale_features(stem, size, strides):
    net = create_backbone("nas", genotype="darts_v2", C=4, layers=6, num_classes=7, stem=stem)
    x = torch.randn(2, 3, size, size)
    feats = net.forward_features(x)
    assert [f.shape[1] for f in feats] == net.out_channels
    assert [size // f.shape[-1] for f in feats] == list(strides)
    assert net(x).shape == (2, 7)
    assert net.forward_embedding(x).shape == (2, net.num_features)


def test_unknown_backbone_suggests_closest():
    with pytest.raises(UnknownBackboneError, match="did you mean 'darts_v2'"):
        create_backbone("darts_v3")


def test_user_backbone_module_function():
    net = create_backbone("backbones.network:NASNetwork",
                          genotype=create_backbone("darts_v2", C=4, layers=3).genotype,
                          C=4, layers=3)
    assert net(torch.randn(1, 3, 32, 32)).shape == (1, 10)
