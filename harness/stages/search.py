"""`harness search`: run one search method (or one ablation of it) and write its genotype.

Writes under runs/<profile>/search/<name>/seed<k>/: genotype.json, metrics.json (search wall-clock,
device, peak memory, final alpha) and checkpoint.pt (per epoch; a re-run resumes from it).
"""
from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from backbones.atomic import atomic_write_text
from backbones.binary import weight_binarizer
from backbones.genotypes import Genotype
from backbones.search.base import SearchContext, SearchMethod, get_search_method
from backbones import distributed as dist_utils
from harness.accel import compile_modules, setup_device
from harness.config import Params, SearchSection, method_config
from harness.records import SearchRecord
from harness.costs import peak_memory_mb, reset_peak_memory, run_cost
from harness.data import SampleSpec, build_search_loaders, infer_num_classes
from harness.curves import write_loop_curves
from harness.engine import run_loop, set_loader_epoch
from harness.provenance import digest_of, fingerprint as stage_fingerprint, now_iso
from harness.stages.common import (common_metrics, data_config, debug_dump, ensure_writable,
                                   loader_files, loader_sample, locked, param_digest, run_dir,
                                   sampler_indices, seed_everything, shared_data_digest,
                                   stage_provenance, write_metrics)


class SearchTask:
    """Adapts a SearchMethod to the loop: pairs train and val batches, DARTS-style."""

    def __init__(self, method: SearchMethod, train_loader: Any, val_loader: Any,
                 device: torch.device, seed: int, max_steps: int | None) -> None:
        self.method, self.train_loader, self.val_loader = method, train_loader, val_loader
        self.device, self.seed = device, seed
        self.max_steps = max_steps

    def steps_in_epoch(self) -> int:
        n = len(self.train_loader)
        return min(n, self.max_steps) if self.max_steps else n

    def begin_epoch(self, epoch: int, total: int) -> None:
        set_loader_epoch(self.train_loader, epoch, self.seed)
        set_loader_epoch(self.val_loader, epoch, self.seed + 1)
        self.method.begin_epoch(epoch, total)

    def batches(self, epoch: int) -> Iterator[Any]:
        pairs: Iterable[Any] = zip(self.train_loader, repeat_loader(self.val_loader))
        for (xt, yt), (xv, yv) in itertools.islice(pairs, self.steps_in_epoch()):
            yield ((xt.to(self.device), yt.to(self.device)),
                   (xv.to(self.device), yv.to(self.device)))

    def step(self, batch: Any) -> dict[str, float]:
        return self.method.step(*batch)

    def end_epoch(self, epoch: int) -> dict[str, float]:
        return self.method.end_epoch(epoch, _DeviceLoader(self.val_loader, self.device))

    def state_dict(self) -> dict[str, Any]:
        return self.method.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.method.load_state_dict(state)

    def watched(self) -> dict[str, torch.Tensor]:
        return self.method.arch_tensors()


def repeat_loader(loader: Iterable[Any]) -> Iterator[Any]:
    """Iterate ``loader`` again and again. Unlike ``itertools.cycle``, which keeps every item
    of the first pass in memory and replays it (the same augmentations; a whole ImageNet epoch
    of batches), each pass draws fresh batches. Deterministic: the loader's generator is
    re-seeded per epoch (``set_loader_epoch``) and advances from pass to pass."""
    while True:
        empty = True
        for item in loader:
            empty = False
            yield item
        if empty:
            return


class _DeviceLoader:
    """A loader view that moves batches to the device (methods see device tensors only)."""

    def __init__(self, loader: Any, device: torch.device) -> None:
        self.loader, self.device = loader, device

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for x, y in self.loader:
            yield x.to(self.device), y.to(self.device)


def image_side(data: Any) -> int:
    """The input side a data config feeds the network (CIFAR: 32)."""
    return 32 if data.name == "cifar10" else data.image_size


