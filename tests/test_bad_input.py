"""Bad input: every known problem stops with exit status 2 and one message that names the file
or key, never a traceback; a NaN loss stops the search and keeps the last good checkpoint;
nothing is ever unpickled with arbitrary globals.

Most cases run the CLI in this process (harness.cli.main), as `harness ...` would.
"""
from __future__ import annotations

import ast
import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from backbones.atomic import (CheckpointError, atomic_torch_save, load_state_dict_strict,
                              safe_torch_load)
from backbones.genotypes import DARTS_V2
from backbones.registry import UnknownBackboneError, create_backbone
from harness.data import generate_imagenet_like, imagenet_folder, imagenet_transforms
from harness_fixtures import (REPO, assert_user_error, run_cli_inprocess, search_dir,
                              shared_cifar, write_params)

SEARCH = ("search", "--method", "direct_bnas", "--seed", "0")


@pytest.fixture
def cifar_copy(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private copy of the generated CIFAR-like set, to corrupt."""
    root = tmp_path / "cifar"
    shutil.copytree(shared_cifar(tmp_path_factory), root)
    return root


def _batch_file(root: Path, name: str) -> Path:
    return root / "cifar-10-batches-py" / name


# ---- data -------------------------------------------------------------------------------

def test_missing_data_root(tmp_path: Path) -> None:
    root = tmp_path / "no-such-folder"
    code, err = run_cli_inprocess(write_params(tmp_path, root), *SEARCH)
    assert_user_error(code, err, f"CIFAR-10 data set not found at {root}", "cifar-10-batches-py")


def test_truncated_cifar_pickle(tmp_path: Path, cifar_copy: Path) -> None:
    path = _batch_file(cifar_copy, "data_batch_1")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    code, err = run_cli_inprocess(write_params(tmp_path, cifar_copy), *SEARCH)
    assert_user_error(code, err, str(path), "truncated or not a CIFAR pickle")


@pytest.mark.parametrize("bad", ["short rows", "float pixels"])
def test_cifar_batch_with_wrong_image_size_or_mode(tmp_path: Path, cifar_copy: Path,
                                                   bad: str) -> None:
    """CIFAR rows must be 3072 uint8 values (3x32x32, channel-major): 32x31 rows, or float
    pixels, are refused naming the file."""
    path = _batch_file(cifar_copy, "data_batch_2")
    with open(path, "rb") as fh:
        batch = pickle.load(fh, encoding="bytes")  # our own generated test file
    n = len(batch[b"labels"])
    batch[b"data"] = (np.zeros((n, 3 * 32 * 31), np.uint8) if bad == "short rows"
                      else np.zeros((n, 3072), np.float32))
    path.write_bytes(pickle.dumps(batch, protocol=2))
    code, err = run_cli_inprocess(write_params(tmp_path, cifar_copy), *SEARCH)
    assert_user_error(code, err, str(path), "expected b'data' to be a uint8 array of shape "
                      "(N, 3072)")


def test_cifar_pickle_with_foreign_globals(tmp_path: Path, cifar_copy: Path) -> None:
    """A "data set" that would run code when unpickled is refused, and the code does not run."""
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (Path.touch, (marker,))
    path = _batch_file(cifar_copy, "data_batch_3")
    path.write_bytes(pickle.dumps({b"data": Evil(), b"labels": []}, protocol=2))
    code, err = run_cli_inprocess(write_params(tmp_path, cifar_copy), *SEARCH)
    assert_user_error(code, err, str(path), "refusing to unpickle")
    assert not marker.exists()


def _imagenet_params(tmp_path: Path, root: Path) -> Path:
    return write_params(tmp_path, root, profile={"data": {
        "name": "imagenet", "image_size": 32, "train_subset": None, "test_subset": None}})


def test_imagenet_folder_without_classes(tmp_path: Path) -> None:
    root = tmp_path / "imagenet"
    (root / "train").mkdir(parents=True)
    (root / "val").mkdir()
    code, err = run_cli_inprocess(_imagenet_params(tmp_path, root), *SEARCH)
    assert_user_error(code, err, f"no class folders in {root / 'train'}")


def test_imagenet_undecodable_jpeg(tmp_path: Path) -> None:
    """A truncated JPEG cannot be decoded: the search stops naming the file."""
    root = generate_imagenet_like(tmp_path / "imagenet", num_classes=2, n_train_per_class=8,
                                  n_val_per_class=2, size=32)
    for jpeg in (root / "train").rglob("*.JPEG"):
        jpeg.write_bytes(jpeg.read_bytes()[:200])
    code, err = run_cli_inprocess(_imagenet_params(tmp_path, root), *SEARCH)
    assert_user_error(code, err, "cannot decode image", str(root / "train"),
                      "expected a readable JPEG/PNG image")


def test_imagenet_other_sizes_and_modes_are_converted(tmp_path: Path) -> None:
    """What is *not* wrong for an ImageNet folder: any size (resized and cropped) and a
    grayscale, palette or RGBA image (converted to RGB), as torchvision's loader does."""
    from PIL import Image
    root = tmp_path / "imagenet"
    for i, (mode, size) in enumerate([("L", (50, 20)), ("P", (7, 9)), ("RGBA", (300, 40)),
                                      ("RGB", (32, 32))]):
        folder = root / "train" / f"n{i:08d}"
        folder.mkdir(parents=True)
        Image.new(mode, size).save(folder / "a.png")
    ds = imagenet_folder(root, "train", imagenet_transforms(True, 32))
    assert [tuple(ds[i][0].shape) for i in range(len(ds))] == [(3, 32, 32)] * 4


# ---- genotypes, backbones, params ----------------------------------------------------------

def _genotype_text(case: str) -> str:
    data = DARTS_V2.to_dict()
    if case == "malformed":
        return json.dumps(data)[:-20]
    if case == "unknown op":
        data["normal"][3] = ["conv_9x9", 1]
    elif case == "wrong number of edges":
        data["reduce"] = data["reduce"][:7]
    elif case == "input out of range":
        data["normal"][2] = ["skip_connect", 3]
    elif case == "edge not a pair":
        data["normal"][1] = 5
    return json.dumps(data)


@pytest.mark.parametrize("case,fragment", [
    ("malformed", "not valid JSON"),
    ("unknown op", "normal[3] names unknown op 'conv_9x9'"),
    ("wrong number of edges", "key 'reduce' has 7 edges, expected 8"),
    ("input out of range", "normal[2] takes input 3, but node 1 can only take inputs 0..2"),
    ("edge not a pair", "normal[1] = 5, expected [op_name, input]"),
])
def test_bad_genotype_json(tmp_path: Path, case: str, fragment: str) -> None:
    path = tmp_path / "cell.json"
    path.write_text(_genotype_text(case))
    params = write_params(tmp_path, tmp_path / "unused-data")
    code, err = run_cli_inprocess(params, "train", "--method", "mine", "--genotype", str(path))
    assert_user_error(code, err, str(path), fragment)


def test_error_message_is_one_line(tmp_path: Path) -> None:
    """The error is one line, however long (paths are long): scripts and logs grep it."""
    path = tmp_path / ("a-long-folder-name" * 6) / "cell.json"
    path.parent.mkdir()
    path.write_text(_genotype_text("unknown op"))
    params = write_params(tmp_path, tmp_path / "unused-data")
    code, err = run_cli_inprocess(params, "train", "--method", "mine", "--genotype", str(path))
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert str(path) in err


def test_missing_genotype_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.json"
    params = write_params(tmp_path, tmp_path / "unused-data")
    code, err = run_cli_inprocess(params, "train", "--method", "mine", "--genotype", str(path))
    assert_user_error(code, err, f"{path}: genotype file not found")


def test_bad_search_metrics_stop_train_before_it_trains(tmp_path: Path) -> None:
    """The search run's metrics.json beside the genotype (method and ablation of the retrained
    cell) is read before any training: a broken one costs seconds, not a run."""
    path = tmp_path / "search" / "cell.json"
    path.parent.mkdir()
    path.write_text(json.dumps(DARTS_V2.to_dict()))
    metrics = path.parent / "metrics.json"
    metrics.write_text(json.dumps({"stage": "search", "method": "dcpnas", "seed": 0}))
    params = write_params(tmp_path, tmp_path / "unused-data")
    code, err = run_cli_inprocess(params, "train", "--method", "mine", "--genotype", str(path))
    assert_user_error(code, err, str(metrics), "missing required key 'search_seconds'")
    assert not (tmp_path / "runs" / "smoke" / "train").exists()


def test_unknown_backbone_name() -> None:
    with pytest.raises(UnknownBackboneError, match="unknown backbone 'bireal_resnet19'.*"
                                                   "did you mean 'bireal_resnet18'"):
        create_backbone("bireal_resnet19", num_classes=10)
    with pytest.raises(UnknownBackboneError, match="cannot import module 'no_such_pkg.mod'"):
        create_backbone("no_such_pkg.mod:build")
    with pytest.raises(UnknownBackboneError, match="has no callable 'nope'"):
        create_backbone("backbones.zoo:nope")


def test_unknown_run_or_backbone_in_train(tmp_path: Path) -> None:
    """`harness train --run` with a typo: neither a search run nor a backbone."""
    params = write_params(tmp_path, tmp_path / "unused-data")
    code, err = run_cli_inprocess(params, "train", "--method", "bireal_resnet19")
    assert_user_error(code, err, "'bireal_resnet19' is neither a search run",
                      "did you mean 'bireal_resnet18'?")


@pytest.mark.parametrize("change,fragment", [
    ({"profile": {"search": {"epochz": 2}}},
     "profiles.smoke.search: unknown key 'epochz'; did you mean 'epochs'?"),
    ({"top": {"seed": [0]}}, "unknown key 'seed'; did you mean 'seeds'?"),
    ({"top": {"paths": {"run": "x"}}}, "paths: unknown key 'run'; did you mean 'runs'?"),
    ({"profile": {"train": {"kd": {"temprature": 2.0}}}},
     "profiles.smoke.train.kd: unknown key 'temprature'; did you mean 'temperature'?"),
    ({"profile": {"search": {"per_method": {"direct_bnas": {"arch_lrr": 0.1}}}}},
     "unknown key 'arch_lrr'; did you mean 'arch_lr'?"),
    ({"profile": {"search": {"per_method": {"direct_bna": {}}}}},
     "unknown key 'direct_bna'; did you mean 'direct_bnas'?"),
    ({"profile": {"search": {"epochs": "two"}}},
     "profiles.smoke.search.epochs: expected an integer, got 'two'"),
])
def test_unknown_or_mistyped_params_key(tmp_path: Path, change: dict, fragment: str) -> None:
    params = write_params(tmp_path, tmp_path / "unused-data", **change)
    code, err = run_cli_inprocess(params, *SEARCH)
    assert_user_error(code, err, str(params), fragment)


# ---- checkpoints ------------------------------------------------------------------------

def _net(C: int, genotype=DARTS_V2) -> torch.nn.Module:  # type: ignore[no-untyped-def]
    return create_backbone("nas", genotype=genotype, C=C, layers=3, num_classes=10)


def test_checkpoint_for_a_different_architecture(tmp_path: Path) -> None:
    """load_state_dict_strict names the first tensor that does not fit."""
    small = _net(4).state_dict()
    model = _net(8)
    first = next(k for k, v in small.items() if tuple(v.shape) != tuple(model.state_dict()[k].shape))
    with pytest.raises(CheckpointError, match=rf"ckpt\.pt: tensor '{first}' has shape "
                                              rf"{tuple(small[first].shape)}".replace("(", r"\(")
                       .replace(")", r"\)")):
        load_state_dict_strict(model, small, "ckpt.pt")
    # another genotype: other ops, so tensors the model does not have
    from backbones.genotypes import Genotype
    other = Genotype.from_dict({**DARTS_V2.to_dict(),
                                "normal": [["max_pool_3x3", 0], ["max_pool_3x3", 1]] * 4})
    pooled = _net(4, other)
    extra = next(k for k in small if k not in pooled.state_dict())
    with pytest.raises(CheckpointError, match=f"checkpoint tensor '{extra}' does not exist"):
        load_state_dict_strict(pooled, small, "ckpt.pt")
    partial = dict(list(_net(4).state_dict().items())[1:])
    with pytest.raises(CheckpointError, match="checkpoint lacks tensor"):
        load_state_dict_strict(_net(4), partial, "ckpt.pt")


def test_teacher_checkpoint_for_a_different_architecture(tmp_path: Path,
                                                         tmp_path_factory: pytest.TempPathFactory
                                                         ) -> None:
    """Through the CLI: a KD teacher checkpoint that holds another network."""
    ckpt = tmp_path / "teacher.pt"
    state = _net(4).state_dict()
    atomic_torch_save({"model": state}, ckpt)
    genotype = tmp_path / "cell.json"
    DARTS_V2.save(genotype)
    params = write_params(tmp_path, shared_cifar(tmp_path_factory), profile={"train": {"kd": {
        "teacher": "torchvision:resnet18", "teacher_checkpoint": str(ckpt)}}})
    code, err = run_cli_inprocess(params, "train", "--method", "mine", "--genotype", str(genotype))
    assert_user_error(code, err, str(ckpt), f"checkpoint tensor '{next(iter(state))}' does "
                      "not exist in the model")


def test_safe_torch_load_refuses_arbitrary_objects(tmp_path: Path) -> None:
    """A checkpoint holding a pickled object is refused, and the object's code does not run."""
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (Path.touch, (marker,))
    path = tmp_path / "evil.pt"
    torch.save({"model": {"w": torch.ones(1)}, "x": Evil()}, path)
    with pytest.raises(CheckpointError, match="cannot be loaded as a weights-only checkpoint"):
        safe_torch_load(path)
    assert not marker.exists()
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="evil.pt"):
        safe_torch_load(path)
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        safe_torch_load(tmp_path / "missing.pt")


