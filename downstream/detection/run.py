"""Train and evaluate an mmdet detector with a harness backbone; return what it measured.

    run_detection("nas", config="downstream/configs/detection/faster-rcnn_harness_fpn_smoke.py",
                  work_dir=Path("runs/smoke/detect/dcpnas/seed0"), data_root=Path("data/coco_smoke"),
                  init_checkpoint=Path("runs/smoke/train/dcpnas/seed0/model.pt"), seed=0)

(``harness transfer --task detection`` calls it and writes the run's metrics.json with its
provenance; ``launcher="pytorch"`` under torchrun). Training, checkpointing, resuming
(``resume=True`` continues from the latest ``epoch_N.pth`` in ``work_dir`` after a kill, only
for a run with the same fingerprint: ``workdir.prepare_work_dir``) and distributed launch are
mmengine's ``Runner``; the config is a plain mmdet config whose backbone is
``type='HarnessBackbone'``. Before the Runner is built, the backbone is built once: a bad name,
genotype or checkpoint fails there with one clear error, and its feature channels and strides
fill the neck's ``in_channels``, the anchor generators' ``strides`` and the RoI extractor's
``featmap_strides`` (a config cannot know a searched cell's widths in advance).

Harness keys a config may set (all optional, ignored by mmengine): ``detector_name``,
``dataset_name`` (labels in metrics.json) and ``neck_min_stride`` (FPN ``start_level`` becomes
the first backbone level with at least that stride: RetinaNet's P3-P7 = 8).
"""
from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from backbones.atomic import jsonable
from backbones.distributed import describe_device
from backbones.offline_live import offline_live
from backbones.resume import with_settings
from downstream.detection.workdir import (make_finite_hook, make_run_hook, mmengine_safe_globals,
                                          prepare_work_dir)

_DETECTORS = {"FasterRCNN": "faster_rcnn", "RetinaNet": "retinanet", "SingleStageDetector": "ssd",
              "SSD": "ssd"}


def _walk(node: Any) -> Iterator[dict]:
    """Every dict (mmengine ConfigDict included) inside a config node, depth first."""
    if isinstance(node, dict):
        yield node
        for v in node.values():
            yield from _walk(v)
    elif isinstance(node, (list, tuple)):
        for v in node:
            yield from _walk(v)


def rebase_data_root(cfg: Any, data_root: Path) -> None:
    """Point every dataset ``data_root`` and evaluator ``ann_file`` of ``cfg`` at ``data_root``.

    mmdet base configs bake ``data_root`` into strings when they are parsed, so the old root
    (``cfg.data_root``) is replaced wherever it prefixes a path.
    """
    new = str(data_root).rstrip("/") + "/"
    old = cfg.get("data_root")
    old = None if old is None else str(old)
    for key in ("train_dataloader", "val_dataloader", "test_dataloader", "val_evaluator",
                "test_evaluator"):
        for d in _walk(cfg.get(key)):
            if "data_root" in d:
                d["data_root"] = new
            for k in ("ann_file", "outfile_prefix"):
                v = d.get(k)
                if isinstance(v, str) and old and v.startswith(old):
                    d[k] = new + v[len(old):].lstrip("/")
    cfg.data_root = new


def _level_strides(strides: Sequence[int], neck: Mapping[str, Any]) -> list[int]:
    start = int(neck.get("start_level", 0))
    end = int(neck.get("end_level", -1))
    used = list(strides[start:] if end == -1 else strides[start:end + 1])
    n = int(neck.get("num_outs", len(used)))
    while len(used) < n:
        used.append(used[-1] * 2)
    return used[:n]