def cell_summary(genotype: Genotype, params: Params, num_classes: int) -> dict[str, Any]:
    """What the report shows of a found cell: its parameter-free and skip-connect edges per cell
    type (collapse), and the params / OPs of the 1-bit network it becomes at the profile's
    retraining size."""
    from backbones.registry import create_backbone
    from harness.costs import model_cost
    t = params.active.train
    with weight_binarizer(t.binarizer):
        net = create_backbone("nas", genotype=genotype, C=t.C, layers=t.layers, stem=t.stem,
                              num_classes=num_classes, binary=True)
    size = image_side(params.active.data)
    cost = model_cost(net, (3, size, size))
    return {**genotype.op_counts(), "params_m": cost.params_m, "ops_m": cost.ops_m,
            "network": f"C={t.C}, {t.layers} cells, {t.stem} stem, {size}x{size}"}


def sample_spec(search: SearchSection) -> SampleSpec | None:
    s = search.sample
    return None if s is None else SampleSpec(weights=s.weights, arch=s.arch, seed=s.seed)


def sample_lists(train_loader: Any, val_loader: Any, root: str) -> dict[str, list[str]]:
    """The files of the two search parts, relative to the data root (sorted)."""
    base = Path(root)

    def files(loader: Any) -> list[str]:
        ds = loader.dataset
        return sorted(Path(ds.dataset.samples[i][0]).relative_to(base).as_posix()
                      for i in ds.indices)
    return {"weights": files(train_loader), "arch": files(val_loader)}


def write_sample(out: Path, spec: SampleSpec, lists: dict[str, list[str]],
                 data: dict[str, Any]) -> dict[str, Any]:
    """Write ``sample.json`` (the file lists of both parts) and return what the record keeps:
    fractions, seed, sizes, classes and the lists' digest (the report names the sample by it)."""
    body = {"fractions": {"weights": spec.weights, "arch": spec.arch}, "seed": spec.seed,
            "root": data["root"], **lists}
    digest = digest_of(lists)[:16]
    if dist_utils.is_main():
        atomic_write_text(out / "sample.json", json.dumps({**body, "digest": digest}) + "\n")
    classes = {f.split("/")[1] for f in lists["weights"]}
    return {"file": "sample.json", "digest": digest, "seed": spec.seed,
            "weights_fraction": spec.weights, "arch_fraction": spec.arch,
            "weights_images": len(lists["weights"]), "arch_images": len(lists["arch"]),
            "classes": len(classes)}


def scaled_lrs(cfg: Any, search: SearchSection, world: int) -> Any:
    """Linear scaling of the weights' learning rate to the batch actually run:
    w_lr x batch_size x processes / lr_scale_batch (unset: the settings as they are)."""
    if search.lr_scale_batch is None:
        return cfg
    k = search.batch_size * world / search.lr_scale_batch
    return cfg.model_copy(update={"w_lr": cfg.w_lr * k, "w_lr_min": cfg.w_lr_min * k})


def search_run_name(method: str, ablation: str | None) -> str:
    return ablation or method


def run_search(params: Params, method: str, seed: int, *,
               console: Console | None = None) -> dict[str, Any]:
    """Search with ``method``: a method name, or an ablation name from params.yaml (a method
    with changed settings). Settings come from the active profile, then the ablation's."""
    console = console or Console(stderr=True)
    started, t0 = now_iso(), time.perf_counter()
    distributed = dist_utils.init_from_env()
    extra: dict[str, Any] = {}
    ablation_tag: dict[str, Any] | None = None
    ablation = method if method in params.ablations else None
    if ablation is not None:
        abl = params.ablations[ablation]
        method, extra = abl.method, abl.set
        ablation_tag = {"name": ablation, "table": abl.table, "label": abl.label, **abl.set}
    name = search_run_name(method, ablation)
    method_cls = get_search_method(method)
    cfg = method_config(method_cls, params.active.search, extra, params.source,
                        search_at=f"profiles.{params.profile}.search",
                        extra_at=f"ablations.{ablation}.set")
    cfg = scaled_lrs(cfg, params.active.search, dist_utils.world_size())
    out = run_dir(params, "search", name, seed)
    if dist_utils.is_main():
        ensure_writable(out)
    with locked(out, f"`harness search --method {name} --seed {seed}`"):
        return _search(params, method, method_cls, cfg, name, ablation, ablation_tag, seed, out,
                       distributed, console, started, t0)


