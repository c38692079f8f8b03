"""`harness train`: retrain the 1-bit network of a searched genotype and measure it.

Cross-entropy, optional KD from a real-valued teacher (KL of output distributions, as the
official DCP-NAS retraining), optional two-step schedule (step 1: binary activations with
real weights and weight decay; step 2: fully binary, weight decay 0, starting from step 1).
Writes runs/<profile>/train/<name>/seed<k>/: model.pt, metrics.json (top-1/top-5, params, OPs, memory,
wall-clock cost and device), and per-epoch checkpoints for resume.
"""
from __future__ import annotations

import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from rich.console import Console
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from backbones.atomic import CheckpointError, load_state_dict_strict, safe_torch_load
from backbones.checkpoint import build_network, nas_arch, save_checkpoint
from backbones.binary import set_weight_binarization, weight_binarizer
from backbones.genotypes import Genotype
from backbones.losses import kd_loss
from backbones.registry import create_backbone
from backbones.evaluation import evaluate
from backbones import distributed as dist_utils
from harness.accel import autocast, prepare_module, setup_device, to_device
from harness.config import ConfigError, KDSection, Params, TrainSection
from harness.costs import model_cost, run_cost
from harness.data import build_train_loaders
from harness.curves import write_loop_curves
from harness.engine import LoopResult, run_loop, set_loader_epoch
from harness.provenance import file_sha256, fingerprint, now_iso
from harness.records import RecordError, SearchRecord, TrainRecord, read_record
from harness.stages.common import (common_metrics, data_config, debug_dump, ensure_writable,
                                   loader_files, loader_sample, locked, param_digest, run_dir,
                                   resolve_network, sampler_indices, seed_everything,
                                   shared_data_digest, stage_provenance, write_metrics)


class CPParent:
    """CP-NAS in retraining: the real-valued Parent (same genotype) and its optimizer; the
    1-bit network's loss gains the kernel-level CP loss against it (``cfg.cp_loss``)."""

    def __init__(self, parent: nn.Module, optimizer: torch.optim.Optimizer,
                 pairs: list[tuple[nn.Conv2d, nn.Conv2d]]) -> None:
        self.parent, self.optimizer, self.pairs = parent, optimizer, pairs

    def step(self, x: torch.Tensor, y: torch.Tensor, cfg: TrainSection) -> float:
        """One cross-entropy step of the Parent; returns its loss."""
        self.parent.train()
        loss = F.cross_entropy(self.parent(x), y, label_smoothing=cfg.label_smoothing)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())

    def cp_loss(self, kernel: str) -> torch.Tensor:
        from backbones.losses import child_kernel, kernel_cp_loss
        return kernel_cp_loss([(p.weight, child_kernel(c, kernel)) for p, c in self.pairs])


