"""DARTS (first and second order) and PC-DARTS baselines on the shared supernet.

- ``darts``: the real-valued supernet with first-order DARTS (Liu et al., ICLR 2019, Eq. 6 with
  xi = 0). Its genotype is later retrained binarized, which is how the binary-NAS papers report
  "DARTS" as a baseline.
- ``darts_2nd``: second-order (unrolled) DARTS. The architecture gradient is
  grad_a L_val(w', a) - xi * grad^2_{a,w} L_train(w, a) . grad_w' L_val(w', a) with
  w' = w - xi * grad_w L_train(w, a) (Eq. 7), the mixed second derivative times a vector being
  the central finite difference of Eq. 8:
  (grad_a L_train(w + eps v, a) - grad_a L_train(w - eps v, a)) / (2 eps), eps = r / ||v||,
  r = 0.01. As in the official code, the virtual step w' includes the weight optimizer's momentum
  and weight decay, and xi is the weight optimizer's current learning rate.
- ``pcdarts``: the 1-bit supernet with PC-DARTS partial channel connections (Xu et al., ICLR 2020):
  only C/K channels of every edge go through the candidate ops (K = ``partial_channels``, 4),
  the rest bypass them, followed by a channel shuffle; plus edge normalization: a learnable
  beta per edge, softmax-normalised over the incoming edges of each node, scales every edge's
  output, and the genotype ranks ops and edges by softmax(alpha) * softmax(beta). Architecture
  updates start after ``arch_warmup_epochs`` (PC-DARTS: 15 of 50).

All three reuse ``SupernetSearch`` (bi-level step: alpha on the validation batch, then the
weights on the training batch; gradients averaged over ranks before every optimizer step).
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from backbones.genotypes import NUM_EDGES, STEPS, Genotype, parse_alphas
from backbones.distributed import average_gradients
from backbones.search.base import Batch, CommonSearchConfig, register_search_method
from backbones.search.direct import SupernetSearch
from backbones.settings import Count, NonNegativeFloat, NonNegativeInt, PositiveFloat
from backbones.supernet import SearchCell, Supernet


def _to(batch: Batch, device: torch.device) -> Batch:
    x, y = batch
    return x.to(device, non_blocking=True), y.to(device, non_blocking=True)


# ----------------------------------------------------------------------------------------
# DARTS, first order
# ----------------------------------------------------------------------------------------
class DartsConfig(CommonSearchConfig):
    """DARTS CIFAR-10 search settings (batch 64 is the data config's business)."""


@register_search_method
class DARTS(SupernetSearch):
    """First-order DARTS on the real-valued supernet."""

    name = "darts"
    binary = False
    Config = DartsConfig

    def step(self, train_batch: Batch, val_batch: Batch) -> dict[str, float]:
        dev = self.ctx.device
        return super().step(_to(train_batch, dev), _to(val_batch, dev))


# ----------------------------------------------------------------------------------------
# DARTS, second order (unrolled)
# ----------------------------------------------------------------------------------------
class Darts2ndConfig(CommonSearchConfig):
    #: finite-difference scale of Eq. 8: eps = fd_r / ||grad_w' L_val(w', alpha)|| (DARTS: 0.01)
    fd_r: PositiveFloat = 0.01


def _flat_norm(tensors: list[Tensor]) -> Tensor:
    return torch.sqrt(sum((t.detach().float() ** 2).sum() for t in tensors))


@register_search_method
class DARTS2nd(SupernetSearch):
    """Second-order DARTS (unrolled architecture gradient, finite-difference HVP)."""

    name = "darts_2nd"
    binary = False
    Config = Darts2ndConfig

    # -- pieces, public so that the tests can check them ---------------------------------
    def _loss(self, batch: Batch) -> Tensor:
        x, y = batch
        return F.cross_entropy(self.model(x), y)

    def hessian_vector_product(self, vector: list[Tensor], batch: Batch,
                               r: float | None = None) -> list[Tensor]:
        """grad^2_{alpha, w} L_train(w, alpha) . vector by central differences (DARTS Eq. 8).

        ``vector`` has one tensor per weight parameter (``model.weight_parameters()`` order).
        The weights are restored exactly (a saved copy, not +eps then -eps arithmetic)."""
        r = self.cfg.fd_r if r is None else r
        params = list(self.model.weight_parameters())
        arch = self.model.arch_parameters()
        norm = float(_flat_norm(vector))
        if norm == 0.0:
            return [torch.zeros_like(a) for a in arch]
        eps = r / norm
        saved = [p.detach().clone() for p in params]
        grads = []
        try:
            for sign in (1.0, -1.0):
                with torch.no_grad():
                    for p, p0, v in zip(params, saved, vector):
                        p.copy_(p0).add_(v, alpha=sign * eps)
                g = torch.autograd.grad(self._loss(batch), arch, allow_unused=True)
                grads.append([gi if gi is not None else torch.zeros_like(a)
                              for gi, a in zip(g, arch)])
        finally:
            with torch.no_grad():
                for p, p0 in zip(params, saved):
                    p.copy_(p0)
        return [(gp - gn) / (2 * eps) for gp, gn in zip(*grads)]

    def unrolled_arch_gradient(self, train_batch: Batch, val_batch: Batch
                               ) -> tuple[list[Tensor], float]:
        """The second-order architecture gradient (Eq. 7) and the unrolled validation loss.
        Leaves the weights and the BN running statistics as they were."""
        model = self.model
        params = list(model.weight_parameters())
        arch = model.arch_parameters()
        group = self.w_opt.param_groups[0]
        xi, momentum, wd = group["lr"], group["momentum"], group["weight_decay"]
        saved = [p.detach().clone() for p in params]
        buffers = [b.detach().clone() for b in model.buffers()]
        try:
            # virtual step w' = w - xi (momentum * buf + grad + wd * w), as the official code
            g_train = torch.autograd.grad(self._loss(train_batch), params, allow_unused=True)
            with torch.no_grad():
                for p, g in zip(params, g_train):
                    d = p.detach() * wd
                    if g is not None:
                        d = d + g
                    buf = self.w_opt.state.get(p, {}).get("momentum_buffer")
                    if buf is not None:
                        d = d + momentum * buf
                    p.sub_(xi * d)
            val_loss = self._loss(val_batch)
            grads = torch.autograd.grad(val_loss, arch + params, allow_unused=True)
            d_alpha = [g if g is not None else torch.zeros_like(a)
                       for g, a in zip(grads[:len(arch)], arch)]
            vector = [g.detach() if g is not None else torch.zeros_like(p)
                      for g, p in zip(grads[len(arch):], params)]
            with torch.no_grad():
                for p, p0 in zip(params, saved):
                    p.copy_(p0)
            hvp = self.hessian_vector_product(vector, train_batch)
        finally:
            with torch.no_grad():
                for p, p0 in zip(params, saved):
                    p.copy_(p0)
                for b, b0 in zip(model.buffers(), buffers):
                    b.copy_(b0)
        return [da - xi * h for da, h in zip(d_alpha, hvp)], float(val_loss.detach())

    def arch_step(self, train_batch: Batch, val_batch: Batch) -> float:
        grads, loss = self.unrolled_arch_gradient(train_batch, val_batch)
        self.a_opt.zero_grad(set_to_none=True)
        for a, g in zip(self.model.arch_parameters(), grads):
            a.grad = g.detach().clone()
        average_gradients(self.model.arch_parameters())
        self.a_opt.step()
        return loss

    def step(self, train_batch: Batch, val_batch: Batch) -> dict[str, float]:
        dev = self.ctx.device
        return super().step(_to(train_batch, dev), _to(val_batch, dev))


# ----------------------------------------------------------------------------------------
# PC-DARTS on the 1-bit supernet
# ----------------------------------------------------------------------------------------
def node_softmax(beta: Tensor, steps: int = STEPS) -> Tensor:
    """PC-DARTS edge normalization: softmax of beta over the incoming edges of each node."""
    out, start = [], 0
    for node in range(steps):
        n = node + 2
        out.append(torch.softmax(beta[start:start + n], dim=-1))
        start += n
    return torch.cat(out)


class EdgeNormSupernet(Supernet):
    """Supernet with PC-DARTS edge normalization: node_j = sum_i softmax_i(beta_ij) * edge_ij.

    ``beta_normal`` / ``beta_reduce`` (14 each) are architecture parameters like alpha; they are
    excluded from the weights and included in ``arch_parameters`` (and in ``copy_arch_from``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.beta_normal = nn.Parameter(1e-3 * torch.randn(NUM_EDGES))
        self.beta_reduce = nn.Parameter(1e-3 * torch.randn(NUM_EDGES))

    def arch_parameters(self) -> list[nn.Parameter]:
        return [self.alpha_normal, self.alpha_reduce, self.beta_normal, self.beta_reduce]

    def named_weight_parameters(self):
        return ((n, p) for n, p in self.named_parameters()
                if not n.startswith(("alpha_", "beta_")))

    def edge_scales(self, reduction: bool) -> Tensor:
        return node_softmax(self.beta_reduce if reduction else self.beta_normal)

    @staticmethod
    def _cell_forward(cell: SearchCell, s0: Tensor, s1: Tensor, weights: Tensor,
                      scales: Tensor) -> Tensor:
        states = [cell.pre0(s0), cell.pre1(s1)]
        offset = 0
        for _ in range(cell.steps):
            s = sum(scales[offset + j] * cell.edges[offset + j](h, weights[offset + j])
                    for j, h in enumerate(states))
            offset += len(states)
            states.append(s)
        return torch.cat(states[-cell.multiplier:], dim=1)

    def forward(self, x: Tensor) -> Tensor:
        w = {False: self.edge_weights(False), True: self.edge_weights(True)}
        b = {False: self.edge_scales(False), True: self.edge_scales(True)}
        s0, s1 = self.stem_states(x)
        for cell in self.cells:
            s0, s1 = s1, self._cell_forward(cell, s0, s1, w[cell.reduction], b[cell.reduction])
        return self.classifier(self.global_pooling(s1).flatten(1))

    def genotype(self) -> Genotype:
        """PC-DARTS rule: op and edge strengths are softmax(alpha) * edge-normalised beta."""
        cells = []
        for reduction in (False, True):
            with torch.no_grad():
                weights = self.edge_weights(reduction) * self.edge_scales(reduction)[:, None]
            cells.append(tuple(parse_alphas(weights)))
        concat = tuple(range(2, 2 + STEPS))
        return Genotype(cells[0], concat, cells[1], concat)


class PCDartsConfig(CommonSearchConfig):
    """PC-DARTS CIFAR-10 settings (their batch is 256: set it in the data config)."""
    w_lr: PositiveFloat = 0.1
    w_lr_min: NonNegativeFloat = 0.0
    arch_lr: PositiveFloat = 6e-4
    arch_wd: NonNegativeFloat = 1e-3
    partial_channels: Count = 4
    #: learnable per-edge beta, softmax over each node's inputs (PC-DARTS "edge normalization")
    edge_normalization: bool = True
    #: PC-DARTS CIFAR-10: alpha/beta move from epoch 15 on (see CommonSearchConfig)
    arch_warmup_epochs: NonNegativeInt = 15


@register_search_method
class PCDARTS(SupernetSearch):
    """PC-DARTS (partial channels + edge normalization) on the 1-bit supernet, first order."""

    name = "pcdarts"
    binary = True
    Config = PCDartsConfig

    def supernet_class(self) -> type[Supernet]:
        return EdgeNormSupernet if self.cfg.edge_normalization else Supernet

    def step(self, train_batch: Batch, val_batch: Batch) -> dict[str, float]:
        dev = self.ctx.device
        return super().step(_to(train_batch, dev), _to(val_batch, dev))

    def alphas(self) -> dict[str, list[list[float]]]:
        out = super().alphas()
        if isinstance(self.model, EdgeNormSupernet):
            # 1 x 14 rows: the edge-normalised beta weights, in edge order
            out["edge_normal"] = [self.model.edge_scales(False).detach().cpu().tolist()]
            out["edge_reduce"] = [self.model.edge_scales(True).detach().cpu().tolist()]
        return out