# ---- NaN loss ----------------------------------------------------------------------------

def _poison_at(monkeypatch: pytest.MonkeyPatch, call: int, seen: dict) -> None:
    """Make direct_bnas's ``call``-th step (1-based) produce a NaN loss for real: the
    classifier weights become NaN just before it (as after a diverging update)."""
    from backbones.search.direct import DirectBNAS
    real = DirectBNAS.step

    def step(self, train_batch, val_batch):  # type: ignore[no-untyped-def]
        seen["calls"] = seen.get("calls", 0) + 1
        if seen["calls"] == call:
            ckpt = seen.get("checkpoint")
            seen["ckpt_bytes"] = ckpt.read_bytes() if ckpt and ckpt.exists() else None
            with torch.no_grad():
                self.model.classifier.weight.fill_(float("nan"))
        return real(self, train_batch, val_batch)
    monkeypatch.setattr(DirectBNAS, "step", step)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(
        tmp_path: Path, tmp_path_factory: pytest.TempPathFactory,
        monkeypatch: pytest.MonkeyPatch) -> None:
    params = write_params(tmp_path, shared_cifar(tmp_path_factory),
                          profile={"search": {"epochs": 2, "max_steps_per_epoch": 1}})
    out = search_dir(tmp_path, "direct_bnas", 0)
    ckpt = out / "checkpoint.pt"
    seen: dict = {"checkpoint": ckpt}
    _poison_at(monkeypatch, 2, seen)  # epoch 1, step 0 (one step per epoch)
    code, err = run_cli_inprocess(params, *SEARCH)
    assert_user_error(code, err, "epoch 1 step 0: non-finite value (NaN or inf) in",
                      f"the last good checkpoint {ckpt} (after epoch 0) is kept")
    assert not (out / "genotype.json").exists() and not (out / "metrics.json").exists()
    # the checkpoint is the previous epoch's, untouched, loadable and finite
    assert seen["ckpt_bytes"] is not None and ckpt.read_bytes() == seen["ckpt_bytes"]
    state = safe_torch_load(ckpt)
    assert state["epoch"] == 0
    assert all(torch.isfinite(t).all() for t in state["task"]["model"].values()
               if t.is_floating_point())
    # ... and usable: the same command without the fault resumes from it and finishes
    monkeypatch.undo()
    code, err = run_cli_inprocess(params, *SEARCH)
    assert code == 0, err
    assert "resuming" in err
    assert json.loads((out / "metrics.json").read_text())["resumed_from_epoch"] == 0


