"""Speed settings of the training and search loops: torch.compile, and on CUDA bf16 autocast,
channels_last and cuDNN autotuning. All of them leave a CPU run's numbers unchanged except
``compile`` (inductor reorders float operations: results agree within float tolerance).

What autocast does *not* lower to bf16 (torch's autocast op lists, relied on here):
- the sign of the activations and of the weights (``backbones.binary``: element-wise ops run
  in their input's dtype; a sign is exact in any dtype) and the weight scales (computed from
  the fp32 latent weights, which autocast never casts);
- BatchNorm statistics and affine parameters (fp32 in cuDNN's bf16 batch norm);
- cross-entropy, log-softmax / softmax and the KD / KL losses (autocast's fp32 list).
Convolutions and linear layers run in bf16. Search is not autocast: DARTS-2nd's
finite-difference Hessian and DCP-NAS's second-order products are differences of small
gradients that bf16's 8-bit mantissa would drown.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

import torch
from torch import nn


def setup_device(device: torch.device) -> None:
    """cuDNN autotuning on CUDA (fixed input sizes: the fastest kernels are picked once)."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True


def channels_last(device: torch.device, enabled: bool) -> bool:
    """Whether tensors go channels_last: on CUDA only (CPU kernels here gain nothing)."""
    return enabled and device.type == "cuda"


def prepare_module(module: nn.Module, device: torch.device, use_channels_last: bool) -> nn.Module:
    module = module.to(device)
    if channels_last(device, use_channels_last):
        module = module.to(memory_format=torch.channels_last)
    return module


def to_device(x: torch.Tensor, device: torch.device, use_channels_last: bool) -> torch.Tensor:
    """Non-blocking copy (pinned loader memory makes it asynchronous on CUDA)."""
    x = x.to(device, non_blocking=True)
    if x.dim() == 4 and channels_last(device, use_channels_last):
        x = x.contiguous(memory_format=torch.channels_last)
    return x


@contextlib.contextmanager
def autocast(device: torch.device, enabled: bool) -> Iterator[None]:
    """bf16 autocast of a forward pass on CUDA; a no-op elsewhere or when disabled."""
    if enabled and device.type == "cuda":
        with torch.autocast("cuda", dtype=torch.bfloat16):
            yield
    else:
        yield


#: graphs one compiled code object may hold before dynamo silently runs it eager. Every module
#: compiled with ``nn.Module.compile`` shares one code object (``Module._call_impl``); with
#: ``dynamic=False`` each distinct input shape, stride, train/eval mode, grad mode / which
#: parameters require grad (DCP-NAS's arch-only and weight-only passes), ``active`` op set
#: (CP-NAS's single paths: 8 per edge shape) and batch size is one more graph: a search uses
#: tens to ~150, where dynamo's default of 8 would fall back to eager after the 8th.
RECOMPILE_LIMIT = 256


def compile_regions(module: nn.Module) -> list[nn.Module]:
    """What to compile of ``module``: the regions it names (``module.compile_regions()``, a
    search supernet's edges), else the module itself."""
    regions = getattr(module, "compile_regions", None)
    return list(regions()) if callable(regions) else [module]


def compile_modules(modules: Iterable[nn.Module], enabled: bool, backend: str = "inductor"
                    ) -> int:
    """torch.compile each module in place (``nn.Module.compile``: state_dict keys and
    attributes are unchanged, so checkpoints stay compatible), or, for a module that names
    compile regions, each region instead; the compilation itself happens at the first call.
    Returns how many modules were compiled. Turns AOTAutograd's donated buffers off
    (process-wide): they forbid a second backward through a retained graph.

    Why regions: inductor did not finish compiling a whole 1-bit search supernet (forward and
    backward of 14 edges x 8 ops per cell, one graph) in 19 min on this CPU; compiled edge by
    edge it compiles 5 small graphs (edges of the same shape share one) in ~2.5 min.
    Regions use ``dynamic=False``: with dynamic shapes inductor's backward failed on the
    second shape class (torch 2.14), and a search's shapes are few and fixed."""
    n = 0
    if enabled:
        import torch._dynamo.config as dynamo_config
        import torch._functorch.config as functorch_config
        dynamo_config.recompile_limit = max(dynamo_config.recompile_limit, RECOMPILE_LIMIT)
        # a search step backpropagates some graphs twice (DCP-NAS: dG/dalpha_hat with
        # retain_graph, then J^T H_z J v of the GGN product); AOTAutograd's donated buffers
        # forbid retain_graph=True, so they are off (a little more memory per compiled region)
        functorch_config.donated_buffer = False
        for module in modules:
            for region in compile_regions(module):
                region.compile(backend=backend, **({} if region is module else {"dynamic": False}))
                n += 1
    return n
