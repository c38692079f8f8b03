"""The search model: MixedOp, search cell and supernet with architecture parameters alpha.

Two stems, as the retraining network (``backbones.network.make_stem``): ``cifar`` (one
stride-1 conv: cells at 32x32) and ``imagenet`` (PC-DARTS' ImageNet search supernet: three
stride-2 convs, 224x224 -> 28x28 before the first cell, which reads the stride-4 stage as its
reduced input), so a 224x224 search runs its cells at the resolution the reference does.

One class serves every method: ``binary=False`` is the real-valued Parent (DARTS), ``binary=True``
the 1-bit Child; ``partial_channels=K > 1`` gives PC-DARTS-style partial channel connections
(only 1/K of the channels go through the mixed op, the rest bypass it, then a channel shuffle).
"""
from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from backbones.binary import BinaryConv2d
from backbones.genotypes import NUM_EDGES, STEPS, Genotype, from_alphas
from backbones.network import make_stem
from backbones.operations import PRIMITIVES, FactorizedReduce, ReLUConvBN, create_op


def channel_shuffle(x: Tensor, groups: int) -> Tensor:
    b, c, h, w = x.shape
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)


#: side of the pooling window of the pool ops (3x3)
POOL_K = 3


def kernel_norm(conv: nn.Conv2d) -> Tensor:
    """||w||^2 of the kernel a conv computes with: for a BinaryConv2d the reconstructed
    (binarized) kernel s_c sign(w) (book p. 115: the Child's weights are beta * sign(w_hat)),
    i.e. (weights per output channel) * sum_c s_c^2; for a real conv its weight."""
    if isinstance(conv, BinaryConv2d):
        n = conv.weight[0].numel()
        return conv.weight_scale().detach().float().pow(2).sum() * n
    return conv.weight.detach().float().pow(2).sum()


def op_norm(name: str, op: nn.Module, channels: int) -> Tensor:
    """R(w_m) = ||w_m||^2 of one candidate op on ``channels`` channels (Eq. 4.53), with the
    book's w_m for parameter-free ops (p. 112): a pooling op is a fixed depthwise kernel of
    1/K^2 (R = C K^2 / K^4 = C / K^2; max pooling gets the same kernel: the book defines only
    "pooling"), the identity a kernel of 1 per channel (R = C), 'none' zero. Ops with convs
    (sep/dil convs, and skip_connect at stride 2 = FactorizedReduce) sum their kernels'
    :func:`kernel_norm`; BN and PReLU parameters are not kernels and do not count."""
    if name == "none":
        return torch.zeros(())
    if "pool" in name:
        return torch.tensor(channels / POOL_K ** 2)
    convs = [m for m in op.modules() if isinstance(m, nn.Conv2d)]
    if not convs:   # skip_connect at stride 1: the identity
        return torch.tensor(float(channels))
    return sum((kernel_norm(c) for c in convs), torch.zeros(()))


class MixedOp(nn.Module):
    """Softmax(alpha)-weighted sum of all candidate ops on one edge (Eq. 4.28)."""

    def __init__(self, C: int, stride: int, binary: bool, partial_channels: int = 1,
                 primitives: tuple[str, ...] = PRIMITIVES) -> None:
        super().__init__()
        if C % partial_channels:
            raise ValueError(f"partial_channels={partial_channels} must divide C={C}")
        self.k = partial_channels
        self.stride = stride
        c_op = C // partial_channels
        self.channels = c_op   # what each candidate op sees (C / K with partial channels)
        self.ops = nn.ModuleList()
        for name in primitives:
            op = create_op(name, c_op, stride, affine=False, binary=binary)
            if "pool" in name and not binary:  # DARTS: BN after pooling in the search model
                op = nn.Sequential(op, nn.BatchNorm2d(c_op, affine=False))   # (binary: PoolBN)
            self.ops.append(op)

    #: indices of the ops that are run; None (the default) runs every op. Set by
    #: ``Supernet.set_masks(..., skip_masked=True)`` so that masked ops (weight exactly 0) are
    #: not computed at all: single-path training (CP-NAS) then costs one op per edge and the
    #: skipped ops get no gradient (so no weight decay / momentum step either).
    active: tuple[int, ...] | None = None

    def _mix(self, x: Tensor, weights: Tensor) -> Tensor:
        if self.active is None:
            return sum(w * op(x) for w, op in zip(weights, self.ops))
        return sum(weights[k] * self.ops[k](x) for k in self.active)

    def forward(self, x: Tensor, weights: Tensor) -> Tensor:
        if self.k == 1:
            return self._mix(x, weights)
        c = x.shape[1] // self.k
        x_op, x_skip = x[:, :c], x[:, c:]
        out = self._mix(x_op, weights)
        if self.stride == 2:
            x_skip = F.max_pool2d(x_skip, 2, 2, ceil_mode=True)
        return channel_shuffle(torch.cat([out, x_skip], dim=1), self.k)