class TrainTask:
    """Supervised training of one network for the loop (CE, or CE + KD, + CP loss)."""

    def __init__(self, model: nn.Module, train_loader: Any, test_loader: Any,
                 optimizer: torch.optim.Optimizer, cfg: TrainSection, lr: float, epochs: int,
                 device: torch.device, seed: int, teacher: nn.Module | None = None,
                 cp_parent: CPParent | None = None) -> None:
        self.model, self.train_loader, self.test_loader = model, train_loader, test_loader
        self.optimizer, self.cfg, self.lr, self.epochs = optimizer, cfg, lr, epochs
        self.device, self.seed, self.teacher = device, seed, teacher
        self.cp_parent = cp_parent
        self._features: list[torch.Tensor] = []
        if cp_parent is not None and cfg.cp_loss.compact_weight > 0:
            # the classifier's input is the pooled feature vector (works under DDP too); only
            # the latest is kept, so a hook left from step 1 of two-step training holds one
            _unwrap(model).classifier.register_forward_hook(
                lambda mod, inp, out: self._features.__setitem__(slice(None), [inp[0]]))

    def steps_in_epoch(self) -> int:
        n = len(self.train_loader)
        return min(n, self.cfg.max_steps_per_epoch) if self.cfg.max_steps_per_epoch else n

    def begin_epoch(self, epoch: int, total: int) -> None:
        set_loader_epoch(self.train_loader, epoch, self.seed)
        lo = min(self.cfg.lr_min, self.lr)   # cosine from lr down to lr_min (official: 1e-5)
        lr = lo + 0.5 * (self.lr - lo) * (1 + math.cos(math.pi * epoch / max(total, 1)))
        optimizers = [self.optimizer] + ([self.cp_parent.optimizer] if self.cp_parent else [])
        for opt in optimizers:
            for group in opt.param_groups:
                group["lr"] = lr
        self.model.train()

    def batches(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for i, (x, y) in enumerate(self.train_loader):
            if i >= self.steps_in_epoch():
                return
            yield (to_device(x, self.device, self.cfg.channels_last),
                   y.to(self.device, non_blocking=True))

    def step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> dict[str, float]:
        x, y = batch
        logs: dict[str, float] = {}
        if self.cp_parent is not None:
            logs["parent_loss"] = self.cp_parent.step(x, y, self.cfg)
        self._features.clear()
        with autocast(self.device, self.cfg.amp):
            logits = self.model(x)
            loss = F.cross_entropy(logits, y, label_smoothing=self.cfg.label_smoothing)
            if self.teacher is not None:
                with torch.no_grad():
                    t_logits = self.teacher(x)
                w = self.cfg.kd.weight
                loss = (1 - w) * loss + w * kd_loss(logits, t_logits, self.cfg.kd.temperature)
        if self.cp_parent is not None:
            from backbones.losses import intra_class_compactness
            cp = self.cfg.cp_loss
            cp_term = 0.5 * cp.weight * self.cp_parent.cp_loss(cp.kernel)
            if cp.compact_weight > 0 and self._features:
                cp_term = cp_term + cp.compact_weight * intra_class_compactness(
                    self._features[-1], y)
            loss = loss + cp_term
            logs["cp_loss"] = float(cp_term.detach())
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.optimizer.step()
        return {"loss": float(loss.detach()), **logs}

    def end_epoch(self, epoch: int) -> dict[str, float]:
        top1, top5 = evaluate(self.model, self.test_loader, self.device, (1, 5))
        return {"top1": top1, "top5": top5}

    def state_dict(self) -> dict[str, Any]:
        state = {"model": _unwrap(self.model).state_dict(),
                 "optimizer": self.optimizer.state_dict()}
        if self.cp_parent is not None:
            state["parent"] = _unwrap(self.cp_parent.parent).state_dict()
            state["parent_optimizer"] = self.cp_parent.optimizer.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        _unwrap(self.model).load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.cp_parent is not None:
            _unwrap(self.cp_parent.parent).load_state_dict(state["parent"])
            self.cp_parent.optimizer.load_state_dict(state["parent_optimizer"])


def _unwrap(model: nn.Module) -> nn.Module:
    """The network inside torch.compile's and DDP's wrappers."""
    while True:
        if isinstance(model, DistributedDataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod"):          # torch.compile's OptimizedModule
            model = model._orig_mod
        else:
            return model


def make_optimizer(model: nn.Module, cfg: TrainSection, lr: float,
                   weight_decay: float) -> torch.optim.Optimizer:
    """No weight decay on BN/PReLU/bias parameters (1-D), as the official retraining does."""
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999))
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum, nesterov=True)
    raise ConfigError(f"train.optimizer: unknown optimizer {cfg.optimizer!r}; "
                      f"expected 'adamw' or 'sgd'")


def arch_record(genotype: Genotype, cfg: TrainSection, num_classes: int) -> dict[str, Any]:
    """How to rebuild the network at the profile's retraining size: stored in model.pt."""
    return nas_arch(genotype, C=cfg.C, layers=cfg.layers, stem=cfg.stem,
                    num_classes=num_classes, binarizer=cfg.binarizer)


def _binarizer_kwarg(name: str, binarizer: str) -> dict[str, str]:
    """{"binarizer": ...} when backbone ``name``'s factory takes that argument (the record then
    rebuilds the same network anywhere), else {} (a user factory without it)."""
    import inspect

    from backbones.registry import backbone_factory
    try:
        params = inspect.signature(backbone_factory(name)).parameters
    except (TypeError, ValueError):
        return {}
    takes = "binarizer" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())
    return {"binarizer": binarizer} if takes else {}


