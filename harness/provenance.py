"""What made a result: code, settings, versions, device and data, recorded in every metrics.json
and compared before a run resumes.

A run is resumable only by the same *inputs*: its checkpoint stores the parts of its fingerprint
(settings, code, versions, data, world size and, per stage, e.g. a starting checkpoint's
sha256), and a rerun whose parts differ starts over and says which changed (``changed_parts``).
The code digest of a stage covers exactly the files ``dvc.yaml`` lists as that stage's code
deps (``STAGE_CODE``; a test keeps the two equal), so DVC reruns a stage exactly when the
harness refuses to resume it.
"""
from __future__ import annotations

import datetime as _dt
import functools
import hashlib
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from backbones.resume import digest_of, with_settings

REPO = Path(__file__).resolve().parents[1]

_COMMON = ("backbones", "harness/engine.py", "harness/curves.py", "harness/data",
           "harness/accel.py", "harness/stages/common.py")
#: the code each stage runs, relative to the repository root (folders: every file inside);
#: dvc.yaml lists the same paths as the stage's code deps
STAGE_CODE: dict[str, tuple[str, ...]] = {
    "search": (*_COMMON, "harness/stages/search.py"),
    "train": (*_COMMON, "harness/stages/train.py"),
    "detect": ("backbones", "downstream/detection",
               "downstream/configs/detection", "harness/stages/transfer.py"),
    "reid": ("backbones", "downstream/reid", "harness/curves.py",
             "downstream/configs/reid", "harness/stages/transfer.py"),
    "deploy": ("backbones", "harness/deploy", "harness/costs.py", "harness/stages/common.py",
               "harness/stages/deploy.py"),
}

#: distributions whose versions every record carries
PACKAGES = ("torch", "torchvision", "numpy", "pillow", "mmcv", "mmdet", "mmengine", "torchreid",
            "openvino")
#: the versions a stage's result depends on (a change of these never resumes a run)
STAGE_PACKAGES: dict[str, tuple[str, ...]] = {
    "search": ("python", "torch", "torchvision", "numpy", "pillow", "cuda", "cudnn"),
    "train": ("python", "torch", "torchvision", "numpy", "pillow", "cuda", "cudnn"),
    "detect": ("python", "torch", "torchvision", "numpy", "cuda", "cudnn", "mmcv", "mmdet",
               "mmengine"),
    "reid": ("python", "torch", "torchvision", "numpy", "cuda", "cudnn", "torchreid"),
    "deploy": ("python", "torch", "numpy", "openvino"),
}

#: data folders up to this size are digested by content, larger ones by names and sizes
CONTENT_DIGEST_LIMIT = 1 << 30


def _sha(data: bytes | str) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


def _files_under(path: Path) -> Iterable[Path]:
    if path.is_file():
        yield path
        return
    for folder, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__" and not d.startswith("."))
        for name in sorted(files):
            if not name.endswith((".pyc", ".tmp")) and not name.startswith("."):
                yield Path(folder) / name


@functools.lru_cache(maxsize=None)
def code_digest(stage: str) -> str:
    """sha256 of the stage's code files (relative paths and bytes), per ``STAGE_CODE``."""
    h = hashlib.sha256()
    for rel in STAGE_CODE[stage]:
        for f in _files_under(REPO / rel):
            h.update(f.relative_to(REPO).as_posix().encode() + b"\0")
            h.update(f.read_bytes())
            h.update(b"\0")
    return h.hexdigest()[:16]


@functools.lru_cache(maxsize=1)
def git_state() -> dict[str, Any]:
    """{'commit': HEAD or None, 'dirty': tracked files changed (None without git)}."""
    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True,
                                 text=True, timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout if out.returncode == 0 else None
    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "dirty": None}
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit.strip(), "dirty": None if status is None else bool(status.strip())}


