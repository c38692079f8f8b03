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


def test_dcpnas_l_has_the_official_parameter_count():
    """DCP-NAS-L as the official code builds it: genotype DDPNAS_MCN_2, C=108, 10 cells,
    ImageNet stem, 1000 classes, MConv binarizer: 14,505,886 parameters (41,688 of them the
    MConv modulation M). Counted on 2026-12-02 by instantiating the official
    ``models.darts_cnn_m.NetworkImageNet(108, 1000, 10, False, genotypes_m.DDPNAS_MCN_2,
    binary=True)`` from a scratch copy of YanjingLi0202/DCP-NAS (commit e801d50; Python 3.11,
    with ``collections.Iterable`` aliased to ``collections.abc.Iterable`` for its MConv) and
    summing ``p.numel()`` over ``parameters()``. Same way: C=72 gives 6,948,028,
    PC_DARTS_image at C=108 18,813,250, DARTS_V2 15,815,818. Loading the official state dict
    (in order) into ours at C=16 / 6 cells gave the same eval logits to 2e-6."""
    counts = {("dcpnas_l", 108): 14_505_886, ("dcpnas_l", 72): 6_948_028,
              ("pcdarts_imagenet", 108): 18_813_250, ("darts_v2", 108): 15_815_818}
    for (name, C), expected in counts.items():
        net = create_backbone(name, C=C, layers=10, stem="imagenet", num_classes=1000)
        assert sum(p.numel() for p in net.parameters()) == expected, (name, C)
    mean_abs = create_backbone("dcpnas_l", C=108, layers=10, stem="imagenet", num_classes=1000,
                               binarizer="mean_abs")
    assert sum(p.numel() for p in mean_abs.parameters()) == 14_505_886 - 41_688
