"""Detection downstream: HarnessBackbone in real mmdet detectors, checkpoint init, smoke set,
run_detection (train + CocoMetric eval + resume), and the Bi-Real ResNet-18 baseline.

Everything is CPU- and 2-core-sized: C=4 NAS bodies, 64-px images, one epoch.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from backbones.atomic import CheckpointError, atomic_torch_save
from backbones.network import NASNetwork
from backbones.registry import (BackboneContractError, UnknownBackboneError, create_backbone,
                                resolve_genotype)
from downstream.detection.smoke_data import generate_coco_smoke
from harness.stages.transfer import detect as recorded_detection
from harness_fixtures import (assert_user_error, run, run_cli_inprocess, torchrun_cmd,
                              write_params)

torch.set_num_threads(1)

CONFIGS = Path(__file__).resolve().parents[1] / "downstream" / "configs" / "detection"
FRCNN_SMOKE = CONFIGS / "faster-rcnn_harness_fpn_smoke.py"
RETINA_SMOKE = CONFIGS / "retinanet_harness_fpn_smoke.py"
TINY_NAS = dict(genotype="darts_v2", C=4, layers=3, stem="imagenet")


# ---------------------------------------------------------------- a user backbone (module:function)
class _TinyUserNet(nn.Module):
    """A minimal FeatureBackbone: two stride-2 convs then two more levels."""

    def __init__(self, width: int = 8, num_classes: int = 10, stem: str = "imagenet") -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, 4, 1), nn.BatchNorm2d(width), nn.ReLU())
        self.stages = nn.ModuleList(
            nn.Sequential(nn.Conv2d(width * 2 ** i, width * 2 ** (i + 1), 3, 2, 1), nn.ReLU())
            for i in range(3))
        self.out_channels = [width * 2, width * 4, width * 8]
        self.num_features = width * 8
        self.classifier = nn.Linear(self.num_features, num_classes)

    def forward_features(self, x):
        x = self.stem(x)
        outs = []
        for stage in self.stages:
            x = stage(x)
            outs.append(x)
        return tuple(outs)

    def forward_embedding(self, x):
        return self.forward_features(x)[-1].mean((2, 3))

    def forward(self, x):
        return self.classifier(self.forward_embedding(x))


def tiny_user_backbone(**kwargs) -> nn.Module:
    return _TinyUserNet(**kwargs)


# ---------------------------------------------------------------- helpers
@pytest.fixture(scope="module")
def smoke_root(tmp_path_factory) -> Path:
    return generate_coco_smoke(tmp_path_factory.mktemp("coco_smoke"), n_train=8, n_val=4,
                               size=64, seed=0)


def _build_detector(config: Path, backbone: str, kwargs: dict, tmp_path: Path):
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules

    from downstream.detection.run import load_detection_config

    register_all_modules(init_default_scope=True)
    cfg, filled = load_detection_config(config, backbone, data_root=tmp_path / "data",
                                        work_dir=tmp_path / "work", backbone_kwargs=kwargs)
    return MODELS.build(cfg.model), cfg, filled


def _forward_loss_and_predict(detector, num_classes: int = 3) -> None:
    from mmdet.testing import demo_mm_inputs

    packed = demo_mm_inputs(2, [[3, 64, 64], [3, 64, 48]], num_items=[2, 1],
                            num_classes=num_classes)
    detector.train()
    data = detector.data_preprocessor(packed, True)
    losses = detector.forward(**data, mode="loss")
    total = sum(v.sum() if isinstance(v, torch.Tensor) else sum(t.sum() for t in v)
                for k, v in losses.items() if "loss" in k)
    assert torch.isfinite(total)
    total.backward()
    assert any(p.grad is not None for p in detector.backbone.parameters())
    detector.eval()
    with torch.no_grad():
        data = detector.data_preprocessor(packed, False)
        preds = detector.forward(**data, mode="predict")
    assert len(preds) == 2
    for p in preds:
        assert p.pred_instances.bboxes.shape[-1] == 4
        assert len(p.pred_instances.scores) == len(p.pred_instances.labels)


def _nas_checkpoint(path: Path, *, C: int, layers: int, stem: str, num_classes: int = 10) -> dict:
    torch.manual_seed(1)
    net = NASNetwork(resolve_genotype("darts_v2"), C=C, layers=layers, stem=stem,
                     num_classes=num_classes)
    state = net.state_dict()
    atomic_torch_save({"model": state, "arch": {"backbone": "nas", "kwargs": {
        "genotype": resolve_genotype("darts_v2").to_dict(), "C": C, "layers": layers,
        "stem": stem, "num_classes": num_classes}}}, path)
    return state


# ---------------------------------------------------------------- Bi-Real ResNet-18
def test_bireal_resnet18_contract():
    net = create_backbone("bireal_resnet18", width=8, num_classes=5, stem="imagenet")
    x = torch.randn(2, 3, 64, 64)
    feats = net.forward_features(x)
    assert len(feats) == 4 and net.out_channels == [8, 16, 32, 64]
    assert [f.shape[1] for f in feats] == net.out_channels
    assert [64 // f.shape[-1] for f in feats] == [4, 8, 16, 32]
    assert net.forward_embedding(x).shape == (2, net.num_features) == (2, 64)
    out = net(x)
    assert out.shape == (2, 5)
    out.sum().backward()
    from backbones.binary import BinaryConv2d
    convs = [m for m in net.modules() if isinstance(m, BinaryConv2d)]
    assert len(convs) == 16  # every 3x3 conv of the 8 basic blocks is binary
    assert all(m.weight.grad is not None for m in convs)
    # first conv and last FC stay real-valued
    assert type(net.stem[0]) is nn.Conv2d and type(net.classifier) is nn.Linear
    # out_indices and the CIFAR stem (stride 1, odd sizes stay aligned)
    sub = create_backbone("bireal_resnet18", width=4, stem="cifar", out_indices=(1, 3))
    feats = sub.forward_features(torch.randn(1, 3, 33, 33))
    assert sub.out_channels == [8, 32] and [f.shape[1] for f in feats] == [8, 32]
    assert [f.shape[-1] for f in feats] == [17, 5]
    with pytest.raises(ValueError, match="out_indices"):
        create_backbone("bireal_resnet18", width=4, out_indices=(4,))


# ---------------------------------------------------------------- detectors from config
def test_faster_rcnn_nas_backbone_loss_and_predict(tmp_path):
    detector, cfg, filled = _build_detector(FRCNN_SMOKE, "nas", TINY_NAS, tmp_path)
    body = detector.backbone.body
    assert isinstance(body, NASNetwork)
    assert cfg.model.neck.in_channels == body.out_channels == detector.backbone.out_channels
    assert filled["strides"] == [8, 16, 32]
    assert cfg.model.rpn_head.anchor_generator.strides == [8, 16, 32, 64, 128]
    assert cfg.model.roi_head.bbox_roi_extractor.featmap_strides == [8, 16, 32, 64]
    assert isinstance(body.classifier, nn.Identity)  # unused head removed
    _forward_loss_and_predict(detector)


def test_retinanet_user_backbone_module_function(tmp_path):
    detector, cfg, filled = _build_detector(RETINA_SMOKE, "test_detection:tiny_user_backbone",
                                            {"width": 4}, tmp_path)
    assert isinstance(detector.backbone.body, _TinyUserNet)
    assert filled["strides"] == [8, 16, 32]
    assert cfg.model.neck.in_channels == [8, 16, 32] and cfg.model.neck.start_level == 0
    assert cfg.model.bbox_head.anchor_generator.strides == [8, 16, 32, 64, 128]
    _forward_loss_and_predict(detector)


def test_bireal_in_faster_rcnn_and_frozen_stages(tmp_path):
    detector, cfg, filled = _build_detector(
        FRCNN_SMOKE, "bireal_resnet18", {"width": 4, "stem": "imagenet"}, tmp_path)
    assert filled["strides"] == [4, 8, 16, 32] and cfg.model.neck.in_channels == [4, 8, 16, 32]
    assert cfg.model.rpn_head.anchor_generator.strides == [4, 8, 16, 32, 64]
    _forward_loss_and_predict(detector)

    from downstream.detection.mmdet_backbone import HarnessBackbone
    bb = HarnessBackbone("bireal_resnet18", {"width": 4}, frozen_stages=1, norm_eval=True)
    bb.train()
    assert not any(p.requires_grad for p in bb.body.stem.parameters())
    assert not any(p.requires_grad for p in bb.body.stages[0].parameters())
    assert all(p.requires_grad for p in bb.body.stages[1].parameters())
    assert not any(m.training for m in bb.modules() if isinstance(m, nn.BatchNorm2d))


def test_bad_backbone_name_is_one_clear_error(tmp_path):
    from downstream.detection.run import run_detection

    with pytest.raises(UnknownBackboneError, match=r"unknown backbone 'nass'.*did you mean 'nas'"):
        run_detection("nass", config=FRCNN_SMOKE, work_dir=tmp_path / "w",
                      data_root=tmp_path / "d")
    code, err = run_cli_inprocess(write_params(tmp_path / "p"), "transfer", "--task",
                                  "detection", "--backbone", "no_such_net")
    assert_user_error(code, err, "backbone 'no_such_net'")
    assert sum(line.startswith("error:") for line in err.splitlines()) == 1
    with pytest.raises(UnknownBackboneError, match="cannot import module"):
        run_detection("no.such.module:fn", config=FRCNN_SMOKE, work_dir=tmp_path / "w",
                      data_root=tmp_path / "d")


# ---------------------------------------------------------------- checkpoint init
def test_checkpoint_init_skips_stem_and_classifier(tmp_path):
    from downstream.detection.mmdet_backbone import HarnessBackbone

    ckpt = tmp_path / "model.pt"
    state = _nas_checkpoint(ckpt, C=4, layers=3, stem="cifar")
    logs: list[str] = []
    bb = HarnessBackbone("nas", {"stem": "imagenet"}, init_checkpoint=str(ckpt))
    body = bb.body
    # genotype / C / layers came from the checkpoint's arch
    assert body.stem_kind == "imagenet" and len(body.cells) == 3
    own = body.state_dict()
    stem_dependent = ("stem", "cells.0.pre0.", "cells.0.pre1.", "cells.1.pre0.", "classifier")
    copied = [k for k in state if not k.startswith(stem_dependent)]
    assert len(copied) > 250 and "cells.0.ops.0.op.0.op.dw.weight" in copied
    assert all(torch.equal(own[k], state[k]) for k in copied)
    # stem-dependent tensors were skipped, not copied
    assert own["stem0.0.weight"].shape != state["stem0.0.weight"].shape
    from downstream.detection.body import init_from_checkpoint
    counts = init_from_checkpoint(body, ckpt, logger=logs.append)
    assert counts["skipped_classifier"] == 2 and counts["skipped_stem"] > 0
    assert sum("stem-dependent" in line for line in logs) == 1
    # same stem: everything but the classifier is loaded
    same = HarnessBackbone("nas", {"stem": "cifar"}, init_checkpoint=str(ckpt))
    own = same.body.state_dict()
    assert all(torch.equal(own[k], v) for k, v in state.items() if not k.startswith("classifier"))


def test_checkpoint_shape_mismatch_names_the_tensor(tmp_path):
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules

    from downstream.detection.mmdet_backbone import HarnessBackbone
    from downstream.detection.run import run_detection

    register_all_modules(init_default_scope=True)
    ckpt = tmp_path / "model.pt"
    _nas_checkpoint(ckpt, C=4, layers=3, stem="imagenet")
    with pytest.raises(CheckpointError) as info:  # C=6 overrides the checkpoint's C=4
        HarnessBackbone("nas", {"stem": "imagenet", "C": 6}, init_checkpoint=str(ckpt))
    msg = str(info.value)
    assert "stem0.0.weight" in msg and "(2, 3, 3, 3)" in msg and "(3, 3, 3, 3)" in msg
    # through the runner entry point: the same single error, before mmengine builds anything
    with pytest.raises(CheckpointError, match=r"tensor 'stem0\.0\.weight' has shape"):
        run_detection("nas", config=FRCNN_SMOKE, work_dir=tmp_path / "w",
                      data_root=tmp_path / "d", backbone_kwargs={"C": 6},
                      init_checkpoint=ckpt)
    # a checkpoint of another architecture: a missing tensor is named too
    with pytest.raises(CheckpointError, match="does not exist|lacks tensor"):
        HarnessBackbone("nas", {"stem": "imagenet", "layers": 4}, init_checkpoint=str(ckpt))
    # and from a plain mmdet model config
    with pytest.raises(CheckpointError, match="stem0.0.weight"):
        MODELS.build(dict(type="HarnessBackbone", backbone="nas",
                          backbone_kwargs={"stem": "imagenet", "C": 6},
                          init_checkpoint=str(ckpt)))
    bad = tmp_path / "junk.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="weights-only"):
        HarnessBackbone("nas", TINY_NAS, init_checkpoint=str(bad))


# ---------------------------------------------------------------- smoke data
def test_smoke_data_is_coco_and_deterministic(tmp_path):
    a = generate_coco_smoke(tmp_path / "a", n_train=3, n_val=2, size=64, seed=3)
    b = generate_coco_smoke(tmp_path / "b", n_train=3, n_val=2, size=64, seed=3)
    c = generate_coco_smoke(tmp_path / "c", n_train=3, n_val=2, size=64, seed=4)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert len(files) == 7
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    assert (a / "train/000000.jpg").read_bytes() != (c / "train/000000.jpg").read_bytes()
    coco = json.loads((a / "annotations/instances_train.json").read_text())
    assert {c["name"] for c in coco["categories"]} == {"square", "disc", "triangle"}
    for ann in coco["annotations"]:
        x, y, w, h = ann["bbox"]
        assert 0 <= x and 0 <= y and x + w <= 64 and y + h <= 64 and 0 < ann["area"] <= w * h
    from pycocotools.coco import COCO
    assert len(COCO(str(a / "annotations/instances_val.json")).getImgIds()) == 2
    mtime = (a / "annotations/instances_train.json").stat().st_mtime_ns
    generate_coco_smoke(a, n_train=3, n_val=2, size=64, seed=3)  # reused, not rewritten
    assert (a / "annotations/instances_train.json").stat().st_mtime_ns == mtime


# ---------------------------------------------------------------- train + eval
def test_tiny_train_eval_writes_metrics(tmp_path, smoke_root, monkeypatch):
    t0 = time.perf_counter()
    # inside a DVC repository, as under `dvc repro`: the run adds nothing to its cache
    subprocess.run([sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], cwd=tmp_path,
                   check=True)
    monkeypatch.chdir(tmp_path)
    work = tmp_path / "work"
    res = recorded_detection("nas", config=FRCNN_SMOKE, work_dir=work, data_root=smoke_root,
                             backbone_kwargs=TINY_NAS, max_epochs=1, seed=0, method="darts_v2",
                             profile="smoke")
    on_disk = json.loads((work / "metrics.json").read_text())
    assert on_disk == res
    assert res["stage"] == "detect" and res["method"] == "darts_v2" and res["seed"] == 0
    assert res["detector"] == "faster_rcnn" and res["dataset"] == "coco_smoke"
    assert 0.0 <= res["bbox_mAP"] <= 100.0 and 0.0 <= res["bbox_mAP_50"] <= 100.0
    assert res["device_kind"] == "cpu" and res["profile"] == "smoke" and res["epochs"] == 1
    assert res["train_seconds"] > 0
    assert (work / "epoch_1.pth").is_file()
    # curves through mmengine's DVCLiveVisBackend: the training loss per logged iteration
    curves = work / "dvclive" / "plots" / "metrics"
    assert len((curves / "loss.tsv").read_text().splitlines()) >= 2
    assert not [p for p in tmp_path.rglob("*.dvc") if p.is_file()]
    assert not list((tmp_path / ".dvc").rglob("cache/*"))
    print(f"tiny train+eval: {time.perf_counter() - t0:.1f}s")
    # the checkpoint mmengine resumes from loads weights-only under the run's scoped allow-list
    # (HistoryBuffer + numpy scalars; no getattr), and only there
    from downstream.detection.workdir import mmengine_safe_globals
    with mmengine_safe_globals():
        ckpt = torch.load(work / "epoch_1.pth", map_location="cpu", weights_only=True)
    assert ckpt["meta"]["epoch"] == 1 and ckpt["message_hub"]["log_scalars"]
    with pytest.raises(Exception, match="Weights only load failed"):
        torch.load(work / "epoch_1.pth", map_location="cpu", weights_only=True)


def test_work_dir_resumes_only_the_same_run(tmp_path):
    """prepare_work_dir: the same fingerprint keeps mmengine's checkpoints (resume); another
    one (config, starting checkpoint, data, code, versions) removes them, so resume=True
    starts over instead of re-validating the old detector under the new settings."""
    from downstream.detection.workdir import FINGERPRINT_FILE, prepare_work_dir

    work = tmp_path / "work"
    work.mkdir()
    fp = {"settings": "a", "code": "b", "init": "c"}
    assert prepare_work_dir(work, fp) == []                    # a new folder
    for name in ("epoch_1.pth", "last_checkpoint", "train_time.json", "metrics.json"):
        (work / name).write_text("x")
    assert prepare_work_dir(work, fp) == []                    # the same run: kept
    assert (work / "epoch_1.pth").exists() and (work / "last_checkpoint").exists()
    logs = []
    assert prepare_work_dir(work, {**fp, "init": "d"}, log=logs.append) == ["init"]
    assert not (work / "epoch_1.pth").exists() and not (work / "last_checkpoint").exists()
    assert not (work / "train_time.json").exists() and "changed: init" in logs[0]
    assert json.loads((work / FINGERPRINT_FILE).read_text())["init"] == "d"
    # checkpoints without a fingerprint (an older version wrote them) are not resumed either
    (work / FINGERPRINT_FILE).unlink()
    (work / "epoch_2.pth").write_text("x")
    assert prepare_work_dir(work, fp) and not (work / "epoch_2.pth").exists()


def test_resume_only_with_the_same_inputs(tmp_path, smoke_root):
    """A second call with the same settings resumes epoch_1.pth (mmengine's own history
    objects are unpickled under the weights-only allow-list) and only evaluates again; a call
    with another config starts over instead of re-validating the old detector."""
    work = tmp_path / "work"
    kw = dict(config=FRCNN_SMOKE, work_dir=work, data_root=smoke_root,
              backbone_kwargs=TINY_NAS, seed=0, max_epochs=1, method="nas", profile="smoke")
    res = recorded_detection("nas", **kw)
    first = json.loads((work / "train_time.json").read_text())
    again = recorded_detection("nas", **kw)
    assert json.loads((work / "train_time.json").read_text()) == first   # nothing retrained
    assert again["bbox_mAP"] == res["bbox_mAP"]
    assert "resumed epoch: 1" in "".join(p.read_text() for p in work.glob("*/*.log"))
    changed = recorded_detection("nas", **kw,
                                 cfg_options={"optim_wrapper.optimizer.lr": 0.002})
    assert json.loads((work / "train_time.json").read_text()) != first  # trained again
    assert changed["provenance"]["fingerprint"]["settings"] != \
        res["provenance"]["fingerprint"]["settings"]
    newest = max(work.glob("*/*.log"), key=lambda p: p.stat().st_mtime)
    assert "resumed epoch" not in newest.read_text()


@pytest.mark.slow
def test_torchrun_two_cpu_processes(tmp_path, smoke_root):
    """`harness transfer --task detection` with launcher 'pytorch' under torchrun on a machine
    without GPUs (gloo, DDP device_ids=None): one record, written by rank 0."""
    params = write_params(tmp_path, profile={"detect": {
        "configs": {"faster_rcnn": str(FRCNN_SMOKE)}, "data_root": str(smoke_root),
        "backbone_kwargs": TINY_NAS,
        "max_epochs": 1, "launcher": "pytorch"}})
    proc = run(torchrun_cmd(params, "transfer", "--task", "detection", "--backbone", "nas"),
               timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads((tmp_path / "runs/smoke/detect/nas-faster_rcnn/seed0/metrics.json")
                     .read_text())
    assert 0.0 <= res["bbox_mAP"] <= 100.0 and res["device_kind"] == "cpu"
    assert res["world_size"] == 2 and res["provenance"]["fingerprint"]["world_size"] == "2"


# ---------------------------------------------------------------- SSD
SSD_SMOKE = CONFIGS / "ssd_harness_smoke.py"


def test_ssd_smoke_trains_and_evaluates(tmp_path, smoke_root):
    """mmdet's SSDNeck + SSDHead on the backbone maps at strides 8 and 16 (one epoch of one
    iteration per batch, then COCO evaluation: mmdet 3.3's own SSDHead could not predict)."""
    res = recorded_detection("nas", config=SSD_SMOKE, work_dir=tmp_path / "ssd",
                             data_root=smoke_root, backbone_kwargs=TINY_NAS, max_epochs=1,
                             method="nas", profile="smoke")
    assert res["detector"] == "ssd" and res["strides"] == [8, 16]
    assert res["level_strides"] == [8, 16, 32, 48] and 0.0 <= res["bbox_mAP"] <= 100.0


def test_every_shipped_config_fills_from_the_backbone(tmp_path):
    """The paper configs (VOC07+12, COCO; Faster R-CNN, RetinaNet, SSD300) and the smoke ones
    load and take the backbone's channels and strides."""
    from downstream.detection.run import load_detection_config
    shipped = sorted(p for p in CONFIGS.glob("*.py"))
    assert {p.name for p in shipped} >= {"ssd300_harness_voc0712.py", "ssd300_harness_coco.py",
                                         "faster-rcnn_harness_fpn_1x_voc0712.py"}
    for config in shipped:
        cfg, filled = load_detection_config(config, "nas", data_root=tmp_path / "d",
                                            work_dir=tmp_path / "w", backbone_kwargs=TINY_NAS)
        if cfg.model.get("neck", {}).get("type") == "SSDNeck":
            assert cfg.model.bbox_head.in_channels == cfg.model.neck.out_channels, config.name
            assert cfg.model.neck.in_channels == filled["out_channels"], config.name
            assert cfg.model.bbox_head.anchor_generator.strides[:2] == [8, 16], config.name
        else:
            assert cfg.model.neck.in_channels == filled["out_channels"], config.name
    with pytest.raises(BackboneContractError, match=r"SSD needs feature maps at strides \[8, 16\]"):
        load_detection_config(SSD_SMOKE, "nas", data_root=tmp_path / "d", work_dir=tmp_path / "w",
                              backbone_kwargs={**TINY_NAS, "stem": "cifar"})
