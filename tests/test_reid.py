"""Tests of downstream.reid: torchreid factory models, Market-1501 smoke data, train+eval runs,
data-root errors, user backbones, and initialisation from the train stage's checkpoint."""
from __future__ import annotations

import hashlib
import json
import re
import textwrap
import warnings
from collections import defaultdict
from pathlib import Path

import pytest
import torch

from backbones.atomic import CheckpointError, atomic_torch_save
from backbones.genotypes import DARTS_V2
from backbones.network import NASNetwork
from backbones.registry import BackboneContractError
from backbones.checkpoint import init_from_classifier, stem_dependent_prefixes
from downstream.reid import (
    ReIDDataError,
    build_reid_model,
    generate_market_smoke,
    load_reid_config,
    register_harness_model,
    register_harness_models,
    run_reid,
)
from downstream.reid.config import CONFIG_DIR, ReIDConfigError
from harness.stages.transfer import reid as recorded_reid
from harness_fixtures import assert_user_error, run_cli_inprocess, write_params

torch.set_num_threads(1)
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import torchreid.reid.models as trm
    from torchreid.reid.data.datasets import init_image_dataset

TINY = {"C": 4, "layers": 3, "stem": "imagenet"}
SPLITS = ("bounding_box_train", "query", "bounding_box_test")
MARKET_RE = re.compile(r"([-\d]+)_c(\d)")  # torchreid's Market1501.process_dir pattern
STRICT_RE = re.compile(r"^(-1|\d{4})_c([1-6])s1_(\d{6})_(\d{2})\.jpg$")


@pytest.fixture(scope="module")
def smoke_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_market_smoke(tmp_path_factory.mktemp("reiddata"), n_ids=12, n_cams=4,
                                 imgs_per_id_cam=3, seed=0)


def _smoke_kwargs(**over) -> dict:
    return load_reid_config("smoke", max_epoch=1, backbone_kwargs=dict(TINY), **over)


# ---------------------------------------------------------------------------- model / factory

def test_factory_models_shapes() -> None:
    names = register_harness_models(backbone_kwargs=TINY)
    assert "harness_nas" in names and "harness_darts_v2" in names
    x = torch.randn(4, 3, 64, 32)
    model = trm.build_model("harness_nas", num_classes=5, loss="softmax")
    model.train()
    assert model(x).shape == (4, 5)
    model.eval()
    feats = model(x)
    assert feats.shape == (4, model.feature_dim) == (4, model.backbone.num_features)

    tri = trm.build_model("harness_nas", num_classes=5, loss="triplet", pretrained=True)
    tri.train()
    logits, f = tri(x)
    assert logits.shape == (4, 5) and f.shape == (4, tri.feature_dim)
    tri.eval()
    assert tri(x).shape == (4, tri.feature_dim)

    register_harness_model("harness_nas_fc16", "nas", TINY, fc_dims=[16])
    fc = trm.build_model("harness_nas_fc16", num_classes=3, loss="triplet").train()
    logits, f = fc(x)
    assert logits.shape == (4, 3) and f.shape == (4, 16)
    assert fc.eval()(x).shape == (4, 16)
    with pytest.raises(KeyError, match="Unsupported loss"):
        trm.build_model("harness_nas", num_classes=3, loss="arcface")


# ---------------------------------------------------------------------------- smoke data

def _files(root: Path) -> dict[str, list[str]]:
    base = root / "market1501" / "Market-1501-v15.09.15"
    return {s: sorted(p.name for p in (base / s).glob("*.jpg")) for s in SPLITS}


def test_smoke_layout_names_and_queries(smoke_root: Path) -> None:
    files = _files(smoke_root)
    parsed = {}
    for split, names in files.items():
        assert names, split
        parsed[split] = []
        for name in names:
            m = STRICT_RE.match(name)
            assert m, name
            pid, cam = map(int, MARKET_RE.search(name).groups())
            assert (pid, cam) == (int(m.group(1)), int(m.group(2)))
            parsed[split].append((pid, cam))
    train_ids = {p for p, _ in parsed["bounding_box_train"]}
    test_ids = {p for p, _ in parsed["query"] + parsed["bounding_box_test"]} - {0, -1}
    assert len(train_ids) >= 4 and not train_ids & test_ids
    assert {0, -1} <= {p for p, _ in parsed["bounding_box_test"]}  # distractors and junk
    cams_per_id = defaultdict(set)
    for p, c in parsed["bounding_box_train"]:
        cams_per_id[p].add(c)
    assert all(len(c) >= 2 for c in cams_per_id.values())
    # every query has a same-id gallery image from another camera, as torchreid loads them
    kw = dict(root=str(smoke_root), verbose=False)
    query = init_image_dataset("market1501", mode="query", **kw).query
    gallery = init_image_dataset("market1501", mode="gallery", **kw).gallery
    assert len(query) == len(files["query"])
    for _, qpid, qcam, _ in query:
        assert any(g[1] == qpid and g[2] != qcam for g in gallery), (qpid, qcam)


