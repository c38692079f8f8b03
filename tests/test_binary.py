"""Binary primitives: exact forward values and gradients of both weight binarizers."""
import pytest
import torch

from backbones.binary import (OFFICIAL_BIN, OFFICIAL_PULL, BinaryConv2d, ModulatedSign,
                              binarize_weight, reconstruction_loss, sign_bireal,
                              weight_binarizer, weight_scale)


def test_sign_forward_is_plus_minus_one_with_zero_positive():
    x = torch.tensor([-2.0, -0.5, 0.0, 0.3, 4.0])
    assert sign_bireal(x).tolist() == [-1.0, -1.0, 1.0, 1.0, 1.0]


def test_sign_backward_is_bireal_piecewise_quadratic_derivative():
    x = torch.tensor([-1.5, -1.0, -0.5, 0.0, 0.25, 0.999, 1.0, 2.0], requires_grad=True)
    sign_bireal(x).sum().backward()
    expected = [0.0, 0.0, 1.0, 2.0, 1.5, 2 - 2 * 0.999, 0.0, 0.0]
    assert torch.allclose(x.grad, torch.tensor(expected), atol=1e-6)


def test_sign_backward_matches_finite_differences_of_approxsign():
    """Bi-Real's ApproxSign: -1 below -1, x^2 + 2x on [-1, 0), -x^2 + 2x on [0, 1), 1 above."""
    def approx(x: torch.Tensor) -> torch.Tensor:
        return torch.where(x < -1, -1.0, torch.where(x < 0, x * x + 2 * x,
                                                     torch.where(x < 1, -x * x + 2 * x, 1.0)))
    x = torch.tensor([-1.7, -0.8, -0.3, 0.2, 0.6, 1.4], dtype=torch.float64, requires_grad=True)
    sign_bireal(x).sum().backward()
    h = 1e-6
    fd = (approx(x.detach() + h) - approx(x.detach() - h)) / (2 * h)
    assert torch.allclose(x.grad, fd, atol=1e-6)


# -- mean_abs ---------------------------------------------------------------------------
def test_mean_abs_forward_is_per_channel_mean_abs_times_sign():
    w = torch.tensor([[[[0.5, -1.5]]], [[[-0.2, -0.2]]]])
    b = binarize_weight(w)
    assert torch.allclose(b, torch.tensor([[[[1.0, -1.0]]], [[[-0.2, -0.2]]]]))


def test_mean_abs_backward_is_the_unscaled_clamp_derivative():
    """dL/dw = g * 1{|w| <= 1}: the finite-difference derivative of clamp(w, -1, 1),
    not multiplied by beta (beta = mean |w| = 1.225 here would show)."""
    w = torch.tensor([[[[0.5, -1.5, 0.9, 2.0]]]], dtype=torch.float64, requires_grad=True)
    g = torch.tensor([[[[1.0, 2.0, 3.0, 4.0]]]], dtype=torch.float64)
    (binarize_weight(w) * g).sum().backward()
    h = 1e-6
    fd = (torch.clamp(w.detach() + h, -1, 1) - torch.clamp(w.detach() - h, -1, 1)) / (2 * h)
    assert torch.allclose(w.grad, g * fd)
    assert torch.allclose(w.grad, torch.tensor([[[[1.0, 0.0, 3.0, 0.0]]]], dtype=torch.float64))


# -- official (MConv_new / MCF_Function) ----------------------------------------------------
def test_official_forward_is_sign_times_002_times_abs_m():
    w = torch.tensor([[[[0.5, -1.5]]], [[[-0.2, 0.0]]]])
    m = torch.tensor([[[[-3.0]]], [[[0.5]]]])
    out = ModulatedSign.apply(w, m)
    expected = torch.tensor([[[[0.06, -0.06]]], [[[-0.01, 0.01]]]])   # sign(0) = +1
    assert torch.allclose(out, expected)


