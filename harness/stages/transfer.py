"""`harness transfer`: a backbone into an mmdet detector or a torchreid model.

The backbone is a search run or reference backbone that `harness train` retrained (its
model.pt gives the architecture and the initial weights), a registered backbone, or a user
one as ``package.module:function`` (random init unless ``--checkpoint`` is given).
The runners live in ``downstream/``; this module resolves names and settings only.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console

from backbones.atomic import storage_errors
from backbones.checkpoint import read_arch
from backbones.registry import UnknownBackboneError, list_backbones
from harness.config import Params
from harness.runs import check_name
from harness.stages.common import ensure_writable, locked, run_dir


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


def run_transfer(params: Params, *, task: str, backbone: str, seed: int = 0,
                 checkpoint: Path | None = None, out_dir: Path | None = None,
                 console: Console | None = None) -> dict[str, Any]:
    console = console or Console(stderr=True)
    spec, init = resolve_backbone(params, backbone, seed, checkpoint)
    label = check_name(backbone.replace(":", "-"), "--backbone label")
    stage = "detect" if task == "detection" else "reid"
    work = ensure_writable(out_dir or run_dir(params, stage, label, seed))
    with locked(work, f"`harness transfer --task {task} --backbone {backbone} --seed {seed}`"):
        return _transfer(params, task, spec, init, label, seed, work, console)


def _transfer(params: Params, task: str, spec: str, init: Path | None, label: str, seed: int,
              work: Path, console: Console) -> dict[str, Any]:
    prof = params.active
    console.print(f"{task}: backbone {spec}"
                  + (f" initialised from {init}" if init else " (random init)"))
    if task == "detection":
        d = prof.detect
        from downstream.detection.run import run_detection
        with storage_errors(work):   # mmengine writes its work dir itself
            metrics = run_detection(spec, config=d.config, work_dir=work, data_root=Path(d.data_root),
                                    backbone_kwargs=dict(d.backbone_kwargs),
                                    init_checkpoint=init, max_epochs=d.max_epochs, seed=seed,
                                    launcher=d.launcher, cfg_options=dict(d.cfg_options),
                                    method=label, profile=params.profile)
        console.print(f"[green]detection {label}: bbox mAP {metrics.get('bbox_mAP')} "
                      f"mAP@50 {metrics.get('bbox_mAP_50')}")
        return metrics
    r = prof.reid
    from downstream.reid.config import load_reid_config
    from downstream.reid.run import run_reid
    kwargs = load_reid_config(r.config, **r.overrides)
    kwargs.update(profile=params.profile, seed=seed, method=label)
    with storage_errors(work):   # torchreid and tensorboard write into the work dir too
        metrics = run_reid(spec, work_dir=work, data_root=r.data_root, init_checkpoint=init,
                           **kwargs)
    console.print(f"[green]re-ID {label}: mAP {metrics.get('mAP')} Rank-1 {metrics.get('rank1')}")
    return metrics
