"""The one evaluation loop (search validation and retraining test set)."""
import torch
from torch import nn

from backbones.evaluation import accuracy, correct_topk, evaluate


def test_topk_counts_and_first_index_on_ties():
    logits = torch.tensor([[0.1, 0.9, 0.0],    # best 1, then 0
                           [0.5, 0.5, 0.5],    # all tied: top-1 is the first index, 0
                           [0.2, 0.1, 0.7]])   # best 2, then 0
    target = torch.tensor([0, 0, 1])
    assert correct_topk(logits, target, (1, 2, 5)) == [1, 2, 3]
    assert accuracy(logits, target, (1, 2)) == [100 / 3, 200 / 3]


class _Fixed(nn.Module):
    """Returns the logits it is given in its input; records the mode it ran in."""

    def __init__(self) -> None:
        super().__init__()
        self.modes: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.modes.append(self.training)
        return x


def test_evaluate_pools_batches_caps_them_and_restores_the_mode():
    batches = [(torch.eye(3), torch.tensor([0, 1, 2])),            # 3 right
               (torch.eye(3), torch.tensor([1, 1, 1])),            # 1 right
               (torch.eye(3), torch.tensor([2, 0, 1]))]            # 0 right
    model = _Fixed().train()
    assert evaluate(model, batches, torch.device("cpu"))[0] == 100 * 4 / 9
    assert evaluate(model, batches, torch.device("cpu"), max_batches=2)[0] == 100 * 4 / 6
    assert model.modes == [False] * 5 and model.training


def test_top_k_counts_every_top_1_hit_even_when_ties_pick_other_indices():
    logits = torch.zeros(4, 10)          # a collapsed network: every class tied
    target = torch.tensor([0, 3, 0, 9])  # argmax is class 0: two top-1 hits
    top1, top5, top10 = correct_topk(logits, target, (1, 5, 10))
    assert top1 == 2 and top1 <= top5 <= top10 == 4
