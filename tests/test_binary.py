"""Binary primitives: exact forward values and gradients."""
import torch

from backbones.binary import (BinaryConv2d, binarize_weight, reconstruction_loss, sign_bireal,
                              weight_scale)


def test_sign_forward_is_plus_minus_one_with_zero_positive():
    x = torch.tensor([-2.0, -0.5, 0.0, 0.3, 4.0])
    assert sign_bireal(x).tolist() == [-1.0, -1.0, 1.0, 1.0, 1.0]


def test_sign_backward_is_bireal_piecewise_quadratic_derivative():
    x = torch.tensor([-1.5, -1.0, -0.5, 0.0, 0.25, 0.999, 1.0, 2.0], requires_grad=True)
    sign_bireal(x).sum().backward()
    expected = [0.0, 0.0, 1.0, 2.0, 1.5, 2 - 2 * 0.999, 0.0, 0.0]
    assert torch.allclose(x.grad, torch.tensor(expected), atol=1e-6)


def test_binarized_weight_is_per_channel_mean_abs_times_sign():
    w = torch.tensor([[[[0.5, -1.5]]], [[[-0.2, -0.2]]]])
    b = binarize_weight(w)
    assert torch.allclose(b, torch.tensor([[[[1.0, -1.0]]], [[[-0.2, -0.2]]]]))


def test_weight_gradient_is_clamp_straight_through():
    w = torch.tensor([[[[0.5, -1.5, 0.9, 2.0]]]], requires_grad=True)
    (binarize_weight(w) * torch.tensor([[[[1.0, 2.0, 3.0, 4.0]]]])).sum().backward()
    beta = w.detach().abs().mean()
    expected = beta * torch.tensor([[[[1.0, 0.0, 3.0, 0.0]]]])  # zero where |w| > 1
    assert torch.allclose(w.grad, expected)


def test_binary_conv_uses_binary_input_and_weights():
    torch.manual_seed(0)
    conv = BinaryConv2d(3, 4, 3, padding=1, bias=False)
    x = torch.randn(2, 3, 8, 8)
    ref = torch.nn.functional.conv2d(torch.where(x >= 0, 1.0, -1.0),
                                     weight_scale(conv.weight) * torch.where(conv.weight >= 0, 1.0, -1.0),
                                     padding=1)
    assert torch.allclose(conv(x), ref, atol=1e-5)
    conv.binary_input = False
    ref_real_in = torch.nn.functional.conv2d(
        x, weight_scale(conv.weight) * torch.where(conv.weight >= 0, 1.0, -1.0), padding=1)
    assert torch.allclose(conv(x), ref_real_in, atol=1e-5)


def test_reconstruction_loss_zero_for_weights_already_binary_and_positive_otherwise():
    conv = BinaryConv2d(2, 3, 3, bias=False)
    with torch.no_grad():
        signs = torch.where(torch.randn_like(conv.weight) >= 0, 1.0, -1.0)
        conv.weight.copy_(signs * torch.tensor([0.1, 0.7, 2.0]).view(3, 1, 1, 1))
    assert float(reconstruction_loss(conv).detach()) < 1e-10
    with torch.no_grad():
        conv.weight.normal_()
    assert float(reconstruction_loss(conv).detach()) > 0.1
