"""Classification accuracy: one evaluation loop for supernet validation during search
(CP-NAS scores sampled sub-networks with it) and for the test set after retraining."""
from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import Tensor, nn

from backbones.distributed import all_reduce_values


def correct_topk(logits: Tensor, target: Tensor, topk: Sequence[int] = (1,)) -> list[int]:
    """Number of samples whose label is among the k best logits, for each k.

    Top-1 is ``argmax``, which returns the first maximal index on ties, so a network with
    constant outputs (a collapsed 1-bit sub-network) scores the same on every run. k > 1
    uses ``topk`` and also counts every top-1 hit, so top-k >= top-1 even when ties make
    ``topk`` pick other indices than ``argmax``."""
    first = logits.argmax(dim=1).eq(target)
    ks = [min(k, logits.shape[1]) for k in topk]
    counts = {1: int(first.sum())}
    if max(ks) > 1:
        hit = logits.topk(max(ks), dim=1).indices.eq(target.view(-1, 1))
        counts.update({k: int((hit[:, :k].any(dim=1) | first).sum()) for k in ks if k > 1})
    return [counts[k] for k in ks]


def accuracy(logits: Tensor, target: Tensor, topk: Sequence[int] = (1,)) -> list[float]:
    """Top-k accuracy of one batch, in percent."""
    n = max(int(target.numel()), 1)
    return [100.0 * c / n for c in correct_topk(logits, target, topk)]


@torch.no_grad()
def evaluate(model: nn.Module, loader: Iterable[tuple[Tensor, Tensor]], device: torch.device,
             topk: Sequence[int] = (1,), max_batches: int | None = None) -> list[float]:
    """Top-k accuracy in percent over the loader (its first ``max_batches`` batches if given),
    in eval mode (the previous mode is restored). Under torch.distributed the hit counts and
    the number of images are summed over ranks, so ranks with unequal shares (an unpadded test
    split) give the accuracy over the whole set. An empty loader raises ValueError."""
    was_training = model.training
    model.eval()
    correct = [0] * len(topk)
    total = 0
    for i, (x, y) in enumerate(loader):
        if max_batches is not None and i >= max_batches:
            break
        x, y = x.to(device), y.to(device)
        correct = [c + n for c, n in zip(correct, correct_topk(model(x), y, topk))]
        total += int(y.numel())
    model.train(was_training)
    counts = all_reduce_values([*correct, total])
    if counts[-1] == 0:
        raise ValueError("evaluation on an empty set: no image to score")
    return [100.0 * c / counts[-1] for c in counts[:-1]]
