#!/usr/bin/env python
"""Time one search step of every search method on the same supernet size and batch.

    python benchmarks/bench_search_step.py --C 8 --layers 5 --batch 8 --size 32 --repeats 5

Each method runs in its own subprocess (so that its peak memory is its own): build the method,
``begin_epoch(0, planned_epochs)``, ``--warmup`` untimed steps, then ``--repeats`` timed steps on
one fixed random batch (train batch = val batch shape). Reported: the median (and min) ms per
``step`` and the peak memory: the process's peak RSS on CPU (``resource.getrusage``; it includes
the ~few hundred MiB of the imported libraries, so the import baseline is shown too) or
``torch.cuda.max_memory_allocated`` on GPU.

What one "step" is differs by method: DARTS-style methods take one architecture step and one
weight step; CP-NAS trains the real Parent and the 1-bit Child on one sampled single-path
sub-architecture (its per-epoch validation of both networks is not a step and is not timed);
DCP-NAS does whatever its ``step`` does. PC-DARTS's architecture warm-up is switched off so that
its timed steps include the architecture update.

It prints the ratios DCP-NAS / DARTS (1st order) and DCP-NAS / DARTS (2nd order) next to the
paper's targets (<= 1.5x and <= 0.5x). A benchmark, not a test: it prints, it asserts nothing.
Methods not registered (e.g. ``dcpnas`` before its file exists) are skipped with a message.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

METHODS = ("direct_bnas", "darts", "darts_2nd", "pcdarts", "cpnas", "dcpnas")
LABELS = {"direct_bnas": "Direct BNAS", "darts": "DARTS (1st order)",
          "darts_2nd": "DARTS (2nd order)", "pcdarts": "PC-DARTS (1-bit)", "cpnas": "CP-NAS",
          "dcpnas": "DCP-NAS"}
TARGETS = (("darts", 1.5), ("darts_2nd", 0.5))  # DCP-NAS / X <= target


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def run_worker(args: argparse.Namespace) -> dict:
    """Runs inside the subprocess: time ``args.worker``'s step; returns a JSON-able dict."""
    import torch

    from backbones.search.base import SearchContext, get_search_method, list_search_methods

    torch.set_num_threads(args.threads)
    name = args.worker
    out: dict = {"method": name}
    if name not in list_search_methods():
        out["missing"] = True
        return out
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        out["error"] = "CUDA requested but not available"
        return out
    baseline = _rss_mib()
    cls = get_search_method(name)
    fields = {f.name for f in dataclasses.fields(cls.Config)} if dataclasses.is_dataclass(
        cls.Config) else set()
    wanted = {"C": args.C, "layers": args.layers, "arch_warmup_epochs": 0}
    cfg = cls.Config(**{k: v for k, v in wanted.items() if k in fields})
    torch.manual_seed(0)
    ctx = SearchContext(num_classes=10, device=device, seed=0)
    method = cls(cfg, ctx)
    for module in method.modules():
        module.to(device)
    method.begin_epoch(0, max(int(method.planned_epochs()), 1))
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, 3, args.size, args.size, generator=g).to(device)
    y = torch.randint(0, 10, (args.batch,), generator=g).to(device)
    xv = torch.randn(args.batch, 3, args.size, args.size, generator=g).to(device)
    yv = torch.randint(0, 10, (args.batch,), generator=g).to(device)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(args.warmup):
        method.step((x, y), (xv, yv))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(args.repeats):
        sync()
        t0 = time.perf_counter()
        method.step((x, y), (xv, yv))
        sync()
        times.append(1000.0 * (time.perf_counter() - t0))
    out.update(ms_median=statistics.median(times), ms_min=min(times), repeats=len(times),
               params=sum(p.numel() for m in method.modules() for p in m.parameters()))
    if device.type == "cuda":
        out["peak_mib"] = torch.cuda.max_memory_allocated(device) / 2 ** 20
        out["memory_kind"] = "cuda max_memory_allocated"
    else:
        out["peak_mib"] = _rss_mib()
        out["baseline_mib"] = baseline
        out["memory_kind"] = "peak RSS"
    return out


def spawn(name: str, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", name,
           "--C", str(args.C), "--layers", str(args.layers), "--batch", str(args.batch),
           "--size", str(args.size), "--repeats", str(args.repeats),
           "--warmup", str(args.warmup), "--threads", str(args.threads),
           "--device", args.device]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=str(ROOT))
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        return {"method": name, "error": f"exit {proc.returncode}: {tail}"}
    return json.loads(lines[-1])


def print_table(rows: list[dict], args: argparse.Namespace) -> None:
    header = ["method", "ms/step (median)", "ms/step (min)", "peak MiB", "params"]
    body = []
    for r in rows:
        label = LABELS.get(r["method"], r["method"])
        if r.get("missing") or "error" in r:
            note = "skipped" if r.get("missing") else r["error"]
            body.append([label, note, "", "", ""])
            continue
        mem = f"{r['peak_mib']:.0f}"
        if "baseline_mib" in r:
            mem += f" (+{r['peak_mib'] - r['baseline_mib']:.0f})"
        body.append([label, f"{r['ms_median']:.1f}", f"{r['ms_min']:.1f}", mem,
                     f"{r['params']:,}"])
    title = (f"one search step: C={args.C} layers={args.layers} batch={args.batch} "
             f"{args.size}x{args.size} device={args.device} threads={args.threads} "
             f"repeats={args.repeats}")
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        widths = [max(len(str(row[i])) for row in [header] + body) for i in range(len(header))]
        print(title)
        print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
        print("  ".join("-" * w for w in widths))
        for row in body:
            print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)))
    else:
        table = Table(title=title)
        for h in header:
            table.add_column(h, justify="left" if h == "method" else "right")
        for row in body:
            table.add_row(*row)
        Console().print(table)
    mem_kind = next((r["memory_kind"] for r in rows if "memory_kind" in r), "")
    if mem_kind == "peak RSS":
        print("peak MiB: process peak RSS (in brackets: above the import baseline)")


def print_ratios(rows: list[dict]) -> None:
    by = {r["method"]: r for r in rows if "ms_median" in r}
    if "dcpnas" not in by:
        print("ratios: DCP-NAS not available, no ratios")
        return
    for ref, target in TARGETS:
        if ref not in by:
            print(f"DCP-NAS / {LABELS[ref]}: {ref} not available")
            continue
        ratio = by["dcpnas"]["ms_median"] / by[ref]["ms_median"]
        verdict = "meets" if ratio <= target else "misses"
        print(f"DCP-NAS / {LABELS[ref]}: {ratio:.2f}x  (target <= {target}x: {verdict})")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--C", type=int, default=8, help="initial channels (PC-DARTS with K=4 needs C %% 4 == 0)")
    p.add_argument("--layers", type=int, default=5)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--size", type=int, default=32, help="input height = width")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--methods", nargs="+", default=list(METHODS), metavar="NAME")
    p.add_argument("--json", action="store_true", help="also print the raw results as JSON")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(run_worker(args)))
        return 0
    rows = []
    for name in args.methods:
        row = spawn(name, args)
        if row.get("missing"):
            print(f"{name}: not registered (its module is missing?), skipped", file=sys.stderr)
        rows.append(row)
    print_table(rows, args)
    print_ratios(rows)
    if args.json:
        print(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
