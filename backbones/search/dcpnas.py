"""DCP-NAS: Discrepant Child-Parent NAS for 1-bit CNNs (Li et al., IJCV 2023; book §4.4,
Algorithm 10). The pieces (tangent, distance, GGN, backtracking) are in ``tangent.py``.

One ``step`` on a (train, val) batch pair:

1. Parent (real-valued supernet): first-order DARTS. alpha takes an Adam step on the validation
   cross-entropy; the gradient of that step, negated, is the tangent direction d f~/d alpha
   (Eq. 4.29) -- no extra pass. With decoupling on, this gradient (taken at the backtracked
   alpha~ of the previous step) also updates psi~ (Eq. 4.51). Then the Parent's weights take
   an SGD step on the training cross-entropy. With ``parent_every = k > 1`` this runs every
   k-th step only; in between the Parent runs forward without gradients (the Child needs its
   logits) and the tangent of its last update is reused.
2. The 1-bit Child inherits the architecture: alpha_hat <- alpha.
3. Child architecture step (validation batch): minimise -G + mu D(alpha_hat) (Eq. 4.32) with
   G = -KL(p^P || p^C), D = distance(dG/dalpha_hat, tangent) (Eq. 4.31). Its gradient
   -dG/dalpha_hat + mu H_G(alpha_hat) dD/dg (Eq. 4.33) needs the Hessian of G: the paper's
   Generalized Gauss-Newton approximation (Eqs. 4.36-4.41), computed as the GGN-vector product
   itself (``second_order="ggn_exact"``, the default: forward-mode J v, closed-form H_z, one
   backward), or estimated from label draws (the Fisher's sampled form, ``"ggn"``), or the
   exact Hessian by double backward (``"exact"``, Table 4.3's rows without GGN). Child weight step (training batch): KL(p^P || p^C) + lambda_r L_R (Eqs. 4.23,
   4.34), SGD. The Parent's logits on both batches come from step 1's forward passes.
4. Decoupled optimization: ops whose weight norm ranks above tau are backtracked,
   alpha~ = alpha^{t+1} + eta psi~ o alpha^t (Eq. 4.52, eta = eta_1 eta_2).
5. The Parent takes the Child's architecture: alpha <- alpha_hat. The genotype is the DARTS rule
   on alpha.

During the weights-only warm-up (``arch_warmup_epochs``, PC-DARTS' ImageNet schedule) a step is
the Parent's weight step and the Child's weight step on the training batch only; alpha,
alpha_hat, psi~ and the backtracking rest.

Choices where the paper is silent (DARTS / PC-DARTS practice unless said otherwise):
- The Child, like the Parent, is bi-level: its architecture moves on the validation batch, its
  weights on the training batch (``child_arch_batch="train"`` is the cheaper single-level
  variant: one Child pass on the training batch updates both, with the tangent then taken from
  the Parent's training-batch gradient).
- Optimisers: Adam for alpha and alpha_hat (DARTS: lr arch_lr, betas (0.5, 0.999), wd arch_wd),
  momentum SGD with the cosine schedule for both weight sets (the same as ``direct_bnas``, so
  the two are comparable step for step). The Parent and the Child keep their own Adam states
  although they move one shared alpha in turn.
- Gradients are batch means (the book sums over samples); all of them are averaged over the ranks
  of a distributed run before every optimizer step, and D is computed from the averaged
  gradients, so every rank takes identical steps.
- Decoupled optimization runs once per step, after the Child's update (Algorithm 10 lists it in
  both loops, but one DCP-NAS step holds one Parent and one Child update of the same alpha):
  alpha^t is alpha at the start of the step, alpha^{t+1} the Child's updated alpha_hat, and the
  ranking uses the Child's weight norms (the 1-bit weights the search is for). dL/dpsi~ needs
  dL/dalpha at the backtracked alpha~^{t+1}: the first gradient taken there is the Parent's
  validation gradient of the next step, which is used (Eq. 4.51 is then one step late).
- The Fisher estimate draws its labels from a generator seeded by (seed, step, rank): resuming
  from a checkpoint repeats the same draws.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from backbones.binary import reconstruction_loss
from backbones.distributed import average_gradients, mean_over_ranks, rank
from backbones.genotypes import Genotype
from backbones.search import tangent as tp
from backbones.search.architect import (make_arch_optimizer, make_weight_optimizer, set_lr,
                                        weight_step)
from backbones.search.base import Batch, SearchContext, SearchMethod, register_search_method
from backbones.search.dcpnas_config import DCPNASConfig
from backbones.supernet import Supernet

__all__ = ["DCPNAS", "DCPNASConfig"]


@contextlib.contextmanager
def _no_grad_for(params: list[nn.Parameter]) -> Iterator[None]:
    """Skip the gradient of ``params`` in the enclosed forward (alpha during a weight step)."""
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, f in zip(params, flags):
            p.requires_grad_(f)


def _eager_if_twice(second_order: str, use_d: bool) -> contextlib.AbstractContextManager[None]:
    """Compiled modules run eagerly inside when the Child pass will be differentiated twice
    (the D term with ``exact``'s create_graph): that cannot go through a compiled graph
    (AOTAutograd has no double backward); every other pass stays compiled (the GGN product
    differentiates nothing twice)."""
    twice = use_d and second_order in tp.TWICE_DIFFERENTIATED
    return torch.compiler.set_stance("force_eager") if twice else contextlib.nullcontext()


def _host_floats(logs: dict[str, Tensor]) -> dict[str, float]:
    """A step's scalars as Python floats, with one host sync for all of them."""
    values = torch.stack([v.detach().float().reshape(()) for v in logs.values()]).tolist()
    return dict(zip(logs, values))


@register_search_method
class DCPNAS(SearchMethod):
    name = "dcpnas"
    Config = DCPNASConfig

    def __init__(self, cfg: DCPNASConfig, ctx: SearchContext) -> None:
        super().__init__(cfg, ctx)
        dev = ctx.device
        net = dict(num_classes=ctx.num_classes, **cfg.supernet_kwargs())
        self.parent = Supernet(**net, binary=False).to(dev)
        self.child = Supernet(**net, binary=True).to(dev)
        self.child.copy_arch_from(self.parent)
        self.p_wopt = make_weight_optimizer(self.parent, cfg.w_lr, cfg.w_momentum, cfg.w_wd)
        self.p_aopt = make_arch_optimizer(self.parent, cfg.arch_lr, cfg.arch_wd)
        self.c_wopt = make_weight_optimizer(self.child, cfg.w_lr, cfg.w_momentum, cfg.w_wd)
        # alpha is one parameter stepped twice per iteration (Algorithm 10: the Parent's DARTS
        # step, then the Child's Eq. 4.33 step on the inherited copy). Each step keeps its own
        # Adam moments (the two objectives have different scales), but weight decay acts once:
        # in the Parent's step (DARTS' 1e-3), not again in the Child's.
        self.c_aopt = make_arch_optimizer(self.child, cfg.arch_lr, 0.0)
        shape = (2, *self.parent.alpha_normal.shape)
        self.psi = torch.full(shape, float(cfg.psi_init), device=dev)        # psi~ (Eq. 4.51)
        self.bt_mask = torch.zeros(shape, dtype=torch.bool, device=dev)     # last backtracking
        self.bt_alpha = torch.zeros(shape, device=dev)                      # its alpha^t
        self.has_bt = False
        self.steps = 0
        self.arch_frozen = False        # weights-only warm-up epoch (arch_warmup_epochs)
        self.last_tangent: list[Tensor] | None = None   # of the Parent's last update
        self._norm_index = tp.OpNormIndex(self.child)
        self.init_norms = tp.op_weight_norms(self.child, self._norm_index)   # R(w_m) at init

    # -- small helpers ----------------------------------------------------------------------
    @property
    def eta(self) -> float:
        eta1 = self.cfg.arch_lr if self.cfg.eta1 is None else self.cfg.eta1
        return float(eta1) * float(self.cfg.eta2)

    @staticmethod
    def _alpha(model: Supernet) -> Tensor:
        return torch.stack([a.detach() for a in model.arch_parameters()[:2]])

    @staticmethod
    def _op_mask(model: Supernet) -> Tensor:
        return torch.stack([model.mask_normal, model.mask_reduce])

    def _generator(self) -> torch.Generator:
        """Label draws of the Fisher estimate: a function of (seed, step, rank), so a resumed
        run draws the same labels as an uninterrupted one."""
        gen = torch.Generator(device=self.ctx.device)
        gen.manual_seed((self.ctx.seed * 1_000_003 + self.steps * 7_919 + rank() * 104_729)
                        % (2 ** 62))
        return gen

    # -- the step -----------------------------------------------------------------------------
    def begin_epoch(self, epoch: int, total_epochs: int) -> None:
        lr = self.cfg.weight_lr(epoch, total_epochs)
        set_lr(self.p_wopt, lr)
        set_lr(self.c_wopt, lr)
        self.arch_frozen = self.cfg.arch_frozen(epoch, total_epochs)
        self.parent.train()
        self.child.train()

    def step(self, train_batch: Batch, val_batch: Batch) -> dict[str, float]:
        cfg = self.cfg
        dev = self.ctx.device
        xt, yt = (t.to(dev, non_blocking=True) for t in train_batch)
        xv, yv = (t.to(dev, non_blocking=True) for t in val_batch)
        parent, child = self.parent, self.child
        p_arch, c_arch = parent.arch_parameters(), child.arch_parameters()
        p_weights, c_weights = list(parent.weight_parameters()), list(child.weight_parameters())
        if self.arch_frozen:
            return self._warmup_step(xt, yt, p_arch, p_weights, c_weights)
        alpha_t = self._alpha(parent)                        # alpha^t (alpha~^t after step t-1)
        zero = torch.zeros((), device=dev)

        # 1. the Parent's steps (every parent_every-th step) ---------------------------------
        if self.steps % cfg.parent_every == 0:
            arch_loss, parent_loss, logits_pv, logits_pt, tangent = self._parent_step(
                xt, yt, xv, yv, p_arch, p_weights)
            self.last_tangent = tangent
        else:                                                # parent_every > 1: forward only
            with torch.no_grad():
                logits_pv, logits_pt = parent(xv), parent(xt)
            arch_loss = F.cross_entropy(logits_pv, yv)
            parent_loss = F.cross_entropy(logits_pt, yt)
            tangent = self.last_tangent

        # 2. the Child inherits the architecture ---------------------------------------------
        child.copy_arch_from(parent)

        # 3. Child architecture and weight steps ---------------------------------------------
        if cfg.child_arch_batch == "val":
            child_arch_loss, dist_value = self._child_arch_step(xv, logits_pv, tangent)
            kl, recon, loss, logits_ct = self._child_weight_step(xt, logits_pt, c_weights)
        else:
            kl, recon, loss, logits_ct, dist_value = self._child_joint_step(
                xt, logits_pt, c_weights, tangent)
            child_arch_loss = kl

        # 4. decoupled optimization: backtracking (Eq. 4.52) ---------------------------------
        n_bt = zero
        if cfg.decouple:
            norms = tp.op_weight_norms(child, self._norm_index)
            if cfg.backtrack_norm == "relative":
                norms = tp.relative_norms(norms, self.init_norms)
            mask = tp.backtrack_mask(norms, cfg.tau, self._op_mask(child))
            alpha_tilde = tp.backtrack(self._alpha(child), alpha_t, self.psi, mask, self.eta)
            with torch.no_grad():
                for a, new in zip(c_arch[:2], alpha_tilde):
                    a.copy_(new)
            self.bt_mask, self.bt_alpha, self.has_bt = mask, alpha_t, True
            n_bt = mask.sum()

        # 5. the Parent takes the Child's architecture ----------------------------------------
        parent.copy_arch_from(child)
        self.steps += 1

        logs = {"loss": loss, "kl": kl, "recon": recon, "dist": dist_value,
                "child_arch_loss": child_arch_loss, "arch_loss": arch_loss.detach(),
                "parent_loss": parent_loss.detach(),
                "child_acc": (logits_ct.argmax(1) == yt).float().mean() * 100,
                "parent_acc": (logits_pt.argmax(1) == yt).float().mean() * 100,
                "psi_mean": self.psi.mean(), "backtracked": n_bt}
        return _host_floats(logs)

    def _warmup_step(self, xt: Tensor, yt: Tensor, p_arch: list[nn.Parameter],
                     p_weights: list[nn.Parameter], c_weights: list[nn.Parameter]
                     ) -> dict[str, float]:
        """A warm-up step (the first ``arch_warmup_epochs``): the Parent's and the Child's
        weight steps on the training batch; alpha, alpha_hat, psi~ and backtracking rest."""
        if self.steps % self.cfg.parent_every == 0:
            logits_pt, parent_loss = self._parent_weight_step(xt, yt, p_arch, p_weights,
                                                              arch_grads=False)
        else:
            with torch.no_grad():
                logits_pt = self.parent(xt)
            parent_loss = F.cross_entropy(logits_pt, yt)
        kl, recon, loss, logits_ct = self._child_weight_step(xt, logits_pt, c_weights)
        self.steps += 1
        logs = {"loss": loss, "kl": kl, "recon": recon, "parent_loss": parent_loss.detach(),
                "child_acc": (logits_ct.argmax(1) == yt).float().mean() * 100,
                "parent_acc": (logits_pt.argmax(1) == yt).float().mean() * 100}
        return _host_floats(logs)

    def _parent_step(self, xt: Tensor, yt: Tensor, xv: Tensor, yv: Tensor,
                     p_arch: list[nn.Parameter], p_weights: list[nn.Parameter]
                     ) -> tuple[Tensor, Tensor, Tensor, Tensor, list[Tensor] | None]:
        """Step 1: the Parent's architecture step (validation batch; it also gives the tangent
        and psi~'s gradient) and weight step (training batch). Returns the two losses, the two
        batches' logits (detached) and the tangent."""
        cfg, parent = self.cfg, self.parent
        tangent = None
        # 1a. Parent architecture step on the validation batch (first-order DARTS) ----------
        self.p_aopt.zero_grad(set_to_none=True)
        logits_pv = parent(xv)
        arch_loss = F.cross_entropy(logits_pv, yv)
        for a, g in zip(p_arch, tp.grad_or_zeros(arch_loss, p_arch)):
            a.grad = g
        average_gradients(p_arch)
        if cfg.decouple and self.has_bt:                     # Eq. 4.51 with dL/dalpha~^t
            grad_psi = tp.psi_gradient(torch.stack([a.grad for a in p_arch[:2]]),
                                       self.bt_alpha, self.bt_mask, self.eta)
            self.psi = tp.psi_update(self.psi, grad_psi, cfg.eta_psi)
        if cfg.tangent and cfg.child_arch_batch == "val":    # Eq. 4.29 (see tangent_direction)
            tangent = [-a.grad.detach().clone() for a in p_arch]
        self.p_aopt.step()

        # 1b. Parent weight step on the training batch --------------------------------------
        take_tangent = cfg.tangent and cfg.child_arch_batch == "train"
        for a in p_arch:
            a.grad = None
        logits_pt, parent_loss = self._parent_weight_step(xt, yt, p_arch, p_weights,
                                                          arch_grads=take_tangent)
        if take_tangent:                                     # same batch as the Child's pass
            tangent = [-g for g in mean_over_ranks(
                [torch.zeros_like(a) if a.grad is None else a.grad for a in p_arch])]
            for a in p_arch:
                a.grad = None
        return arch_loss.detach(), parent_loss, logits_pv.detach(), logits_pt, tangent

    def _parent_weight_step(self, xt: Tensor, yt: Tensor, p_arch: list[nn.Parameter],
                            p_weights: list[nn.Parameter], *, arch_grads: bool
                            ) -> tuple[Tensor, Tensor]:
        """The Parent's SGD step on the training batch; alpha gets a gradient too only with
        ``arch_grads`` (the single-level Child's tangent). Returns (logits, loss), detached."""
        self.p_wopt.zero_grad(set_to_none=True)
        with contextlib.nullcontext() if arch_grads else _no_grad_for(p_arch):
            logits_pt = self.parent(xt)
            parent_loss = F.cross_entropy(logits_pt, yt)
            weight_step(self.parent, p_weights, self.p_wopt, parent_loss, self.cfg.grad_clip)
        return logits_pt.detach(), parent_loss.detach()

    def _second_order_term(self, x: Tensor, logits: Tensor, g_kl: list[Tensor],
                           tangent: list[Tensor]) -> tuple[list[Tensor], Tensor]:
        """mu dD/dalpha_hat = mu H_G v with v = dD/dg at g = dG/dalpha_hat = -dKL/dalpha_hat
        (Eq. 4.33); ``logits`` are the Child's on batch ``x`` (graph kept). ``g_kl`` must carry
        its graph when second_order == "exact"."""
        c_arch = self.child.arch_parameters()
        g = [-x for x in mean_over_ranks(g_kl)]             # dG/dalpha_hat, all ranks
        d, v = tp.distance_and_direction(tp.flat(g), tp.flat(tangent), self.cfg.distance)
        v = tp.unflat(v, c_arch)
        if self.cfg.second_order == "exact":                 # H_G v = -H_KL v
            hv = [-h for h in tp.exact_hessian_vector_product(g_kl, c_arch, v)]
        elif self.cfg.second_order == "ggn_exact":
            hv = tp.ggn_vector_product(self.child, x, logits, c_arch, v, retain_graph=False)
        else:
            hv = tp.fisher_vector_product(logits, c_arch, v, samples=self.cfg.ggn_samples,
                                          generator=self._generator(), retain_graph=False)
        return [self.cfg.mu * h for h in hv], d

    def _child_arch_step(self, xv: Tensor, logits_pv: Tensor,
                         tangent: list[Tensor] | None) -> tuple[Tensor, Tensor]:
        """alpha_hat <- Adam(dKL/dalpha_hat + mu dD/dalpha_hat) on the validation batch."""
        child = self.child
        c_arch = child.arch_parameters()
        self.c_aopt.zero_grad(set_to_none=True)
        use_d = self.cfg.tangent and tangent is not None
        exact = use_d and self.cfg.second_order == "exact"
        with _no_grad_for(list(child.weight_parameters())), \
                _eager_if_twice(self.cfg.second_order, use_d):
            logits_cv = child(xv)                            # alpha_hat only: no weight grads
            kl_v = tp.kl_parent_child(logits_cv, logits_pv)
            g_kl = tp.grad_or_zeros(kl_v, c_arch, create_graph=exact, retain_graph=use_d)
            d = torch.zeros((), device=kl_v.device)
            total = [g.detach() for g in g_kl]
            if use_d:
                extra, d = self._second_order_term(xv, logits_cv, g_kl, tangent)
                total = [t + e for t, e in zip(total, extra)]
        for a, g in zip(c_arch, total):
            a.grad = g
        average_gradients(c_arch)
        self.c_aopt.step()
        return kl_v.detach(), d

    def _child_weight_step(self, xt: Tensor, logits_pt: Tensor, c_weights: list[nn.Parameter]
                           ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """w_hat <- SGD(KL(p^P || p^C) + lambda_r L_R) on the training batch (Eq. 4.34)."""
        child = self.child
        self.c_wopt.zero_grad(set_to_none=True)
        with _no_grad_for(child.arch_parameters()):
            logits_ct = child(xt)
            kl = tp.kl_parent_child(logits_ct, logits_pt)
            recon = reconstruction_loss(child).to(kl.device) if self.cfg.recon else None
            loss = kl + self.cfg.lambda_r * recon if recon is not None else kl
            weight_step(child, c_weights, self.c_wopt, loss, self.cfg.grad_clip)
        zero = torch.zeros((), device=kl.device)
        return kl.detach(), (recon.detach() if recon is not None else zero), loss.detach(), \
            logits_ct.detach()

    def _child_joint_step(self, xt: Tensor, logits_pt: Tensor, c_weights: list[nn.Parameter],
                          tangent: list[Tensor] | None
                          ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """``child_arch_batch="train"``: one pass on the training batch gives both the weight
        gradient (KL + lambda_r L_R) and the architecture gradient (KL + mu D)."""
        cfg, child = self.cfg, self.child
        c_arch = child.arch_parameters()
        self.c_aopt.zero_grad(set_to_none=True)
        self.c_wopt.zero_grad(set_to_none=True)
        use_d = cfg.tangent and tangent is not None
        exact = use_d and cfg.second_order == "exact"
        with _eager_if_twice(cfg.second_order, use_d):
            logits_ct = child(xt)
            kl = tp.kl_parent_child(logits_ct, logits_pt)
            grads = torch.autograd.grad(kl, c_arch + c_weights, create_graph=exact,
                                        retain_graph=use_d, allow_unused=True)
            g_kl = [torch.zeros_like(a) if g is None else g for g, a in zip(grads, c_arch)]
            d = torch.zeros((), device=kl.device)
            total = [g.detach() for g in g_kl]
            if use_d:
                extra, d = self._second_order_term(xt, logits_ct, g_kl, tangent)
                total = [t + e for t, e in zip(total, extra)]
        for p, g in zip(c_weights, grads[len(c_arch):]):
            p.grad = None if g is None else g.detach()
        loss = kl.detach()
        recon = torch.zeros((), device=kl.device)
        if cfg.recon:
            recon = reconstruction_loss(child).to(kl.device)
            (cfg.lambda_r * recon).backward()
            loss = loss + cfg.lambda_r * recon.detach()
        average_gradients(c_weights)  # before clipping: clip the global batch's gradient
        if cfg.grad_clip > 0:
            nn.utils.clip_grad_norm_(c_weights, cfg.grad_clip)
        self.c_wopt.step()
        for a, g in zip(c_arch, total):
            a.grad = g
        average_gradients(c_arch)
        self.c_aopt.step()
        return kl.detach(), recon.detach(), loss, logits_ct.detach(), d

    # -- results and state ---------------------------------------------------------------------
    def genotype(self) -> Genotype:
        return self.parent.genotype()

    def alphas(self) -> dict[str, list[list[float]]]:
        return {"normal": self.parent.alpha_normal.detach().cpu().tolist(),
                "reduce": self.parent.alpha_reduce.detach().cpu().tolist()}

    def arch_tensors(self) -> dict[str, Tensor]:
        """The Parent's alphas and the Child's (backtracking changes them after the loss)."""
        return {"parent.alpha_normal": self.parent.alpha_normal,
                "parent.alpha_reduce": self.parent.alpha_reduce,
                "child.alpha_normal": self.child.alpha_normal,
                "child.alpha_reduce": self.child.alpha_reduce}

    def state_dict(self) -> dict[str, Any]:
        return {"parent": self.parent.state_dict(), "child": self.child.state_dict(),
                "p_wopt": self.p_wopt.state_dict(), "p_aopt": self.p_aopt.state_dict(),
                "c_wopt": self.c_wopt.state_dict(), "c_aopt": self.c_aopt.state_dict(),
                "psi": self.psi.detach().cpu(), "bt_mask": self.bt_mask.detach().cpu(),
                "bt_alpha": self.bt_alpha.detach().cpu(), "has_bt": bool(self.has_bt),
                "steps": int(self.steps), "init_norms": self.init_norms.detach().cpu(),
                "last_tangent": (None if self.last_tangent is None else
                                 [t.detach().cpu() for t in self.last_tangent])}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.parent.load_state_dict(state["parent"])
        self.child.load_state_dict(state["child"])
        self.p_wopt.load_state_dict(state["p_wopt"])
        self.p_aopt.load_state_dict(state["p_aopt"])
        self.c_wopt.load_state_dict(state["c_wopt"])
        self.c_aopt.load_state_dict(state["c_aopt"])
        dev = self.ctx.device
        self.psi = state["psi"].to(dev).clone()
        self.bt_mask = state["bt_mask"].to(dev).clone()
        self.bt_alpha = state["bt_alpha"].to(dev).clone()
        self.has_bt = bool(state["has_bt"])
        self.steps = int(state["steps"])
        self.init_norms = state["init_norms"].to(dev).clone()
        tangent = state.get("last_tangent")       # absent in checkpoints before parent_every
        self.last_tangent = None if tangent is None else [t.to(dev).clone() for t in tangent]

    def modules(self) -> list[nn.Module]:
        return [self.parent, self.child]