class SearchCell(nn.Module):
    def __init__(self, C_pp: int, C_p: int, C: int, reduction: bool, reduction_prev: bool,
                 binary: bool, partial_channels: int = 1, steps: int = STEPS,
                 multiplier: int = 4) -> None:
        super().__init__()
        self.reduction = reduction
        self.steps = steps
        self.multiplier = multiplier
        self.pre0 = (FactorizedReduce(C_pp, C, affine=False, binary=binary) if reduction_prev
                     else ReLUConvBN(C_pp, C, 1, 1, 0, affine=False, binary=binary))
        self.pre1 = ReLUConvBN(C_p, C, 1, 1, 0, affine=False, binary=binary)
        self.edges = nn.ModuleList()
        for i in range(steps):
            for j in range(2 + i):
                stride = 2 if reduction and j < 2 else 1
                self.edges.append(MixedOp(C, stride, binary, partial_channels))

    def forward(self, s0: Tensor, s1: Tensor, weights: Tensor) -> Tensor:
        states = [self.pre0(s0), self.pre1(s1)]
        offset = 0
        for _ in range(self.steps):
            s = sum(self.edges[offset + j](h, weights[offset + j]) for j, h in enumerate(states))
            offset += len(states)
            states.append(s)
        return torch.cat(states[-self.multiplier:], dim=1)


