"""NaN/inf stops cleanly everywhere: every logged scalar and the architecture parameters are
checked each step, all ranks stop together with one message, no genotype / checkpoint /
metrics of a broken run is written (harness/engine.py, detection and re-ID guards)."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from backbones.genotypes import GenotypeError, parse_alphas
from backbones.resume import NonFiniteLossError, check_finite
from harness.engine import run_loop
from harness_fixtures import (assert_user_error, free_port, run_cli_inprocess, search_dir,
                              shared_cifar, write_params)


class _Task:
    """A loop task whose second epoch logs a NaN in a scalar other than the loss."""

    def __init__(self) -> None:
        self.epoch = 0
        self.alpha = torch.zeros(3)

    def begin_epoch(self, epoch: int, total: int) -> None:
        self.epoch = epoch

    def batches(self, epoch: int) -> list[int]:
        return [0, 1]

    def steps_in_epoch(self) -> int:
        return 2

    def step(self, batch: int) -> dict[str, float]:
        bad = self.epoch == 1 and batch == 1
        return {"loss": 1.0, "arch_loss": math.nan if bad else 0.5}

    def end_epoch(self, epoch: int) -> dict[str, float]:
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {"alpha": self.alpha}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.alpha = state["alpha"]

    def watched(self) -> dict[str, torch.Tensor]:
        return {"alpha": self.alpha}


def test_any_non_finite_scalar_stops_and_keeps_the_last_checkpoint(tmp_path: Path) -> None:
    ckpt = tmp_path / "checkpoint.pt"
    with pytest.raises(NonFiniteLossError, match=r"epoch 1 step 1: non-finite value .* "
                                                 r"arch_loss; the last good checkpoint"):
        run_loop(_Task(), epochs=3, checkpoint=ckpt, desc="t", fingerprint={"s": "1"})
    assert torch.load(ckpt, weights_only=True)["epoch"] == 0


def test_non_finite_architecture_parameters_stop(tmp_path: Path) -> None:
    task = _Task()
    task.alpha = torch.tensor([0.0, math.inf, 0.0])
    with pytest.raises(NonFiniteLossError, match="alpha; no checkpoint had been written yet"):
        run_loop(task, epochs=1, checkpoint=tmp_path / "c.pt", desc="t", fingerprint={})
    assert not (tmp_path / "c.pt").exists()


def test_parse_alphas_refuses_nan() -> None:
    with pytest.raises(GenotypeError, match="NaN or \\+inf"):
        parse_alphas(torch.full((14, 8), math.nan))
    removed = torch.zeros(14, 8)
    removed[:, 0] = -math.inf                 # CP-NAS marks pruned ops -inf: still a cell
    assert len(parse_alphas(removed)) == 8


def test_a_search_whose_alphas_become_nan_writes_no_genotype(
        tmp_path: Path, tmp_path_factory: pytest.TempPathFactory,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from backbones.search.direct import SupernetSearch
    step = SupernetSearch.step

    def nan_step(self: SupernetSearch, *batches: Any) -> dict[str, float]:
        logs = step(self, *batches)
        with torch.no_grad():
            self.model.alpha_normal.fill_(math.nan)   # the loss stays finite
        return logs

    monkeypatch.setattr(SupernetSearch, "step", nan_step)
    params = write_params(tmp_path, shared_cifar(tmp_path_factory))
    code, err = run_cli_inprocess(params, "search", "--method", "direct_bnas", "--seed", "0")
    assert_user_error(code, err, "non-finite value (NaN or inf) in normal")
    out = search_dir(tmp_path, "direct_bnas", 0)
    assert not (out / "genotype.json").exists() and not (out / "metrics.json").exists()
    assert not (out / "checkpoint.pt").exists()


def _rank_main(rank: int, port: int, folder: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        scalars = {"loss": 1.0, "arch_loss": math.nan if rank == 1 else 0.2}
        try:
            check_finite(scalars, {"alpha": torch.zeros(2)}, "step 3")
            msg = "no error"
        except NonFiniteLossError as exc:
            msg = str(exc)
        dist.barrier()     # a rank left waiting in a collective would hang here
        Path(folder, f"rank{rank}.txt").write_text(msg)
    finally:
        dist.destroy_process_group()


def test_all_ranks_stop_with_the_same_message(tmp_path: Path) -> None:
    mp.start_processes(_rank_main, args=(free_port(), str(tmp_path)), nprocs=2,
                       start_method="fork", join=True)
    msgs = [(tmp_path / f"rank{r}.txt").read_text() for r in (0, 1)]
    assert msgs[0] == msgs[1] and "non-finite value (NaN or inf) in arch_loss" in msgs[0]


def test_reid_guard_stops_before_the_epoch_is_saved() -> None:
    from downstream.reid.run import guard_non_finite

    class Engine:
        epoch = 4

        def forward_backward(self, data: Any) -> dict[str, float]:
            return {"loss_x": data}

    engine = Engine()
    guard_non_finite(engine)
    assert engine.forward_backward(0.5) == {"loss_x": 0.5}
    with pytest.raises(NonFiniteLossError, match="re-ID: epoch 4 step 2: .* loss_x"):
        engine.forward_backward(math.nan)


def test_detection_hook_stops_on_a_nan_loss() -> None:
    from downstream.detection.workdir import make_finite_hook

    class Runner:
        epoch, iter = 2, 17

    hook = make_finite_hook()
    assert hook.priority == "VERY_HIGH"
    hook.after_train_iter(Runner(), 0, outputs={"loss": torch.tensor(0.3),
                                                "loss_cls": torch.tensor(0.1)})
    with pytest.raises(NonFiniteLossError, match="detection: epoch 2 iteration 17.*loss_bbox"):
        hook.after_train_iter(Runner(), 0, outputs={"loss": torch.tensor(0.3),
                                                    "loss_bbox": torch.tensor(math.inf)})


def test_nan_records_are_refused_by_the_schema(tmp_path: Path) -> None:
    """The last line of defence: no metrics.json holds a NaN (pydantic allow_inf_nan=False)."""
    from harness.records import RecordError, parse_record
    rec = {"stage": "reid", "method": "m", "seed": 0, "profile": "smoke", "dataset": "d",
           "device": "cpu", "device_kind": "cpu", "loss": "softmax", "mAP": "NaN",
           "rank1": 1.0, "rank5": 1.0, "rank10": 1.0}
    with pytest.raises(RecordError):
        parse_record(json.dumps(rec).replace('"NaN"', "NaN"), "x.json")