def _build_teacher(kd: KDSection, genotype: Genotype | None, cfg: TrainSection,
                   num_classes: int) -> nn.Module:
    if kd.teacher == "real_nas":
        if genotype is None:
            raise ConfigError("train.kd.teacher: 'real_nas' needs a searched genotype; use "
                              "'torchvision:<model>' for a reference backbone")
        return create_backbone("nas", genotype=genotype, C=cfg.C, layers=cfg.layers,
                               stem=cfg.stem, num_classes=num_classes, binary=False)
    if kd.teacher.startswith("torchvision:"):
        import torchvision
        name = kd.teacher.split(":", 1)[1]
        if not hasattr(torchvision.models, name):
            raise ConfigError(f"train.kd.teacher: torchvision has no model {name!r}")
        return getattr(torchvision.models, name)(num_classes=num_classes)
    raise AssertionError(f"kd.teacher {kd.teacher!r} passed KDSection's pattern")


def published_cp_loss(cfg: TrainSection, searched_with: SearchRecord | None) -> TrainSection:
    """``cfg`` with ``cp_loss`` resolved: what the profile sets, else the searched method's
    published recipe (CP-NAS's training stage: its search's cp_weight and cp_kernel; no CP loss
    for any other network)."""
    cp = cfg.cp_loss
    cpnas = searched_with is not None and searched_with.method == "cpnas"
    search_cfg = searched_with.config if cpnas and searched_with is not None else {}
    weight = cp.weight if cp.weight is not None else (
        float(search_cfg.get("cp_weight", 1e-3)) if cpnas else 0.0)
    kernel = cp.kernel or str(search_cfg.get("cp_kernel", "binarized"))
    return cfg.model_copy(update={"cp_loss": cp.model_copy(update={"weight": weight,
                                                                   "kernel": kernel})})


def _build_cp_parent(cfg: TrainSection, genotype: Genotype | None, net: nn.Module,
                     num_classes: int, device: torch.device, lr: float,
                     wrap: Any) -> CPParent | None:
    """The real-valued Parent of CP-NAS's training-stage CP loss (``train.cp_loss``), or None."""
    cp = cfg.cp_loss
    if cp.weight == 0 and cp.compact_weight == 0:
        return None
    if genotype is None:
        raise ConfigError("train.cp_loss: the CP loss needs a genotype (a search run or a "
                          "published cell) for its real-valued Parent; this is a reference "
                          "backbone")
    from backbones.losses import matching_kernels
    parent = create_backbone("nas", genotype=genotype, C=cfg.C, layers=cfg.layers,
                             stem=cfg.stem, num_classes=num_classes, binary=False).to(device)
    pairs = matching_kernels(parent, net)
    parent = wrap(parent)
    return CPParent(parent, make_optimizer(parent, cfg, lr, cfg.weight_decay), pairs)


def run_train(params: Params, name: str, seed: int, *,
              genotype_path: Path | None = None,
              console: Console | None = None) -> dict[str, Any]:
    """Retrain the genotype found by search run ``name`` (a method or an ablation name)."""
    console = console or Console(stderr=True)
    started, t0 = now_iso(), time.perf_counter()
    distributed = dist_utils.init_from_env()
    cfg = params.active.train
    # a published cell (dcpnas_l, pcdarts_*, darts_v2) is retrained like a searched one
    named = resolve_network(params, name, seed, genotype_path)
    published, reference = named.kind == "published", named.kind == "backbone"
    genotype, searched = named.genotype, named.searched
    # read (and validated) before any training: a bad file must not cost a whole run
    searched_with = None if published else _search_record(searched.parent / "metrics.json")
    cfg = published_cp_loss(cfg, searched_with)
    out = run_dir(params, "train", name, seed)
    if dist_utils.is_main():
        ensure_writable(out)
    with locked(out, f"`harness train --method {name} --seed {seed}`"):
        return _train(params, name, seed, cfg, genotype, published, reference, searched,
                      searched_with, out, distributed, console, started, t0)


