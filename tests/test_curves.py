"""Per-epoch curves through dvclive (harness/curves.py): written by the search and training
stages, one row per epoch, rendered by `dvc plots show` with no script of ours."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.curves import write_curves
from harness_fixtures import reference_search, search_dir

DVC = str(Path(sys.executable).with_name("dvc"))


def test_a_search_writes_its_curves_and_dvc_renders_them(tmp_path: Path,
                                                         tmp_path_factory: pytest.TempPathFactory
                                                         ) -> None:
    ref = reference_search(tmp_path_factory)
    out = search_dir(ref["params"].parent, "direct_bnas", 0)
    metrics = out / "dvclive" / "plots" / "metrics"
    rows = (metrics / "arch_loss.tsv").read_text().splitlines()
    assert rows[0].split("\t") == ["step", "arch_loss"]
    assert len(rows) - 1 == len(ref["metrics"]["history"])
    last = json.loads((out / "dvclive" / "metrics.json").read_text())
    assert last["loss"] == pytest.approx(ref["metrics"]["history"][-1]["loss"])
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run([DVC, "init", "--no-scm", "-q"], cwd=repo, check=True)
    (repo / "curves").symlink_to(metrics, target_is_directory=True)
    shown = subprocess.run([DVC, "plots", "show", "--json", "curves"], cwd=repo,
                           capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert "arch_loss" in shown.stdout and "errors" not in json.loads(shown.stdout)


def test_curves_are_rewritten_from_the_history(tmp_path: Path) -> None:
    history = [{"epoch": 0.0, "loss": 2.0, "top1": 10.0}, {"epoch": 1.0, "loss": float("nan")}]
    write_curves(tmp_path, history)
    write_curves(tmp_path, history)     # again (a resumed run): no epoch twice
    assert (tmp_path / "plots/metrics/loss.tsv").read_text().splitlines() == [
        "step\tloss", "0\t2.0"]          # a non-finite value is not plotted
    assert len((tmp_path / "plots/metrics/top1.tsv").read_text().splitlines()) == 2
    write_curves(tmp_path / "empty", [])
    assert (tmp_path / "empty/plots/metrics").is_dir()


def test_every_nth_step_is_curved_too(tmp_path: Path,
                                      tmp_path_factory: pytest.TempPathFactory) -> None:
    """``search.log_every`` = 1: the tiny search's 2 epochs x 1 step give 2 step rows at global
    steps 1 and 2 (dvclive-steps/), beside the 2 epoch rows."""
    from harness_fixtures import run_cli_inprocess, shared_cifar, write_params
    params = write_params(tmp_path, shared_cifar(tmp_path_factory),
                          profile={"search": {"log_every": 1}})
    code, err = run_cli_inprocess(params, "search", "--method", "direct_bnas", "--seed", "0")
    assert code == 0, err
    out = search_dir(tmp_path, "direct_bnas", 0)
    rows = (out / "dvclive-steps/plots/metrics/loss.tsv").read_text().splitlines()
    assert [r.split("\t")[0] for r in rows] == ["step", "1", "2"]
    assert len((out / "dvclive/plots/metrics/loss.tsv").read_text().splitlines()) == 3


def test_curves_leave_a_plain_git_repository_alone(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Run inside a git repository without DVC (and without commits), dvclive alone would
    `dvc init` it and stage the files, then fail ("Empty git repo"); the harness's curves
    need no repository and touch none."""
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    monkeypatch.chdir(tmp_path)
    write_curves(tmp_path / "run" / "dvclive", [{"epoch": 0, "loss": 1.0},
                                                {"epoch": 1, "loss": 0.5}])
    assert (tmp_path / "run/dvclive/plots/metrics/loss.tsv").read_text().count("\n") == 3
    assert not (tmp_path / ".dvc").exists()
    staged = subprocess.run(["git", "status", "--porcelain"], cwd=tmp_path, check=True,
                            capture_output=True, text=True).stdout
    assert ".dvc" not in staged
