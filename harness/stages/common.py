"""What the search and train stages share: run folders, seeding, data config, metrics files."""
from __future__ import annotations

import contextlib
import hashlib
import os
import time
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from backbones import distributed as dist_utils
from backbones.atomic import atomic_write_json
from backbones.genotypes import PUBLISHED, Genotype
from backbones.names import did_you_mean
from backbones.registry import BACKBONES, UnknownBackboneError, prefixed_factory
from harness.config import Params
from harness.data import DataConfig
from harness.provenance import data_digest, provenance
from harness.records import Provenance, RecordBase, write_record
from harness.runs import run_folder, run_lock


class OutputError(OSError):
    """The output folder cannot be written."""


def seed_everything(seed: int) -> None:
    """Same seed on every rank: models start identical, so alpha stays identical."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def run_dir(params: Params, stage: str, name: str, seed: int) -> Path:
    """``<paths.runs>/<profile>/<stage>/<name>/seed<k>`` (``harness.runs.run_folder``)."""
    return run_folder(params.paths.runs, params.profile, stage, name, seed)


@dataclass(frozen=True)
class NamedNetwork:
    """What a network name given to train / deploy stands for: a search run's cell
    (``searched``, its genotype file), a published cell (``published``) or a registered
    backbone (``backbone``: no cell)."""
    kind: Literal["searched", "published", "backbone"]
    genotype: Genotype | None
    searched: Path            # where a search run's genotype is (or would be)


def resolve_network(params: Params, name: str, seed: int, genotype_path: Path | None = None,
                    *, flag: str = "--method") -> NamedNetwork:
    """The one reading of a network name: a search run (a method, an ablation, or a folder
    with a genotype) first, then a published cell, then a registered backbone; anything else
    is one UnknownBackboneError (naming ``flag``) listing the valid names and the closest one."""
    searched = genotype_path or run_dir(params, "search", name, seed) / "genotype.json"
    if (genotype_path is not None or name in params.search_runs or name in params.ablations
            or name in params.imagenet_search_runs or searched.is_file()):
        return NamedNetwork("searched", Genotype.load(searched), searched)
    if name in PUBLISHED:
        return NamedNetwork("published", PUBLISHED[name], searched)
    if name in BACKBONES or prefixed_factory(name) is not None:
        return NamedNetwork("backbone", None, searched)
    known = sorted(set(params.search_runs) | set(params.ablations)) + BACKBONES.names()
    raise UnknownBackboneError(
        f"{flag} {name!r} is neither a search run of {params.source} (no genotype at {searched}) "
        f"nor a registered backbone (one of {', '.join(known)}){did_you_mean(name, known)}")


def locked(folder: Path, what: str) -> contextlib.AbstractContextManager[None]:
    """The run folder's lock on the main rank (the only one that writes), nothing elsewhere."""
    return run_lock(folder, what) if dist_utils.is_main() else contextlib.nullcontext()


def loader_sample(**loaders: Any) -> dict[str, list[int]]:
    """The dataset indices each loader draws from (its Subset's), for the data digest."""
    return {name: [int(i) for i in getattr(loader.dataset, "indices", range(len(loader.dataset)))]
            for name, loader in loaders.items() if loader is not None}


def loader_files(*loaders: Any) -> list[str] | None:
    """Every file the loaders' ImageFolders listed (None for other data sets, or no loader:
    the folder is walked instead, e.g. CIFAR's few batch files)."""
    files: set[str] = set()
    if all(loader is None for loader in loaders):
        return None
    for loader in loaders:
        if loader is None:
            continue
        ds = getattr(loader.dataset, "dataset", loader.dataset)
        if not hasattr(ds, "samples"):
            return None
        files.update(path for path, _ in ds.samples)
    return sorted(files)


