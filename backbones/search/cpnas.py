"""CP-NAS: Child-Parent NAS for 1-bit CNNs (Zhuo et al., IJCAI 2020; book Algorithm 9).

No public code exists; this is our reading of the paper, with every choice it leaves open
stated here.

Search (Algorithm 9, Eqs. 4.15-4.16)
- A real-valued Parent and a 1-bit Child supernet share the sampled sub-architecture.
- Round r starts with K_r remaining ops on every edge (all edges always have the same count).
  A *sweep* samples, for every edge independently, a random permutation of its K_r remaining
  ops; sample t of the sweep uses the t-th op of every edge's permutation. So within a sweep,
  each remaining op of each edge is sampled exactly once across the K_r samples: "sampling
  without replacement, giving each operation exactly one accuracy for every edge".
- One sample = one epoch: ``begin_epoch`` applies the sample (the supernet masks keep only the
  sampled op per edge, and the masked ops are skipped, not computed with weight 0), ``step``
  trains Parent and Child on it, ``end_epoch`` measures A_P and A_C on the validation loader
  and assigns z = beta_P (A_P - A_C) + A_C (Eq. 4.15, accuracies in percent) to every sampled
  op.
- The book repeats the complete sweep T times per round (``sweeps_per_round``, default 1: the
  paper does not give T), then normalises z_bar = mean over the round's T sweeps with a softmax
  over the remaining ops of each edge (Eq. 4.16) and drops the worst op on every edge.
  K = 8 ops -> 7 rounds -> T * (8+7+...+2) = 35 T sample-epochs (``planned_epochs``).
- 'none': it is a candidate like any other (K = 8, 7 rounds, as in the paper): an edge with
  'none' sampled contributes nothing, so a high z for 'none' means the edge is dispensable.
  But a genotype cannot use 'none' (DARTS excludes it from the final cell), so 'none' is never
  the survivor: in the last round of an edge where 'none' is still among the two remaining ops,
  'none' is the one dropped. ``include_none=False`` instead removes 'none' before the search
  (7 ops, 6 rounds).
- Ties (equal z_bar) drop the lowest op index ('none' first). Ops never sampled in a round
  (only with the ``samples_per_round`` cap) get the mean z_bar of the sampled ones on that edge.
- Genotype (at any time, also mid-search): per edge the best remaining non-'none' op by its
  accumulated score (mean z over every sample of the whole search), per node the two edges with
  the highest such score (DARTS rule, ``parse_alphas``). Before any score exists every score is
  0 and ties resolve to the lowest indices, so a killed run still reports a valid genotype.

Training the Child: cross-entropy + the kernel-level CP loss
  L_CP = cp_weight / 2 * sum_{layers l} sum_{filters c} MSE(H_P[l, c], H_C[l, c])
(the book's form, Eq. 4.17's first term), over the convs of the sampled sub-architecture (cell
preprocessing and the sampled ops; the real stem and classifier are not part of it). H_P is the
Parent's kernel (a fixed target: detached); H_C is the Child's "reconstructed filter"
beta * sign(w) (``cp_kernel="binarized"``, default; gradient through the straight-through
estimator) or its latent real weight (``cp_kernel="latent"``). The book's second term (an
intra-class compactness loss on features) is not included. The Parent trains on cross-entropy.
Both use DARTS' SGD (lr 0.025, momentum 0.9, wd 3e-4) with cosine annealing over all
sample-epochs; no alpha is learned (the masks carry the architecture).

Smoke runs: ``samples_per_round`` caps the samples of each sweep (then not every op is scored
in every round) and ``max_val_batches`` caps the validation batches of each evaluation; the
number of epochs follows (``planned_epochs``). ``epochs`` of the common config is ignored.
"""
from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader

from backbones.genotypes import NUM_EDGES, STEPS, Genotype, parse_alphas
from backbones.operations import PRIMITIVES
from backbones.evaluation import accuracy, evaluate
from backbones.losses import CPKernel, child_kernel, convs, kernel_cp_loss, matching_kernels
from backbones.search.architect import make_weight_optimizer, set_lr, weight_step
from backbones.search.base import (Batch, CommonSearchConfig, SearchContext, SearchMethod,
                                   register_search_method)
