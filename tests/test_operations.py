"""Every op of the space, real and binary, in normal and reduction cells."""
import pytest
import torch

from backbones.binary import BinaryConv2d
from backbones.operations import PRIMITIVES, create_op


@pytest.mark.parametrize("binary", [False, True])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("name", PRIMITIVES)
def test_op_shapes(name, stride, binary):
    op = create_op(name, 8, stride, binary=binary)
    x = torch.randn(2, 8, 9, 9)  # odd size: reductions must still agree on 5x5
    y = op(x)
    assert y.shape == (2, 8, 5, 5) if stride == 2 else (2, 8, 9, 9)


@pytest.mark.parametrize("name", ["sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3",
                                  "dil_conv_5x5"])
def test_binary_ops_binarize_pointwise_activations_but_not_depthwise(name):
    op = create_op(name, 8, 1, binary=True)
    convs = [m for m in op.modules() if isinstance(m, BinaryConv2d)]
    assert convs, "binary op has no binary conv"
    for conv in convs:
        assert conv.binary_input == (conv.groups == 1)
    real = create_op(name, 8, 1, binary=False)
    assert not any(isinstance(m, BinaryConv2d) for m in real.modules())


def test_unknown_op_is_named():
    with pytest.raises(KeyError, match="conv_7x7"):
        create_op("conv_7x7", 8, 1)


# -- the official binary layout (models/darts_ops_step2_sc_out.py of YanjingLi0202/DCP-NAS) --
def test_binary_half_adds_identity_shortcut_before_last_prelu_at_stride_1():
    from backbones.operations import BinaryDilConvHalf
    torch.manual_seed(0)
    half = create_op("dil_conv_3x3", 8, 1, binary=True).op
    assert isinstance(half, BinaryDilConvHalf) and half.shortcut
    half.eval()
    x = torch.randn(2, 8, 9, 9)
    body = half.bn2(half.pw(half.act0(half.bn1(half.dw(half.bn0(x))))))
    assert torch.allclose(half(x), half.act1(body + x))
    assert not create_op("dil_conv_3x3", 8, 2, binary=True).op.shortcut   # stride 2: none
    sep = create_op("sep_conv_3x3", 8, 2, binary=True).op
    assert [h.op.shortcut for h in sep] == [False, True]   # the second half runs at stride 1


@pytest.mark.parametrize("name", ["skip_connect"])
def test_preprocessing_and_factorized_reduce_take_real_activations(name):
    from backbones.operations import FactorizedReduce, ReLUConvBN
    for module in (ReLUConvBN(8, 8, 1, 1, 0, binary=True), FactorizedReduce(8, 8, binary=True),
                   create_op(name, 8, 2, binary=True)):
        convs = [m for m in module.modules() if isinstance(m, BinaryConv2d)]
        assert convs and not any(c.binary_input for c in convs)


def test_binary_pools_are_followed_by_bn_and_bns_after_convs_use_eps_1e3():
    from backbones.operations import PoolBN
    for name in ("max_pool_3x3", "avg_pool_3x3"):
        op = create_op(name, 8, 1, binary=True)
        assert isinstance(op, PoolBN) and op.bn.eps == 1e-3
        assert isinstance(create_op(name, 8, 1, binary=False), torch.nn.MaxPool2d
                          if "max" in name else torch.nn.AvgPool2d)
    half = create_op("sep_conv_5x5", 8, 1, binary=True).op[0].op
    assert (half.bn0.eps, half.bn1.eps, half.bn2.eps) == (1e-3, 1e-3, 1e-3)