def _search(params: Params, method: str, method_cls: type[SearchMethod], cfg: Any, name: str,
            ablation: str | None, ablation_tag: dict[str, Any] | None, seed: int, out: Path,
            distributed: bool, console: Console, started: str, t0: float) -> dict[str, Any]:
    device = dist_utils.device()
    seed_everything(seed)
    search = params.active.search
    dcfg = data_config(params, search.batch_size)
    reset_peak_memory(device)
    spec = sample_spec(search)
    if method_cls.uses_data:
        train_loader, val_loader, num_classes = build_search_loaders(
            dcfg, train_portion=search.train_portion, seed=seed, distributed=distributed,
            sample=spec)
    else:
        train_loader = val_loader = None
        num_classes = infer_num_classes(dcfg)
    data = shared_data_digest(dcfg.root, loader_sample(weights=train_loader, arch=val_loader),
                              loader_files(train_loader, val_loader))
    sample = (write_sample(out, spec, sample_lists(train_loader, val_loader, dcfg.root), data)
              if spec is not None and train_loader is not None else None)
    fp = stage_fingerprint("search", [method, cfg, dcfg, seed, search.train_portion,
                                      search.max_steps_per_epoch, search.binarizer, spec],
                           world_size=dist_utils.world_size(), data=data)
    ctx = SearchContext(num_classes=num_classes, device=device, seed=seed,
                        steps_per_epoch=len(train_loader) if train_loader else 0)
    seed_everything(seed)  # the method's initialisation does not depend on data loading
    with weight_binarizer(search.binarizer):   # the 1-bit supernet's binary convs
        searcher = method_cls(cfg, ctx)
    setup_device(device)
    compiled = compile_modules(searcher.modules(), search.compile)
    epochs = searcher.planned_epochs()
    if method_cls.uses_data:
        task = SearchTask(searcher, train_loader, val_loader, device, seed,
                          search.max_steps_per_epoch)
        result = run_loop(task, epochs=epochs, checkpoint=out / "checkpoint.pt",
                          desc=f"search {name} s{seed}", console=console, fingerprint=fp,
                          on_epoch=lambda r: write_loop_curves(out, r.history, r.step_history),
                          log_every=search.log_every)
        seconds, history, resumed = result.seconds, result.history, result.resumed_from_epoch
        steps, step_seconds = result.steps, result.step_seconds
    else:
        seconds, history, resumed = 0.0, [], None
        steps, step_seconds = 0, 0.0
        if dist_utils.is_main():
            write_loop_curves(out, history)   # empty: dvc.yaml declares the folder
    genotype = searcher.genotype()
    cell = cell_summary(genotype, params, num_classes)
    desc, kind = dist_utils.describe_device(device)
    cost, unit = run_cost(seconds, kind, dist_utils.world_size())
    peak, peak_kind = peak_memory_mb(device)
    record = SearchRecord(
        **common_metrics(params, method, seed, desc, kind),
        run=name, ablation=ablation_tag, search_seconds=seconds,
        search_cost_value=cost, search_cost_unit=unit, peak_memory_mb=peak,
        peak_memory_kind=peak_kind, epochs=epochs, genotype="genotype.json",
        alphas=searcher.alphas(), resumed_from_epoch=resumed, config=cfg.model_dump(),
        compiled_modules=compiled, final=history[-1] if history else {}, history=history,
        cell=cell, steps=steps, seconds_per_step=step_seconds / steps if steps else None,
        batch_size=search.batch_size, image_size=image_side(dcfg), sample=sample,
        provenance=stage_provenance("search", fp, data, started, t0))
    debug_dump("search", {
        "genotype": genotype.to_dict(), "alphas": searcher.alphas(),
        "weights_digest": param_digest(*searcher.modules()),
        "train_sampler": None if train_loader is None else type(train_loader.sampler).__name__,
        "train_indices": sampler_indices(train_loader),
        "val_indices": sampler_indices(val_loader)})
    if dist_utils.is_main():
        atomic_write_text(out / "genotype.json", genotype.to_json())
    metrics = write_metrics(out / "metrics.json", record)
    dist_utils.barrier()
    return metrics