from backbones.settings import Count, NonNegativeFloat, NonNegativeInt
from backbones.supernet import Supernet

N_OPS = len(PRIMITIVES)
NONE = PRIMITIVES.index("none")
CELLS = ("normal", "reduce")


class CPNASConfig(CommonSearchConfig):
    #: no weights-only warm-up: CP-NAS's first round already trains every op (sampled) before
    #: any is dropped, and the paper gives it none
    arch_warmup_epochs: Literal[0] = 0
    #: beta_P of Eq. 4.15, z = beta_P (A_P - A_C) + A_C. The paper's value is not recoverable
    #: from the text (its ablation shows accuracy dropping for beta_P >= 2); 0.5 weighs Parent
    #: and Child accuracy equally. NOTE beta_P = 1 makes z = A_P (the Child would not matter).
    beta_p: NonNegativeFloat = 0.5
    #: weight lambda of the kernel-level CP loss (lambda / 2 * sum of per-filter MSEs)
    cp_weight: NonNegativeFloat = 1e-3
    #: "binarized": MSE(parent kernel, beta * sign(child kernel)); "latent": MSE to the latent w
    cp_kernel: CPKernel = "binarized"
    #: T of Algorithm 9: complete without-replacement sweeps per round (paper: unspecified)
    sweeps_per_round: Count = 1
    #: cap on the samples (= epochs) of each sweep; 0 = no cap (every remaining op once)
    samples_per_round: NonNegativeInt = 0
    #: cap on validation batches per Parent/Child evaluation; 0 = the whole loader
    max_val_batches: NonNegativeInt = 0
    #: keep 'none' as a candidate (K = 8, 7 rounds; it never survives) or drop it up front
    include_none: bool = True
    #: ignored: the number of epochs is derived from the rounds (``planned_epochs``)
    epochs: Count = 35


def cp_score(acc_parent: float, acc_child: float, beta_p: float) -> float:
    """Eq. 4.15: z = beta_P (A_P - A_C) + A_C."""
    return beta_p * (acc_parent - acc_child) + acc_child


