"""Run folders: where a run writes (``runs/<profile>/<stage>/<name>/seed<k>``), which names may
become paths, and one process per folder at a time.

The profile is part of the path so that a smoke run never touches a paper run of the same name.
A name is a path component and nothing more (``NAME_PATTERN``: no ``/``, no ``..``), and every
resolved folder is checked to lie inside its root. ``run_lock`` holds an exclusive ``flock`` on
``<folder>/.lock`` while the run writes; a second run on the same folder gets one line naming
the process that holds it, and the lock dies with its process (a SIGKILLed run leaves no stale
lock). Taking the lock also removes the temporary files a killed write left behind.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
LOCK_FILE = ".lock"


class RunNameError(ValueError):
    """A run name, profile or label that cannot be a folder name."""


class RunLockedError(RuntimeError):
    """Another process is writing into the same run folder."""


def check_name(name: str, what: str) -> str:
    """``name`` if it matches ``NAME_PATTERN`` (and is not made of dots), else RunNameError."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name) or set(name) == {"."}:
        raise RunNameError(f"{what} {name!r} is not a valid run name: expected letters, digits, "
                           f"'.', '_' or '-', starting with a letter or digit (it becomes a "
                           f"folder name)")
    return name


def inside(root: Path, path: Path, what: str) -> Path:
    """``path`` if it resolves inside ``root``, else RunNameError."""
    real_root, real = root.resolve(), path.resolve()
    if real != real_root and real_root not in real.parents:
        raise RunNameError(f"{what}: {path} resolves to {real}, outside {real_root}")
    return path


def folder_label(name: str) -> str:
    """The folder (and report) label of a run name: ``timm:resnet18`` -> ``timm-resnet18``."""
    return name.replace(":", "-")


def run_folder(runs: str | os.PathLike[str], profile: str, stage: str, name: str,
               seed: int) -> Path:
    """``runs/<profile>/<stage>/<name>/seed<k>``, every component checked; a library model's
    name (``timm:resnet18``) names the folder ``timm-resnet18``."""
    root = Path(runs)
    check_name(profile, "profile")
    name = folder_label(name)
    check_name(name, f"{stage} run name")
    if seed < 0:
        raise RunNameError(f"seed {seed} is negative: expected an integer >= 0")
    return inside(root, root / profile / stage / name / f"seed{seed}", f"{stage} run {name!r}")


def remove_stale_temps(folder: Path) -> list[Path]:
    """Remove what killed writes left in ``folder`` (only call with its lock held): the atomic
    writer's ``.<name>.*.tmp`` files and ``.<name>.tmp-*`` folders (IR pairs)."""
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    for entry in folder.iterdir():
        if not entry.name.startswith("."):
            continue
        if entry.is_file() and entry.name.endswith(".tmp"):
            with contextlib.suppress(OSError):
                entry.unlink()
                removed.append(entry)
        elif entry.is_dir() and (".tmp-" in entry.name or ".old-" in entry.name):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


@contextlib.contextmanager
def run_lock(folder: Path, what: str) -> Iterator[None]:
    """Hold ``folder``'s lock for the block (see the module docstring)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        if not _acquire(fd, path):
            raise RunLockedError(f"{folder} is in use by another run ({_holder(path)}); wait "
                                 f"for it to finish or stop it, then run {what} again")
        info = {"pid": os.getpid(), "host": socket.gethostname(),
                "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                "command": " ".join([os.path.basename(sys.argv[0]), *sys.argv[1:]])}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        remove_stale_temps(folder)
        yield
    finally:
        os.close(fd)   # releases the flock


#: how long to wait for the children of a killed run to let go of its lock
ORPHAN_WAIT_S = 30.0


def _acquire(fd: int, path: Path) -> bool:
    """Take the flock. A flock belongs to the open file, which forked children (DataLoader
    workers) share: after a SIGKILL of the run they hold it until they notice and exit (a few
    seconds). So while the recorded holder is dead, wait for them, up to ``ORPHAN_WAIT_S``."""
    deadline = time.monotonic() + ORPHAN_WAIT_S
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if _holder_alive(path) or time.monotonic() > deadline:
                return False
            time.sleep(0.2)


def _holder_alive(path: Path) -> bool:
    try:
        info = json.loads(path.read_text() or "{}")
        pid = int(info["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return True
    if info.get("host") != socket.gethostname():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return "unknown process"
    state = "" if _holder_alive(path) else ", no longer running: its child processes hold the lock"
    return (f"pid {info.get('pid')} on {info.get('host')}, started {info.get('started')}: "
            f"`{info.get('command')}`{state}")