def test_smoke_is_deterministic_and_kept(tmp_path: Path, smoke_root: Path) -> None:
    def digest(root: Path) -> str:
        base = root / "market1501" / "Market-1501-v15.09.15"
        h = hashlib.sha256()
        for p in sorted(base.rglob("*.jpg")):
            h.update(p.relative_to(base).as_posix().encode() + p.read_bytes())
        return h.hexdigest()

    again = generate_market_smoke(tmp_path / "a", n_ids=12, n_cams=4, imgs_per_id_cam=3, seed=0)
    assert digest(again) == digest(smoke_root)
    stamp = again / "market1501" / "SMOKE.json"
    mtime = stamp.stat().st_mtime_ns
    generate_market_smoke(again, n_ids=12, n_cams=4, imgs_per_id_cam=3, seed=0)
    assert stamp.stat().st_mtime_ns == mtime  # same arguments: kept
    generate_market_smoke(again, n_ids=12, n_cams=4, imgs_per_id_cam=3, seed=1)
    assert digest(again) != digest(smoke_root)
    assert not [p for p in again.iterdir() if p.name.startswith(".")]  # no temp left over
    (tmp_path / "real" / "market1501").mkdir(parents=True)  # not ours: never overwritten
    with pytest.raises(ReIDDataError, match="not overwriting"):
        generate_market_smoke(tmp_path / "real")


# ---------------------------------------------------------------------------- runs

def _check_metrics(m: dict, work_dir: Path, loss: str) -> None:
    on_disk = json.loads((work_dir / "metrics.json").read_text())
    assert on_disk == m
    for key in ("stage", "method", "seed", "dataset", "loss", "mAP", "rank1", "rank5", "rank10",
                "train_seconds", "device", "device_kind", "profile"):
        assert key in m, key
    assert m["stage"] == "reid" and m["dataset"] == "market1501_smoke" and m["loss"] == loss
    assert m["device_kind"] in ("cpu", "gpu") and m["profile"] == "smoke"
    for key in ("mAP", "rank1", "rank5", "rank10"):
        assert 0.0 <= m[key] <= 100.0, (key, m[key])
    assert m["rank1"] <= m["rank5"] <= m["rank10"]
    assert m["train_seconds"] > 0