def shared_data_digest(root: str, sample: dict[str, list[int]] | None,
                       listed: list[str] | None = None) -> dict[str, Any]:
    """``data_digest`` computed on the main rank and broadcast, every rank compares the same
    fingerprint when it resumes; ``listed`` (``loader_files``) spares a large folder (ImageNet's
    1.3 M files) a second listing."""
    if not dist_utils.is_dist():
        return data_digest(root, sample, listed)
    box = [data_digest(root, sample, listed) if dist_utils.is_main() else None]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


def stage_provenance(stage: str, fingerprint: dict[str, str], data: dict[str, Any] | None,
                     started: str, t0: float) -> Provenance:
    """The record's provenance block for a run that started at ``started`` (perf counter t0)."""
    return Provenance(**provenance(stage, fingerprint=fingerprint, data=data, started=started,
                                   seconds=time.perf_counter() - t0))


def ensure_writable(folder: Path) -> Path:
    """Create ``folder`` and prove it is writable before hours of work go into it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise OutputError(f"output directory {folder} is not writable ({exc.strerror}); "
                          f"choose another with paths.runs in params.yaml") from None
    return folder


def data_config(params: Params, batch_size: int) -> DataConfig:
    d = params.active.data
    return DataConfig(name=d.name, root=d.root, batch_size=batch_size,
                      num_workers=d.num_workers, image_size=d.image_size, cutout=d.cutout,
                      lighting=d.lighting,
                      train_subset=d.train_subset, test_subset=d.test_subset)


def common_metrics(params: Params, method: str, seed: int, device_desc: str,
                   device_kind: str) -> dict[str, Any]:
    """The fields of ``harness.records.RecordBase`` every stage's record starts from."""
    return {"method": method, "seed": seed, "profile": params.profile,
            "dataset": params.active.data.name, "device": device_desc,
            "device_kind": device_kind, "world_size": dist_utils.world_size()}


def write_metrics(path: Path, record: RecordBase) -> dict[str, Any]:
    """Write the record (main rank only) and return it as a plain dict for the caller."""
    if dist_utils.is_main():
        write_record(path, record)
    return record.model_dump()


#: Set to a folder to make every rank write ``<folder>/<stage>.rank<k>.json`` at the end of a
#: stage: its genotype, alpha, a digest of its weights and the sample indices its data loader
#: drew. Off by default; the distributed tests use it to check that the ranks agree.
DEBUG_DUMP_ENV = "HARNESS_DEBUG_DUMP"


def param_digest(*modules: torch.nn.Module) -> str:
    """sha256 of the parameters (names, shapes, values) of ``modules``: equal across ranks iff
    the ranks hold the same weights (buffers such as BN running statistics are left out: DDP
    syncs them from rank 0 at each forward, so after the last step they may differ)."""
    h = hashlib.sha256()
    for module in modules:
        for name, p in module.named_parameters():
            t = p.detach().cpu().contiguous()
            h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
            h.update(t.numpy().tobytes())
    return h.hexdigest()


def sampler_indices(loader: Any) -> list[int] | None:
    """The indices a distributed sampler gives this rank for its current epoch (torch's
    DistributedSampler for training, mmengine's unpadded DefaultSampler for evaluation); None
    for single-process loaders (listing a RandomSampler would consume its generator)."""
    from mmengine.dataset import DefaultSampler
    from torch.utils.data import DistributedSampler
    sampler = getattr(loader, "sampler", None)
    return ([int(i) for i in sampler] if isinstance(sampler, (DistributedSampler, DefaultSampler))
            else None)


def debug_dump(stage: str, payload: dict[str, Any]) -> None:
    """Write this rank's view of the run when ``$HARNESS_DEBUG_DUMP`` is set (see above)."""
    folder = os.environ.get(DEBUG_DUMP_ENV)
    if not folder:
        return
    rank = dist_utils.rank()
    atomic_write_json(Path(folder) / f"{stage}.rank{rank}.json",
                      {"rank": rank, "world_size": dist_utils.world_size(), **payload})
