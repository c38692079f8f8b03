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


def _eval_rank(rank: int, port: int, folder: str) -> None:
    import os
    from pathlib import Path

    import torch.distributed as dist

    from harness.data import DataConfig
    from harness.data.loaders import _loader
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        # 5 test images on 2 ranks: 3 + 2 without padding; images 0, 1, 2 are right
        data = [(torch.tensor([float(i)]), 0 if i < 3 else 1) for i in range(5)]
        loader = _loader(data, list(range(5)), DataConfig(name="cifar10", root="-", batch_size=2),
                         False, 0, True, "test")

        class FirstClass(nn.Module):
            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return torch.tensor([[1.0, 0.0]]).expand(x.shape[0], 2)

        seen = [int(x) for xb, _ in loader for x in xb]
        top1 = evaluate(FirstClass(), loader, torch.device("cpu"))[0]
        Path(folder, f"rank{rank}.txt").write_text(f"{top1} {seen}")
    finally:
        dist.destroy_process_group()


def test_distributed_evaluation_counts_each_image_once(tmp_path):
    """torch's DistributedSampler pads 5 images to 6 (one counted twice); the test split is
    unpadded and the counts are summed: 3 of 5 right is 60 % on every rank."""
    import json

    import torch.multiprocessing as mp

    from harness_fixtures import free_port
    mp.start_processes(_eval_rank, args=(free_port(), str(tmp_path)), nprocs=2,
                       start_method="fork", join=True)
    results = [(tmp_path / f"rank{r}.txt").read_text().split(" ", 1) for r in (0, 1)]
    assert [float(r[0]) for r in results] == [60.0, 60.0]
    seen = sorted(i for r in results for i in json.loads(r[1]))
    assert seen == [0, 1, 2, 3, 4]


def test_empty_evaluation_is_an_error():
    import pytest
    with pytest.raises(ValueError, match="empty set"):
        evaluate(nn.Linear(1, 2), [], torch.device("cpu"))