def test_official_backward_is_the_official_formula_by_hand():
    """For one 1x1x2 kernel, by hand: w = (0.5, -1.5), M = -3 (|M| = 3), g = (2, 1).
    r = w - 0.02 sign(w) |M| = (0.44, -1.44)
    dL/dw = g |M| + 1e-4 r = (6.000044, 2.999856)
    dL/dM = sum g w - 1e-4 sum r 0.02 sign(w) = (1 - 1.5) - 1e-4 (0.0088 + 0.0288) = -0.50000376
    (the official code ignores d|M|/dM = sign(M) = -1: reproduced as written)."""
    w = torch.tensor([[[[0.5, -1.5]]]], dtype=torch.float64, requires_grad=True)
    m = torch.tensor([[[[-3.0]]]], dtype=torch.float64, requires_grad=True)
    g = torch.tensor([[[[2.0, 1.0]]]], dtype=torch.float64)
    (ModulatedSign.apply(w, m) * g).sum().backward()
    assert torch.allclose(w.grad, torch.tensor([[[[6.000044, 2.999856]]]], dtype=torch.float64))
    assert torch.allclose(m.grad, torch.tensor([[[[-0.50000376]]]], dtype=torch.float64))


def test_official_backward_general_formula_on_random_kernels():
    torch.manual_seed(0)
    w = torch.randn(4, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    m = torch.randn(4, 1, 1, 1, dtype=torch.float64, requires_grad=True)
    g = torch.randn(4, 3, 3, 3, dtype=torch.float64)
    (ModulatedSign.apply(w, m) * g).sum().backward()
    wd, md = w.detach(), m.detach().abs()
    sw = OFFICIAL_BIN * torch.where(wd >= 0, 1.0, -1.0)
    r = wd - sw * md
    assert torch.allclose(w.grad, g * md + OFFICIAL_PULL * r)
    assert torch.allclose(m.grad, (g * wd).sum((1, 2, 3), keepdim=True)
                          - OFFICIAL_PULL * (r * sw).sum((1, 2, 3), keepdim=True))


# -- the conv ----------------------------------------------------------------------------
@pytest.mark.parametrize("binarizer", ["official", "mean_abs"])
def test_binary_conv_uses_binary_input_and_weights(binarizer: str):
    torch.manual_seed(0)
    with weight_binarizer(binarizer):
        conv = BinaryConv2d(3, 4, 3, padding=1, bias=False)
    assert conv.binarizer == binarizer
    scale = (OFFICIAL_BIN * conv.modulation.abs() if binarizer == "official"
             else weight_scale(conv.weight)).detach()
    w_b = scale * torch.where(conv.weight >= 0, 1.0, -1.0)
    x = torch.randn(2, 3, 8, 8)
    ref = torch.nn.functional.conv2d(torch.where(x >= 0, 1.0, -1.0), w_b, padding=1)
    assert torch.allclose(conv(x), ref, atol=1e-6)
    conv.binary_input = False
    assert torch.allclose(conv(x), torch.nn.functional.conv2d(x, w_b, padding=1), atol=1e-6)


def test_only_official_has_a_learnable_scale():
    assert {n for n, _ in BinaryConv2d(2, 3, 1, bias=False).named_parameters()} == {"weight", "modulation"}
    with weight_binarizer("mean_abs"):
        assert {n for n, _ in BinaryConv2d(2, 3, 1, bias=False).named_parameters()} == {"weight"}
    with pytest.raises(ValueError, match="unknown weight binarizer 'xnor'"):
        with weight_binarizer("xnor"):
            pass


@pytest.mark.parametrize("binarizer", ["official", "mean_abs"])
def test_reconstruction_loss_zero_for_weights_already_binary_and_positive_otherwise(binarizer):
    with weight_binarizer(binarizer):
        conv = BinaryConv2d(2, 3, 3, bias=False)
    with torch.no_grad():
        signs = torch.where(torch.randn_like(conv.weight) >= 0, 1.0, -1.0)
        mags = torch.tensor([0.1, 0.7, 2.0]).view(3, 1, 1, 1)
        conv.weight.copy_(signs * mags)
        if binarizer == "official":
            conv.modulation.copy_(mags / OFFICIAL_BIN)
    assert float(reconstruction_loss(conv).detach()) < 1e-10
    with torch.no_grad():
        conv.weight.normal_()
    assert float(reconstruction_loss(conv).detach()) > 0.1