def test_tiny_softmax_run_and_resume(tmp_path: Path, smoke_root: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    work = tmp_path / "softmax"
    m = recorded_reid("nas", work_dir=work, data_root=smoke_root, method="dcpnas",
                      profile="smoke", **_smoke_kwargs(seed=3))
    _check_metrics(m, work, "softmax")
    assert m["method"] == "dcpnas" and m["seed"] == 3
    assert (work / "checkpoint.pt").is_file()
    capsys.readouterr()
    again = recorded_reid("nas", work_dir=work, data_root=smoke_root, method="dcpnas",
                          profile="smoke", **_smoke_kwargs(seed=3))
    assert "resumed from" in capsys.readouterr().out  # finished run: no retraining
    rows = (work / "dvclive/plots/metrics/loss.tsv").read_text().splitlines()
    assert rows[0] == "step\tloss" and len(rows) == 2          # one epoch, once
    assert again["mAP"] == pytest.approx(m["mAP"]) and again["train_seconds"] == m["train_seconds"]
    assert again["provenance"]["fingerprint"] == m["provenance"]["fingerprint"]
    # the runner alone (no fingerprint inputs from the harness) never resumes, and writes no
    # record: metrics.json stays the harness's
    before = (work / "metrics.json").read_text()
    alone = run_reid("nas", work_dir=work, data_root=smoke_root, **_smoke_kwargs(seed=3))
    assert "resumed from" not in capsys.readouterr().out
    assert set(alone["fingerprint"]) == {"settings"}
    assert (work / "metrics.json").read_text() == before


def test_tiny_triplet_run(tmp_path: Path, smoke_root: Path) -> None:
    work = tmp_path / "triplet"
    m = recorded_reid("nas", work_dir=work, data_root=smoke_root, method="nas", profile="smoke",
                      **load_reid_config(CONFIG_DIR / "smoke_triplet.yaml", max_epoch=1,
                                         backbone_kwargs=TINY, tensorboard=True))
    _check_metrics(m, work, "softmax_triplet")
    assert any((work / "tensorboard").iterdir())


def test_user_backbone_module_function(tmp_path: Path, smoke_root: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "reid_user_bb.py").write_text(textwrap.dedent("""
        from torch import nn

        class Tiny(nn.Module):
            def __init__(self, width=8):
                super().__init__()
                self.body = nn.Sequential(nn.Conv2d(3, width, 3, stride=2, padding=1),
                                          nn.BatchNorm2d(width), nn.ReLU())
                self.out_channels = [width]
                self.num_features = width

            def forward_features(self, x):
                return (self.body(x),)

            def forward_embedding(self, x):
                return self.body(x).mean((2, 3))

        def tiny(**kwargs):
            return Tiny(**kwargs)
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    name = register_harness_model("harness_user_tiny", "reid_user_bb:tiny", {"width": 6})
    model = trm.build_model(name, num_classes=4, loss="softmax").eval()
    assert model(torch.randn(2, 3, 64, 32)).shape == (2, 6)
    work = tmp_path / "user"
    m = recorded_reid("reid_user_bb:tiny", work_dir=work, data_root=smoke_root,
                      method="reid_user_bb-tiny", profile="smoke",
                      **load_reid_config("smoke", max_epoch=1, backbone_kwargs=None))
    _check_metrics(m, work, "softmax")
    assert m["backbone"] == "reid_user_bb:tiny"
    with pytest.raises(BackboneContractError, match="lacks"):
        register_harness_model("harness_user_bad", "torch.nn:Identity")
        trm.build_model("harness_user_bad", num_classes=2)


# ---------------------------------------------------------------------------- errors

def test_data_root_without_layout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ReIDDataError) as exc:
        run_reid("nas", work_dir=tmp_path / "w", data_root=tmp_path / "empty", **_smoke_kwargs())
    msg = str(exc.value)
    assert str(tmp_path / "empty") in msg
    assert "market1501/Market-1501-v15.09.15/{bounding_box_train,query,bounding_box_test}" in msg
    base = tmp_path / "partial" / "market1501" / "Market-1501-v15.09.15"
    (base / "bounding_box_train").mkdir(parents=True)
    (base / "bounding_box_train" / "0001_c1s1_000001_01.jpg").write_bytes(b"")
    with pytest.raises(ReIDDataError, match=r"query is not a directory"):
        run_reid("nas", work_dir=tmp_path / "w", data_root=tmp_path / "partial",
                 **_smoke_kwargs())
    with pytest.raises(ReIDDataError, match="dukemtmc-reid/DukeMTMC-reID"):
        run_reid("nas", work_dir=tmp_path / "w", data_root=tmp_path / "partial",
                 **_smoke_kwargs(dataset="dukemtmcreid"))
    assert not (tmp_path / "empty").exists()  # nothing created, nothing downloaded
    params = write_params(tmp_path / "p",
                          profile={"reid": {"data_root": str(tmp_path / "empty")}})
    code, err = run_cli_inprocess(params, "transfer", "--task", "reid", "--backbone",
                                  "bireal_resnet18")
    assert_user_error(code, err, str(tmp_path / "empty"), "market1501/Market-1501-v15.09.15")
    assert sum(line.startswith("error:") for line in err.splitlines()) == 1


def test_configs() -> None:
    shipped = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
    assert {"market1501_softmax", "market1501_softmax_triplet", "dukemtmcreid_softmax",
            "dukemtmcreid_softmax_triplet", "smoke"} <= set(shipped)
    for name in shipped:
        cfg = load_reid_config(CONFIG_DIR / f"{name}.yaml")
        assert cfg["loss"] in ("softmax", "softmax_triplet")
        if name.startswith(("market", "duke")):
            assert (cfg["height"], cfg["width"], cfg["max_epoch"], cfg["lr"]) == (256, 128, 60,
                                                                                   3e-4)
            assert "profile" not in cfg   # the harness labels the record with its profile
    cfg = load_reid_config("market1501_softmax", backbone_kwargs={"C": 36}, seed=2)
    assert cfg["backbone_kwargs"] == {"stem": "imagenet", "C": 36} and cfg["seed"] == 2
    with pytest.raises(ReIDConfigError, match="bogus"):
        load_reid_config("smoke", bogus=1)
    with pytest.raises(ReIDConfigError, match="shipped configs"):
        load_reid_config("no_such_config")


# ---------------------------------------------------------------------------- init from train

def _train_checkpoint(path: Path, stem: str = "cifar", **over) -> NASNetwork:
    kwargs = {"C": 4, "layers": 3, "stem": stem, "num_classes": 10, **over}
    torch.manual_seed(7)
    net = NASNetwork(DARTS_V2, **kwargs)
    with torch.no_grad():
        for t in net.state_dict().values():
            if t.is_floating_point():
                t.add_(torch.rand_like(t))
    atomic_torch_save({"model": net.state_dict(),
                       "arch": {"backbone": "nas",
                                "kwargs": {"genotype": DARTS_V2.to_dict(), **kwargs}}}, path)
    return net


def test_init_from_classifier_checkpoint(tmp_path: Path) -> None:
    ckpt = tmp_path / "model.pt"
    src = _train_checkpoint(ckpt, stem="cifar").state_dict()
    logs: list[str] = []
    same = build_reid_model("nas", 7, backbone_kwargs={"stem": "cifar"}, init_checkpoint=ckpt,
                            log=logs.append)
    own = same.backbone.state_dict()
    assert same.backbone.num_features == 4 * 4 * 4 and "classifier.weight" not in own
    for k, v in own.items():
        assert torch.equal(v, src[k]), k
    assert sorted(same.init_report.skipped_classifier) == ["classifier.bias", "classifier.weight"]
    assert not same.init_report.skipped_stem

    logs.clear()
    other = build_reid_model("nas", 7, backbone_kwargs={"stem": "imagenet"},
                             init_checkpoint=ckpt, log=logs.append)
    stem_lines = [line for line in logs if "stem" in line and "!=" in line]
    assert len(stem_lines) == 1, logs
    prefixes = stem_dependent_prefixes(other.backbone)
    loaded = 0
    for k, v in other.backbone.state_dict().items():
        if not k.startswith(prefixes):
            assert torch.equal(v, src[k]), k
            loaded += 1
    assert loaded == len(other.init_report.loaded) > 100
    assert other.init_report.skipped_stem

    with pytest.raises(CheckpointError, match=r"shape \(.*\) in the checkpoint but \(.*\)"):
        build_reid_model("nas", 7, backbone_kwargs={"C": 6}, init_checkpoint=ckpt)
    changed = DARTS_V2.to_dict()
    changed["normal"][0][0] = "max_pool_3x3" if changed["normal"][0][0] != "max_pool_3x3" \
        else "avg_pool_3x3"
    (tmp_path / "g.json").write_text(json.dumps(changed))
    with pytest.raises(CheckpointError, match="genotype differs"):
        build_reid_model("nas", 7, backbone_kwargs={"genotype": str(tmp_path / "g.json")},
                         init_checkpoint=ckpt)
    bad = tmp_path / "bad.pt"
    torch.save({"weights": {}}, bad)
    with pytest.raises(CheckpointError, match="expected a dict with 'model'"):
        build_reid_model("nas", 7, init_checkpoint=bad)
    # a backbone built elsewhere: a tensor the checkpoint lacks is named
    net = NASNetwork(DARTS_V2, C=4, layers=4, stem="cifar")
    with pytest.raises(CheckpointError, match="cells.3"):
        init_from_classifier(net, ckpt)


def test_run_from_train_checkpoint(tmp_path: Path, smoke_root: Path) -> None:
    ckpt = tmp_path / "runs" / "smoke" / "train" / "dcpnas" / "seed0" / "model.pt"
    _train_checkpoint(ckpt, stem="cifar")
    work = tmp_path / "reid"
    m = recorded_reid("nas", work_dir=work, data_root=smoke_root, init_checkpoint=ckpt,
                      method="dcpnas", profile="smoke", **load_reid_config("smoke", max_epoch=1))
    _check_metrics(m, work, "softmax")
    assert m["init_checkpoint"] == str(ckpt)


def test_config_keys_are_run_reids_arguments() -> None:
    """The config declares its keys (it does not import the runner): they must stay equal."""
    import inspect

    from downstream.reid.config import CONFIG_KEYS, PER_RUN
    from downstream.reid.run import run_reid
    assert list(CONFIG_KEYS) == [k for k in inspect.signature(run_reid).parameters
                                 if k not in PER_RUN]
