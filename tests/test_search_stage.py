"""The search stage's batch pairing (harness/stages/search.py)."""
import torch
from torch.utils.data import DataLoader, Dataset

from harness.stages.search import SearchTask, repeat_loader


class _Augmented(Dataset):
    """Each access draws a new 'augmentation' (random noise), as a real transform does."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int):
        return torch.rand(3) + i, i


def test_validation_batches_are_redrawn_each_pass_not_cached():
    """itertools.cycle would keep the first pass's batches and replay them (same
    augmentations, an epoch of batches in memory); every pass must draw new ones."""
    g = torch.Generator().manual_seed(0)
    val = DataLoader(_Augmented(), batch_size=2, shuffle=True, generator=g)
    train = DataLoader(_Augmented(), batch_size=1)
    task = SearchTask(method=None, train_loader=train, val_loader=val,  # type: ignore[arg-type]
                      device=torch.device("cpu"), seed=0, max_steps=None)
    pairs = list(task.batches(0))
    assert len(pairs) == 4   # 4 train batches, the 2-batch val loader is passed twice
    first, second = [p[1][0] for p in pairs[:2]], [p[1][0] for p in pairs[2:]]
    assert not any(torch.equal(a, b) for a in first for b in second)


def test_repeat_loader_stops_on_an_empty_loader():
    assert list(repeat_loader([])) == []
    it = repeat_loader([1, 2])
    assert [next(it) for _ in range(5)] == [1, 2, 1, 2, 1]
