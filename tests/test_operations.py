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
