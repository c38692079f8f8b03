"""Person re-ID with a harness backbone: torchreid's data manager, engine, optimiser and metrics.

``run_reid`` trains with ``torchreid.reid.engine.ImageSoftmaxEngine`` (loss ``softmax``) or
``ImageTripletEngine`` (loss ``softmax_triplet``: cross-entropy + triplet, identity sampler),
using the engine's per-epoch ``train()``; the final evaluation uses the engine's feature
extraction and torchreid's ``compute_distance_matrix`` / ``evaluate_rank`` (Market-1501 protocol:
same-id same-camera gallery images are discarded). It returns the measured metrics (the
``harness transfer`` stage writes them, with their provenance, as the run's metrics.json) and
writes into ``work_dir``:

  checkpoint.pt   model/optimizer/scheduler/RNG state after the last finished epoch, saved
                  atomically and reloaded with weights_only=True (torchreid's own resume calls
                  torch.load without it, so it is not used), keyed by the run's fingerprint
                  (``backbones.resume``): a rerun with the same inputs resumes, one with other
                  inputs starts afresh
  tensorboard/    the engine's training scalars (when tensorboard=True)

Nothing is downloaded: the data root is checked first (``ReIDDataError`` naming the path and
the expected layout), ``pretrained`` ImageNet weights are never fetched (initialise from the
train stage's checkpoint with ``init_checkpoint``) and ranked-result visualisation is off.
"""
from __future__ import annotations

import json
import os
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from backbones.distributed import describe_device
from backbones.resume import (check_finite, read_state, rng_state, save_state, set_rng_state,
                              with_settings)
from downstream.reid.data import check_reid_data_root
from downstream.reid.model import build_reid_model, count_parameters, describe_kwargs

LOSS_NAMES = {"softmax": "softmax", "softmax_triplet": "softmax_triplet",
              "triplet": "softmax_triplet"}
_STATE_KEYS = ("epoch", "train_seconds", "model", "optimizer", "scheduler", "rng")


def _log(msg: str) -> None:
    print(msg, flush=True)


def _import_torchreid():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Cython evaluation")
        import torchreid.reid.data
        import torchreid.reid.engine
        import torchreid.reid.metrics
        import torchreid.reid.optim
    return torchreid.reid


def guard_non_finite(engine: Any, sums: dict[str, float] | None = None) -> None:
    """Check every step's losses (torchreid's ``forward_backward`` summary) for NaN/inf: the
    run stops with one line before the epoch's checkpoint or any metrics are written. With
    ``sums``, each loss is also added up there (and ``steps`` counted): the epoch's means."""
    step = engine.forward_backward
    count = {"n": 0}

    def checked(data: Any) -> dict[str, float]:
        summary = step(data)
        count["n"] += 1
        scalars = {k: float(v) for k, v in summary.items()}
        check_finite(scalars, {}, f"re-ID: epoch {engine.epoch} step {count['n']}")
        if sums is not None:
            for k, v in scalars.items():
                sums[k] = sums.get(k, 0.0) + v
            sums["steps"] = sums.get("steps", 0.0) + 1
        return summary

    engine.forward_backward = checked


# ---------------------------------------------------------------------------------- eval

@torch.no_grad()
def evaluate(engine: Any, dataset: str, *, dist_metric: str = "euclidean",
             normalize_feature: bool = False, max_rank: int = 20) -> dict[str, float]:
    """mAP and CMC (percent) on the query/gallery of ``dataset`` with torchreid's metrics."""
    reid = _import_torchreid()
    engine.set_model_mode("eval")

    def extract(loader: Any) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
        feats, pids, camids = [], [], []
        for data in loader:
            imgs, p, c = engine.parse_data_for_eval(data)
            if engine.use_gpu:
                imgs = imgs.cuda()
            feats.append(engine.extract_features(imgs).cpu())
            pids.extend(p.tolist())
            camids.extend(c.tolist())
        return torch.cat(feats, 0), np.asarray(pids), np.asarray(camids)

    qf, q_pids, q_camids = extract(engine.test_loader[dataset]["query"])
    gf, g_pids, g_camids = extract(engine.test_loader[dataset]["gallery"])
    if normalize_feature:
        qf = torch.nn.functional.normalize(qf, p=2, dim=1)
        gf = torch.nn.functional.normalize(gf, p=2, dim=1)
    same_id = q_pids[:, None] == g_pids[None, :]
    same_cam = q_camids[:, None] == g_camids[None, :]
    n_valid = int((same_id & ~same_cam).any(axis=1).sum())
    if n_valid == 0:
        raise ValueError(f"{dataset}: no query has a gallery image of its identity from another "
                         f"camera, so no query can be evaluated (Market-1501 protocol)")
    # torchreid's evaluate_py stacks per-query CMCs cut at max_rank: keep them equally long
    removed = int((same_id & same_cam).sum(axis=1).max())
    max_rank = max(1, min(max_rank, len(g_pids) - removed))
    distmat = reid.metrics.compute_distance_matrix(qf, gf, dist_metric).numpy()
    cmc, mAP = reid.metrics.evaluate_rank(distmat, q_pids, g_pids, q_camids, g_camids,
                                          max_rank=max_rank)

    def rank(k: int) -> float:
        return float(cmc[min(k, len(cmc)) - 1]) * 100.0

    return {"mAP": float(mAP) * 100.0, "rank1": rank(1), "rank5": rank(5), "rank10": rank(10),
            "rank20": rank(20), "num_query": int(len(q_pids)), "num_valid_query": n_valid,
            "num_gallery": int(len(g_pids))}


