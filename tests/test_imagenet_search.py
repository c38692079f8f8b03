"""ImageNet search (issue: search on ImageNet the way the papers do): the stride-8 supernet, the
class-balanced sample, one step of every method on a generated ImageNet folder, a
paper-imagenet search that starts and checkpoints, and the bad inputs of the sample."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from backbones.search.base import SearchContext, get_search_method, list_search_methods
from backbones.supernet import Supernet
from harness.config import load_params
from harness.data import (DataConfig, DatasetError, SampleSpec, build_search_loaders,
                          class_balanced_sample, generate_imagenet_like)
from harness.stages.search import run_search
from harness_fixtures import REPO, assert_user_error, run_cli_inprocess, write_params


@pytest.fixture(scope="module")
def inet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 classes x 24 training JPEGs (24x24), 4 val per class."""
    return generate_imagenet_like(tmp_path_factory.mktemp("inet") / "imagenet", num_classes=4,
                                  n_train_per_class=24, n_val_per_class=4, size=24)


@pytest.mark.parametrize("binary", [False, True])
def test_imagenet_supernet_runs_cells_at_28_14_7(binary: bool) -> None:
    net = Supernet(C=4, num_classes=7, layers=3, binary=binary, stem="imagenet")
    sides: list[tuple[int, int]] = []
    for cell in net.cells:
        cell.register_forward_hook(lambda m, i, o: sides.append(tuple(o.shape[-2:])))
    s0, s1 = net.stem_states(torch.zeros(1, 3, 224, 224))
    assert s0.shape[-2:] == (56, 56) and s1.shape[-2:] == (28, 28)
    assert net(torch.zeros(2, 3, 224, 224)).shape == (2, 7)
    assert sides == [(28, 28), (14, 14), (7, 7)]
    assert Supernet(C=4, layers=3, stem="cifar").stem1 is None   # CIFAR: unchanged


def test_sample_is_class_balanced_seeded_and_disjoint() -> None:
    targets = [c for c in range(5) for _ in range(40 + 8 * c)]
    names = [f"n{c:08d}" for c in range(5)]
    spec = SampleSpec(weights=0.1, arch=0.05, seed=3)
    w, a = class_balanced_sample(targets, names, spec, "train")
    assert not set(w) & set(a)
    for c in range(5):
        n = 40 + 8 * c
        assert sum(targets[i] == c for i in w) == int(0.1 * n)
        assert sum(targets[i] == c for i in a) == int(0.05 * n)
    assert (w, a) == class_balanced_sample(targets, names, spec, "train")
    other = class_balanced_sample(targets, names, SampleSpec(0.1, 0.05, seed=4), "train")
    assert other != (w, a)


def test_search_loaders_draw_the_sample_from_the_folder(inet: Path) -> None:
    cfg = DataConfig("imagenet", str(inet), batch_size=2, image_size=16)
    train, val, classes = build_search_loaders(cfg, sample=SampleSpec(0.5, 0.25, seed=0))
    assert classes == 4
    assert len(train.dataset) == 4 * 12 and len(val.dataset) == 4 * 6
    assert not set(train.dataset.indices) & set(val.dataset.indices)
    x, _ = next(iter(train))
    assert x.shape == (2, 3, 16, 16)


@pytest.mark.parametrize("method", ["direct_bnas", "darts", "darts_2nd", "pcdarts", "cpnas",
                                    "dcpnas"])
def test_one_step_of_each_method_on_an_imagenet_folder(inet: Path, method: str) -> None:
    assert method in list_search_methods()
    cls = get_search_method(method)
    fields = cls.Config.model_fields
    cfg = cls.Config(**{"C": 4, "layers": 3, "stem": "imagenet",
                        **({"partial_channels": 2} if "partial_channels" in fields else {})})
    torch.manual_seed(0)
    searcher = cls(cfg, SearchContext(num_classes=4, device=torch.device("cpu")))
    searcher.begin_epoch(0, 2)
    dcfg = DataConfig("imagenet", str(inet), batch_size=4, image_size=24)
    train, val, _ = build_search_loaders(dcfg, sample=SampleSpec(0.5, 0.25))
    logs = searcher.step(next(iter(train)), next(iter(val)))
    assert all(torch.isfinite(torch.tensor(v)) for v in logs.values())
    assert str(searcher.genotype())


def _paper_imagenet_params(tmp_path: Path, root: Path) -> Path:
    """params.yaml as shipped, the active profile paper-imagenet with only the data folder,
    the image side, the batch, the budget and compilation changed (a CPU test)."""
    doc = yaml.safe_load((REPO / "params.yaml").read_text())
    prof = doc["profiles"]["paper-imagenet"]
    prof["data"].update(root=str(root), image_size=16, num_workers=0)
    prof["search"].update(epochs=2, max_steps_per_epoch=1, batch_size=4, compile=False)
    doc.update(profile="paper-imagenet",
               paths={"data": str(tmp_path / "data"), "runs": str(tmp_path / "runs"),
                      "results": str(tmp_path / "results")})
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def test_paper_imagenet_search_starts_and_checkpoints(tmp_path: Path) -> None:
    """The published DCP-NAS with paper-imagenet's schedule (sample 10 % / 2.5 %, warm-up,
    lr 0.5 at batch 1024 scaled to the batch run) on a generated folder with 40 images a class."""
    root = generate_imagenet_like(tmp_path / "imagenet", num_classes=4, n_train_per_class=40,
                                  n_val_per_class=2, size=16)
    params = load_params(_paper_imagenet_params(tmp_path, root))
    m = run_search(params, "dcpnas", 0)
    out = tmp_path / "runs" / "paper-imagenet" / "search" / "dcpnas" / "seed0"
    assert (out / "checkpoint.pt").is_file() and (out / "genotype.json").is_file()
    assert m["sample"]["weights_images"] == 4 * 4 and m["sample"]["arch_images"] == 4 * 1
    assert m["config"]["w_lr"] == pytest.approx(0.5 * 4 / 1024)
    assert m["config"]["stem"] == "imagenet" and m["image_size"] == 16
    assert "arch_loss" not in m["history"][0] and "arch_loss" in m["history"][1]   # warm-up
    lists = json.loads((out / "sample.json").read_text())
    assert lists["digest"] == m["sample"]["digest"] and len(lists["arch"]) == 4
    assert all(f.startswith("train/n") for f in lists["weights"] + lists["arch"])


