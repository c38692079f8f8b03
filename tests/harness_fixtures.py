"""Shared helpers of the scale-and-reliability tests (distributed, resume, bad input,
determinism). Imported explicitly by those test modules; not a conftest.

Everything runs on CPU with one thread per process and tiny settings: a generated CIFAR-like
set of 256/64 images, a 2-layer C=4 supernet searched for 2 epochs of one step (batch 4), a
3-layer C=4 network retrained for 2 epochs of two steps (batch 16).
"""
from __future__ import annotations

import copy
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable

os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(1)

#: the smoke profile, shrunk: a search step takes 1-3 s on a loaded 2-core CPU, a training
#: step well under a second
TINY_PROFILE: dict[str, Any] = {
    "data": {"name": "cifar10", "root": "", "train_subset": 256, "test_subset": 64},
    "smoke_data": {"cifar_train": 256, "cifar_test": 64, "coco_train": 4, "coco_val": 2,
                   "coco_size": 64, "market_ids": 4, "market_cams": 2},
    "search": {"C": 4, "layers": 2, "epochs": 2, "batch_size": 4, "max_steps_per_epoch": 1,
               "w_lr": 0.05, "arch_lr": 0.003},
    "train": {"C": 4, "layers": 3, "epochs": 2, "batch_size": 16, "lr": 0.002,
              "lr_scale_batch": 64, "max_steps_per_epoch": 2},
}

N_TRAIN, N_TEST = 256, 64

_cache: dict[str, Any] = {}


def deep_update(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            deep_update(base[key], value)
        else:
            base[key] = value
    return base


def write_params(folder: Path, data_root: str | os.PathLike[str] | None = None, *,
                 profile: dict[str, Any] | None = None, top: dict[str, Any] | None = None,
                 name: str = "params.yaml") -> Path:
    """A params.yaml in ``folder`` with the tiny profile (``profile`` merged into it, ``top``
    into the top level); runs/data/results under ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    prof = deep_update(copy.deepcopy(TINY_PROFILE), profile or {})
    if data_root is not None:
        prof["data"]["root"] = str(data_root)
    doc: dict[str, Any] = {
        "profile": "smoke", "seeds": [0], "search_runs": ["direct_bnas", "random"],
        "paths": {"data": str(folder / "data"), "runs": str(folder / "runs"),
                  "results": str(folder / "results")},
        "profiles": {"smoke": prof},
    }
    deep_update(doc, top or {})
    path = folder / name
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def shared_cifar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One generated CIFAR-like set for the whole session (read-only: copy it to corrupt it)."""
    if "cifar" not in _cache:
        from harness.data import generate_cifar_like
        root = tmp_path_factory.mktemp("shared-cifar")
        generate_cifar_like(root, n_train=N_TRAIN, n_test=N_TEST, seed=0)
        _cache["cifar"] = root
    return _cache["cifar"]


def reference_search(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """An uninterrupted `harness search --method direct_bnas --seed 0` with the tiny settings,
    run once per session in this process: {'genotype': bytes, 'metrics': dict, 'params': Path}."""
    if "reference_search" not in _cache:
        folder = tmp_path_factory.mktemp("reference-search")
        params = write_params(folder, shared_cifar(tmp_path_factory))
        code, err = run_cli_inprocess(params, "search", "--method", "direct_bnas", "--seed", "0")
        assert code == 0, err
        out = search_dir(folder, "direct_bnas", 0)
        _cache["reference_search"] = {
            "genotype": (out / "genotype.json").read_bytes(),
            "metrics": json.loads((out / "metrics.json").read_text()), "params": params}
    return _cache["reference_search"]


def search_dir(folder: Path, name: str, seed: int, profile: str = "smoke") -> Path:
    return Path(folder) / "runs" / profile / "search" / name / f"seed{seed}"


def train_dir(folder: Path, name: str, seed: int, profile: str = "smoke") -> Path:
    return Path(folder) / "runs" / profile / "train" / name / f"seed{seed}"


# ---- running the CLI ----------------------------------------------------------------------

def run_cli_inprocess(params: Path, *args: str) -> tuple[int, str]:
    """harness.cli.main in this process; returns (exit code, what it printed to stderr)."""
    import contextlib
    import io

    from harness import cli
    buf = io.StringIO()
    with contextlib.redirect_stderr(buf):  # the CLI's rich console writes to sys.stderr
        code = cli.main(["--params", str(params), *args])
    return code, buf.getvalue()


def env(**extra: str) -> dict[str, str]:
    """Environment for child processes: one thread each, the repository importable."""
    out = dict(os.environ)
    out.update({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), out.get("PYTHONPATH"))
                                              if p)})
    out.update(extra)
    return out


def cli_cmd(params: Path, *args: str) -> list[str]:
    return [PYTHON, "-m", "harness.cli", "--params", str(params), *args]


def torchrun_cmd(params: Path, *args: str, nproc: int = 2, separator: bool = False
                 ) -> list[str]:
    """`torchrun --nproc_per_node 2 -m harness.cli ...`; ``separator`` puts "--" between
    torchrun's options and the CLI's (needed for `train --run`: see test_distributed)."""
    return [PYTHON, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
            "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
            "-m", "harness.cli", *(["--"] if separator else []), "--params", str(params), *args]


def run(cmd: Sequence[str], *, timeout: float = 240, **extra_env: str
        ) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` in its own process group; on timeout the whole group (torchrun and its
    workers) is killed, so that no worker is left waiting on a collective."""
    proc = subprocess.Popen(list(cmd), cwd=REPO, env=env(**extra_env), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"{' '.join(cmd)} ran over {timeout} s:\n{out[-2000:]}\n{err[-4000:]}")
    return subprocess.CompletedProcess(list(cmd), proc.returncode, out, err)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def kill_after_checkpoint(cmd: Sequence[str], checkpoint: Path, log: Path, *,
                          delay: float = 0.2, timeout: float = 240) -> None:
    """Start ``cmd``; as soon as ``checkpoint`` exists (the first epoch is done) wait ``delay``
    seconds, so that the next epoch is under way, and SIGKILL the process."""
    with open(log, "w") as fh:
        proc = subprocess.Popen(list(cmd), cwd=REPO, env=env(), stdout=fh,
                                stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + timeout
            while not checkpoint.exists():
                if proc.poll() is not None:
                    pytest.fail(f"process ended (rc {proc.returncode}) before writing "
                                f"{checkpoint}:\n{log.read_text()[-3000:]}")
                if time.monotonic() > deadline:
                    pytest.fail(f"no checkpoint after {timeout} s:\n{log.read_text()[-3000:]}")
                time.sleep(0.01)
            time.sleep(delay)
            assert proc.poll() is None, (f"the run finished before it could be killed:\n"
                                         f"{log.read_text()[-3000:]}")
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def squash(text: str) -> str:
    """Text without any whitespace: error messages are compared this way because rich wraps
    (and folds long paths in) what it prints to the console's width."""
    return "".join(text.split())


def assert_user_error(code: int, err: str, *fragments: str) -> None:
    """A known input error: exit status 2, no traceback, and every fragment in the message."""
    assert code == 2, f"exit status {code}, expected 2; output:\n{err}"
    assert "Traceback" not in err, err
    assert "error" in err, err
    for frag in fragments:
        assert squash(frag) in squash(err), f"{frag!r} not in the message:\n{err}"