def _fill_ssd(cfg: Any, out_channels: Sequence[int], strides: Sequence[int]) -> dict:
    """SSD: the backbone maps at ``ssd_backbone_strides`` (default 8 and 16, where SSD300 taps
    VGG's conv4_3 and fc7) feed mmdet's SSDNeck, which adds its extra layers on the last; the
    neck's and head's channels and the anchors' first strides follow them."""
    model = cfg.model
    wanted = [int(s) for s in cfg.get("ssd_backbone_strides", (8, 16))]
    picked = [strides.index(s) for s in wanted if s in strides]
    if len(picked) != len(wanted):
        from backbones.registry import BackboneContractError
        raise BackboneContractError(
            f"backbone {model.backbone.get('backbone')!r}: SSD needs feature maps at strides "
            f"{wanted}; the backbone gives strides {list(strides)}")
    model.backbone.feature_select = picked
    chosen = [int(out_channels[i]) for i in picked]
    neck = model.neck
    neck.in_channels = chosen
    neck.out_channels = chosen + list(neck.out_channels)[len(chosen):]
    model.bbox_head.in_channels = list(neck.out_channels)
    gen = model.bbox_head.anchor_generator
    gen.strides = wanted + list(gen.strides)[len(wanted):]
    return {"out_channels": chosen, "strides": wanted, "level_strides": list(gen.strides)}


def fill_from_backbone(cfg: Any, out_channels: Sequence[int], strides: Sequence[int]) -> dict:
    """Fill the neck channels and the heads' strides from the probed backbone."""
    model = cfg.model
    neck = model.get("neck")
    if isinstance(neck, dict) and neck.get("type") == "SSDNeck":
        return _fill_ssd(cfg, out_channels, strides)
    level_strides = list(strides)
    if neck is not None:
        if isinstance(neck, (list, tuple)):
            raise ValueError("a list of necks is not supported by run_detection")
        neck.in_channels = list(out_channels)
        min_stride = cfg.get("neck_min_stride")
        if min_stride:
            ok = [i for i, s in enumerate(strides) if s >= int(min_stride)]
            neck.start_level = ok[0] if ok else len(strides) - 1
        if neck.get("type") == "FPN":
            level_strides = _level_strides(strides, neck)
    for d in _walk(model):
        gen = d.get("anchor_generator")
        if isinstance(gen, dict) and "strides" in gen:
            gen["strides"] = list(level_strides)  # one per neck output
        ext = d.get("bbox_roi_extractor")
        if isinstance(ext, dict) and "featmap_strides" in ext:
            ext["featmap_strides"] = list(level_strides[:len(ext["featmap_strides"])])
    return {"out_channels": list(out_channels), "strides": list(strides),
            "level_strides": level_strides}


# --------------------------------------------------------------------------- hooks
# --------------------------------------------------------------------------- metrics
def _pct(v: Any) -> float | None:
    if v is None:
        return None
    v = float(v)
    return None if v < 0 else round(100.0 * v, 2)  # pycocotools: -1 = undefined