class Supernet(nn.Module):
    """DARTS supernet: real stem, ``layers`` cells (reductions at 1/3 and 2/3), real classifier.

    ``stem="imagenet"`` is PC-DARTS' ImageNet search stem (stride 8, ``stem_multiplier * C``
    channels; the stride-4 stage feeds the first cell's s0 through a FactorizedReduce).

    ``alpha_normal`` / ``alpha_reduce`` (14 x 8) are the architecture parameters; they are kept
    apart from the weights (``arch_parameters`` / ``weight_parameters``) for bi-level updates.
    ``op_mask`` (same shape, 0/1) removes ops, used by CP-NAS's progressive pruning and sampling.
    """

    def __init__(self, C: int = 16, num_classes: int = 10, layers: int = 8, *,
                 binary: bool = False, partial_channels: int = 1, steps: int = STEPS,
                 multiplier: int = 4, stem_multiplier: int = 3, in_channels: int = 3,
                 stem: str = "cifar") -> None:
        super().__init__()
        self.C, self.num_classes, self.layers = C, num_classes, layers
        self.binary = binary
        self.partial_channels = partial_channels
        self.stem_kind = stem
        c_curr = stem_multiplier * C
        self.stem, self.stem1 = make_stem(stem, in_channels, c_curr)
        C_pp, C_p, c_curr = c_curr, c_curr, C
        self.cells = nn.ModuleList()
        reduction_prev = self.stem1 is not None   # ImageNet: s0 is at twice s1's resolution
        for i in range(layers):
            reduction = layers >= 3 and i in (layers // 3, 2 * layers // 3)
            if reduction:
                c_curr *= 2
            cell = SearchCell(C_pp, C_p, c_curr, reduction, reduction_prev, binary,
                              partial_channels, steps, multiplier)
            self.cells.append(cell)
            reduction_prev = reduction
            C_pp, C_p = C_p, multiplier * c_curr
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C_p, num_classes)
        n_ops = len(PRIMITIVES)
        self.alpha_normal = nn.Parameter(1e-3 * torch.randn(NUM_EDGES, n_ops))
        self.alpha_reduce = nn.Parameter(1e-3 * torch.randn(NUM_EDGES, n_ops))
        self.register_buffer("mask_normal", torch.ones(NUM_EDGES, n_ops))
        self.register_buffer("mask_reduce", torch.ones(NUM_EDGES, n_ops))

    # -- parameters --------------------------------------------------------------------
    def arch_parameters(self) -> list[nn.Parameter]:
        return [self.alpha_normal, self.alpha_reduce]

    def weight_parameters(self) -> Iterator[nn.Parameter]:
        arch = {id(p) for p in self.arch_parameters()}
        return (p for p in self.parameters() if id(p) not in arch)

    def named_weight_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        return ((n, p) for n, p in self.named_parameters() if not n.startswith("alpha_"))

    # -- forward -----------------------------------------------------------------------
    def edge_weights(self, reduction: bool) -> Tensor:
        """softmax over the unmasked ops of each edge (masked ops get weight 0)."""
        alpha = self.alpha_reduce if reduction else self.alpha_normal
        mask = self.mask_reduce if reduction else self.mask_normal
        return torch.softmax(alpha.masked_fill(mask == 0, float("-inf")), dim=-1)

    def stem_states(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(s0, s1) of the first cell: the stem's output twice (CIFAR), or the stride-4 and
        stride-8 stages (ImageNet)."""
        s0 = self.stem(x)
        return (s0, s0) if self.stem1 is None else (s0, self.stem1(s0))

    def forward(self, x: Tensor) -> Tensor:
        w_normal, w_reduce = self.edge_weights(False), self.edge_weights(True)
        s0, s1 = self.stem_states(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1, w_reduce if cell.reduction else w_normal)
        return self.classifier(self.global_pooling(s1).flatten(1))

    def compile_regions(self) -> list[MixedOp]:
        """What ``search.compile`` compiles: every edge (``harness.accel.compile_modules``).
        Edges of the same shape share one compiled graph; the whole supernet as one graph
        does not compile in useful time."""
        return [edge for cell in self.cells for edge in cell.edges]

    # -- architecture --------------------------------------------------------------------
    def genotype(self) -> Genotype:
        masked_n = self.alpha_normal.masked_fill(self.mask_normal == 0, float("-inf"))
        masked_r = self.alpha_reduce.masked_fill(self.mask_reduce == 0, float("-inf"))
        return from_alphas(masked_n, masked_r)

    def set_masks(self, mask_normal: Tensor, mask_reduce: Tensor, *,
                  skip_masked: bool = False) -> None:
        """Set the op masks (14 x 8, 0/1; every edge must keep at least one op).

        ``skip_masked=True`` also makes every MixedOp run only its unmasked ops (same output,
        less compute, no gradient for the masked ops); ``False`` restores running all ops."""
        for mask in (mask_normal, mask_reduce):
            if tuple(mask.shape) != tuple(self.mask_normal.shape):
                raise ValueError(f"set_masks: mask has shape {tuple(mask.shape)}, expected "
                                 f"{tuple(self.mask_normal.shape)}")
            if bool((mask.sum(dim=1) == 0).any()):
                raise ValueError("set_masks: every edge must keep at least one op")
        with torch.no_grad():
            self.mask_normal.copy_(mask_normal)
            self.mask_reduce.copy_(mask_reduce)
        for reduction, mask in ((False, self.mask_normal), (True, self.mask_reduce)):
            rows = [tuple(int(k) for k in row.nonzero().flatten()) for row in mask.cpu()]
            for cell in self.cells:
                if cell.reduction == reduction:
                    for e, mixed in enumerate(cell.edges):
                        mixed.active = rows[e] if skip_masked else None

    def copy_arch_from(self, other: "Supernet") -> None:
        """Inherit the architecture (alpha and masks) of another supernet: alpha_hat <- alpha."""
        with torch.no_grad():
            for mine, theirs in zip(self.arch_parameters(), other.arch_parameters()):
                mine.copy_(theirs)
            self.mask_normal.copy_(other.mask_normal)
            self.mask_reduce.copy_(other.mask_reduce)

    def op_weight_norms(self) -> tuple[Tensor, Tensor]:
        """R(w_m) = ||w_m||^2 of every candidate op on every edge (normal, reduce), 14 x 8,
        summed over the cells of each type, with w_m as the book defines it (:func:`op_norm`).
        The readable reference for ``tangent.op_weight_norms`` (which is fast)."""
        out = []
        for reduction in (False, True):
            norms = torch.zeros(NUM_EDGES, len(PRIMITIVES))
            for cell in self.cells:
                if cell.reduction != reduction:
                    continue
                for e, mixed in enumerate(cell.edges):
                    for k, (name, op) in enumerate(zip(PRIMITIVES, mixed.ops)):
                        norms[e, k] += float(op_norm(name, op, mixed.channels))
            out.append(norms)
        return out[0], out[1]