def _train(params: Params, name: str, seed: int, cfg: TrainSection, genotype: Genotype | None,
           published: bool, reference: bool, searched: Path, searched_with: SearchRecord | None,
           out: Path, distributed: bool, console: Console, started: str, t0: float
           ) -> dict[str, Any]:
    device = dist_utils.device()
    seed_everything(seed)
    setup_device(device)
    dcfg = data_config(params, cfg.batch_size)
    train_loader, test_loader, num_classes = build_train_loaders(dcfg, seed=seed,
                                                                 distributed=distributed)
    world = dist_utils.world_size()
    lr = cfg.lr * cfg.batch_size * world / cfg.lr_scale_batch
    data = shared_data_digest(dcfg.root, loader_sample(train=train_loader, test=test_loader),
                              loader_files(train_loader, test_loader))
    teacher_file = cfg.kd.teacher_checkpoint
    teacher_part = ({"teacher": file_sha256(teacher_file)}
                    if cfg.kd.teacher != "none" and teacher_file else {})

    def fp(*settings: Any, **extra: Any) -> dict[str, str]:
        return fingerprint("train", settings, world_size=world, data=data, **extra)

    def wrap(m: nn.Module) -> nn.Module:
        m = prepare_module(m, device, cfg.channels_last)
        return DistributedDataParallel(m) if distributed else m

    # optional real-valued teacher for KD: loaded, or trained here first with the same loop
    teacher = None
    total_seconds = 0.0
    if cfg.kd.teacher != "none":
        seed_everything(seed)
        teacher_net = _build_teacher(cfg.kd, genotype, cfg, num_classes).to(device)
        if teacher_file:
            state = safe_torch_load(teacher_file)
            if isinstance(state, dict) and isinstance(state.get("model"), dict):
                state = state["model"]
            if not isinstance(state, dict):
                raise CheckpointError(f"{teacher_file} (train.kd.teacher_checkpoint): expected "
                                      f"a state_dict or {{'model': state_dict}}, got "
                                      f"{type(state).__name__}")
            load_state_dict_strict(teacher_net, state, teacher_file)
        else:
            t_model = wrap(teacher_net)
            t_task = TrainTask(t_model, train_loader, test_loader,
                               make_optimizer(t_model, cfg, lr, cfg.weight_decay), cfg, lr,
                               cfg.kd.teacher_epochs, device, seed)
            res = run_loop(t_task, epochs=cfg.kd.teacher_epochs,
                           checkpoint=out / "teacher_checkpoint.pt",
                           desc=f"teacher {name} s{seed}", console=console,
                           fingerprint=fp(cfg, dcfg, seed, "teacher",
                                          genotype=None if genotype is None
                                          else genotype.to_dict()))
            total_seconds += res.seconds
        teacher = teacher_net.eval()
        for p in teacher.parameters():
            p.requires_grad_(False)

    seed_everything(seed)
    record = (arch_record(genotype, cfg, num_classes) if genotype is not None else
              {"backbone": name, "kwargs": {"num_classes": num_classes, "stem": cfg.stem,
                                            **_binarizer_kwarg(name, cfg.binarizer),
                                            **cfg.reference_kwargs.get(name, {})}})
    with weight_binarizer(cfg.binarizer):   # also for a factory without a binarizer argument
        net = build_network(record, f"{name} arch record").to(device)
    cp_parent = _build_cp_parent(cfg, genotype, net, num_classes, device, lr, wrap)
    steps = [("step1", False, cfg.weight_decay), ("step2", True, cfg.step2_weight_decay)] \
        if cfg.two_step else [("train", True, cfg.weight_decay)]
    history: list[dict[str, float]] = []
    step_history: list[dict[str, float]] = []
    steps_done = 0
    resumed: dict[str, int | None] = {}
    for tag, binary_weights, wd in steps:
        set_weight_binarization(net, binary_weights)
        model = wrap(net)
        if cfg.compile:   # the training and test passes; `net` itself stays eager (costs)
            model = torch.compile(model)
        task = TrainTask(model, train_loader, test_loader, make_optimizer(model, cfg, lr, wd),
                         cfg, lr, cfg.epochs, device, seed, teacher, cp_parent)
        phase = {"step1": 1.0, "step2": 2.0}.get(tag, 0.0)

        def curves(r: LoopResult, before: list[dict[str, float]] = list(history),
                   steps_before: list[dict[str, float]] = list(step_history),
                   offset: int = steps_done, phase: float = phase) -> None:
            # epochs and steps numbered across both steps of a two-step retraining
            write_loop_curves(out, before + [{**e, "phase": phase} for e in r.history],
                              steps_before + [{**e, "step": e["step"] + offset}
                                              for e in r.step_history])
        res = run_loop(task, epochs=cfg.epochs, checkpoint=out / f"checkpoint_{tag}.pt",
                       desc=f"train {name} s{seed} {tag}", console=console,
                       fingerprint=fp(record, cfg, dcfg, seed, tag, **teacher_part),
                       on_epoch=curves, log_every=cfg.log_every)
        total_seconds += res.seconds
        history += [{**h, "phase": phase} for h in res.history]
        step_history += [{**e, "step": e["step"] + steps_done} for e in res.step_history]
        steps_done += res.steps
        resumed[tag] = res.resumed_from_epoch
    set_weight_binarization(net, True)
    top1, top5 = evaluate(net, test_loader, device, (1, 5))
    in_size = (3, 32, 32) if params.active.data.name == "cifar10" else \
        (3, params.active.data.image_size, params.active.data.image_size)
    cost = model_cost(net, in_size)
    desc, kind = dist_utils.describe_device(device)
    value, unit = run_cost(total_seconds, kind, world)
    # the official scripts report the best test epoch; the final epoch is what a run ends with
    last_phase = [h for h in history if h.get("phase", 0.0) == history[-1].get("phase", 0.0)] \
        if history else []
    best = max(last_phase, key=lambda h: h.get("top1", float("-inf"))) if last_phase else {}
    size = cfg.size or ("L" if published and name == "dcpnas_l" else None)
    result = TrainRecord(
        **common_metrics(params, searched_with.method if searched_with else name, seed, desc,
                         kind),
        run=name, ablation=searched_with.ablation if searched_with else None, top1=top1, top5=top5,
        params_m=cost.params_m, flops_m=cost.flops_m, bops_m=cost.bops_m, ops_m=cost.ops_m,
        memory_mbit=cost.memory_mbit, train_seconds=total_seconds, train_cost_value=value,
        train_cost_unit=unit, epochs=cfg.epochs * len(steps), kd_teacher=cfg.kd.teacher,
        two_step=cfg.two_step, resumed_from_epoch=resumed, history=history,
        binarizer=cfg.binarizer, cp_loss=cfg.cp_loss.model_dump(), best_top1=best.get("top1"),
        best_top5=best.get("top5"),
        best_epoch=int(best["epoch"]) if "epoch" in best else None, size=size,
        genotype=(f"published:{name}" if published else None if reference else str(searched)),
        provenance=stage_provenance("train", fp(record, cfg, dcfg, seed), data, started, t0))
    debug_dump("train", {
        "model_wrapper": type(model).__name__, "weights_digest": param_digest(net),
        "train_sampler": type(train_loader.sampler).__name__,
        "train_indices": sampler_indices(train_loader),
        "test_indices": sampler_indices(test_loader), "top1": top1, "lr": lr})
    if dist_utils.is_main():
        save_checkpoint(out / "model.pt", net, record)
    metrics = write_metrics(out / "metrics.json", result)
    dist_utils.barrier()
    return metrics


def _search_record(path: Path) -> SearchRecord | None:
    """The search run's record next to its genotype (method and ablation of the retrained
    cell), or None when the genotype came without one (``--genotype``, reference backbones)."""
    if not path.is_file():
        return None
    record = read_record(path)
    if not isinstance(record, SearchRecord):
        raise RecordError([f"{path}: expected the metrics of a search run, found stage "
                           f"{record.stage!r}"])
    return record
