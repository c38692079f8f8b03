"""The contract between a search method and the harness's one training loop.

The loop (``harness.engine.run_loop``) owns epochs, progress bars, checkpoints, resume and NaN
checks; a method owns only what is specific to it: one ``step`` on a (train, val) batch pair,
optional per-epoch work, its state, and the genotype it currently believes in.
Each method declares a ``Config`` (a strict pydantic model: each setting's type and range is
declared once, there); the harness validates params.yaml against it.
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from backbones.distributed import world_size
from backbones.genotypes import Genotype
from backbones.names import Registry, UnknownNameError
from backbones.settings import (Count, Fraction, NonNegativeFloat, NonNegativeInt,
                                PositiveFloat, Settings)

Batch = tuple[Tensor, Tensor]


def cosine_lr(epoch: int, total: int, lr_max: float, lr_min: float) -> float:
    """The DARTS weight schedule: cosine annealing per epoch."""
    if total <= 1:
        return lr_max
    return lr_min + 0.5 * (lr_max - lr_min) * (1 + math.cos(math.pi * epoch / total))


class CommonSearchConfig(Settings):
    """Settings every supernet-based method shares (DARTS defaults, CIFAR-10)."""
    C: Count = 16
    layers: Count = 8
    epochs: Count = 50
    w_lr: PositiveFloat = 0.025
    w_lr_min: NonNegativeFloat = 0.001
    w_momentum: Fraction = 0.9
    w_wd: NonNegativeFloat = 3e-4
    arch_lr: PositiveFloat = 3e-4
    arch_wd: NonNegativeFloat = 1e-3
    grad_clip: NonNegativeFloat = 5.0     # 0: no clipping
    partial_channels: Count = 1
    #: the supernet's stem: cifar (stride 1) or imagenet (PC-DARTS' stride-8 search stem)
    stem: Literal["cifar", "imagenet"] = "cifar"
    #: epochs that train only the weights before the architecture moves (PC-DARTS: 15 on
    #: CIFAR-10, 35 of 50 on ImageNet; DARTS 0). Capped at epochs - 1 so a short run still
    #: takes architecture steps.
    arch_warmup_epochs: NonNegativeInt = 0
    #: epochs of linear weight learning-rate warm-up (PC-DARTS ImageNet: 5, its batch 1024)
    lr_warmup_epochs: NonNegativeInt = 0

    def supernet_kwargs(self) -> dict[str, Any]:
        """The supernet's shape, as every method builds it."""
        return {"C": self.C, "layers": self.layers, "partial_channels": self.partial_channels,
                "stem": self.stem}

    def arch_frozen(self, epoch: int, total_epochs: int) -> bool:
        """True while the architecture is held (weights-only warm-up)."""
        return epoch < max(0, min(self.arch_warmup_epochs, total_epochs - 1))

    def weight_lr(self, epoch: int, total_epochs: int) -> float:
        """The weight learning rate of ``epoch``: cosine from w_lr to w_lr_min over the search,
        times (epoch + 1) / lr_warmup_epochs during the warm-up (PC-DARTS ImageNet)."""
        lr = cosine_lr(epoch, total_epochs, self.w_lr, self.w_lr_min)
        if epoch < self.lr_warmup_epochs:
            lr *= (epoch + 1) / self.lr_warmup_epochs
        return lr


@dataclass
class SearchContext:
    """What the harness tells a method about where it runs."""
    num_classes: int
    device: torch.device
    seed: int = 0
    steps_per_epoch: int = 1
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def distributed(self) -> bool:
        return world_size() > 1


class SearchMethod(ABC):
    """One architecture search method. Subclasses set ``name`` and ``Config``."""

    name: ClassVar[str]
    Config: ClassVar[type[Settings]] = CommonSearchConfig
    #: False for methods that do not look at data (random search): the loop then runs no epochs
    uses_data: ClassVar[bool] = True

    def __init__(self, cfg: Any, ctx: SearchContext) -> None:
        self.cfg = cfg
        self.ctx = ctx

    @abstractmethod
    def step(self, train_batch: Batch, val_batch: Batch) -> dict[str, float]:
        """One search step; returns scalars to log (the key 'loss' is checked for NaN)."""

    def planned_epochs(self) -> int:
        """How many epochs the loop runs (CP-NAS derives it from its rounds; random: 0)."""
        return int(getattr(self.cfg, "epochs", 0)) if self.uses_data else 0

    def begin_epoch(self, epoch: int, total_epochs: int) -> None:
        """Called before each epoch (learning-rate schedules, sampling, ...)."""

    def end_epoch(self, epoch: int, val_loader: DataLoader) -> dict[str, float]:
        """Called after each epoch with the validation loader; returns scalars to log."""
        return {}

    @abstractmethod
    def genotype(self) -> Genotype:
        """The discrete architecture the method currently selects."""

    def alphas(self) -> dict[str, list[list[float]]]:
        """Architecture parameters to record in the metrics file (empty if none)."""
        return {}

    def arch_tensors(self) -> dict[str, torch.Tensor]:
        """The architecture parameters as tensors: checked for NaN/inf after every step and
        before a genotype is written (a method with more than ``alphas()`` shows overrides)."""
        return {k: torch.as_tensor(v, dtype=torch.float64) for k, v in self.alphas().items()}

    @abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: tensors, numbers, strings, lists, dicts only
        (it is saved with torch.save and loaded with weights_only=True)."""

    @abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    def modules(self) -> list[nn.Module]:
        """The networks of the method: moved to the device, counted for memory, and compiled
        by ``search.compile`` (a method whose pass is differentiated twice runs that pass
        under ``torch.compiler.set_stance("force_eager")``, as DCP-NAS does)."""
        return []


class UnknownMethodError(UnknownNameError):
    """An unknown search method name."""


#: search methods by name; the built-ins (one module each) register on the first lookup
SEARCH_METHODS: Registry[type[SearchMethod]] = Registry(
    "search method", UnknownMethodError,
    builtins=tuple(f"backbones.search.{m}" for m in ("cpnas", "darts", "dcpnas", "direct",
                                                      "random_search")))


def register_search_method(cls: type[SearchMethod]) -> type[SearchMethod]:
    return SEARCH_METHODS.register(cls.name)(cls)


def list_search_methods() -> list[str]:
    return SEARCH_METHODS.names()


def get_search_method(name: str) -> type[SearchMethod]:
    return SEARCH_METHODS.get(name)


def create_search_method(name: str, cfg: Any, ctx: SearchContext) -> SearchMethod:
    return get_search_method(name)(cfg, ctx)
