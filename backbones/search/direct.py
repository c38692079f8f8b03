"""Direct BNAS baseline: DARTS first-order bi-level search run directly on the 1-bit supernet
with cross-entropy (no Parent, no distillation): the naive way to search binary cells."""
from __future__ import annotations

from typing import Any

from torch import nn

from backbones.genotypes import Genotype
from backbones.search.architect import (first_order_arch_step, make_arch_optimizer,
                                        make_weight_optimizer, set_lr, weight_step)
from backbones.search.base import (Batch, CommonSearchConfig, SearchContext, SearchMethod,
                                   register_search_method)
from backbones.supernet import Supernet


class SupernetSearch(SearchMethod):
    """Shared plumbing for single-supernet bi-level methods (direct BNAS, DARTS, PC-DARTS)."""

    binary: bool = True
    Config = CommonSearchConfig

    def __init__(self, cfg: CommonSearchConfig, ctx: SearchContext) -> None:
        super().__init__(cfg, ctx)
        self.model = self.supernet_class()(num_classes=ctx.num_classes, binary=self.binary,
                                           **cfg.supernet_kwargs()).to(ctx.device)
        self.w_opt = make_weight_optimizer(self.model, cfg.w_lr, cfg.w_momentum, cfg.w_wd)
        self.a_opt = make_arch_optimizer(self.model, cfg.arch_lr, cfg.arch_wd)
        self.arch_frozen = False

    def supernet_class(self) -> type[Supernet]:
        return Supernet

    def begin_epoch(self, epoch: int, total_epochs: int) -> None:
        set_lr(self.w_opt, self.cfg.weight_lr(epoch, total_epochs))
        self.arch_frozen = self.cfg.arch_frozen(epoch, total_epochs)
        self.model.train()

    def arch_step(self, train_batch: Batch, val_batch: Batch) -> float:
        return first_order_arch_step(self.model, self.a_opt, val_batch)

    def step(self, train_batch: Batch, val_batch: Batch) -> dict[str, float]:
        out = {}
        if not self.arch_frozen:     # warm-up epochs: weights only, nothing to log for alpha
            out["arch_loss"] = self.arch_step(train_batch, val_batch)
        x, y = train_batch
        self.w_opt.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(self.model(x), y)
        weight_step(self.model, list(self.model.weight_parameters()), self.w_opt, loss,
                    self.cfg.grad_clip)
        return {"loss": float(loss.detach()), **out}

    def genotype(self) -> Genotype:
        return self.model.genotype()

    def alphas(self) -> dict[str, list[list[float]]]:
        return {"normal": self.model.alpha_normal.detach().cpu().tolist(),
                "reduce": self.model.alpha_reduce.detach().cpu().tolist()}

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "w_opt": self.w_opt.state_dict(),
                "a_opt": self.a_opt.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.w_opt.load_state_dict(state["w_opt"])
        self.a_opt.load_state_dict(state["a_opt"])

    def modules(self) -> list[nn.Module]:
        return [self.model]


@register_search_method
class DirectBNAS(SupernetSearch):
    name = "direct_bnas"
    binary = True
