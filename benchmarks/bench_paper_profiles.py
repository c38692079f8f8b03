#!/usr/bin/env python
"""Peak memory and time of one step of each paper profile at its batch size, and the cost of a
full paper-imagenet search projected from them.

    python benchmarks/bench_paper_profiles.py                 # CPU: ~15 min on 2 cores
    python benchmarks/bench_paper_profiles.py --device cuda   # the allocator's peak

For each paper profile (``paper``: CIFAR-10 search and retraining; ``paper-imagenet``: the
ImageNet search of ``imagenet_search_runs`` and the DCP-NAS-L retraining), with the profile's
own network sizes, stem, input side and per-method settings from params.yaml, one step of every
search run (methods and Table 4.3 ablations) and of the retraining is measured by
``bench_search_step.py``'s worker (its own subprocess each) at two small batches b1 < b2.
Memory and time are fitted as ``fixed + per_image x batch`` through the two points and read at
the profile's batch: activations grow linearly with the batch, weights and optimizer state do
not. What "memory" is: on CUDA ``torch.cuda.max_memory_allocated`` over the timed steps (model,
optimizer state, activations: what the allocator needs); on CPU the process's peak RSS minus
its RSS after importing the stack (the same tensors, plus what the CPU kernels keep as scratch:
an estimate, docs/performance.md). A GPU fits a row when the projected peak is at most 90 % of
its memory (the CUDA context, cuDNN workspaces and fragmentation take the rest).

The projection of a full search (paper-imagenet): steps = planned epochs x
floor(1,281,167 x sample.weights / (batch x processes)), processes = lr_scale_batch / batch
(the reference's 8 GPUs), device-days = steps x seconds per step at the profile's batch x
processes / 86,400 -- an upper bound: warm-up epochs skip the architecture update, which the
timed step includes. CPU-days on a CPU, GPU-days only from a ``--device cuda`` run.

Writes ``results/bench/paper_profiles[-cuda].json`` (read by ``harness report`` for Table 4.3's
projection column) and prints a table. A benchmark: it prints and writes, it asserts nothing.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import bench_search_step as B  # noqa: E402

#: ImageNet-1k's training images (the projection's sample is a fraction of them)
IMAGENET_TRAIN_IMAGES = 1_281_167
#: GPU memory sizes (GiB) of common cards, smallest first
GPUS = ((16, "16 GB (V100-16, T4)"), (24, "24 GB (RTX 3090/4090, A10, L4)"),
        (32, "32 GB (V100-32)"), (40, "40 GB (A100-40)"), (48, "48 GB (A6000, L40S)"),
        (80, "80 GB (A100-80, H100)"), (141, "141 GB (H200)"))
HEADROOM = 0.9


def smallest_gpu(mib: float) -> str:
    for gib, name in GPUS:
        if mib <= HEADROOM * gib * 1024:
            return name
    return f"none: more than {GPUS[-1][0]} GB (lower the batch)"


def variant(params: Any, profile: Any, run: str) -> tuple[str, str]:
    """(bench worker spec, method) of a search run under ``profile``: the method with its
    per_method settings and, for an ablation, the ablation's."""
    abl = params.ablations.get(run)
    method = abl.method if abl is not None else run
    sets = {**profile.search.per_method.get(method, {}), **(abl.set if abl else {})}
    spec = method + (":" + ",".join(f"{k}={v}" for k, v in sets.items()) if sets else "")
    return spec, method


def fit(xs: list[int], ys: list[float], at: int) -> float:
    (x1, x2), (y1, y2) = xs, ys
    slope = (y2 - y1) / (x2 - x1)
    return y1 + slope * (at - x1)


def measure(spec: str, args: argparse.Namespace, *, C: int, layers: int, stem: str, size: int,
            classes: int, batches: tuple[int, int]) -> list[dict]:
    rows = []
    for b in batches:
        ns = argparse.Namespace(C=C, layers=layers, batch=b, size=size, repeats=args.repeats,
                                warmup=1, threads=args.threads, device=args.device,
                                retrain_batch=b, stem=stem, classes=classes)
        row = B.spawn(spec, ns)
        print(f"  {spec} batch {b}: " + (f"{row['ms_mean']:.0f} ms/step, peak "
              f"{row['peak_mib'] - row.get('baseline_mib', 0.0):.0f} MiB" if "ms_mean" in row
              else row.get("error", "missing")), file=sys.stderr, flush=True)
        rows.append(row)
    return rows


def project(rows: list[dict], batches: tuple[int, int], batch: int) -> dict[str, Any]:
    if any("ms_mean" not in r for r in rows):
        return {"error": next((r.get("error", "missing") for r in rows if "ms_mean" not in r))}
    mib = [r["peak_mib"] - r.get("baseline_mib", 0.0) for r in rows]
    ms = [r["ms_mean"] for r in rows]
    peak = fit(list(batches), mib, batch)
    return {"batches": list(batches), "peak_mib": mib, "ms_per_step": ms,
            "profile_batch": batch, "projected_peak_mib": peak,
            "projected_s_per_step": fit(list(batches), ms, batch) / 1000.0,
            "smallest_gpu": smallest_gpu(peak), "planned_epochs": rows[-1].get("planned_epochs"),
            "uses_data": rows[-1].get("uses_data", True),
            "memory_kind": rows[-1].get("memory_kind")}


