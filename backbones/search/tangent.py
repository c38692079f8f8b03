"""The pieces of DCP-NAS (book §4.4, Eqs. 4.21-4.53), as small functions on tensors.

Notation (the book's): the real-valued Parent has weights w and architecture alpha, the 1-bit
Child has weights w_hat and architecture alpha_hat (both 2 x 14 x 8 here: normal and reduction
cells, 14 edges, 8 ops). Everything works on *lists* of tensors shaped like
``Supernet.arch_parameters()`` so that it applies to any number of architecture tensors.

- ``tangent_direction``      d f~^P / d alpha, the Parent's tangent direction (Eq. 4.29)
- ``kl_parent_child``        KL(Parent || Child) of the output distributions, -G (Eq. 4.26, 4.32)
- ``distance``               D between the Child's gradient and the tangent (Eq. 4.31, Table 4.4)
- ``distance_and_direction`` D and v = dD/dg, the vector the Hessian multiplies in Eq. 4.33:
                             dD/d alpha_hat = H_G(alpha_hat) v (assembled in
                             ``DCPNAS._second_order_term``)
- ``fisher_vector_product``  H_G v with the GGN / Fisher stand-in for the Hessian (Eqs. 4.36-4.41)
- ``ggn_vector_product``     H_G v with the exact GGN matrix, no sampling: forward-mode J v,
                             closed-form H_z, one backward (nothing differentiated twice)
- ``exact_hessian_vector_product``  the same product with the true Hessian (double backward)
- ``psi_update``, ``backtrack_mask``, ``backtrack``, ``psi_gradient``: the decoupled
  optimization (Eqs. 4.50-4.53)
- ``op_weight_norms``        R(w) = ||w||^2 of every (edge, op), without host syncs

Sign conventions: G = -KL(P || C) is the Child's objective to *maximise* (Eq. 4.32 minimises
-G + ...), f~ = sum_n p_n(X) log p_n(w, alpha) is the Parent's log-likelihood (Eq. 4.21), so
both d G / d alpha_hat and d f~ / d alpha are ascent directions and D compares like with like.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from backbones.binary import OFFICIAL_BIN, BinaryConv2d, forward_mode_sign
from backbones.operations import PRIMITIVES
from backbones.supernet import Supernet, kernel_norm, op_norm

Distance = Literal["fnorm", "l1", "cosine"]
SecondOrder = Literal["ggn", "ggn_exact", "exact"]
DISTANCES: tuple[str, ...] = get_args(Distance)
SECOND_ORDER: tuple[str, ...] = get_args(SecondOrder)
#: second orders that differentiate through the Child twice (no compiled graph can)
TWICE_DIFFERENTIATED: tuple[str, ...] = ("exact",)

Tensors = Sequence[Tensor]


def flat(tensors: Tensors) -> Tensor:
    """Concatenate a list of tensors into one vector."""
    return torch.cat([t.reshape(-1) for t in tensors])


def unflat(vector: Tensor, like: Tensors) -> list[Tensor]:
    """Split a vector back into tensors shaped like ``like``."""
    out, start = [], 0
    for t in like:
        out.append(vector[start:start + t.numel()].view_as(t))
        start += t.numel()
    return out


def grad_or_zeros(outputs, inputs: Tensors, grad_outputs=None, **kwargs) -> list[Tensor]:
    """torch.autograd.grad with zeros for inputs the outputs do not depend on (alpha_reduce of a
    supernet with fewer than 3 cells has no reduction cell)."""
    inputs = list(inputs)
    grads = torch.autograd.grad(outputs, inputs, grad_outputs=grad_outputs, allow_unused=True,
                                **kwargs)
    return [torch.zeros_like(x) if g is None else g for g, x in zip(grads, inputs)]


# ------------------------------------------------------------------------------------------
# Objectives
# ------------------------------------------------------------------------------------------
def tangent_direction(parent_logits: Tensor, target: Tensor, arch: Tensors, *,
                      retain_graph: bool = False) -> list[Tensor]:
    """The Parent's tangent direction d f~^P(w, alpha) / d alpha (Eq. 4.29), batch mean.

    Which p_n: Eq. 4.29 reads sum_n d p_n(w, alpha) / d alpha "with f~ as defined in Eq. 4.21",
    where n runs over the N *classes*. Taken literally that sum is identically zero (the class
    probabilities sum to one), so we take the derivative of the f~ that Eq. 4.21 defines,
    f~ = sum_n p_n(X) log p_n(w, alpha), with p_n(X) the one-hot label: per sample
    d log p_y / d alpha = (1 / p_y) d p_y / d alpha (Eq. 4.38) -- the probability of the
    *labelled* class, in log form. This is minus the gradient of the Parent's cross-entropy,
    which the Parent's architecture step computes anyway (so the tangent is free), and it is on
    the same scale as the Child's d G / d alpha_hat that D compares it with (G is a
    log-likelihood too). Averaged over the batch (the book sums): D is then independent of the
    batch size, which only rescales mu.
    """
    ce = F.cross_entropy(parent_logits, target)
    grads = grad_or_zeros(ce, arch, retain_graph=retain_graph)
    return [-g for g in grads]


def kl_parent_child(child_logits: Tensor, parent_logits: Tensor) -> Tensor:
    """KL(p^P || p^C) of the softmax outputs, mean over the batch (the Child's -G, Eq. 4.32).

    The Parent's distribution is the fixed target (detached): "binary weights are learned by
    KL divergence" (§4.4.4). Zero exactly when the two output distributions are equal."""
    log_q = F.log_softmax(child_logits, dim=1)
    log_p = F.log_softmax(parent_logits.detach(), dim=1)
    return F.kl_div(log_q, log_p, reduction="batchmean", log_target=True)


def distance(g: Tensor, t: Tensor, kind: str = "fnorm") -> Tensor:
    """D(alpha_hat): distance between the Child's architecture gradient g and the Parent's
    tangent t (Eq. 4.31; Table 4.4 compares the three). Both are flat vectors.

    - ``fnorm``:  ||g - t||_F^2 (squared, so that dD/dg = 2 (g - t) as in Eq. 4.33)
    - ``l1``:     ||g - t||_1
    - ``cosine``: 1 - cos(g, t) (direction only; 0 for parallel vectors; 1 if either is 0)
    Each is zero when g == t (for cosine: whenever g is a positive multiple of t).
    """
    if kind == "fnorm":
        return (g - t).pow(2).sum()
    if kind == "l1":
        return (g - t).abs().sum()
    if kind == "cosine":
        # the eps keeps the gradient finite when one vector is zero
        return 1.0 - (g * t).sum() / (g.norm() * t.norm()).clamp_min(1e-20)
    raise ValueError(f"unknown distance {kind!r}; expected one of {', '.join(DISTANCES)}")


def distance_and_direction(g: Tensor, t: Tensor, kind: str) -> tuple[Tensor, Tensor]:
    """D(g, t) and dD/dg (the vector that the Hessian multiplies in Eq. 4.33).

    g is tiny (224 numbers), so the derivative is taken by autograd on a detached copy rather
    than by hand; for L1 this is the subgradient sign(g - t) (0 where g == t)."""
    g = g.detach().requires_grad_(True)
    with torch.enable_grad():
        d = distance(g, t.detach(), kind)
        (v,) = torch.autograd.grad(d, g)
    return d.detach(), v


# ------------------------------------------------------------------------------------------
# Second-order term: d D / d alpha_hat = (d g / d alpha_hat)^T dD/dg = H_G(alpha_hat) v
# ------------------------------------------------------------------------------------------
def fisher_vector_product(child_logits: Tensor, arch: Tensors, v: Tensors, *,
                          samples: int = 1, generator: torch.Generator | None = None,
                          retain_graph: bool = True) -> list[Tensor]:
    """GGN / Fisher approximation of H_G(alpha_hat) . v, with G = -KL(P || C) batch mean
    (Eqs. 4.36-4.41): H_G ~ -F, F = E_x E_{k ~ p^C(x)} [g_k g_k^T], g_k = d log p^C_k / d alpha_hat.

    For a softmax output the Fisher equals the Generalized Gauss-Newton matrix J^T (diag(q) -
    q q^T) J exactly (J = d logits / d alpha_hat, q = p^C), and it is the Hessian of G wherever
    the Child's distribution matches the Parent's (the residual term sum (p^P - q) d2 z vanishes).
    Eq. 4.40 integrates over the model's own density, so the class k is drawn from the Child's
    prediction (the "true" Fisher; the "empirical" Fisher with the Parent's soft targets would
    vanish exactly when the Child fits the Parent, i.e. where the approximation should be best).

    Estimator: for ``samples`` draws, one label k_n ~ q_n per example, r_n = e_{k_n} - q_n
    (= d log q_{k_n} / d logits_n) and s = J^T r (one backward pass to alpha_hat only: the
    weights get no gradient, so it costs less than a training backward); then
    F v ~ mean_draws s (s . v) / B. E[r_n r_m^T] = [n == m] (diag(q_n) - q_n q_n^T), so the
    estimate is unbiased for the batch Fisher *including* the coupling of the examples through
    the train-mode BatchNorm statistics. (Splitting s into per-example parts with per-example
    mixing weights would be rank-B instead of rank-1, but train-mode BN makes those parts depend
    on the other examples: on the tiny test supernets they pointed ~60 degrees away from the
    exact GGN even where GGN == Hessian, while this estimator converges to it.) No
    Hessian-vector product: only first-order gradients, their outer product applied to v.

    ``child_logits`` must still have its graph to ``arch`` (``retain_graph=True`` keeps it for a
    later backward). Returns H_G v ~ -F v, shaped like ``arch``.
    """
    arch = list(arch)
    q = torch.softmax(child_logits.detach().float(), dim=1)
    b = q.shape[0]
    v_flat = flat(v)
    acc = torch.zeros_like(v_flat)
    rows = torch.arange(b, device=q.device)
    for i in range(samples):
        k = torch.multinomial(q, 1, generator=generator).squeeze(1)
        r = -q
        r[rows, k] += 1.0
        grads = grad_or_zeros(child_logits, arch, grad_outputs=r.to(child_logits.dtype),
                              retain_graph=retain_graph or i < samples - 1)
        s = flat(grads)
        acc += s * (s @ v_flat)
    return unflat(-acc / (b * samples), arch)


def logits_jvp(model: nn.Module, x: Tensor, arch: Tensors, v: Tensors) -> Tensor:
    """J v: the derivative of ``model(x)``'s logits along ``v`` in the architecture parameters
    ``arch`` (J = d logits / d alpha), by forward-mode AD: one forward pass with dual tensors,
    no backward graph (no_grad), nothing differentiated twice, run eagerly (torch.compile takes
    no dual tensors); the binary activations carry tangents through ``SignBiRealJvp``. The pass
    uses the same batch and train-mode BatchNorm batch statistics as the pass it linearises,
    but does not update the running statistics (that would count the pass as a step, and an in-place update
    would invalidate the architecture pass's saved graph)."""
    import torch.autograd.forward_ad as fwad
    from torch.func import functional_call
    ids = {id(a): i for i, a in enumerate(arch)}
    names = {n: ids[id(p)] for n, p in model.named_parameters() if id(p) in ids}
    # eager: torch.compile does not accept inputs that carry a forward-mode tangent (its graph
    # break gb0375 would fall back anyway, after a recompile attempt per region)
    with fwad.dual_level(), torch.no_grad(), _frozen_bn_stats(model), forward_mode_sign(), \
            torch.compiler.set_stance("force_eager"):
        duals = {n: fwad.make_dual(arch[i].detach(), v[i].to(arch[i].dtype))
                 for n, i in names.items()}
        out = functional_call(model, duals, (x,), strict=False)
        tangent = fwad.unpack_dual(out).tangent
    return torch.zeros_like(out) if tangent is None else tangent


@contextlib.contextmanager
def _frozen_bn_stats(model: nn.Module) -> Iterator[None]:
    """Train-mode BatchNorms normalise by the batch but leave their running statistics (and
    counters) untouched inside the block (``track_running_stats`` off for its duration)."""
    bns = [m for m in model.modules()
           if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training
           and m.track_running_stats]
    for m in bns:
        m.track_running_stats = False
    try:
        yield
    finally:
        for m in bns:
            m.track_running_stats = True


def ggn_vector_product(model: nn.Module, x: Tensor, child_logits: Tensor, arch: Tensors,
                       v: Tensors, *, retain_graph: bool = True) -> list[Tensor]:
    """H_G(alpha_hat) . v with the Generalized Gauss-Newton matrix, no sampling and no second
    derivative: GGN = -(1/B) J^T H_z J, J = d logits / d alpha_hat (B x K rows, train-mode BN
    coupling included), H_z = blockdiag_n (diag(q_n) - q_n q_n^T) the Hessian of
    KL(p || softmax(z_n)) in the logits (independent of the Parent's p).

    J v by forward mode (``logits_jvp``: one dual forward pass of ``model`` on ``x``, the batch
    that produced ``child_logits``); H_z (J v) = q * Jv - q (q . Jv) per example in closed form;
    then one ordinary backward of ``child_logits`` (its graph kept from the architecture pass)
    gives J^T H_z J v. Nothing is differentiated twice. Equal to
    ``ggn_vector_product_double_vjp`` (the reverse-only reference) to float tolerance."""
    arch = list(arch)
    jv = logits_jvp(model, x, arch, v)
    return _ggn_from_jv(child_logits, arch, jv, retain_graph)


def _ggn_from_jv(child_logits: Tensor, arch: list[Tensor], jv: Tensor,
                 retain_graph: bool) -> list[Tensor]:
    """-(1/B) J^T H_z (J v) from J v: H_z (J v) = q * Jv - q (q . Jv) per example (the softmax
    cross-entropy / KL Hessian in the logits, closed form), then one backward of the logits."""
    q = torch.softmax(child_logits.detach().float(), dim=1).to(child_logits.dtype)
    jv = jv.detach().to(q.dtype)
    hz = q * jv - q * (q * jv).sum(dim=1, keepdim=True)
    out = grad_or_zeros(child_logits, arch, grad_outputs=hz, retain_graph=retain_graph)
    return [-o / q.shape[0] for o in out]


def ggn_vector_product_double_vjp(child_logits: Tensor, arch: Tensors, v: Tensors, *,
                                  retain_graph: bool = True) -> list[Tensor]:
    """The reference for ``ggn_vector_product`` (tests and benchmarks): the same GGN product
    with reverse mode only, by the double-vjp trick (differentiates the pass twice):
    GGN = -(1/B) J^T H_z J, J = d logits / d alpha_hat (B x K rows, train-mode BN coupling
    included), H_z = blockdiag_n (diag(q_n) - q_n q_n^T) the Hessian of KL(p || softmax(z_n))
    in the logits (it does not depend on the Parent's p).

    Computed with reverse mode only (the double-vjp trick, so the custom sign Functions need no
    forward-mode rule): s(u) = J^T u is a vector-Jacobian product built with create_graph on a
    dummy u; J v = d (s(u) . v) / d u, exact because s is linear in u; then
    H_z (J v) = q * Jv - q (q . Jv) per example, and one more vector-Jacobian product gives
    J^T H_z J v. Three backward passes to alpha_hat (weights get no gradient). This is the
    quantity ``fisher_vector_product`` estimates from one label draw per example."""
    arch = list(arch)
    u = torch.zeros_like(child_logits, requires_grad=True)
    s = grad_or_zeros(child_logits, arch, grad_outputs=u, create_graph=True, retain_graph=True)
    dot = sum((si * vi).sum() for si, vi in zip(s, v) if si.requires_grad)
    if not isinstance(dot, Tensor) or not dot.requires_grad:   # no path from alpha to logits
        return [torch.zeros_like(a) for a in arch]
    (jv,) = torch.autograd.grad(dot, u)
    return _ggn_from_jv(child_logits, arch, jv, retain_graph)


def exact_hessian_vector_product(grads: Tensors, arch: Tensors, v: Tensors, *,
                                 retain_graph: bool = False) -> list[Tensor]:
    """H_G(alpha_hat) . v with the true Hessian: double backward through ``grads`` (which must
    be d G / d alpha_hat computed with ``create_graph=True``). The reference that the GGN
    approximation is checked against (``second_order="exact"``); about twice the cost of the
    GGN step on the tiny supernets."""
    pairs = [(g, x) for g, x in zip(grads, v) if g.requires_grad]  # unused alpha: no graph
    out = grad_or_zeros([g for g, _ in pairs], arch, grad_outputs=[x for _, x in pairs],
                        retain_graph=retain_graph)
    return out


# ------------------------------------------------------------------------------------------
# Decoupled optimization (Eqs. 4.43-4.53)
# ------------------------------------------------------------------------------------------
def psi_update(psi: Tensor, grad: Tensor, eta_psi: float) -> Tensor:
    """psi~ <- | psi~ - eta_psi dL/dpsi~ | (Eq. 4.51): a projected gradient step that keeps the
    learnable stand-in for the unsolvable coupling term psi (Eq. 4.50) non-negative."""
    return (psi - eta_psi * grad).abs()


def backtrack_mask(norms: Tensor, tau: float, op_mask: Tensor | None = None) -> Tensor:
    """Which entries of alpha are backtracked (Eq. 4.52), from R(w_m) = ||w_m||^2 (Eq. 4.53).

    ``norms``: (..., E, M) squared weight norms of every (edge, op) (``op_weight_norms``).
    Eqs. 4.46-4.49 write alpha as E x M with w_m the weights of *operation* m and
    R(w_m), m = 1..M; Eq. 4.52 then backtracks the whole column alpha_{:, m}. So per cell type
    the M operations are ranked by R(w_m) = sum over edges of ||w_{e,m}||^2, and an operation
    is backtracked on every edge if its normalised rank -- the fraction of the M operations
    with a strictly smaller R -- is at least ``tau``. tau = 0.5 backtracks the top half.
    Parameter-free ops rank by the book's fixed kernels (pool C/9, identity C, none 0; see
    ``supernet.op_norm``), so the ranking follows the weights as they move. Masked ops (``op_mask`` == 0) are
    left out of the ranking and never backtracked. The ranking uses only the weights, which are
    identical on every rank of a distributed run, so every rank takes the same decision.
    Returns a bool tensor shaped like ``norms``.
    """
    if op_mask is None:
        op_mask = torch.ones_like(norms)
    active = op_mask > 0
    per_op = (norms * active).sum(dim=-2)                                 # (..., M)
    m = per_op.shape[-1]
    smaller = (per_op.unsqueeze(-1) > per_op.unsqueeze(-2)).sum(dim=-1)   # (..., M)
    selected = (smaller.to(norms.dtype) / m) >= tau
    if tau <= 0:
        selected = torch.ones_like(selected)
    return selected.unsqueeze(-2).expand_as(norms) & active


def relative_norms(norms: Tensor, init: Tensor) -> Tensor:
    """R(w_m) / R(w_m at initialisation), 0 where the op has no weight at all ('none'): a
    scale-free ranking for ``backtrack_mask`` (parameter-free ops stay at 1)."""
    return torch.where(init > 0, norms / init.clamp_min(1e-30), torch.zeros_like(norms))


def backtrack(alpha_new: Tensor, alpha_prev: Tensor, psi: Tensor, mask: Tensor,
              eta: float) -> Tensor:
    """alpha~^{t+1} = alpha^{t+1} + eta psi~ (Hadamard) alpha^t where ``mask`` holds, else
    alpha^{t+1} unchanged (Eq. 4.52 with P(.) of Eq. 4.50; eta = eta_1 eta_2)."""
    return torch.where(mask, alpha_new + eta * psi * alpha_prev, alpha_new)


def psi_gradient(grad_alpha_tilde: Tensor, alpha_prev: Tensor, mask: Tensor,
                 eta: float) -> Tensor:
    """dL/dpsi~ by the chain rule through Eq. 4.52: eta * mask * alpha^t * dL/dalpha~^{t+1}.

    alpha~^{t+1} is only used by the next step's forward, so the gradient is available one
    step later, from the first architecture gradient evaluated at alpha~^{t+1}."""
    return torch.where(mask, eta * alpha_prev * grad_alpha_tilde,
                       torch.zeros_like(grad_alpha_tilde))


class OpNormIndex:
    """Precomputed index for ``op_weight_norms``: the fixed R of every parameter-free op
    (pools, identity), and for every conv of every op its slot (cell type, edge, op) and how
    its reconstructed kernel's squared norm follows from a small tensor:
    - official binarizer: ||0.02 |M| sign(w)||^2 = 0.02^2 n ||M||^2 (n weights per channel);
    - mean_abs: n ||beta||^2 with beta = mean |w| per channel (computed per conv);
    - a real conv: ||w||^2."""

    def __init__(self, model: Supernet) -> None:
        n_edges, n_ops = model.alpha_normal.shape
        self.shape = (2, n_edges, n_ops)
        fixed = torch.zeros(self.shape)
        self.official: list[Tensor] = []       # modulations M
        slots: list[int] = []
        factors: list[float] = []
        self.other: list[tuple[nn.Conv2d, int]] = []
        for cell in model.cells:
            t = 1 if cell.reduction else 0
            for e, mixed in enumerate(cell.edges):
                for k, (name, op) in enumerate(zip(PRIMITIVES, mixed.ops)):
                    slot = (t * n_edges + e) * n_ops + k
                    convs = [m for m in op.modules() if isinstance(m, nn.Conv2d)]
                    if name == "none" or "pool" in name or not convs:
                        fixed.view(-1)[slot] += float(op_norm(name, op, mixed.channels))
                        continue
                    for conv in convs:
                        if isinstance(conv, BinaryConv2d) and conv.binarizer == "official":
                            self.official.append(conv.modulation)
                            slots.append(slot)
                            factors.append(OFFICIAL_BIN ** 2 * conv.weight[0].numel())
                        else:
                            self.other.append((conv, slot))
        device = model.alpha_normal.device
        self.fixed = fixed.to(device)
        self.slot = torch.tensor(slots, dtype=torch.long, device=device)
        self.factor = torch.tensor(factors, device=device)


def op_weight_norms(model: Supernet, index: OpNormIndex | None = None) -> Tensor:
    """R(w_{e,m}) = ||w_{e,m}||^2 summed over the cells of each type: a (2, E, M) tensor
    (normal, reduce) with the book's w_m (``supernet.op_norm``: reconstructed 1-bit kernels,
    fixed kernels for pools and the identity), equal to ``Supernet.op_weight_norms`` but
    computed on the device with a few fused kernels and no host synchronisation."""
    index = index or OpNormIndex(model)
    out = index.fixed.clone()
    with torch.no_grad():
        if index.official:
            ms = [m.detach() for m in index.official]
            if hasattr(torch, "_foreach_norm"):
                norms = torch.stack(torch._foreach_norm(ms))
            else:  # pragma: no cover - older torch
                norms = torch.stack([torch.linalg.vector_norm(m) for m in ms])
            out.view(-1).index_add_(0, index.slot, norms.float().pow(2) * index.factor)
        for conv, slot in index.other:
            out.view(-1)[slot] += kernel_norm(conv).to(out.device)
    return out
