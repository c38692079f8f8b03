"""Random-search baseline: a genotype drawn uniformly from the space with the run's seed.
It looks at no data, so its search cost is the cost of drawing it."""
from __future__ import annotations

from typing import Any

import torch

from backbones.genotypes import Genotype, random_genotype
from backbones.search.base import Batch, SearchContext, SearchMethod, register_search_method
from backbones.settings import Settings


class RandomConfig(Settings):
    """No settings: the genotype depends on the run's seed only."""


@register_search_method
class RandomSearch(SearchMethod):
    name = "random"
    Config = RandomConfig
    uses_data = False

    def __init__(self, cfg: RandomConfig, ctx: SearchContext) -> None:
        super().__init__(cfg, ctx)
        gen = torch.Generator().manual_seed(ctx.seed)
        self._genotype = random_genotype(gen)

    def step(self, train_batch: Batch, val_batch: Batch) -> dict[str, float]:
        raise RuntimeError("random search takes no steps")

    def genotype(self) -> Genotype:
        return self._genotype

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass
