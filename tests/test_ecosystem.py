"""Backbones named from timm and torchvision (backbones/ecosystem.py): the contract without a
wrapper, local pretrained weights only, one clear line where a model cannot serve, and a timm
ResNet-18 through detection and re-ID smoke runs."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from backbones.atomic import CheckpointError
from backbones.ecosystem import EcosystemError
from backbones.registry import BackboneContractError, check_feature_backbone, create_backbone
from harness_fixtures import assert_user_error, run_cli_inprocess, write_params

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[1]
FRCNN_SMOKE = REPO / "downstream/configs/detection/faster-rcnn_harness_fpn_smoke.py"


@pytest.mark.parametrize("name", ["timm:resnet18", "torchvision:resnet18",
                                  "torchvision:mobilenet_v3_small"])
def test_contract_from_the_libraries_feature_apis(name: str) -> None:
    net = create_backbone(name, num_classes=5)
    check_feature_backbone(net, name)
    x = torch.randn(2, 3, 64, 64)
    feats = net.forward_features(x)
    assert [f.shape[1] for f in feats] == net.out_channels
    assert [64 // f.shape[-1] for f in feats] == [4, 8, 16, 32]
    assert net.forward_embedding(x).shape == (2, net.num_features)
    assert net(x).shape == (2, 5)


def test_unknown_names_say_the_closest() -> None:
    with pytest.raises(EcosystemError, match="did you mean 'resnet18'"):
        create_backbone("timm:resnet81")
    with pytest.raises(EcosystemError, match="torchvision classification model 'resnt18'"):
        create_backbone("torchvision:resnt18")


def test_pretrained_only_from_a_local_file(tmp_path: Path) -> None:
    from safetensors.torch import save_file
    src = create_backbone("timm:resnet18", num_classes=1000)
    f = tmp_path / "resnet18.safetensors"
    save_file(src.model.state_dict(), str(f))
    net = create_backbone("timm:resnet18", num_classes=5, pretrained_file=f)
    own = net.model.state_dict()
    assert torch.equal(own["conv1.weight"], src.model.state_dict()["conv1.weight"])
    assert own["fc.weight"].shape == (5, 512)             # a fresh head for 5 classes
    pth = tmp_path / "resnet18.pth"
    torch.save({"state_dict": src.model.state_dict()}, pth)
    again = create_backbone("timm:resnet18", num_classes=1000, pretrained_file=pth)
    assert torch.equal(again.model.state_dict()["fc.weight"], src.model.state_dict()["fc.weight"])
    with pytest.raises(CheckpointError, match="does not exist.*never downloaded"):
        create_backbone("timm:resnet18", pretrained_file=tmp_path / "missing.pth")
    with pytest.raises(CheckpointError, match="resnet18.safetensors.*tensor 'layer1"):
        create_backbone("timm:resnet34", pretrained_file=f)


def test_a_plain_vit_cannot_feed_a_detector(tmp_path: Path) -> None:
    """A ViT's feature maps all have stride 16: the neck needs increasing strides."""
    from downstream.detection.body import probe_backbone
    with pytest.raises(BackboneContractError, match=r"strides \[16, 16.*increasing strides"):
        probe_backbone("timm:vit_tiny_patch16_224", {"dynamic_img_size": True})
    params = write_params(tmp_path, profile={"detect": {
        "configs": {"faster_rcnn": str(FRCNN_SMOKE)}, "data_root": str(tmp_path / "coco"),
        "backbone_kwargs": {"dynamic_img_size": True}}})
    code, err = run_cli_inprocess(params, "transfer", "--task", "detection", "--backbone",
                                  "timm:vit_tiny_patch16_224")
    assert_user_error(code, err, "timm:vit_tiny_patch16_224", "increasing strides")
    assert sum(line.startswith("error:") for line in err.splitlines()) == 1


def test_timm_resnet18_through_detection_and_reid(tmp_path: Path) -> None:
    from downstream.detection.smoke_data import generate_coco_smoke
    from downstream.reid import generate_market_smoke, load_reid_config
    from harness.stages.transfer import detect, reid
    coco = generate_coco_smoke(tmp_path / "coco", n_train=4, n_val=2, size=64, seed=0)
    det = detect("timm:resnet18", config=FRCNN_SMOKE, work_dir=tmp_path / "det", data_root=coco,
                 max_epochs=1, method="timm-resnet18", profile="smoke")
    assert det["backbone"] == "timm:resnet18" and det["out_channels"] == [64, 128, 256, 512]
    assert 0.0 <= det["bbox_mAP"] <= 100.0
    market = generate_market_smoke(tmp_path / "reid", n_ids=6, n_cams=2, imgs_per_id_cam=2,
                                   seed=0)
    m = reid("timm:resnet18", work_dir=tmp_path / "reidrun", data_root=market,
             method="timm-resnet18", profile="smoke",
             **load_reid_config("smoke", max_epoch=1, backbone_kwargs={}, height=64, width=32,
                                batch_size=8))
    assert m["num_params"] > 11e6 and 0.0 <= m["mAP"] <= 100.0