def _sample_params(tmp_path: Path, root: Path, sample: dict) -> Path:
    return write_params(tmp_path, root, profile={
        "data": {"name": "imagenet", "image_size": 16, "train_subset": None,
                 "test_subset": None},
        "search": {"stem": "imagenet", "sample": sample}})


SEARCH = ("search", "--method", "direct_bnas")


def test_fraction_that_leaves_a_class_empty_is_one_line(tmp_path: Path, inet: Path) -> None:
    code, err = run_cli_inprocess(_sample_params(tmp_path, inet, {"weights": 0.5, "arch": 0.02}),
                                  *SEARCH)
    assert_user_error(code, err, "search.sample.arch = 0.02", str(inet / "train" / "n00000000"),
                      "less than one image")


def test_sample_larger_than_the_folder_is_one_line(tmp_path: Path, inet: Path) -> None:
    code, err = run_cli_inprocess(_sample_params(tmp_path, inet, {"weights": 0.9, "arch": 0.2}),
                                  *SEARCH)
    assert_user_error(code, err, "search.sample", "a sample larger than the folder")


def test_class_folder_without_images_is_one_line(tmp_path: Path, inet: Path) -> None:
    import shutil
    root = tmp_path / "copy"
    shutil.copytree(inet, root)
    for f in (root / "train" / "n00000002").iterdir():
        f.unlink()
    code, err = run_cli_inprocess(_sample_params(tmp_path, root, {"weights": 0.5, "arch": 0.25}),
                                  *SEARCH)
    assert_user_error(code, err, "class folders without images", str(root / "train" / "n00000002"))


def test_sample_on_cifar_is_refused(tmp_path: Path) -> None:
    from harness.data import generate_cifar_like
    root = generate_cifar_like(tmp_path / "cifar", n_train=64, n_test=16)
    with pytest.raises(DatasetError, match="search.sample applies to an ImageNet-style folder"):
        build_search_loaders(DataConfig("cifar10", str(root), batch_size=4),
                             sample=SampleSpec())


def test_table_43_rows_come_from_imagenet_runs_with_their_projection(tmp_path: Path,
                                                                      inet: Path) -> None:
    """Two ImageNet searches (the main DCP-NAS and its exact-Hessian Table 4.3 row) and a CIFAR
    one: the table has the two ImageNet rows, each with the paper's row of its components and
    the projection of its own run name."""
    from harness.data import generate_cifar_like
    from harness.report import load_metrics, load_paper_numbers, default_paper_numbers_path
    from harness.report.table43 import build_table_43
    abl = {"dcpnas-exact": {"method": "dcpnas", "table": "4.3", "label": "exact Hessian",
                            "set": {"second_order": "exact"}}}
    params = _sample_params(tmp_path, inet, {"weights": 0.5, "arch": 0.25})
    doc = yaml.safe_load(params.read_text())
    doc["ablations"] = abl
    doc["profiles"]["smoke"]["search"].update(epochs=1)
    params.write_text(yaml.safe_dump(doc))
    for run in ("dcpnas", "dcpnas-exact"):
        code, err = run_cli_inprocess(params, "search", "--method", run)
        assert code == 0, err
    cifar = generate_cifar_like(tmp_path / "cifar", n_train=64, n_test=16)
    cifar_params = write_params(tmp_path / "c", cifar, profile={"search": {"epochs": 1}})
    assert run_cli_inprocess(cifar_params, "search", "--method", "dcpnas")[0] == 0
    metrics = load_metrics([tmp_path / "runs", tmp_path / "c" / "runs"])
    bench = {"measured": {"device": "cpu", "threads": 1, "date": "d", "commit": "abcdef0"},
             "profiles": {"paper-imagenet": {"search": {
                 run: {"projected_search": {"value": v, "unit": "CPU-days", "inputs": "x"}}
                 for run, v in (("dcpnas", 9.0), ("dcpnas-exact", 30.0))}}}}
    table = build_table_43(metrics, load_paper_numbers(default_paper_numbers_path()), bench)
    assert len(table) == 2 and set(table["profile"]) == {"smoke"}
    by = {r["components"]: r for _, r in table.iterrows()}
    ggn, exact = by["TP ✓, GGN, DO ✓"], by["TP ✓, exact Hessian, DO ✓"]
    assert ggn["paper search cost"].startswith("2.9") and exact["paper search cost"].startswith("27.9")
    assert ggn["projected full paper-imagenet search"].startswith("9 CPU-days")
    assert exact["projected full paper-imagenet search"].startswith("30 CPU-days")
    assert ggn["verdict"].startswith("cannot say: smoke scale")
    sample = json.loads((tmp_path / "runs/smoke/search/dcpnas/seed0/sample.json").read_text())
    assert ggn["search sample"] == f"50 % / 25 % per class, seed 0, {sample['digest'][:8]}"
