"""What a result records and when a run may resume (harness/provenance.py, harness/engine.py):
every record carries its provenance; a change of code, settings, versions, data or world size
is never resumed; dvc.yaml's code deps are the fingerprinted files."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from backbones.resume import changed_parts
from harness import provenance as P
from harness.records import read_record
from harness_fixtures import (REPO, reference_search, run_cli_inprocess, search_dir,
                              shared_cifar, squash, write_params)


def test_dvc_code_deps_are_the_fingerprinted_code() -> None:
    """DVC reruns a stage exactly when the harness refuses to resume it: the two lists agree."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    where = {"search": "search", "train": "train", "train_reference": "train",
             "search_imagenet": "search", "train_imagenet": "train",
             "detect": "detect", "reid": "reid", "deploy": "deploy",
             "deploy_paper_size": "deploy"}
    code_roots = ("backbones", "harness", "downstream")
    for stage, kind in where.items():
        deps = [d for d in stages[stage]["deps"] if d.split("/")[0] in code_roots]
        assert sorted(deps) == sorted(P.STAGE_CODE[kind]), stage
        for rel in deps:
            assert (REPO / rel).exists(), rel


def test_code_digest_follows_a_change_of_the_stages_code(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    copy = tmp_path / "repo"
    for rel in P.STAGE_CODE["search"]:
        src = REPO / rel
        (copy / rel).parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, copy / rel, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, copy / rel)
    monkeypatch.setattr(P, "REPO", copy)
    P.code_digest.cache_clear()
    try:
        before = P.code_digest("search")
        (copy / "backbones" / "__pycache__").mkdir(exist_ok=True)
        (copy / "backbones" / "__pycache__" / "x.pyc").write_bytes(b"ignored")
        assert P.code_digest.__wrapped__("search") == before
        op = copy / "backbones" / "operations.py"
        op.write_text(op.read_text() + "\n# a change\n")
        assert P.code_digest.__wrapped__("search") != before
    finally:
        P.code_digest.cache_clear()


def test_changed_parts_names_what_changed() -> None:
    old = {"settings": "a", "code": "b", "versions": "c", "world_size": "1"}
    assert changed_parts(old, dict(old)) == []
    assert changed_parts(old, {**old, "code": "x", "world_size": "2"}) == ["code",
                                                                          "world_size"]
    assert changed_parts("0123abcd", old) == ["format (written by an older version of the "
                                              "harness)"]


def test_data_digest_covers_files_and_the_sample(tmp_path: Path) -> None:
    (tmp_path / "a.bin").write_bytes(b"12345")
    d1 = P.data_digest(tmp_path, {"train": [0, 1, 2]})
    assert d1["files"] == 1 and d1["bytes"] == 5 and d1["mode"] == "content"
    assert P.data_digest(tmp_path, {"train": [0, 1, 3]})["sample"] != d1["sample"]
    (tmp_path / "a.bin").write_bytes(b"12346")            # same size, other content
    assert P.data_digest(tmp_path, {"train": [0, 1, 2]})["digest"] != d1["digest"]
    (tmp_path / ".incomplete").write_text("marker")       # hidden files are not data
    assert P.data_digest(tmp_path)["files"] == 1


def test_a_search_record_says_what_made_it(tmp_path_factory: pytest.TempPathFactory) -> None:
    ref = reference_search(tmp_path_factory)
    prov = ref["metrics"]["provenance"]
    assert prov["code_digest"] == P.code_digest("search")
    assert prov["code_paths"] == list(P.STAGE_CODE["search"])
    assert set(prov["fingerprint"]) == {"settings", "code", "versions", "world_size", "data"}
    assert prov["versions"]["torch"] and prov["versions"]["python"]
    assert prov["data"]["files"] >= 6 and prov["data"]["sample"]
    assert prov["started"] and prov["seconds"] > 0
    assert ref["metrics"]["world_size"] == 1 and ref["metrics"]["profile"] == "smoke"


def test_a_code_change_is_not_resumed(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 23's reproduction: search, change the search code, search again: the finished
    checkpoint of the old code is not resumed (the run starts over and says why)."""
    params = write_params(tmp_path, shared_cifar(tmp_path_factory))
    out = search_dir(tmp_path, "direct_bnas", 0)
    code, err = run_cli_inprocess(params, "search", "--method", "direct_bnas", "--seed", "0")
    assert code == 0, err
    first = json.loads((out / "metrics.json").read_text())
    code, err = run_cli_inprocess(params, "search", "--method", "direct_bnas", "--seed", "0")
    assert code == 0 and "resuming" in err          # same inputs: resumed (nothing to do)
    real = P.code_digest("search")
    monkeypatch.setattr(P, "code_digest", lambda stage: "changed-code" if stage == "search"
                        else real)
    code, err = run_cli_inprocess(params, "search", "--method", "direct_bnas", "--seed", "0")
    assert code == 0, err
    assert "resuming" not in err
    assert squash("was written with other inputs (changed: code)") in squash(err)
    again = json.loads((out / "metrics.json").read_text())
    assert again["resumed_from_epoch"] is None
    assert again["provenance"]["fingerprint"]["code"] == "changed-code"
    assert first["provenance"]["fingerprint"]["code"] == real


def test_profiles_have_their_own_run_folders(tmp_path: Path,
                                             tmp_path_factory: pytest.TempPathFactory) -> None:
    """A smoke search, then a search of the same name and seed under another profile: neither
    touches the other's files."""
    cifar = shared_cifar(tmp_path_factory)
    params = write_params(tmp_path, cifar)
    doc = yaml.safe_load(params.read_text())
    doc["profiles"]["paper"] = json.loads(json.dumps(doc["profiles"]["smoke"]))
    doc["profiles"]["paper"]["search"]["epochs"] = 1
    params.write_text(yaml.safe_dump(doc))
    code, err = run_cli_inprocess(params, "search", "--method", "direct_bnas", "--seed", "0")
    assert code == 0, err
    smoke = search_dir(tmp_path, "direct_bnas", 0)
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in smoke.iterdir()
              if p.is_file()}
    code, err = run_cli_inprocess(params, "--profile", "paper", "search", "--method",
                                  "direct_bnas", "--seed", "0")
    assert code == 0, err
    paper = search_dir(tmp_path, "direct_bnas", 0, profile="paper")
    assert read_record(paper / "metrics.json").profile == "paper"
    assert read_record(paper / "metrics.json").epochs == 1
    after = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in smoke.iterdir()
             if p.is_file()}
    assert after == before
    assert read_record(smoke / "metrics.json").profile == "smoke"


def test_provenance_command_prints_a_run(tmp_path_factory: pytest.TempPathFactory,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    from harness import cli
    ref = reference_search(tmp_path_factory)
    folder = search_dir(Path(ref["params"]).parent, "direct_bnas", 0)
    assert cli.main(["--params", str(ref["params"]), "provenance", str(folder)]) == 0
    out = squash(capsys.readouterr().out)
    for text in ("commit", "codedigest", P.code_digest("search"), "fingerprint", "torch"):
        assert squash(text) in out, text
    assert cli.main(["--params", str(ref["params"]), "provenance", str(folder / "nope")]) == 2