@register_search_method
class CPNAS(SearchMethod):
    name = "cpnas"
    Config = CPNASConfig

    def __init__(self, cfg: CPNASConfig, ctx: SearchContext) -> None:
        super().__init__(cfg, ctx)
        kw = dict(num_classes=ctx.num_classes, **cfg.supernet_kwargs())
        self.parent = Supernet(binary=False, **kw)
        self.child = Supernet(binary=True, **kw)
        self.parent.to(ctx.device)
        self.child.to(ctx.device)
        self.p_opt = make_weight_optimizer(self.parent, cfg.w_lr, cfg.w_momentum, cfg.w_wd)
        self.c_opt = make_weight_optimizer(self.child, cfg.w_lr, cfg.w_momentum, cfg.w_wd)
        self._pairs = self._kernel_pairs()

        # search state (all of it goes into state_dict)
        self.remaining = torch.ones(2, NUM_EDGES, N_OPS)  # [normal/reduce, edge, op]
        if not cfg.include_none:
            self.remaining[:, :, NONE] = 0
        self.n_start = int(self.remaining[0, 0].sum())
        self.round = 0          # rounds completed (= ops dropped per edge)
        self.sweep = 0          # sweeps completed in this round
        self.t = 0              # samples completed in this sweep
        self.epochs_done = 0
        self.perm = torch.empty(0, dtype=torch.long)  # [2, 14, K] of this sweep, or empty
        self.round_sum = torch.zeros(2, NUM_EDGES, N_OPS, dtype=torch.float64)
        self.round_cnt = torch.zeros(2, NUM_EDGES, N_OPS, dtype=torch.float64)
        self.total_sum = torch.zeros(2, NUM_EDGES, N_OPS, dtype=torch.float64)
        self.total_cnt = torch.zeros(2, NUM_EDGES, N_OPS, dtype=torch.float64)
        self.dropped: list[list[Any]] = []  # [round, cell, edge, op name]
        self.gen = torch.Generator().manual_seed(int(ctx.seed))
        self._apply_masks(self.remaining)

    # -- schedule --------------------------------------------------------------------------
    @property
    def n_rounds(self) -> int:
        return self.n_start - 1

    @property
    def finished(self) -> bool:
        return self.round >= self.n_rounds

    def ops_left(self) -> int:
        """Ops remaining on every edge (the same on all edges)."""
        return self.n_start - self.round

    def samples_in_sweep(self, k: int | None = None) -> int:
        k = self.ops_left() if k is None else k
        cap = self.cfg.samples_per_round
        return min(k, cap) if cap > 0 else k

    def planned_epochs(self) -> int:
        return sum(self.cfg.sweeps_per_round * self.samples_in_sweep(self.n_start - r)
                   for r in range(self.n_rounds))

    # -- masks / sampling ------------------------------------------------------------------
    def _apply_masks(self, masks: Tensor) -> None:
        for net in (self.parent, self.child):
            net.set_masks(masks[0].to(net.mask_normal), masks[1].to(net.mask_reduce),
                          skip_masked=True)

    def _draw_sweep(self) -> Tensor:
        """Per edge a random order of its remaining ops: [2, 14, K] op indices."""
        k = self.ops_left()
        perm = torch.empty(2, NUM_EDGES, k, dtype=torch.long)
        for c in range(2):
            for e in range(NUM_EDGES):
                ops = self.remaining[c, e].nonzero().flatten()
                perm[c, e] = ops[torch.randperm(k, generator=self.gen)]
        return perm

    def current_sample(self) -> Tensor:
        """The op index sampled on every edge for the current epoch: [2, 14]."""
        if self.perm.numel() == 0:
            self.perm = self._draw_sweep()
        return self.perm[:, :, self.t]

    def sample_mask(self, sample: Tensor) -> Tensor:
        mask = torch.zeros(2, NUM_EDGES, N_OPS)
        mask.scatter_(2, sample.unsqueeze(-1), 1.0)
        return mask

    # -- kernel-level CP loss --------------------------------------------------------------
    def _kernel_pairs(self) -> list[tuple[tuple[int, int, int] | None, nn.Conv2d, nn.Conv2d]]:
        """(owner, parent conv, child conv) for every binary conv of the Child's cells; owner is
        (cell, edge, op) for convs inside a candidate op, None for the cell preprocessing."""
        pairs: list[tuple[tuple[int, int, int] | None, nn.Conv2d, nn.Conv2d]] = []

        def add(owner, p_mod: nn.Module, c_mod: nn.Module) -> None:
            matched = matching_kernels(p_mod, c_mod)
            if len(matched) != len(convs(c_mod)):   # inside cells every Child conv is 1-bit
                raise RuntimeError("Parent and Child kernels do not correspond")
            pairs.extend((owner, pc, cc) for pc, cc in matched)

        for i, (pcell, ccell) in enumerate(zip(self.parent.cells, self.child.cells)):
            add(None, pcell.pre0, ccell.pre0)
            add(None, pcell.pre1, ccell.pre1)
            for e, (pm, cm) in enumerate(zip(pcell.edges, ccell.edges)):
                for k, (po, co) in enumerate(zip(pm.ops, cm.ops)):
                    add((i, e, k), po, co)
        return pairs

    def active_kernel_pairs(self) -> list[tuple[Tensor, Tensor]]:
        """(Parent, Child) kernels of the current sub-architecture (unmasked ops); the Child's
        is its binarized kernel (``cp_kernel="binarized"``, the conv's own binarizer) or its
        latent weight (``"latent"``)."""
        out = []
        for owner, pc, cc in self._pairs:
            if owner is not None:
                i, e, k = owner
                active = self.child.cells[i].edges[e].active
                if active is not None and k not in active:
                    continue
            out.append((pc.weight, child_kernel(cc, self.cfg.cp_kernel)))
        return out

    def cp_loss(self) -> Tensor:
        return 0.5 * self.cfg.cp_weight * kernel_cp_loss(self.active_kernel_pairs())

    # -- the loop's hooks ------------------------------------------------------------------
    def begin_epoch(self, epoch: int, total_epochs: int) -> None:
        total = self.planned_epochs()
        lr = self.cfg.weight_lr(min(self.epochs_done, total), total)
        set_lr(self.p_opt, lr)
        set_lr(self.c_opt, lr)
        for net in (self.parent, self.child):
            if not net.training:  # Module.train() walks ~2000 modules: only when needed
                net.train()
        if self.finished:
            self._apply_masks(self.remaining)
        else:
            self._apply_masks(self.sample_mask(self.current_sample()))

    def step(self, train_batch: Batch, val_batch: Batch) -> dict[str, float]:
        x, y = (t.to(self.ctx.device, non_blocking=True) for t in train_batch)
        self.p_opt.zero_grad(set_to_none=True)
        logits_p = self.parent(x)
        loss_p = F.cross_entropy(logits_p, y)
        weight_step(self.parent, list(self.parent.weight_parameters()), self.p_opt, loss_p,
                    self.cfg.grad_clip)
        self.c_opt.zero_grad(set_to_none=True)
        logits_c = self.child(x)
        ce_c = F.cross_entropy(logits_c, y)
        cp = self.cp_loss().to(ce_c.device)
        loss_c = ce_c + cp
        weight_step(self.child, list(self.child.weight_parameters()), self.c_opt, loss_c,
                    self.cfg.grad_clip)
        return {"loss": float(loss_c.detach()), "loss_parent": float(loss_p.detach()),
                "loss_child_ce": float(ce_c.detach()), "loss_cp": float(cp.detach()),
                "train_acc_parent": accuracy(logits_p.detach(), y)[0],
                "train_acc_child": accuracy(logits_c.detach(), y)[0]}

    def end_epoch(self, epoch: int, val_loader: DataLoader) -> dict[str, float]:
        if self.finished:
            return {}
        cap = self.cfg.max_val_batches or None
        acc_p = evaluate(self.parent, val_loader, self.ctx.device, max_batches=cap)[0]
        acc_c = evaluate(self.child, val_loader, self.ctx.device, max_batches=cap)[0]
        return self.record(acc_p, acc_c)

    def record(self, acc_parent: float, acc_child: float) -> dict[str, float]:
        """Assign z to the sampled ops and advance the schedule (prunes at the end of a round).
        Split from ``end_epoch`` so that it can be driven with known accuracies."""
        if self.finished:
            return {}
        z = cp_score(acc_parent, acc_child, self.cfg.beta_p)
        sample = self.current_sample()
        idx = sample.unsqueeze(-1)
        for buf, val in ((self.round_sum, z), (self.total_sum, z),
                         (self.round_cnt, 1.0), (self.total_cnt, 1.0)):
            buf.scatter_add_(2, idx, torch.full(idx.shape, val, dtype=buf.dtype))
        out = {"acc_parent": acc_parent, "acc_child": acc_child, "z": z,
               "round": float(self.round), "ops_left": float(self.ops_left())}
        self.t += 1
        self.epochs_done += 1
        if self.t >= self.samples_in_sweep():
            self.t = 0
            self.sweep += 1
            self.perm = torch.empty(0, dtype=torch.long)
            if self.sweep >= self.cfg.sweeps_per_round:
                self._prune()
                self.sweep = 0
                self.round += 1
                self.round_sum.zero_()
                self.round_cnt.zero_()
                out["ops_left"] = float(self.ops_left())
                if self.finished:
                    self._apply_masks(self.remaining)
        return out

    # -- scores / pruning ------------------------------------------------------------------
    @staticmethod
    def _mean_scores(total: Tensor, count: Tensor, remaining: Tensor) -> Tensor:
        """z_bar per op; remaining ops never sampled get the edge's mean z_bar of sampled ones
        (0 if none). Removed ops are -inf."""
        scored = (count > 0) & (remaining > 0)
        zbar = torch.where(scored, total / count.clamp_min(1), torch.zeros_like(total))
        n_scored = scored.sum(-1, keepdim=True)
        fill = zbar.sum(-1, keepdim=True) / n_scored.clamp_min(1)
        zbar = torch.where(scored, zbar, fill.expand_as(zbar))
        return zbar.masked_fill(remaining == 0, float("-inf"))

    def evaluation_indicator(self) -> Tensor:
        """e(o) of Eq. 4.16: softmax over each edge's remaining ops of this round's z_bar."""
        zbar = self._mean_scores(self.round_sum, self.round_cnt, self.remaining)
        return torch.softmax(zbar, dim=-1)

    def _prune(self) -> None:
        e_ind = self.evaluation_indicator()
        for c in range(2):
            for e in range(NUM_EDGES):
                ops = self.remaining[c, e].nonzero().flatten().tolist()
                if len(ops) <= 1:
                    continue
                if len(ops) == 2 and NONE in ops:
                    worst = NONE  # 'none' never survives (it cannot be in a genotype)
                else:
                    # lowest indicator; ties -> lowest op index (torch.argmin: first minimum)
                    vals = e_ind[c, e, ops]
                    worst = ops[int(torch.argmin(vals))]
                self.remaining[c, e, worst] = 0
                self.dropped.append([self.round, CELLS[c], e, PRIMITIVES[worst]])

    def accumulated_scores(self) -> Tensor:
        """Mean z over the whole search per op ([2, 14, 8]; removed ops -inf)."""
        return self._mean_scores(self.total_sum, self.total_cnt, self.remaining)

    def genotype(self) -> Genotype:
        scores = self.accumulated_scores().float()
        cells = [tuple(parse_alphas(scores[c])) for c in range(2)]
        concat = tuple(range(2, 2 + STEPS))
        meta = {"method": self.name, "rounds_done": self.round, "rounds": self.n_rounds,
                "finished": self.finished}
        return Genotype(cells[0], concat, cells[1], concat, meta)

    def alphas(self) -> dict[str, list[list[float]]]:
        """The Eq. 4.16 indicator over the accumulated scores (14 x 8, 0 for removed ops)."""
        e_ind = torch.softmax(self.accumulated_scores(), dim=-1)
        return {"normal": e_ind[0].tolist(), "reduce": e_ind[1].tolist()}

    # -- state -----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"parent": self.parent.state_dict(), "child": self.child.state_dict(),
                "p_opt": self.p_opt.state_dict(), "c_opt": self.c_opt.state_dict(),
                "remaining": self.remaining.clone(), "round": self.round, "sweep": self.sweep,
                "t": self.t, "epochs_done": self.epochs_done, "perm": self.perm.clone(),
                "round_sum": self.round_sum.clone(), "round_cnt": self.round_cnt.clone(),
                "total_sum": self.total_sum.clone(), "total_cnt": self.total_cnt.clone(),
                "dropped": [list(d) for d in self.dropped],
                "gen_state": self.gen.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.parent.load_state_dict(state["parent"])
        self.child.load_state_dict(state["child"])
        self.p_opt.load_state_dict(state["p_opt"])
        self.c_opt.load_state_dict(state["c_opt"])
        self.remaining = state["remaining"].clone().float().cpu()
        self.round, self.sweep, self.t = int(state["round"]), int(state["sweep"]), int(state["t"])
        self.epochs_done = int(state["epochs_done"])
        self.perm = state["perm"].clone().long().cpu()
        for key in ("round_sum", "round_cnt", "total_sum", "total_cnt"):
            setattr(self, key, state[key].clone().double().cpu())
        self.dropped = [list(d) for d in state["dropped"]]
        self.gen.set_state(state["gen_state"].cpu())
        # the masks buffers came back with the models; re-derive which ops are skipped
        self._apply_masks(torch.stack([self.child.mask_normal, self.child.mask_reduce]).cpu())

    def modules(self) -> list[nn.Module]:
        return [self.parent, self.child]
