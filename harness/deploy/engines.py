"""Latency, throughput, peak memory and per-layer time of one deployed engine.

Each engine (binary IR, FP32 IR, PyTorch eager) is measured in a fresh spawned process, one
after the other, so that threads, allocator caches and peak RSS of one do not leak into the
next. Peak memory is the process's peak RSS minus its RSS after importing torch and openvino
(both imported by every engine, so the baselines are comparable): the peak is reset after
the imports (Linux /proc/self/clear_refs), so it covers loading, compiling and running.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import resource
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

ENGINES = ("binary_ir", "fp32_ir", "torch")


@dataclass
class EngineJob:
    engine: str                     # one of ENGINES
    input_shape: tuple[int, ...]    # batch 1
    runs: int
    warmup: int
    throughput_batch: int
    ir: str | None = None           # .xml of an IR engine
    record: dict[str, Any] | None = None      # torch: the arch record (backbones.checkpoint)
    checkpoint: str | None = None   # torch: model.pt, or None for a seeded untrained network
    seed: int = 0
    perf_runs: int = 10             # IR engines: inferences profiled per layer


def latency_stats(fn: Callable[[], Any], runs: int, warmup: int) -> dict[str, float]:
    """Median and p90 wall time (ms) of ``runs`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    arr = np.asarray(times)
    return {"median_ms": float(np.median(arr)), "p90_ms": float(np.percentile(arr, 90)),
            "runs": runs}


def _status_mb(field: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def reset_peak_rss() -> float:
    """Reset the process's peak RSS to its current RSS (Linux: /proc/self/clear_refs "5") and
    return that RSS in MiB, so that the peak read later covers only what follows."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass
    now = _status_mb("VmRSS")
    return now if now is not None else _peak_rss_mb()


def _peak_rss_mb() -> float:
    peak = _status_mb("VmHWM")
    return peak if peak is not None else \
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def all_threads() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _per_layer(compiled: Any, x: np.ndarray, runs: int) -> dict[str, Any]:
    """Mean time per inference by (layer type, kernel), and the five slowest layers."""
    req = compiled.create_infer_request()
    by_kind: dict[tuple[str, str], float] = defaultdict(float)
    by_layer: dict[tuple[str, str, str], float] = defaultdict(float)
    for _ in range(runs):
        req.infer({0: x})
        for info in req.profiling_info:
            ms = info.real_time.total_seconds() * 1e3 / runs
            by_kind[(info.node_type, info.exec_type)] += ms
            by_layer[(info.node_name, info.node_type, info.exec_type)] += ms
    total = sum(by_kind.values()) or 1.0
    kinds = [{"layer_type": k[0], "kernel": k[1], "ms": v, "share": v / total}
             for k, v in sorted(by_kind.items(), key=lambda kv: -kv[1])]
    slowest = [{"layer": k[0], "layer_type": k[1], "kernel": k[2], "ms": v}
               for k, v in sorted(by_layer.items(), key=lambda kv: -kv[1])[:5]]
    return {"total_ms": total, "by_type": kinds, "slowest": slowest}


def _measure(job: EngineJob) -> dict[str, Any]:
    """Runs in the spawned child: load the engine, time it, report its peak memory."""
    import openvino  # noqa: F401 - imported by every engine for a comparable baseline
    import torch
    base = reset_peak_rss()
    n_all = all_threads()
    x1 = np.random.default_rng(job.seed).standard_normal(job.input_shape, dtype=np.float32)
    xb = np.repeat(x1, job.throughput_batch, axis=0)
    out: dict[str, Any] = {"engine": job.engine, "threads_all": n_all}
    if job.engine == "torch":
        from backbones.checkpoint import build_network, load_network
        torch.manual_seed(job.seed)
        net = (load_network(job.checkpoint)[0] if job.checkpoint
               else build_network(job.record or {})).eval()
        t1, tb = torch.from_numpy(x1), torch.from_numpy(xb)
        with torch.inference_mode():
            for label, threads in (("1t", 1), ("all", n_all)):
                torch.set_num_threads(threads)
                out[f"latency_{label}"] = latency_stats(lambda: net(t1), job.runs, job.warmup)
            out["peak_mem_mb_batch1"] = _peak_rss_mb() - base
            thr = latency_stats(lambda: net(tb), max(5, job.runs // 10), 2)
    else:
        from harness.deploy.openvino_ir import compile_ir
        for label, threads in (("1t", 1), ("all", n_all)):
            compiled = compile_ir(Path(job.ir or ""), threads=threads)
            req = compiled.create_infer_request()
            out[f"latency_{label}"] = latency_stats(lambda: req.infer({0: x1}), job.runs,
                                                    job.warmup)
            del req, compiled
        out["peak_mem_mb_batch1"] = _peak_rss_mb() - base
        out["per_layer"] = _per_layer(compile_ir(Path(job.ir or ""), threads=1,
                                                 perf_count=True), x1, job.perf_runs)
        compiled = compile_ir(Path(job.ir or ""), threads=n_all, batch=job.throughput_batch)
        req = compiled.create_infer_request()
        thr = latency_stats(lambda: req.infer({0: xb}), max(5, job.runs // 10), 2)
    out["throughput"] = {"batch": job.throughput_batch, "threads": n_all,
                         "images_per_s": job.throughput_batch / (thr["median_ms"] / 1e3),
                         **thr}
    out["peak_mem_mb"] = _peak_rss_mb() - base
    return out


def measure_engines(jobs: list[EngineJob]) -> dict[str, dict[str, Any]]:
    """Measure each job in its own fresh process, one at a time; {engine: results}."""
    ctx = mp.get_context("spawn")
    results = {}
    for job in jobs:
        with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
            results[job.engine] = pool.submit(_measure, job).result()
    return results
