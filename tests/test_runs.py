"""Run folders (harness/runs.py): names that stay inside runs/, one process per folder, and the
leftovers of killed writes removed."""
from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import yaml

from backbones.atomic import atomic_write_text
from harness.runs import (RunLockedError, RunNameError, check_name, remove_stale_temps,
                          run_folder, run_lock)
from harness_fixtures import (assert_user_error, run_cli_inprocess, search_dir, shared_cifar,
                              write_params)


@pytest.mark.parametrize("name", ["dcpnas", "dcpnas-noTC-noLR", "bireal_resnet18", "a.b", "0x"])
def test_plain_names_pass(name: str) -> None:
    assert check_name(name, "run") == name


@pytest.mark.parametrize("name", ["../x", "a/b", ".", "..", "", "-x", ".hidden", "a b",
                                  "pkg.mod:fn", "x\n"])
def test_names_that_are_not_one_folder_are_refused(name: str) -> None:
    with pytest.raises(RunNameError, match="not a valid run name"):
        check_name(name, "run")


def test_run_folder_has_the_profile_and_stays_inside(tmp_path: Path) -> None:
    assert run_folder(tmp_path, "smoke", "search", "dcpnas", 3) == \
        tmp_path / "smoke" / "search" / "dcpnas" / "seed3"
    with pytest.raises(RunNameError):
        run_folder(tmp_path, "..", "search", "dcpnas", 0)
    with pytest.raises(RunNameError, match="negative"):
        run_folder(tmp_path, "smoke", "search", "dcpnas", -3)


def test_an_ablation_name_that_leaves_runs_is_a_config_error(tmp_path: Path) -> None:
    params = write_params(tmp_path, "unused", top={
        "ablations": {"../../evil": {"method": "dcpnas", "table": "x", "set": {}}}})
    code, err = run_cli_inprocess(params, "search", "--method", "../../evil")
    assert_user_error(code, err, "ablations", "'../../evil' is not a valid run name")
    assert not (tmp_path / "evil").exists()


def test_a_transfer_label_that_leaves_runs_is_refused(tmp_path: Path) -> None:
    params = write_params(tmp_path, "unused")
    code, err = run_cli_inprocess(params, "transfer", "--task", "reid", "--backbone", "../x",
                                  "--checkpoint", str(tmp_path / "none.pt"))
    assert code == 2 and "Traceback" not in err, err
    assert not (tmp_path / "runs").exists()


def test_negative_seed_is_refused_by_the_parser(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    from harness import cli
    with pytest.raises(SystemExit) as exc:
        cli.main(["--params", str(tmp_path / "p.yaml"), "search", "--method", "x", "--seed",
                  "-3"])
    assert exc.value.code == 2
    assert "expected an integer >= 0" in capsys.readouterr().err


def test_second_run_on_a_folder_is_refused_with_the_holder(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    with run_lock(folder, "the first"):
        with pytest.raises(RunLockedError, match=f"pid {os.getpid()}"):
            with run_lock(folder, "the second"):
                pass
    with run_lock(folder, "a later one"):     # released with the first
        pass


def test_two_concurrent_searches_second_refused(tmp_path: Path,
                                                tmp_path_factory: pytest.TempPathFactory) -> None:
    params = write_params(tmp_path, shared_cifar(tmp_path_factory))
    out = search_dir(tmp_path, "direct_bnas", 0)
    with run_lock(out, "a search that is running"):
        code, err = run_cli_inprocess(params, "search", "--method", "direct_bnas", "--seed",
                                      "0")
    assert_user_error(code, err, "is in use by another run", f"pid {os.getpid()}")
    assert not (out / "metrics.json").exists() and not (out / "checkpoint.pt").exists()


def test_lock_removes_what_killed_writes_left(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / ".metrics.json.abc123.tmp").write_text("half")
    (folder / ".binary.tmp-xyz").mkdir()
    (folder / ".binary.tmp-xyz" / "model.xml").write_text("half")
    (folder / "metrics.json").write_text("{}")
    with run_lock(folder, "x"):
        pass
    assert sorted(p.name for p in folder.iterdir()) == [".lock", "metrics.json"]
    assert remove_stale_temps(tmp_path / "missing") == []


def test_atomic_files_follow_the_umask(tmp_path: Path) -> None:
    atomic_write_text(tmp_path / "a.txt", "x")
    mode = stat.S_IMODE((tmp_path / "a.txt").stat().st_mode)
    from backbones.atomic import UMASK
    assert mode == 0o666 & ~UMASK
    plain = tmp_path / "b.txt"
    plain.write_text("x")
    assert mode == stat.S_IMODE(plain.stat().st_mode)


def test_bad_thread_count_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    params = write_params(tmp_path, "unused")
    monkeypatch.setenv("HARNESS_THREADS", "abc")
    code, err = run_cli_inprocess(params, "list")
    assert_user_error(code, err, "HARNESS_THREADS='abc'", "whole number")


def test_params_profile_names_are_checked(tmp_path: Path) -> None:
    params = write_params(tmp_path, "unused")
    doc = yaml.safe_load(params.read_text())
    doc["profiles"]["a/b"] = doc["profiles"]["smoke"]
    params.write_text(yaml.safe_dump(doc))
    code, err = run_cli_inprocess(params, "search", "--method", "direct_bnas")
    assert_user_error(code, err, "profiles", "'a/b' is not a valid run name")
