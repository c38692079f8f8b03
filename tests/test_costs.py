"""OPs and memory the papers' way (harness.costs), counted by hand on small modules."""
import pytest
from torch import nn

from backbones.binary import BinaryConv2d, weight_binarizer
from backbones.operations import ReLUConvBN, create_op
from harness.costs import model_cost


def test_conv_counts_as_bops_only_with_binary_weights_and_binary_input():
    # 1x1 preprocessing conv, 8 -> 8 channels on 4x4: 8*8*16 = 1024 MACs, real input: FLOPs
    pre = ReLUConvBN(8, 8, 1, 1, 0, binary=True)
    c = model_cost(pre, (8, 4, 4))
    assert (c.flops_m * 1e6, c.bops_m * 1e6) == (1024, 0)
    # a dil_conv half at stride 1: depthwise 3x3 (8*9*16 = 1152 MACs, real input: FLOPs),
    # pointwise (1024 MACs, binary input: BOPs)
    op = create_op("dil_conv_3x3", 8, 1, binary=True)
    c = model_cost(op, (8, 4, 4))
    assert c.flops_m * 1e6 == pytest.approx(1152) and c.bops_m * 1e6 == pytest.approx(1024)
    assert c.ops_m * 1e6 == pytest.approx(1152 + 1024 / 64)


@pytest.mark.parametrize("binarizer", ["official", "mean_abs"])
def test_memory_counts_one_bit_per_binary_weight_and_32_per_real_number(binarizer):
    with weight_binarizer(binarizer):
        conv = BinaryConv2d(4, 6, 3, bias=False)
    net = nn.Sequential(conv, nn.BatchNorm2d(6))
    c = model_cost(net, (4, 8, 8))
    # 216 binary weights (1 bit); BN: 12 real parameters; 6 per-channel scales (M for official,
    # mean |w| for mean_abs): 32 bits each
    assert c.memory_mbit * 1e6 == pytest.approx(216 + 32 * (12 + 6))
    assert c.params_m * 1e6 == 216 + 12 + (6 if binarizer == "official" else 0)