@functools.lru_cache(maxsize=1)
def versions() -> dict[str, str | None]:
    """Python, the stack's distributions, and CUDA / cuDNN when a GPU build runs on a GPU."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for dist in PACKAGES:
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = None
    out["cuda"] = out["cudnn"] = None
    if "torch" in sys.modules or out["torch"]:
        import torch
        if torch.cuda.is_available():
            out["cuda"] = torch.version.cuda
            cudnn = torch.backends.cudnn.version()
            out["cudnn"] = None if cudnn is None else str(cudnn)
    return out


def stage_versions(stage: str) -> dict[str, str | None]:
    v = versions()
    return {k: v.get(k) for k in STAGE_PACKAGES[stage]}


def file_sha256(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def data_digest(root: str | os.PathLike[str], sample: Mapping[str, Iterable[int]] | None = None,
                listed: Iterable[str | os.PathLike[str]] | None = None) -> dict[str, Any]:
    """What identifies a data set: its files (by content up to ``CONTENT_DIGEST_LIMIT`` bytes in
    all, above that by relative names and sizes) and, for a subset or split, the indices drawn.
    Hidden files (markers, temporaries) are left out. ``listed``: the files the loaders listed
    already (an ImageFolder's samples), used instead of walking ``root`` again, so a run lists
    ImageNet's 1.3 M files once."""
    root = Path(root)
    if not root.exists():
        return {"root": str(root), "files": 0, "bytes": 0, "mode": "missing", "digest": None,
                "sample": None}
    base = os.fspath(root).rstrip(os.sep) + os.sep
    # plain strings and os.stat: ~3 us a file, so ImageNet's 1.3 M take seconds, not minutes
    paths = (map(os.fspath, _files_under(root)) if listed is None
             else sorted(map(os.fspath, listed)))
    files = [(f, os.stat(f).st_size) for f in paths]
    total = sum(size for _, size in files)
    mode = "content" if total <= CONTENT_DIGEST_LIMIT else "names+sizes"
    h = hashlib.sha256()
    for f, size in files:
        rel = f[len(base):] if f.startswith(base) else os.path.relpath(f, base)
        h.update(f"{rel.replace(os.sep, '/')}\0{size}\0".encode())
        if mode == "content":
            h.update(file_sha256(f).encode())
    sample_digest = None
    if sample is not None:
        sample_digest = _sha(json.dumps({k: [int(i) for i in v] for k, v in sample.items()},
                                        sort_keys=True))[:16]
    return {"root": str(root), "files": len(files), "bytes": total, "mode": mode,
            "digest": h.hexdigest()[:16], "sample": sample_digest}


def run_inputs(stage: str, *, world_size: int, data: Mapping[str, Any] | None = None,
               **extra: Any) -> dict[str, str]:
    """A run's fingerprint parts other than its settings, each digested: code, versions, world
    size, data, and per-stage ``extra`` (a genotype, a starting checkpoint's sha256, ...). The
    downstream runners add the digest of the settings they resolve
    (``backbones.resume.with_settings``)."""
    parts = {"code": code_digest(stage), "versions": digest_of(stage_versions(stage)),
             "world_size": str(world_size)}
    if data is not None:
        parts["data"] = digest_of(data.get("digest"), data.get("sample"))
    for key, value in extra.items():
        parts[key] = value if isinstance(value, str) else digest_of(value)
    return parts


def fingerprint(stage: str, settings: Iterable[Any], *, world_size: int,
                data: Mapping[str, Any] | None = None, **extra: Any) -> dict[str, str]:
    """The parts a run's result depends on (``backbones.resume``): the settings' digest and
    ``run_inputs``."""
    return with_settings(run_inputs(stage, world_size=world_size, data=data, **extra),
                         *settings)


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def provenance(stage: str, *, fingerprint: Mapping[str, str], data: Mapping[str, Any] | None,
               started: str, seconds: float) -> dict[str, Any]:
    """The ``provenance`` block of a record (see ``harness.records.Provenance``)."""
    return {**git_state(), "code_digest": code_digest(stage),
            "code_paths": list(STAGE_CODE[stage]), "versions": versions(),
            "fingerprint": dict(fingerprint), "data": dict(data) if data else None,
            "started": started, "seconds": float(seconds),
            "command": [os.path.basename(sys.argv[0]), *sys.argv[1:]]}


def show_provenance(path: Path, console: Any) -> None:
    """Print what made the run at ``path`` (a run folder or its metrics.json)."""
    from rich.table import Table

    from harness.records import RecordError, read_record
    metrics = path / "metrics.json" if path.is_dir() else path
    if not metrics.is_file():
        raise RecordError([f"{metrics}: no metrics.json (expected a run folder "
                           f"runs/<profile>/<stage>/<name>/seed<k> or its metrics.json)"])
    rec = read_record(metrics)
    table = Table(title=f"{metrics}", show_header=False, title_style="bold")
    table.add_column("key", style="bold cyan")
    table.add_column("value", overflow="fold")
    rows: list[tuple[str, Any]] = [
        ("stage", rec.stage), ("run", rec.run or rec.method), ("seed", rec.seed),  # type: ignore[attr-defined]
        ("profile", rec.profile), ("dataset", rec.dataset), ("device", rec.device),
        ("world size", rec.world_size)]
    prov = rec.provenance
    if prov is None:
        rows.append(("provenance", "none recorded (written by an older version)"))
    else:
        rows += [("commit", f"{prov.commit or 'unknown'}" + (" (uncommitted changes)"
                                                            if prov.dirty else "")),
                 ("code digest", f"{prov.code_digest} of {', '.join(prov.code_paths)}"),
                 ("versions", ", ".join(f"{k} {v}" for k, v in prov.versions.items() if v)),
                 ("fingerprint", ", ".join(f"{k}={v}" for k, v in prov.fingerprint.items())),
                 ("data", "none" if not prov.data else
                  f"{prov.data.get('root')}: {prov.data.get('files')} files, "
                  f"{prov.data.get('bytes')} bytes, digest {prov.data.get('digest')} "
                  f"({prov.data.get('mode')}), sample {prov.data.get('sample')}"),
                 ("started", prov.started), ("seconds", f"{prov.seconds:.1f}"),
                 ("command", " ".join(prov.command))]
    for key, value in rows:
        table.add_row(key, str(value))
    console.print(table)
