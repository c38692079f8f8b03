"""The backbone contract for networks made of a stem and a list of stages (Bi-Real ResNet-18,
ReActNet-A): one definition of which maps come out, the pooled embedding and the logits."""
from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn


def select_out_indices(n_stages: int, out_indices: Sequence[int] | None,
                       default: Sequence[int]) -> tuple[int, ...]:
    """Sorted, de-duplicated stage indices (negative ones counted from the end)."""
    wanted = default if out_indices is None else out_indices
    bad = [i for i in wanted if not -n_stages <= i < n_stages]
    if bad:
        raise ValueError(f"out_indices {bad} out of range for {n_stages} stages")
    return tuple(sorted({i % n_stages for i in wanted}))


class StagedBackbone(nn.Module):
    """``stem``, ``stages``, ``out_indices``, ``global_pooling`` and ``classifier`` set by the
    subclass; ``forward_features`` returns the outputs of the stages in ``out_indices``."""

    stem: nn.Module
    stages: nn.ModuleList
    out_indices: tuple[int, ...]
    global_pooling: nn.Module
    classifier: nn.Module

    def stage_modules(self) -> list[nn.Module]:
        """[stem, stage 1, ...]: what ``frozen_stages`` of a detector freezes."""
        return [self.stem, *self.stages]

    def _run(self, x: Tensor, last: int) -> list[Tensor]:
        x = self.stem(x)
        outs = []
        for stage in self.stages[:last + 1]:
            x = stage(x)
            outs.append(x)
        return outs

    def forward_features(self, x: Tensor) -> tuple[Tensor, ...]:
        outs = self._run(x, max(self.out_indices))
        return tuple(outs[i] for i in self.out_indices)

    def forward_embedding(self, x: Tensor) -> Tensor:
        """Global-pooled last-stage features (``num_features``), used by re-ID."""
        return self.global_pooling(self._run(x, len(self.stages) - 1)[-1]).flatten(1)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.forward_embedding(x))