# ---------------------------------------------------------------------------------- run

def run_reid(backbone: str, *, work_dir: str | os.PathLike[str],
             data_root: str | os.PathLike[str], dataset: str = "market1501",
             dataset_label: str | None = None, loss: str = "softmax",
             backbone_kwargs: Mapping[str, Any] | None = None,
             init_checkpoint: str | os.PathLike[str] | None = None, max_epoch: int = 60,
             height: int = 256, width: int = 128, batch_size: int = 32, lr: float = 3e-4,
             seed: int = 0, optimizer: str = "adam", weight_decay: float = 5e-4,
             lr_scheduler: str = "single_step", stepsize: int | list[int] = 20,
             gamma: float = 0.1, num_instances: int = 4, margin: float = 0.3,
             weight_t: float = 1.0, weight_x: float = 1.0, label_smooth: bool = True,
             fc_dims: Sequence[int] | None = None, dropout_p: float | None = None,
             transforms: Sequence[str] = ("random_flip",), fixbase_epoch: int = 0,
             open_layers: Sequence[str] | None = None, batch_size_test: int = 100,
             workers: int = 4, dist_metric: str = "euclidean", normalize_feature: bool = False,
             print_freq: int = 10, device: str | None = None, tensorboard: bool = True,
             resume: bool = True, inputs: Mapping[str, str] | None = None,
             on_epoch: Callable[[list[dict[str, float]]], None] | None = None,
             log: Callable[[str], None] = _log) -> dict[str, Any]:
    """Train and evaluate a re-ID model on ``backbone``; returns what it measured (the fields of
    ``harness.records.ReidRecord`` but the run's labels and provenance) and the run's
    ``fingerprint``.

    ``backbone``: a harness registry name (``nas``, ``darts_v2``, ...) or
    ``"package.module:function"``; ``backbone_kwargs`` go to it (``genotype`` (a path or name),
    ``C``, ``layers``, ``stem``; with ``init_checkpoint`` the checkpoint's arch fills in what
    is not given). ``loss``: ``softmax`` or ``softmax_triplet`` (``triplet`` is an alias).
    ``dataset_label`` names the data (default: ``dataset``; the smoke config says
    ``market1501_smoke``: its images are generated, only the layout is Market-1501's).
    ``inputs``: the fingerprint parts other than the settings (code, versions, data, starting
    checkpoint: ``harness.provenance.run_inputs``); without them the run never resumes.
    ``on_epoch`` gets the whole per-epoch history (mean losses, learning rate) after each
    epoch's checkpoint (the harness writes its curves).
    """
    if loss not in LOSS_NAMES:
        raise ValueError(f"unknown loss {loss!r}: expected 'softmax' or 'softmax_triplet'")
    loss = LOSS_NAMES[loss]
    triplet = loss == "softmax_triplet"
    work_dir = Path(work_dir)
    data_base = check_reid_data_root(data_root, dataset)
    if triplet:
        n_ids = len({p.name.split("_")[0] for p in (data_base / "bounding_box_train").glob("*.jpg")}
                    - {"-1"})  # torchreid drops junk (-1) images
        if n_ids < max(1, batch_size // num_instances):
            raise ValueError(f"{data_base}: {n_ids} training identities, fewer than "
                             f"batch_size // num_instances = {batch_size // num_instances} "
                             f"identities per batch needed by RandomIdentitySampler")
    use_gpu = (device is None or str(device).startswith("cuda")) and torch.cuda.is_available()
    if device is not None and str(device).startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} requested but CUDA is not available")
    reid = _import_torchreid()
    work_dir.mkdir(parents=True, exist_ok=True)
    reid.utils.set_random_seed(seed)

    datamanager = reid.data.ImageDataManager(
        root=str(Path(data_root).expanduser().absolute()), sources=dataset, height=height,
        width=width, transforms=list(transforms), batch_size_train=batch_size,
        batch_size_test=batch_size_test, workers=workers, num_instances=num_instances,
        train_sampler="RandomIdentitySampler" if triplet else "RandomSampler", use_gpu=use_gpu)
    if len(datamanager.train_loader) == 0:
        raise ValueError(f"{data_base}: {len(datamanager.train_loader.dataset)} training images "
                         f"make no full batch of batch_size={batch_size}")

    init = None if init_checkpoint is None else str(init_checkpoint)
    model = build_reid_model(backbone, datamanager.num_train_pids,
                             "triplet" if triplet else "softmax",
                             backbone_kwargs=backbone_kwargs, init_checkpoint=init,
                             fc_dims=fc_dims, dropout_p=dropout_p, log=log)
    if use_gpu:
        model = model.cuda()
    optim = reid.optim.build_optimizer(model, optim=optimizer, lr=lr, weight_decay=weight_decay)
    sched = reid.optim.build_lr_scheduler(optim, lr_scheduler=lr_scheduler, stepsize=stepsize,
                                          gamma=gamma, max_epoch=max_epoch)
    if triplet:
        engine = reid.engine.ImageTripletEngine(
            datamanager, model, optim, margin=margin, weight_t=weight_t, weight_x=weight_x,
            scheduler=sched, use_gpu=use_gpu, label_smooth=label_smooth)
    else:
        engine = reid.engine.ImageSoftmaxEngine(datamanager, model, optim, scheduler=sched,
                                                use_gpu=use_gpu, label_smooth=label_smooth)

    settings = {
        "backbone": backbone, "backbone_kwargs": json.loads(describe_kwargs(model.backbone_kwargs)),
        "dataset": dataset, "loss": loss, "max_epoch": max_epoch, "height": height,
        "width": width, "batch_size": batch_size, "lr": lr, "seed": seed, "optimizer": optimizer,
        "weight_decay": weight_decay, "lr_scheduler": lr_scheduler, "stepsize": stepsize,
        "gamma": gamma, "num_instances": num_instances, "margin": margin, "weight_t": weight_t,
        "weight_x": weight_x, "label_smooth": label_smooth,
        "fc_dims": list(fc_dims) if fc_dims else None, "dropout_p": dropout_p,
        "transforms": list(transforms), "fixbase_epoch": fixbase_epoch,
        "open_layers": list(open_layers) if open_layers else None}
    fingerprint = with_settings(inputs, settings)
    ckpt_path = work_dir / "checkpoint.pt"
    start_epoch, train_seconds = 0, 0.0
    history: list[dict[str, float]] = []
    ck = None
    if resume and inputs is not None:
        ck = read_state(ckpt_path, fingerprint, required=_STATE_KEYS, what="re-ID",
                        log=lambda m: log(f"[reid] {m}"))
    if ck is not None:
        model.load_state_dict(ck["model"])
        optim.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        set_rng_state(ck["rng"])
        start_epoch, train_seconds = int(ck["epoch"]), float(ck["train_seconds"])
        history = list(ck.get("history", []))
        log(f"[reid] resumed from {ckpt_path} after epoch {start_epoch}/{max_epoch}")

    if tensorboard:
        from torch.utils.tensorboard import SummaryWriter
        engine.writer = SummaryWriter(log_dir=str(work_dir / "tensorboard"))
    engine.start_epoch, engine.max_epoch = start_epoch, max_epoch
    sums: dict[str, float] = {}
    guard_non_finite(engine, sums)
    try:
        for epoch in range(start_epoch, max_epoch):
            engine.epoch = epoch
            sums.clear()
            t0 = time.perf_counter()
            engine.train(print_freq=print_freq, fixbase_epoch=fixbase_epoch,
                         open_layers=list(open_layers) if open_layers else None)
            if use_gpu:
                torch.cuda.synchronize()
            train_seconds += time.perf_counter() - t0
            steps = max(sums.pop("steps", 0.0), 1.0)
            history.append({"epoch": float(epoch), **{k: v / steps for k, v in sums.items()},
                            "lr": float(optim.param_groups[0]["lr"])})
            save_state(ckpt_path, fingerprint,
                       {"epoch": epoch + 1, "train_seconds": train_seconds,
                        "model": model.state_dict(), "optimizer": optim.state_dict(),
                        "scheduler": sched.state_dict(), "rng": rng_state(),
                        "history": history})
            if on_epoch is not None:
                on_epoch(history)
        result = evaluate(engine, dataset, dist_metric=dist_metric,
                          normalize_feature=normalize_feature)
        if engine.writer is not None:
            engine.writer.add_scalar(f"Test/{dataset}/mAP", result["mAP"], max_epoch)
            engine.writer.add_scalar(f"Test/{dataset}/rank1", result["rank1"], max_epoch)
    finally:
        if engine.writer is not None:
            engine.writer.close()

    where, kind = describe_device(torch.device("cuda", 0) if use_gpu else torch.device("cpu"))
    log(f"[reid] {backbone} {dataset_label or dataset} {loss}: mAP {result['mAP']:.1f} "
        f"rank1 {result['rank1']:.1f} ({train_seconds:.1f}s training)")
    return {"dataset": dataset_label or dataset, "loss": loss, "mAP": result["mAP"],
            "rank1": result["rank1"], "rank5": result["rank5"], "rank10": result["rank10"],
            "train_seconds": round(train_seconds, 3), "device": where, "device_kind": kind,
            "backbone": backbone, "max_epoch": max_epoch, "num_params": count_parameters(model),
            "num_train_ids": int(datamanager.num_train_pids),
            "num_query": result["num_query"], "num_gallery": result["num_gallery"],
            "init_checkpoint": None if init_checkpoint is None else str(init_checkpoint),
            "world_size": 1, "fingerprint": fingerprint}