def extract_bbox_metrics(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """bbox_mAP / bbox_mAP_50 in percent from CocoMetric (``coco/bbox_mAP*``, 0-1), or from
    VOCMetric: VOC's mAP is defined at IoU 0.5 (``pascal_voc/mAP``, the number the papers
    report for VOC), so both keys hold it and ``metric`` says "voc"."""
    if "coco/bbox_mAP" in metrics:
        return {"bbox_mAP": _pct(metrics["coco/bbox_mAP"]) or 0.0,
                "bbox_mAP_50": _pct(metrics.get("coco/bbox_mAP_50")) or 0.0, "metric": "coco"}
    if "pascal_voc/mAP" in metrics:
        ap50 = _pct(metrics["pascal_voc/mAP"]) or 0.0
        return {"bbox_mAP": ap50, "bbox_mAP_50": ap50, "metric": "voc"}
    # CocoMetric logs "The testing results of the whole dataset is empty" and returns no
    # bbox keys when the detector predicted nothing at all: that is an mAP of 0
    return {"bbox_mAP": 0.0, "bbox_mAP_50": 0.0, "metric": "coco (no detections)"}


def _device(model: torch.nn.Module) -> tuple[str, str]:
    try:
        dev = next(model.parameters()).device
    except StopIteration:
        dev = torch.device("cpu")
    return describe_device(dev)


# --------------------------------------------------------------------------- the entry point
def load_detection_config(config: str | os.PathLike[str], backbone: str, *, data_root: Path,
                          work_dir: Path, backbone_kwargs: Mapping[str, Any] | None = None,
                          init_checkpoint: Path | None = None, max_epochs: int | None = None,
                          seed: int = 0, launcher: str = "none", resume: bool = True,
                          cfg_options: Mapping[str, Any] | None = None,
                          load_checkpoint: bool = True) -> tuple[Any, dict]:
    """The filled mmengine Config (and the probed backbone info) ``run_detection`` trains."""
    from mmengine.config import Config

    import downstream.detection.mmdet_backbone  # noqa: F401 - registers HarnessBackbone
    from downstream.detection.mmdet_backbone import harness_backbone_info

    config = Path(config)
    if not config.is_file():
        raise FileNotFoundError(f"detection config {config} not found")
    cfg = Config.fromfile(str(config))
    if cfg_options:
        cfg.merge_from_dict(dict(cfg_options))
    bb = cfg.model.backbone
    if bb.get("type") != "HarnessBackbone":
        raise ValueError(f"{config}: model.backbone.type is {bb.get('type')!r}, expected "
                         f"'HarnessBackbone'")
    bb.backbone = backbone
    merged = dict(bb.get("backbone_kwargs") or {})
    merged.update(backbone_kwargs or {})
    bb.backbone_kwargs = merged
    if init_checkpoint is not None:
        bb.init_checkpoint = str(init_checkpoint)
    info = harness_backbone_info(bb, load_checkpoint=load_checkpoint)
    filled = fill_from_backbone(cfg, info.out_channels, info.strides)
    rebase_data_root(cfg, Path(data_root))
    if max_epochs is not None:
        cfg.train_cfg.max_epochs = int(max_epochs)
    cfg.work_dir = str(work_dir)
    cfg.launcher = launcher
    if launcher != "none" and not torch.cuda.is_available():
        # mmengine 0.10.7's launchers call torch.cuda.set_device and wrap the model with
        # device_ids=[LOCAL_RANK]: on CPU, run_detection initialises gloo itself (see
        # _init_cpu_distributed) and DDP gets device_ids=None
        cfg.model_wrapper_cfg = dict(
            type="MMDistributedDataParallel", device_ids=None, broadcast_buffers=False,
            find_unused_parameters=bool(cfg.get("find_unused_parameters", False)))
    cfg.resume = bool(resume)
    cfg.load_from = None
    # curves through DVC's logger (mmengine's own backend): <work_dir>/dvclive, beside the
    # local backend; dvclive neither edits dvc.yaml nor makes experiments of its own, and
    # logs no artifacts (mmengine's default `dvc add`s the run's .py/.json/yaml files into the
    # repository's cache on close: the config and metrics are the stage's own outputs)
    vis = cfg.get("visualizer")
    if vis is not None:
        vis.vis_backends = [b for b in vis.get("vis_backends", [])
                            if b.get("type") != "DVCLiveVisBackend"]
        vis.vis_backends.append(dict(
            type="DVCLiveVisBackend", save_dir=str(Path(work_dir) / "dvclive"),
            artifact_suffix=(),
            init_kwargs=dict(resume=bool(resume), save_dvc_exp=False, dvcyaml=None,
                             report=None, monitor_system=False, cache_images=False)))
    cfg.randomness = dict(seed=int(seed), deterministic=False)
    return cfg, filled


def run_detection(backbone: str, *, config: str | os.PathLike[str], work_dir: Path,
                  data_root: Path, backbone_kwargs: dict | None = None,
                  init_checkpoint: Path | None = None, max_epochs: int | None = None,
                  seed: int = 0, launcher: str = "none", resume: bool = True,
                  cfg_options: dict | None = None,
                  inputs: dict[str, str] | None = None) -> dict:
    """Train + evaluate; returns what it measured (the fields of ``harness.records.DetectRecord``
    but the run's labels and provenance) and the run's ``fingerprint``.

    ``backbone`` is a registry name or ``module:function``; ``backbone_kwargs`` override the
    config's (and, for a checkpoint of the same backbone, the checkpoint's ``arch.kwargs``).
    ``inputs``: the fingerprint parts other than the settings (code, versions, data, world
    size, starting checkpoint: ``harness.provenance.run_inputs``); without them the run never
    resumes.
    """
    from mmengine.runner import Runner
    from mmdet.utils import register_all_modules

    register_all_modules(init_default_scope=False)
    work_dir = Path(work_dir)
    cfg, filled = load_detection_config(
        config, backbone, data_root=data_root, work_dir=work_dir,
        backbone_kwargs=backbone_kwargs, init_checkpoint=init_checkpoint,
        max_epochs=max_epochs, seed=seed, launcher=launcher,
        resume=resume and inputs is not None, cfg_options=cfg_options)
    if not Path(data_root).is_dir():
        raise FileNotFoundError(f"detection data root {data_root} not found (the smoke set: "
                                f"`harness prepare`, or "
                                f"downstream.detection.smoke_data.generate_coco_smoke(root))")
    work_dir.mkdir(parents=True, exist_ok=True)
    settings = {k: v for k, v in cfg.to_dict().items()
                if k not in ("work_dir", "launcher", "resume", "load_from", "model_wrapper_cfg")}
    world = int(os.environ.get("WORLD_SIZE", "1"))
    fp = with_settings(inputs, backbone, settings, seed)
    if int(os.environ.get("RANK", "0")) == 0:
        prepare_work_dir(work_dir, fp)
    if launcher != "none" and not torch.cuda.is_available():
        _init_cpu_distributed(launcher)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()   # rank 0 has cleaned the work dir (on GPU, mmengine's
        # process group starts in Runner.from_cfg, after rank 0's cleaning)
    with offline_live():     # the visualizer's dvclive: curves only, no repository
        runner = Runner.from_cfg(cfg)
        hook = make_run_hook(work_dir)
        runner.register_hook(hook)
        runner.register_hook(make_finite_hook())
        t0 = time.perf_counter()
        with mmengine_safe_globals():
            runner.train()
            max_ep = int(runner.train_loop.max_epochs)
            metrics = hook.val.get(max_ep)
            if metrics is None:  # resumed after the last epoch, or val_interval skipped it
                metrics = dict(runner.val())
    wall = time.perf_counter() - t0
    device, kind = _device(runner.model)
    train_dataset = cfg.train_dataloader.dataset
    while "dataset" in train_dataset:  # RepeatDataset / ClassBalancedDataset wrappers
        train_dataset = train_dataset.dataset
    return {"detector": cfg.get("detector_name") or _DETECTORS.get(cfg.model.type,
                                                                  str(cfg.model.type).lower()),
            "dataset": cfg.get("dataset_name") or str(train_dataset.get("type", "unknown")),
            **extract_bbox_metrics(metrics),
            "train_seconds": round(hook.train_seconds(max_ep), 2), "wall_seconds": round(wall, 2),
            "device": device, "device_kind": kind, "epochs": max_ep, "backbone": backbone,
            "backbone_kwargs": jsonable(cfg.model.backbone.backbone_kwargs),
            "init_checkpoint": None if init_checkpoint is None else str(init_checkpoint),
            "config": str(config), **filled,
            "raw_metrics": {k: v for k, v in ((k, jsonable(v)) for k, v in metrics.items())
                            if isinstance(v, (int, float, str)) or v is None},
            "world_size": world, "fingerprint": fp}


def _init_cpu_distributed(launcher: str) -> None:
    """CPU-only distributed run (torchrun on a machine without GPUs): a gloo process group from
    the torchrun environment, created before mmengine's Runner (which then uses it)."""
    import torch.distributed as dist

    if launcher != "pytorch":
        raise ValueError(f"launcher {launcher!r} needs GPUs with mmengine 0.10.7; on CPU use "
                         f"'pytorch' (torchrun) or 'none'")
    if not dist.is_initialized():
        dist.init_process_group(backend="gloo")
