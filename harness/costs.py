"""Model and run costs: params, OPs, memory, wall time, device and peak memory.

Conventions (those of the binary-network literature, e.g. Bi-Real Net, ReActNet):
- a conv counts as BOPs when both its weights and its input activations are binary
  (BinaryConv2d with binary_input=True), otherwise as FLOPs (multiply-accumulates);
  OPs = FLOPs + BOPs / 64;
- memory in Mbit = (1 bit per binary weight + 32 bits per real parameter, the per-channel
  weight scales included) / 1e6;
- search/train cost: CPU-hours (wall hours x processes) when run on CPU; GPU-days only when
  measured on a GPU (wall days x GPUs).
"""
from __future__ import annotations

import resource
from dataclasses import dataclass

import torch
from torch import nn

from backbones.binary import BinaryConv2d


@dataclass
class ModelCost:
    params_m: float
    flops_m: float
    bops_m: float
    ops_m: float
    memory_mbit: float


@torch.no_grad()
def model_cost(model: nn.Module, input_size: tuple[int, ...]) -> ModelCost:
    """Count by running one forward pass with hooks on every conv and linear layer."""
    flops = bops = 0.0

    def conv_hook(mod: nn.Conv2d, inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal flops, bops
        k = mod.kernel_size[0] * mod.kernel_size[1]
        macs = out.numel() / out.shape[0] * (mod.in_channels // mod.groups) * k
        if isinstance(mod, BinaryConv2d) and mod.binary_input:
            bops += macs
        else:
            flops += macs

    def linear_hook(mod: nn.Linear, inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal flops
        flops += mod.in_features * mod.out_features

    handles = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        model(torch.zeros(1, *input_size, device=device))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    convs = [m for m in model.modules() if isinstance(m, BinaryConv2d)]
    binary_weights = sum(m.weight.numel() for m in convs)
    params = sum(p.numel() for p in model.parameters())
    # per-channel scales the deployed network must store: the official binarizer's M is a
    # parameter already; mean |w| is not, but is one real number per output channel too
    extra_scales = sum(m.out_channels for m in convs if m.binarizer == "mean_abs")
    bits = binary_weights + 32 * (params - binary_weights + extra_scales)
    return ModelCost(params_m=params / 1e6, flops_m=flops / 1e6, bops_m=bops / 1e6,
                     ops_m=(flops + bops / 64) / 1e6, memory_mbit=bits / 1e6)


def run_cost(seconds: float, device_kind: str, world_size: int) -> tuple[float, str]:
    if device_kind == "gpu":
        return seconds * world_size / 86400.0, "GPU-days"
    return seconds * world_size / 3600.0, "CPU-hours"


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mb(device: torch.device) -> tuple[float, str]:
    """Peak memory and what it measures: CUDA allocator peak, or the process's peak RSS."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, "cuda-max-allocated"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, "cpu-peak-rss"
