"""End to end on tiny settings: prepare -> search -> train -> report, through the CLI."""
import json
from pathlib import Path

import pytest
import torch
import yaml

from backbones.genotypes import Genotype
from harness.cli import main
from harness.config import ConfigError, load_params


def tiny_params(tmp_path: Path, search_runs=("direct_bnas", "random")) -> Path:
    p = {
        "profile": "smoke", "seeds": [0], "search_runs": list(search_runs),
        "paths": {"data": str(tmp_path / "data"), "runs": str(tmp_path / "runs"),
                  "results": str(tmp_path / "results")},
        "profiles": {"smoke": {
            "data": {"name": "cifar10", "root": str(tmp_path / "data/smoke/cifar10"),
                     "train_subset": 128, "test_subset": 64},
            "smoke_data": {"cifar_train": 400, "cifar_test": 100, "coco_train": 4,
                           "coco_val": 2, "coco_size": 64, "market_ids": 4, "market_cams": 2},
            "search": {"C": 4, "layers": 3, "epochs": 2, "batch_size": 8,
                       "max_steps_per_epoch": 2},
            "train": {"C": 4, "layers": 3, "epochs": 2, "batch_size": 16, "lr": 0.002,
                      "lr_scale_batch": 16, "max_steps_per_epoch": 2},
        }},
    }
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(p))
    return path


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_search_train_report(tmp_path):
    params = tiny_params(tmp_path)
    assert main(["--params", str(params), "prepare"]) == 0
    for method in ("direct_bnas", "random"):
        assert main(["--params", str(params), "search", "--method", method]) == 0
        g = Genotype.load(tmp_path / f"runs/smoke/search/{method}/seed0/genotype.json")
        assert len(g.normal) == 8
        m = json.loads((tmp_path / f"runs/smoke/search/{method}/seed0/metrics.json").read_text())
        assert m["stage"] == "search" and m["method"] == method
        assert m["search_cost_unit"] == "CPU-hours" and m["device_kind"] == "cpu"
    m = json.loads((tmp_path / "runs/smoke/search/direct_bnas/seed0/metrics.json").read_text())
    assert m["epochs"] == 2 and len(m["alphas"]["normal"]) == 14 and m["search_seconds"] > 0
    assert main(["--params", str(params), "train", "--method", "direct_bnas"]) == 0
    t = json.loads((tmp_path / "runs/smoke/train/direct_bnas/seed0/metrics.json").read_text())
    assert 0 <= t["top1"] <= t["top5"] <= 100
    assert t["params_m"] > 0 and t["bops_m"] > 0 and t["ops_m"] == pytest.approx(
        t["flops_m"] + t["bops_m"] / 64)
    # memory: binary weights count 1 bit, so far below 32 bits per parameter
    assert t["memory_mbit"] < 32 * t["params_m"]
    assert (tmp_path / "runs/smoke/train/direct_bnas/seed0/model.pt").is_file()
    out = tmp_path / "results/report"
    assert main(["--params", str(params), "report"]) == 0
    table = (out / "classification.csv").read_text()
    assert "direct_bnas" in table
    assert f"{t['top1']:.2f}" in (out / "classification.md").read_text()


def test_second_run_resumes_instead_of_repeating(tmp_path):
    params = tiny_params(tmp_path)
    assert main(["--params", str(params), "prepare"]) == 0
    assert main(["--params", str(params), "search", "--method", "direct_bnas"]) == 0
    first = (tmp_path / "runs/smoke/search/direct_bnas/seed0/genotype.json").read_text()
    assert main(["--params", str(params), "search", "--method", "direct_bnas"]) == 0
    m = json.loads((tmp_path / "runs/smoke/search/direct_bnas/seed0/metrics.json").read_text())
    assert m["resumed_from_epoch"] == 1  # everything was done: nothing recomputed
    assert (tmp_path / "runs/smoke/search/direct_bnas/seed0/genotype.json").read_text() == first


def test_unknown_params_key_names_key_and_suggests(tmp_path):
    path = tiny_params(tmp_path)
    data = yaml.safe_load(path.read_text())
    data["profiles"]["smoke"]["search"]["epoch"] = 3
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=r"profiles\.smoke\.search.*'epoch'.*did you mean 'epochs'"):
        load_params(path)


def test_repository_params_yaml_is_valid():
    root = Path(__file__).resolve().parents[1]
    params = load_params(root / "params.yaml")
    for name in params.profiles:
        load_params(root / "params.yaml", profile=name)
    assert params.profile == "smoke"


def test_published_cell_retrains_like_a_searched_one(tmp_path):
    """`harness train --method dcpnas_l`: the official DDPNAS_MCN_2 cell at the profile's
    C / layers, recorded as DCP-NAS-L (size L), with its best epoch; the report shows it."""
    params = tiny_params(tmp_path)
    assert main(["--params", str(params), "prepare"]) == 0
    assert main(["--params", str(params), "train", "--method", "dcpnas_l"]) == 0
    out = tmp_path / "runs/smoke/train/dcpnas_l/seed0"
    t = json.loads((out / "metrics.json").read_text())
    assert t["method"] == "dcpnas_l" and t["genotype"] == "published:dcpnas_l"
    assert t["size"] == "L" and t["binarizer"] == "official"
    assert t["best_top1"] == max(h["top1"] for h in t["history"])
    arch = torch.load(out / "model.pt", weights_only=True)["arch"]
    assert arch["backbone"] == "nas" and arch["kwargs"]["C"] == 4
    assert Genotype.from_dict(arch["kwargs"]["genotype"]).normal[0] == ("sep_conv_5x5", 1)
    assert main(["--params", str(params), "report"]) == 0
    table = (tmp_path / "results/report/classification.md").read_text()
    assert "dcpnas_l" in table and "best-epoch top-1" in table
    assert "72.4" in (tmp_path / "results/report/classification_vs_paper.md").read_text()


@pytest.mark.parametrize("binarizer", ["official", "mean_abs"])
def test_reference_backbone_retrains_with_the_profiles_binarizer(tmp_path, binarizer):
    """`harness train --method bireal_resnet18` (a reference backbone) under each binarizer:
    the record carries it, so transfer rebuilds the same network."""
    params = tiny_params(tmp_path)
    data = yaml.safe_load(params.read_text())
    data["profiles"]["smoke"]["train"].update(binarizer=binarizer,
                                              reference_kwargs={"bireal_resnet18": {"width": 4}})
    params.write_text(yaml.safe_dump(data))
    assert main(["--params", str(params), "prepare"]) == 0
    assert main(["--params", str(params), "train", "--method", "bireal_resnet18"]) == 0
    ckpt = torch.load(tmp_path / "runs/smoke/train/bireal_resnet18/seed0/model.pt", weights_only=True)
    assert ckpt["arch"]["kwargs"]["binarizer"] == binarizer
    assert any(k.endswith("modulation") for k in ckpt["model"]) == (binarizer == "official")
