"""model.pt (backbones/checkpoint.py): a checkpoint names only registered backbones; code named
in a file is never imported or run, by any reader."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from backbones.atomic import CheckpointError
from backbones.checkpoint import build_network, check_arch, load_network, read_arch
from backbones.genotypes import DARTS_V2
from harness_fixtures import assert_user_error, run_cli_inprocess, write_params


def _evil(tmp_path: Path, folder: Path) -> Path:
    path = folder / "model.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": {}, "arch": {"backbone": "os:mkdir",
                                      "kwargs": {"path": str(tmp_path / "pwned")}}}, path)
    return path


def test_a_registered_arch_record_builds() -> None:
    arch = {"backbone": "nas", "kwargs": {"genotype": DARTS_V2.to_dict(), "C": 4, "layers": 3,
                                          "num_classes": 10}}
    net = build_network(arch, "test")
    assert sum(p.numel() for p in net.parameters()) > 0


def test_a_module_function_in_a_file_is_refused_before_anything_runs(tmp_path: Path) -> None:
    path = _evil(tmp_path, tmp_path)
    for read in (read_arch, load_network):
        with pytest.raises(CheckpointError, match="'os:mkdir' is not a registered backbone"):
            read(path)
    with pytest.raises(CheckpointError, match="not a registered backbone"):
        build_network({"backbone": "os:mkdir", "kwargs": {"path": str(tmp_path / "pwned")}})
    assert not (tmp_path / "pwned").exists()


def test_unknown_kwargs_and_non_dict_checkpoints_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"\['evil'\] are not arguments of backbone "
                                              r"'bireal_resnet18'"):
        check_arch({"backbone": "bireal_resnet18", "kwargs": {"evil": 1}}, "x.pt")
    with pytest.raises(CheckpointError, match="x.pt: arch.kwargs do not fit backbone 'nas'"):
        build_network({"backbone": "nas", "kwargs": {"evil": 1}}, "x.pt")
    path = tmp_path / "list.pt"
    torch.save([1, 2, 3], path)
    with pytest.raises(CheckpointError, match="expected a dict with 'model'"):
        read_arch(path)


@pytest.mark.parametrize("argv", [
    ["transfer", "--task", "reid", "--backbone", "victim"],
    ["transfer", "--task", "detection", "--backbone", "victim"],
    ["deploy", "--backbone", "victim"],
])
def test_every_stage_refuses_a_checkpoint_naming_code(tmp_path: Path, argv: list[str]) -> None:
    params = write_params(tmp_path, "unused")
    _evil(tmp_path, tmp_path / "runs" / "smoke" / "train" / "victim" / "seed0")
    code, err = run_cli_inprocess(params, *argv)
    assert_user_error(code, err, "'os:mkdir' is not a registered backbone")
    assert not (tmp_path / "pwned").exists()