def search_projection(p: dict[str, Any], profile: Any, kind: str) -> dict[str, Any] | None:
    s = profile.search
    if s.sample is None or not p.get("uses_data", True) or "projected_s_per_step" not in p:
        return None
    processes = max(1, (s.lr_scale_batch or s.batch_size) // s.batch_size)
    per_epoch = math.floor(IMAGENET_TRAIN_IMAGES * s.sample.weights / (s.batch_size * processes))
    steps = int(p["planned_epochs"]) * per_epoch
    days = steps * p["projected_s_per_step"] * processes / 86_400
    unit = "GPU-days" if kind == "cuda" else "CPU-days"
    return {"value": days, "unit": unit, "steps": steps, "processes": processes,
            "inputs": f"{p['planned_epochs']} epochs x {per_epoch} steps (1,281,167 x "
                      f"{s.sample.weights:g} / ({s.batch_size} x {processes})) x "
                      f"{p['projected_s_per_step']:.2f} s/step x {processes} processes"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profiles", nargs="+", default=["paper", "paper-imagenet"])
    ap.add_argument("--search-batches", type=int, nargs=2, default=(2, 4))
    ap.add_argument("--retrain-batches", type=int, nargs=2, default=(2, 4))
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--runs", nargs="+", default=None,
                    help="search runs (default: every method and DCP-NAS's exact-Hessian row "
                         "for paper, imagenet_search_runs and DARTS 2nd order for "
                         "paper-imagenet)")
    ap.add_argument("--out", default=None)
    ap.add_argument("--render", metavar="JSON", default=None,
                    help="only rewrite the markdown table of an existing result file")
    args = ap.parse_args(argv)
    if args.render:
        from backbones.atomic import atomic_write_text
        src = Path(args.render)
        atomic_write_text(src.with_suffix(".md"), markdown_table(json.loads(src.read_text())))
        return 0

    from benchmarks import snapshot
    from harness.config import load_params
    params = load_params(ROOT / "params.yaml")
    result: dict[str, Any] = {
        "measured": snapshot.measured(args.device, args.threads,
                                      search_batches=list(args.search_batches),
                                      retrain_batches=list(args.retrain_batches)),
        "profiles": {}}
    for name in args.profiles:
        prof = params.profiles[name]
        imagenet = prof.data.name == "imagenet"
        size = prof.data.image_size if imagenet else 32
        classes = 1000 if imagenet else 10
        runs = args.runs or ([*params.imagenet_search_runs, "darts_2nd"] if imagenet else
                             ["direct_bnas", "darts", "darts_2nd", "pcdarts", "cpnas", "dcpnas",
                              "dcpnas-exact"])
        out: dict[str, Any] = {"search": {}, "retrain": None,
                               "search_batch": prof.search.batch_size,
                               "retrain_batch": prof.train.batch_size}
        print(f"{name}: search C={prof.search.C}, {prof.search.layers} cells, "
              f"{prof.search.stem} stem, {size}x{size}", file=sys.stderr)
        for run in runs:
            spec, method = variant(params, prof, run)
            if method == "random":
                continue          # no supernet, no step
            rows = measure(spec, args, C=prof.search.C, layers=prof.search.layers,
                           stem=prof.search.stem, size=size, classes=classes,
                           batches=tuple(args.search_batches))
            p = project(rows, tuple(args.search_batches), prof.search.batch_size)
            p["spec"] = spec
            proj = search_projection(p, prof, args.device)
            if proj is not None:
                p["projected_search"] = proj
            out["search"][run] = p
        t = prof.train
        genotype = "dcpnas_l" if imagenet else "darts_v2"
        rows = measure(f"retrain:genotype={genotype}", args, C=t.C, layers=t.layers,
                       stem=t.stem, size=size, classes=classes,
                       batches=tuple(args.retrain_batches))
        out["retrain"] = {**project(rows, tuple(args.retrain_batches), t.batch_size),
                          "network": f"{genotype}, C={t.C}, {t.layers} cells"}
        result["profiles"][name] = out
    table = markdown_table(result)
    print(table)
    snapshot.write("paper_profiles", result, table, device=args.device, out=args.out)
    return 0


def markdown_table(result: dict[str, Any]) -> str:
    from benchmarks import snapshot
    m = result["measured"]
    if "settings" not in m:   # written before the snapshot format
        m = {"script": "bench_paper_profiles.py", "dirty": None,
             "settings": {"search_batches": m["search_batches"],
                          "retrain_batches": m["retrain_batches"]}, **m}
    lines = ["# Memory and time of one step of each paper profile", "",
             f"{snapshot.caption(m)} Peak memory at each profile's batch, fitted linearly "
             f"from the measured batches; memory: {_kind(result)}.", "",
             "| profile | step | batch | peak (GiB) | s/step | smallest GPU | full search |",
             "|---|---|---|---|---|---|---|"]
    for name, out in result["profiles"].items():
        items = [(run, p, out["search_batch"]) for run, p in out["search"].items()]
        items.append(("retrain", out["retrain"], out["retrain_batch"]))
        for run, p, batch in items:
            if "error" in p:
                lines.append(f"| {name} | {run} | {batch} | error: {p['error']} | | | |")
                continue
            proj = p.get("projected_search")
            full = f"{proj['value']:.1f} {proj['unit']}" if proj else "—"
            lines.append(f"| {name} | {run} | {batch} | {p['projected_peak_mib'] / 1024:.1f} | "
                         f"{p['projected_s_per_step']:.1f} | {p['smallest_gpu']} | {full} |")
    return "\n".join(lines) + "\n"


def _kind(result: dict[str, Any]) -> str:
    if result["measured"]["device"] == "cuda":
        return "torch.cuda.max_memory_allocated"
    return "CPU estimate, peak RSS minus the RSS after imports"


if __name__ == "__main__":
    sys.exit(main())