def test_nan_loss_in_first_epoch(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    params = write_params(tmp_path, shared_cifar(tmp_path_factory),
                          profile={"search": {"epochs": 1, "max_steps_per_epoch": 1}})
    _poison_at(monkeypatch, 1, {})
    code, err = run_cli_inprocess(params, *SEARCH)
    assert_user_error(code, err, "epoch 0 step 0: non-finite value (NaN or inf) in",
                      "no checkpoint had been written yet")


# ---- output folder -----------------------------------------------------------------------

@pytest.mark.parametrize("stage", ["search", "train"])
def test_output_folder_not_writable(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory,
                                    stage: str) -> None:
    """paths.runs below a regular file: no folder can be made there, even by root (for whom a
    read-only folder is still writable)."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    params = write_params(tmp_path, shared_cifar(tmp_path_factory),
                          top={"paths": {"runs": str(blocker / "runs")}})
    genotype = tmp_path / "cell.json"
    DARTS_V2.save(genotype)
    args = SEARCH if stage == "search" else ("train", "--method", "mine", "--genotype",
                                            str(genotype))
    code, err = run_cli_inprocess(params, *args)
    name = "direct_bnas" if stage == "search" else "mine"
    assert_user_error(code, err, f"output directory {blocker}/runs/smoke/{stage}/{name}/seed0 is not "
                      "writable", "paths.runs")


# ---- safe loading: a scan of the package sources -----------------------------------------

PACKAGES = ("harness", "backbones", "downstream")


def unsafe_calls(source: str, filename: str) -> list[str]:
    """Calls that can run arbitrary code on load: torch.load without weights_only=True,
    eval/exec, pickle.load(s)/pickle.Unpickler, yaml.load without a safe Loader, yaml's
    unsafe_load/full_load, numpy.load with allow_pickle=True; and any pickle.Unpickler
    subclass without a restricting find_class."""
    tree = ast.parse(source, filename)
    found: list[str] = []

    def dotted(node: ast.AST) -> str:
        if isinstance(node, ast.Name):
            return node.id
        if isinstance(node, ast.Attribute):
            return f"{dotted(node.value)}.{node.attr}"
        return "?"

    def kw(call: ast.Call, name: str) -> ast.AST | None:
        return next((k.value for k in call.keywords if k.arg == name), None)

    def is_true(node: ast.AST | None) -> bool:
        return isinstance(node, ast.Constant) and node.value is True

    imported: dict[str, str] = {}  # local name -> module.attr for `from x import y`
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                imported[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    for node in ast.walk(tree):
        where = f"{filename}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.ClassDef):
            bases = [imported.get(dotted(b), dotted(b)) for b in node.bases]
            if any(b.endswith("Unpickler") for b in bases) and not any(
                    isinstance(f, ast.FunctionDef) and f.name == "find_class" for f in node.body):
                found.append(f"{where}: Unpickler subclass {node.name} without find_class")
        if not isinstance(node, ast.Call):
            continue
        name = dotted(node.func)
        name = imported.get(name, name)
        if name in ("torch.load", "torch.serialization.load") and not is_true(
                kw(node, "weights_only")):
            found.append(f"{where}: {name} without weights_only=True")
        elif name in ("eval", "exec", "builtins.eval", "builtins.exec"):
            found.append(f"{where}: {name}")
        elif name in ("pickle.load", "pickle.loads", "pickle.Unpickler", "cPickle.load",
                      "cPickle.loads", "dill.load", "dill.loads", "_pickle.load",
                      "_pickle.loads"):
            found.append(f"{where}: {name}")
        elif name in ("yaml.unsafe_load", "yaml.full_load", "yaml.load_all"):
            found.append(f"{where}: {name}")
        elif name == "yaml.load" and dotted(kw(node, "Loader") or ast.Name("?")) not in (
                "yaml.SafeLoader", "SafeLoader", "yaml.CSafeLoader", "CSafeLoader"):
            found.append(f"{where}: yaml.load without Loader=SafeLoader")
        elif name in ("np.load", "numpy.load") and is_true(kw(node, "allow_pickle")):
            found.append(f"{where}: {name} with allow_pickle=True")
    return found


def test_scanner_finds_unsafe_calls() -> None:
    """The scan below is not vacuous: it flags every pattern it looks for."""
    bad = """
import pickle, torch, yaml, numpy as np
from pickle import loads
torch.load("a.pt")
torch.load("a.pt", weights_only=False)
eval("1")
exec("x = 1")
pickle.load(open("f", "rb"))
loads(b"")
yaml.load("a: 1")
np.load("a.npy", allow_pickle=True)
class U(pickle.Unpickler):
    pass
"""
    assert len(unsafe_calls(bad, "bad.py")) == 9
    good = """
import pickle, torch, yaml, numpy as np
torch.load("a.pt", map_location="cpu", weights_only=True)
model.eval()
yaml.safe_load("a: 1")
yaml.load("a: 1", Loader=yaml.SafeLoader)
np.load("a.npy")
class R(pickle.Unpickler):
    def find_class(self, module, name):
        raise pickle.UnpicklingError(name)
R(open("f", "rb")).load()
"""
    assert unsafe_calls(good, "good.py") == []


def test_package_sources_load_nothing_unsafely() -> None:
    files = sorted(p for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py"))
    assert len(files) > 20
    found = [hit for p in files for hit in unsafe_calls(p.read_text(), str(p.relative_to(REPO)))]
    assert found == [], "unsafe deserialization or eval/exec:\n" + "\n".join(found)
    # the one unpickler in the package is the restricted CIFAR one, and it is what reads CIFAR
    unpickle = (REPO / "harness" / "data" / "unpickle.py").read_text()
    assert "class _RestrictedUnpickler(pickle.Unpickler)" in unpickle
    assert "_RestrictedUnpickler(fh, encoding=\"bytes\").load()" in unpickle
    assert "restricted_load(f)" in (REPO / "harness" / "data" / "cifar.py").read_text()


@pytest.mark.parametrize("section, key, value", [
    ("search", "epochs", -1), ("search", "epochs", 0), ("train", "batch_size", 0),
    ("search", "C", -4), ("train", "layers", 0), ("data", "num_workers", -1)])
def test_counts_must_be_positive(tmp_path: Path, section: str, key: str, value: int) -> None:
    """`epochs: -1` used to be accepted and write a genotype after 0 steps."""
    from harness.config import ConfigError, load_params
    params = write_params(tmp_path, "unused", profile={section: {key: value}})
    with pytest.raises(ConfigError) as info:
        load_params(params)
    msg = str(info.value)
    assert f"profiles.smoke.{section}" in msg and key in msg and repr(value) in msg
    assert ">= 1" in msg or ">= 0" in msg


def test_seeds_must_be_non_negative(tmp_path: Path) -> None:
    from harness.config import ConfigError, load_params
    params = write_params(tmp_path, "unused", top={"seeds": [0, -2]})
    with pytest.raises(ConfigError, match=r"params\.yaml: seeds\.1: expected a value >= 0, "
                                          r"got -2"):
        load_params(params)
    with pytest.raises(ConfigError, match=r"seeds: expected at least 1 item"):
        load_params(write_params(tmp_path, "unused", top={"seeds": []}))


def test_every_settings_problem_is_one_line_naming_file_and_key(tmp_path: Path) -> None:
    """pydantic reports all problems at once; each line names the file and the dotted key, an
    unknown key in a nested block still gets the closest valid key, and the CLI prints each
    on its own `error:` line (exit status 2)."""
    from harness.config import ConfigError, load_params
    params = write_params(tmp_path, "unused", profile={
        "train": {"optimizer": "adam", "lr": 0, "kd": {"temprature": 2.0}},
        "search": {"train_portion": 1.5, "C": "8"}})
    with pytest.raises(ConfigError) as info:
        load_params(params)
    lines = info.value.problems
    assert len(lines) == 5, lines
    assert all(line.startswith(f"{params}: profiles.smoke.") for line in lines), lines
    text = "\n".join(lines)
    assert "train.optimizer: expected one of 'adamw' or 'sgd', got 'adam'" in text
    assert "train.lr: expected a value > 0, got 0" in text
    assert "train.kd: unknown key 'temprature'; did you mean 'temperature'?" in text
    assert "search.train_portion: expected a value < 1, got 1.5" in text
    assert "search.C: expected an integer, got '8'" in text
    code, err = run_cli_inprocess(params, "search", "--method", "direct_bnas")
    assert_user_error(code, err, "train.optimizer", "kd: unknown key 'temprature'")
    assert err.count("error:") == 5


def test_method_settings_are_checked_where_they_are_set(tmp_path: Path) -> None:
    """A search method declares each setting and its range once (its Config); a bad value in
    a per-method block or an ablation's `set` is reported under that key."""
    from harness.config import ConfigError, load_params
    params = write_params(tmp_path, "unused", profile={
        "search": {"per_method": {"dcpnas": {"tau": 2.0, "second_order": "newton"}}}})
    with pytest.raises(ConfigError) as info:
        load_params(params)
    text = "\n".join(info.value.problems)
    assert "profiles.smoke.search.per_method.dcpnas.tau: expected a value <= 1, got 2.0" in text
    assert "per_method.dcpnas.second_order: expected one of 'ggn', 'ggn_exact' or 'exact'" in text
    params = write_params(tmp_path, "unused", top={"ablations": {
        "dcpnas-x": {"method": "dcpnas", "table": "4.4", "set": {"distanse": "l1"}}}})
    with pytest.raises(ConfigError, match=r"ablations\.dcpnas-x\.set: unknown key 'distanse'; "
                                          r"did you mean 'distance'\?"):
        load_params(params)


# ---- small holes ---------------------------------------------------------------------------

def test_empty_test_set_is_one_line(tmp_path: Path) -> None:
    from harness.data import generate_cifar_like
    root = tmp_path / "cifar"
    generate_cifar_like(root, n_train=64, n_test=0, seed=0)
    params = write_params(tmp_path, root, profile={"data": {"train_subset": 64,
                                                            "test_subset": None}})
    genotype = tmp_path / "cell.json"
    DARTS_V2.save(genotype)
    code, err = run_cli_inprocess(params, "train", "--method", "x", "--genotype", str(genotype))
    assert_user_error(code, err, "the test set of", "is empty")


def test_interrupted_cifar_generation_is_not_read(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A prepare killed between batch files leaves its marker: no loader reads a folder of old
    and new batches side by side."""
    from harness import data as D
    from harness.data import synthetic
    calls = {"n": 0}
    real = synthetic.atomic_write_bytes

    def dies_on_third(path, payload):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        real(path, payload)

    monkeypatch.setattr(synthetic, "atomic_write_bytes", dies_on_third)
    with pytest.raises(KeyboardInterrupt):
        D.generate_cifar_like(tmp_path, n_train=20, n_test=5)
    monkeypatch.undo()
    with pytest.raises(D.DatasetError, match="incomplete.*run `harness prepare` again"):
        D.CIFAR10Pickle(tmp_path, train=True)
    D.generate_cifar_like(tmp_path, n_train=20, n_test=5)   # a full prepare clears it
    assert len(D.CIFAR10Pickle(tmp_path, train=True)) == 20


def test_non_dict_resume_checkpoint_is_one_line(tmp_path: Path,
                                                tmp_path_factory: pytest.TempPathFactory
                                                ) -> None:
    params = write_params(tmp_path, shared_cifar(tmp_path_factory))
    out = search_dir(tmp_path, "direct_bnas", 0)
    out.mkdir(parents=True)
    torch.save([1, 2, 3], out / "checkpoint.pt")
    code, err = run_cli_inprocess(params, *SEARCH)
    assert_user_error(code, err, f"{out / 'checkpoint.pt'}: not a resume checkpoint",
                      "delete it to start the run over")


def test_non_dict_teacher_checkpoint_is_one_line(tmp_path: Path,
                                                 tmp_path_factory: pytest.TempPathFactory
                                                 ) -> None:
    teacher = tmp_path / "teacher.pt"
    torch.save([1.0], teacher)
    params = write_params(tmp_path, shared_cifar(tmp_path_factory), profile={"train": {
        "kd": {"teacher": "torchvision:resnet18", "teacher_checkpoint": str(teacher)}}})
    code, err = run_cli_inprocess(params, "train", "--method", "bireal_resnet18")
    assert_user_error(code, err, "teacher.pt (train.kd.teacher_checkpoint): expected a "
                                 "state_dict")
