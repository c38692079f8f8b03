"""Resume after a kill, and atomic writes.

A search and a retraining are started as subprocesses (`python -m harness.cli ...`),
SIGKILLed during their second epoch (after the first epoch's checkpoint exists) and started
again with the same command line (through harness.cli.main in the test process, which spares a
second start of Python and torch): they resume from the checkpoint and finish; the resumed
runs end with the same genotype JSON (byte for byte), alpha, history and weights as
uninterrupted ones.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from backbones.atomic import atomic_torch_save, atomic_write_json, safe_torch_load
from backbones.genotypes import DARTS_V2
from harness_fixtures import (REPO, cli_cmd, env, kill_after_checkpoint, reference_search,
                              run_cli_inprocess, search_dir, shared_cifar, squash, train_dir,
                              write_params)


def test_killed_search_resumes_to_the_same_genotype(tmp_path: Path,
                                                    tmp_path_factory: pytest.TempPathFactory
                                                    ) -> None:
    ref = reference_search(tmp_path_factory)
    params = write_params(tmp_path, shared_cifar(tmp_path_factory))
    out = search_dir(tmp_path, "direct_bnas", 0)
    cmd_args = (params, "search", "--method", "direct_bnas", "--seed", "0")
    cmd = cli_cmd(*cmd_args)
    kill_after_checkpoint(cmd, out / "checkpoint.pt", tmp_path / "killed.log")
    state = safe_torch_load(out / "checkpoint.pt")
    assert state["epoch"] == 0, "killed after the second epoch's checkpoint: not mid-run"
    assert not (out / "genotype.json").exists()

    # the same command again (in this process: it spares a second start of Python and torch)
    code, err = run_cli_inprocess(*cmd_args)
    assert code == 0, err
    assert squash(f"resuming search direct_bnas s0 from {out / 'checkpoint.pt'}") in squash(err)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["resumed_from_epoch"] == 0
    assert [h["epoch"] for h in metrics["history"]] == [0.0, 1.0]
    assert (out / "genotype.json").read_bytes() == ref["genotype"]
    # the curves (dvclive) hold each epoch once, as the checkpoint's history does
    loss = (out / "dvclive/plots/metrics/loss.tsv").read_text().splitlines()
    assert loss[0].split("\t") == ["step", "loss"] and len(loss) == 1 + 2
    assert metrics["alphas"] == ref["metrics"]["alphas"]
    assert metrics["history"] == ref["metrics"]["history"]


def test_killed_search_with_workers_resumes_bit_identically(
        tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    """num_workers: 2 draws augmentation in worker processes: their seeds come from (seed,
    epoch, worker id), so a run SIGKILLed in its second epoch and resumed ends with the same
    genotype, alphas and history as an uninterrupted one."""
    cifar = shared_cifar(tmp_path_factory)
    profile = {"data": {"num_workers": 2}}
    args = ("search", "--method", "direct_bnas", "--seed", "0")
    ref_params = write_params(tmp_path / "uninterrupted", cifar, profile=profile)
    code, err = run_cli_inprocess(ref_params, *args)
    assert code == 0, err
    ref = search_dir(tmp_path / "uninterrupted", "direct_bnas", 0)
    params = write_params(tmp_path / "killed", cifar, profile=profile)
    out = search_dir(tmp_path / "killed", "direct_bnas", 0)
    kill_after_checkpoint(cli_cmd(params, *args), out / "checkpoint.pt", tmp_path / "k.log")
    assert safe_torch_load(out / "checkpoint.pt")["epoch"] == 0
    code, err = run_cli_inprocess(params, *args)
    assert code == 0, err
    assert "resuming" in err
    assert (out / "genotype.json").read_bytes() == (ref / "genotype.json").read_bytes()
    got, want = (json.loads((d / "metrics.json").read_text()) for d in (out, ref))
    assert got["alphas"] == want["alphas"] and got["history"] == want["history"]
    assert got["resumed_from_epoch"] == 0


def test_killed_retraining_resumes(tmp_path: Path,
                                   tmp_path_factory: pytest.TempPathFactory) -> None:
    params = write_params(tmp_path, shared_cifar(tmp_path_factory),
                          profile={"train": {"epochs": 2, "max_steps_per_epoch": 3}})
    genotype = tmp_path / "cell.json"
    DARTS_V2.save(genotype)
    out = train_dir(tmp_path, "darts_v2", 0)
    cmd_args = (params, "train", "--method", "darts_v2", "--seed", "0", "--genotype", str(genotype))
    cmd = cli_cmd(*cmd_args)
    kill_after_checkpoint(cmd, out / "checkpoint_train.pt", tmp_path / "killed.log",
                          delay=0.1)
    killed_at = int(safe_torch_load(out / "checkpoint_train.pt")["epoch"])
    assert killed_at == 0, "killed after the last epoch: not mid-run"
    assert not (out / "model.pt").exists()

    code, err = run_cli_inprocess(*cmd_args)
    assert code == 0, err
    assert squash(f"resuming train darts_v2 s0 train from {out / 'checkpoint_train.pt'}"
                  ) in squash(err)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["resumed_from_epoch"] == {"train": killed_at}
    assert [h["epoch"] for h in metrics["history"]] == [0.0, 1.0]
    assert safe_torch_load(out / "checkpoint_train.pt")["epoch"] == 1
    model = safe_torch_load(out / "model.pt")
    assert model["arch"]["kwargs"]["genotype"] == DARTS_V2.to_dict()
    # the resumed training ends where an uninterrupted one does, to the last bit
    ref_params = write_params(tmp_path / "uninterrupted", shared_cifar(tmp_path_factory),
                              profile={"train": {"epochs": 2, "max_steps_per_epoch": 3}})
    code, err = run_cli_inprocess(ref_params, *cmd_args[1:])
    assert code == 0, err
    ref = safe_torch_load(train_dir(tmp_path / "uninterrupted", "darts_v2", 0) / "model.pt")
    assert ref["model"].keys() == model["model"].keys()
    assert all(torch.equal(ref["model"][k], model["model"][k]) for k in ref["model"])
    ref_metrics = json.loads((train_dir(tmp_path / "uninterrupted", "darts_v2", 0)
                              / "metrics.json").read_text())
    assert ref_metrics["history"] == metrics["history"]


def test_changed_settings_start_over(tmp_path: Path,
                                     tmp_path_factory: pytest.TempPathFactory) -> None:
    """A checkpoint written with other settings is not resumed (DVC keeps it across
    parameter changes): the run says so and starts from scratch."""
    cifar = shared_cifar(tmp_path_factory)
    genotype = tmp_path / "cell.json"
    DARTS_V2.save(genotype)
    args = ("train", "--method", "darts_v2", "--genotype", str(genotype))
    params = write_params(tmp_path, cifar, profile={"train": {"epochs": 1,
                                                              "max_steps_per_epoch": 1}})
    code, err = run_cli_inprocess(params, *args)
    assert code == 0, err
    params = write_params(tmp_path, cifar, profile={"train": {"epochs": 1, "lr": 0.001,
                                                              "max_steps_per_epoch": 1}})
    code, err = run_cli_inprocess(params, *args)
    assert code == 0, err
    assert squash("written with other inputs (changed: settings); starting train darts_v2 s0 "
                  "train from scratch") in squash(err)
    metrics = json.loads((train_dir(tmp_path, "darts_v2", 0) / "metrics.json").read_text())
    assert metrics["resumed_from_epoch"] == {"train": None}


# ---- atomic writes ------------------------------------------------------------------------

def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


@pytest.mark.parametrize("fail_in", ["write", "fsync", "replace"])
def test_failed_write_keeps_previous_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          fail_in: str) -> None:
    """An exception (or a KeyboardInterrupt) at any point of an atomic write leaves the
    previous file intact and removes the temporary file."""
    import backbones.atomic as atomic
    target = tmp_path / "metrics.json"
    atomic_write_json(target, {"top1": 1.0})
    before = target.read_bytes()

    class Boom(KeyboardInterrupt):
        pass

    def boom(*args: object, **kwargs: object) -> None:
        raise Boom("killed mid-write")

    if fail_in == "write":
        real_fdopen = os.fdopen

        def fdopen(fd: int, *a: object, **k: object):  # a file whose write fails halfway
            fh = real_fdopen(fd, *a, **k)
            real_write = fh.write

            def write(data: bytes) -> int:
                real_write(data[: len(data) // 2])
                raise Boom("killed mid-write")
            fh.write = write  # type: ignore[method-assign]
            return fh
        monkeypatch.setattr(atomic.os, "fdopen", fdopen)
    else:
        monkeypatch.setattr(atomic.os, fail_in, boom)
    with pytest.raises(Boom):
        atomic_write_json(target, {"top1": 99.0, "pad": "x" * 10_000})
    monkeypatch.undo()
    assert target.read_bytes() == before
    assert _leftovers(tmp_path) == []


def test_failed_checkpoint_save_keeps_previous_checkpoint(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    import backbones.atomic as atomic
    ckpt = tmp_path / "checkpoint.pt"
    atomic_torch_save({"epoch": 0, "w": torch.ones(3)}, ckpt)
    monkeypatch.setattr(atomic.os, "replace",
                        lambda *a, **k: (_ for _ in ()).throw(OSError(28, "No space left")))
    with pytest.raises(OSError):
        atomic_torch_save({"epoch": 1, "w": torch.zeros(3)}, ckpt)
    monkeypatch.undo()
    state = safe_torch_load(ckpt)
    assert state["epoch"] == 0 and torch.equal(state["w"], torch.ones(3))
    assert _leftovers(tmp_path) == []


_WRITER = r"""
import sys, types
sys.modules["torch"] = types.ModuleType("torch")  # not needed for text; spares its import
from backbones.atomic import atomic_write_text
path = sys.argv[1]
atomic_write_text(path, "old\n")
print("ready", flush=True)
while True:  # rewrite it with a large content until killed
    atomic_write_text(path, "new" * 20_000_000)
"""


def test_sigkill_during_write_keeps_a_whole_file(tmp_path: Path) -> None:
    """A real SIGKILL while a large file is being written: the target holds the old or the
    new content in full, never a part (the killed process's temporary file may remain)."""
    target = tmp_path / "genotype.json"
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(target)], cwd=REPO, env=env(),
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 60
        while not list(tmp_path.glob(".genotype.json.*.tmp")):  # a write is under way
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.005)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    text = target.read_text()
    assert text in ("old\n", "new" * 20_000_000)
