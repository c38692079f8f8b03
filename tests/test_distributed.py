"""Search and retraining under `torchrun --nproc_per_node 2` (gloo on CPU), unchanged.

Each rank dumps its own view of the run ($HARNESS_DEBUG_DUMP, see harness.stages.common):
the ranks must agree on alpha, the genotype and the weights; rank 0 alone writes the run's
files, and what it wrote is what every rank computed; each rank reads its own half of the data
(DistributedSampler); retraining wraps the network in DistributedDataParallel.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from backbones.atomic import safe_torch_load
from backbones.genotypes import Genotype
from harness.stages.common import param_digest
from backbones.checkpoint import build_network
from harness_fixtures import (N_TEST, N_TRAIN, TINY_PROFILE, run, search_dir, shared_cifar,
                              torchrun_cmd, train_dir, write_params)

WORLD = 2


def _dumps(folder: Path, stage: str) -> list[dict[str, Any]]:
    out = [json.loads((folder / f"{stage}.rank{r}.json").read_text()) for r in range(WORLD)]
    assert [d["rank"] for d in out] == list(range(WORLD))
    assert all(d["world_size"] == WORLD for d in out)
    return out


def _check_split(parts: list[list[int] | None], n: int) -> None:
    """Each rank drew its own, disjoint share; together they cover the data."""
    assert all(p is not None and len(p) == n // WORLD for p in parts), parts
    seen = [set(p) for p in parts]  # type: ignore[arg-type]
    assert not seen[0] & seen[1]
    assert seen[0] | seen[1] == set(range(n))


@pytest.fixture(scope="module")
def dist_search(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("dist")
    # one search step, then one epoch (two steps) of retraining: two processes share the CPU
    params = write_params(folder, shared_cifar(tmp_path_factory),
                          profile={"search": {"epochs": 1},
                                   "train": {"epochs": 1}})
    dump = folder / "dump"
    res = run(torchrun_cmd(params, "search", "--method", "direct_bnas", "--seed", "0"),
              HARNESS_DEBUG_DUMP=str(dump))
    return {"folder": folder, "params": params, "dump": dump, "res": res}


def test_search_under_torchrun(dist_search: dict[str, Any]) -> None:
    res = dist_search["res"]
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-4000:]
    r0, r1 = _dumps(dist_search["dump"], "search")
    # alpha, the weights and the architecture decision are the same on both ranks
    assert r0["alphas"] == r1["alphas"] and r0["alphas"]["normal"]
    assert r0["weights_digest"] == r1["weights_digest"]
    assert r0["genotype"] == r1["genotype"]
    out = search_dir(dist_search["folder"], "direct_bnas", 0)
    written = (out / "genotype.json").read_text()
    assert written == Genotype.from_dict(r1["genotype"]).to_json()
    # rank 0 alone wrote the run folder (and holds its lock): one copy of each file, no
    # rank-suffixed or temp files
    assert sorted(p.name for p in out.iterdir()) == [".lock", "checkpoint.pt", "dvclive",
                                                    "genotype.json", "metrics.json"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == WORLD
    assert metrics["alphas"] == r1["alphas"]
    assert len(metrics["history"]) == 1
    # each rank searched on its own half of the weight split and of the architecture split
    assert r0["train_sampler"] == r1["train_sampler"] == "DistributedSampler"
    half = N_TRAIN // 2  # train_portion 0.5
    _check_split([r0["train_indices"], r1["train_indices"]], half)
    _check_split([r0["val_indices"], r1["val_indices"]], N_TRAIN - half)


def test_retraining_under_torchrun(dist_search: dict[str, Any]) -> None:
    assert dist_search["res"].returncode == 0, "the distributed search failed"
    folder, dump = dist_search["folder"], dist_search["dump"]
    # "--" ends torchrun's own options: without it torchrun's parser takes `--run` for an
    # abbreviation of its --run-path option and stops ("ambiguous option")
    res = run(torchrun_cmd(dist_search["params"], "train", "--method", "direct_bnas", "--seed", "0",
                           separator=True), HARNESS_DEBUG_DUMP=str(dump))
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-4000:]
    r0, r1 = _dumps(dump, "train")
    assert r0["model_wrapper"] == r1["model_wrapper"] == "DistributedDataParallel"
    assert r0["weights_digest"] == r1["weights_digest"]  # DDP kept the replicas in step
    assert r0["top1"] == r1["top1"]                       # evaluation averaged over ranks
    assert r0["train_sampler"] == "DistributedSampler"
    _check_split([r0["train_indices"], r1["train_indices"]], N_TRAIN)
    _check_split([r0["test_indices"], r1["test_indices"]], N_TEST)
    train = TINY_PROFILE["train"]  # lr scaled by the global batch
    assert r0["lr"] == pytest.approx(train["lr"] * train["batch_size"] * WORLD
                                     / train["lr_scale_batch"])

    out = train_dir(folder, "direct_bnas", 0)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == WORLD
    assert metrics["top1"] == r0["top1"]
    searched = search_dir(folder, "direct_bnas", 0) / "genotype.json"
    assert metrics["genotype"] == str(searched)
    model = safe_torch_load(out / "model.pt")  # what rank 0 wrote is what the ranks trained
    assert model["arch"]["kwargs"]["genotype"] == Genotype.load(searched).to_dict()
    net = build_network(model["arch"])
    net.load_state_dict(model["model"])
    assert param_digest(net) == r0["weights_digest"]
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def _weight_step_rank(rank: int, init_file: str, out_file: str) -> None:
    """One rank of test_weight_step_clips_the_global_gradient (top level: spawn pickles it)."""
    import torch
    import torch.distributed as dist

    from backbones.search.architect import weight_step
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=WORLD)
    model, x, y = _clip_problem()
    half = x.shape[0] // WORLD
    xs, ys = x[rank * half:(rank + 1) * half], y[rank * half:(rank + 1) * half]
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = torch.nn.functional.cross_entropy(model(xs), ys)
    weight_step(model, list(model.parameters()), opt, loss, grad_clip=0.01)
    if rank == 0:
        torch.save({k: v.clone() for k, v in model.state_dict().items()}, out_file)
    dist.destroy_process_group()


def _clip_problem() -> tuple[Any, Any, Any]:
    import torch
    g = torch.Generator().manual_seed(0)
    model = torch.nn.Linear(6, 3)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    return model, torch.randn(8, 6, generator=g), torch.randint(0, 3, (8,), generator=g)


def test_weight_step_clips_the_global_gradient(tmp_path: Path) -> None:
    """2 gloo ranks x 4 samples take exactly the clipped step one process takes on 8 samples
    (gradients are averaged over ranks before clipping, as DDP does)."""
    import torch
    import torch.multiprocessing as mp

    from backbones.search.architect import weight_step
    out = tmp_path / "rank0.pt"
    mp.spawn(_weight_step_rank, args=(str(tmp_path / "init"), str(out)), nprocs=WORLD)
    model, x, y = _clip_problem()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = torch.nn.functional.cross_entropy(model(x), y)
    weight_step(model, list(model.parameters()), opt, loss, grad_clip=0.01)
    distributed = safe_torch_load(out)
    assert float(torch.nn.utils.get_total_norm(  # the clip was active: it matters
        [p.grad for p in model.parameters()])) == pytest.approx(0.01, rel=1e-4)
    for k, v in model.state_dict().items():
        assert torch.allclose(distributed[k], v, atol=1e-6), k