def test_a_library_model_as_a_reference_backbone(tmp_path: Path,
                                                 tmp_path_factory: pytest.TempPathFactory) -> None:
    """`harness train --method timm:resnet18` retrains it beside the searched cells (real-valued:
    the weight binarizer does not apply), into runs/<profile>/train/timm-resnet18/."""
    import json

    from harness_fixtures import shared_cifar, train_dir
    params = write_params(tmp_path, shared_cifar(tmp_path_factory),
                          profile={"train": {"epochs": 1, "max_steps_per_epoch": 1}})
    code, err = run_cli_inprocess(params, "train", "--method", "timm:resnet18", "--seed", "0")
    assert code == 0, err
    out = train_dir(tmp_path, "timm-resnet18", 0)
    m = json.loads((out / "metrics.json").read_text())
    assert m["method"] == "timm:resnet18" and m["bops_m"] == 0 and m["params_m"] > 11
    assert (out / "model.pt").is_file()
    # deployed as the full-precision point: FP32 IR and PyTorch, no binary IR
    code, err = run_cli_inprocess(params, "deploy", "--backbone", "timm:resnet18")
    assert code == 0, err
    dep = tmp_path / "runs/smoke/deploy/timm-resnet18/seed0"
    d = json.loads((dep / "metrics.json").read_text())
    assert d["real_valued"] and d["binary_convs"] == 0 and d["measured_speedup_1t"] is None
    assert set(d["engines"]) == {"fp32_ir", "torch"} and (dep / "ir/fp32/model.xml").is_file()
    assert not (dep / "ir/binary").exists()
    assert d["agreement"]["fp32_ir"]["top1_agreement"] >= 99.0
    assert d["engines"]["fp32_ir"]["latency_1t"]["median_ms"] > 0


def test_pipeline_lists_name_library_models_by_their_folder_spelling(tmp_path: Path) -> None:
    """dvc.yaml turns reference_backbones / backbones / deploy_backbones entries into run-folder
    paths, so they name a library model as its folder does (timm-resnet18): the same model."""
    from harness.config import ConfigError, load_params
    ok = write_params(tmp_path, "unused", top={"reference_backbones": ["timm-resnet18"],
                                               "deploy_backbones": ["timm-resnet18"]})
    assert load_params(ok).reference_backbones == ["timm-resnet18"]
    net = create_backbone("timm-resnet18", num_classes=3)
    assert type(net) is type(create_backbone("timm:resnet18", num_classes=3))
    with pytest.raises(ConfigError, match=r"reference_backbones: 'timm:resnet18': dvc\.yaml "
                                          r"names run folders .* write 'timm-resnet18'"):
        load_params(write_params(tmp_path, "unused",
                                 top={"reference_backbones": ["timm:resnet18"]}))
    with pytest.raises(ConfigError, match=r"backbones: 'mypkg\.mod:fn'.*runs from the command "
                                          r"line"):
        load_params(write_params(tmp_path, "unused", top={"backbones": ["mypkg.mod:fn"]}))


def test_one_state_dict_entry_per_tensor(tmp_path: Path) -> None:
    """The wrappers hold the library model once: its state dict is the model's, under
    ``model.``, so a retrained checkpoint initialises a detector or re-ID body."""
    from backbones.checkpoint import init_from_classifier, save_checkpoint
    for name in ("resnet18_real", "timm:resnet18"):
        net = create_backbone(name, num_classes=10)
        assert all(k.startswith("model.") for k in net.state_dict()), name
        ckpt = tmp_path / f"{name.replace(':', '-')}.pt"
        save_checkpoint(ckpt, net, {"backbone": name, "kwargs": {"num_classes": 10}})
        body = create_backbone(name, num_classes=1000)
        report = init_from_classifier(body, ckpt, log=lambda m: None)
        assert report.skipped_classifier and report.loaded, name
