"""`harness transfer`: a backbone into an mmdet detector or a torchreid model.

The backbone is a search run or reference backbone that `harness train` retrained (its
model.pt gives the architecture and the initial weights), a registered backbone, or a user
one as ``package.module:function`` (random init unless ``--checkpoint`` is given).
The runners live in ``downstream/`` and return what they measured; this module resolves
names and settings, gives a runner the fingerprint parts only the harness knows (code,
versions, data, starting checkpoint) and writes the run's record (metrics.json) with its
provenance.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from backbones.atomic import storage_errors
from backbones.checkpoint import read_arch
from backbones.registry import UnknownBackboneError, list_backbones
from harness.config import Params
from harness.curves import write_loop_curves
from harness.provenance import data_digest, file_sha256, now_iso, run_inputs
from harness.records import DetectRecord, RecordBase, ReidRecord
from harness.runs import check_name, folder_label
from harness.stages.common import (ensure_writable, locked, run_dir, stage_provenance,
                                   write_metrics)

METRICS_FILE = "metrics.json"


def resolve_backbone(params: Params, name: str, seed: int,
                     checkpoint: Path | None) -> tuple[str, Path | None]:
    """(registry name or module:function, classification checkpoint to start from)."""
    trained = run_dir(params, "train", name, seed) / "model.pt"
    if checkpoint is None and trained.is_file():
        # only the (checked: a registered backbone) arch record is needed here; the runner
        # loads the weights
        return read_arch(trained)["backbone"], trained
    if ":" in name or name in list_backbones():
        return name, checkpoint
    raise UnknownBackboneError(
        f"backbone {name!r}: no retrained network at {trained} (run `harness train --method "
        f"{name} --seed {seed}` first), and it is not a registered backbone "
        f"({', '.join(list_backbones())}) or 'package.module:function'")


def detector_config(params: Params, detector: str | None) -> tuple[str, str]:
    """(detector name, mmdet config path) of the active profile: ``detector`` or the first of
    ``detectors``; an unknown name is one ConfigError listing the profile's."""
    from harness.config import ConfigError
    configs = params.active.detect.configs
    name = detector or (params.detectors[0] if params.detectors else next(iter(configs), ""))
    if name not in configs:
        raise ConfigError(f"--detector {name!r}: not in profiles.{params.profile}.detect.configs "
                          f"of {params.source} (it has {', '.join(sorted(configs))})")
    return name, configs[name]


def run_transfer(params: Params, *, task: str, backbone: str, seed: int = 0,
                 checkpoint: Path | None = None, out_dir: Path | None = None,
                 detector: str | None = None, console: Console | None = None) -> dict[str, Any]:
    """Detection runs go to ``detect/<backbone>-<detector>/seed<k>``, re-ID to
    ``reid/<backbone>/seed<k>``."""
    console = console or Console(stderr=True)
    label = check_name(folder_label(backbone), "--backbone label")
    folder, config = label, None
    if task == "detection":
        detector, config = detector_config(params, detector)
        folder = f"{label}-{detector}"
    spec, init = resolve_backbone(params, backbone, seed, checkpoint)
    stage = "detect" if task == "detection" else "reid"
    work = ensure_writable(out_dir or run_dir(params, stage, folder, seed))
    with locked(work, f"`harness transfer --task {task} --backbone {backbone} --seed {seed}`"):
        return _transfer(params, task, spec, init, label, seed, work, console, config)


def _transfer(params: Params, task: str, spec: str, init: Path | None, label: str, seed: int,
              work: Path, console: Console, config: str | None) -> dict[str, Any]:
    prof = params.active
    console.print(f"{task}: backbone {spec}"
                  + (f" initialised from {init}" if init else " (random init)"))
    if task == "detection":
        d = prof.detect
        with storage_errors(work):   # mmengine writes its work dir itself
            metrics = detect(spec, config=config, work_dir=work, data_root=Path(d.data_root),
                             backbone_kwargs=dict(d.backbone_kwargs), init_checkpoint=init,
                             max_epochs=d.max_epochs, seed=seed, launcher=d.launcher,
                             cfg_options=dict(d.cfg_options), method=label,
                             profile=params.profile)
        console.print(f"[green]detection {label} ({metrics.get('detector')}): bbox mAP {metrics.get('bbox_mAP')} "
                      f"mAP@50 {metrics.get('bbox_mAP_50')}")
        return metrics
    r = prof.reid
    from downstream.reid.config import load_reid_config
    kwargs = load_reid_config(r.config, **r.overrides)
    kwargs.update(seed=seed, init_checkpoint=init)
    with storage_errors(work):   # torchreid and tensorboard write into the work dir too
        metrics = reid(spec, work_dir=work, data_root=Path(r.data_root), method=label,
                       profile=params.profile, **kwargs)
    console.print(f"[green]re-ID {label}: mAP {metrics.get('mAP')} Rank-1 {metrics.get('rank1')}")
    return metrics


def _write(record_cls: type[RecordBase], stage: str, out: dict[str, Any], work_dir: Path,
           data: dict[str, Any], started: str, t0: float, **labels: Any) -> dict[str, Any]:
    """The runner's result as the run's record, with its provenance, in metrics.json."""
    fingerprint = out.pop("fingerprint")
    record = record_cls(**labels, **out,
                        provenance=stage_provenance(stage, fingerprint, data, started, t0))
    return write_metrics(work_dir / METRICS_FILE, record)


def _inputs(stage: str, data: dict[str, Any], init: str | os.PathLike[str] | None,
            world_size: int = 1) -> dict[str, str]:
    return run_inputs(stage, world_size=world_size, data=data,
                      init=file_sha256(init) if init else "none")


def detect(backbone: str, *, config: str | os.PathLike[str], work_dir: Path, data_root: Path,
           method: str, profile: str, seed: int = 0,
           init_checkpoint: Path | None = None, **kwargs: Any) -> dict[str, Any]:
    """``downstream.detection.run.run_detection`` (its keyword arguments pass through), its
    record written to ``work_dir``/metrics.json by the main process; returns the record."""
    from downstream.detection.run import run_detection
    started, t0 = now_iso(), time.perf_counter()
    data = data_digest(data_root)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    out = run_detection(backbone, config=config, work_dir=work_dir, data_root=data_root,
                        seed=seed, init_checkpoint=init_checkpoint,
                        inputs=_inputs("detect", data, init_checkpoint, world), **kwargs)
    return _write(DetectRecord, "detect", out, Path(work_dir), data, started, t0,
                  method=method, seed=seed, profile=profile)


def reid(backbone: str, *, work_dir: Path, data_root: Path, method: str, profile: str,
         seed: int = 0, init_checkpoint: Path | None = None, **kwargs: Any) -> dict[str, Any]:
    """``downstream.reid.run.run_reid`` (its keyword arguments pass through), its record
    written to ``work_dir``/metrics.json; returns the record."""
    from downstream.reid.run import run_reid
    started, t0 = now_iso(), time.perf_counter()
    data = data_digest(data_root)
    out = run_reid(backbone, work_dir=work_dir, data_root=data_root, seed=seed,
                   init_checkpoint=init_checkpoint,
                   inputs=_inputs("reid", data, init_checkpoint),
                   on_epoch=lambda history: write_loop_curves(Path(work_dir), history),
                   **kwargs)
    return _write(ReidRecord, "reid", out, Path(work_dir), data, started, t0,
                  method=method, seed=seed, profile=profile)
