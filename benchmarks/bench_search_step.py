#!/usr/bin/env python
"""Time one search step of every search method on the same supernet size and batch, and a
retraining step of the final 1-bit network.

    python benchmarks/bench_search_step.py --C 8 --layers 5 --batch 8 --size 32 --repeats 8
    python benchmarks/bench_search_step.py --compile     # also eager vs torch.compile
    python benchmarks/bench_search_step.py --device cuda # images/s and peak GPU memory

Rows are methods or variants, ``method:key=value,...`` (e.g. ``dcpnas:parent_every=2``);
``retrain`` is a retraining step (DARTS_V2 cells, batch --retrain-batch).

Each method runs in its own subprocess (so that its peak memory is its own): build the method,
``begin_epoch(0, planned_epochs)``, ``--warmup`` untimed steps, then ``--repeats`` timed steps on
one fixed random batch (train batch = val batch shape). Reported: the mean, median and min ms
per ``step`` (ratios use the mean: a ``parent_every: k`` variant is periodic, so 8 repeats after
2 warm-up steps cover whole periods for k = 1, 2, 4) and the peak memory: the process's peak RSS
on CPU (``resource.getrusage``; it includes the ~few hundred MiB of the imported libraries, so
the import baseline is shown too) or ``torch.cuda.max_memory_allocated`` on GPU. A compiled
row (``--compile``: ``search.compile``'s edge-by-edge compile, or the whole retraining network)
builds an eager copy in the same process and alternates their steps, so eager / compiled is a
side-by-side ratio; its first step (the compilation) is reported apart.

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
import copy
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

#: a method, or ``method:key=value,key=value`` (a variant with changed settings)
METHODS = ("retrain", "direct_bnas", "darts", "darts_2nd", "pcdarts", "cpnas", "dcpnas",
           "dcpnas:second_order=exact", "dcpnas:second_order=ggn",
           "dcpnas:parent_every=2", "dcpnas:parent_every=4",
           "dcpnas:second_order=ggn,child_arch_batch=train,parent_every=4")
# (``dcpnas``: the published defaults, the GGN product; the others are the ablations
# `dcpnas-exact`, `dcpnas-ggn`, `dcpnas-parent2`, `dcpnas-parent4` and `dcpnas-fast`)
#: rows also timed compiled by --compile: all of them (search rows compile each supernet
#: edge, ~2-3 min per method with a cold inductor cache; the retraining network whole)
COMPILE_METHODS = METHODS
LABELS = {"direct_bnas": "Direct BNAS", "darts": "DARTS (1st order)",
          "darts_2nd": "DARTS (2nd order)", "pcdarts": "PC-DARTS (1-bit)", "cpnas": "CP-NAS",
          "dcpnas": "DCP-NAS", "retrain": "retraining step (1-bit DARTS_V2 cells)"}
TARGETS = (("darts", 1.5), ("darts_2nd", 0.5))  # DCP-NAS / X <= target
#: Table 4.3 (docs/papers.md): search cost with the exact second order vs the GGN approximation
PAPER_EXACT_GGN = (27.9, 2.9)


def parse_variant(spec: str) -> tuple[str, dict]:
    """'dcpnas:parent_every=2,second_order=ggn' -> ('dcpnas', {'parent_every': 2, ...})."""
    name, _, rest = spec.partition(":")
    overrides: dict = {}
    for item in filter(None, rest.split(",")):
        key, _, raw = item.partition("=")
        value: object = {"True": True, "False": False}.get(raw, raw)
        for cast in (int, float) if isinstance(value, str) else ():
            try:
                value = cast(raw)
                break
            except ValueError:
                continue
        overrides[key.strip()] = value
    return name, overrides


def label(spec: str) -> str:
    name, overrides = parse_variant(spec)
    extra = ", ".join(f"{k}={v}" for k, v in overrides.items())
    return LABELS.get(name, name) + (f" [{extra}]" if extra else "")


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def run_worker(args: argparse.Namespace) -> dict:
    """Runs inside the subprocess: time ``args.worker``'s step; returns a JSON-able dict."""
    import torch

    from backbones.search.base import SearchContext, get_search_method, list_search_methods

    torch.set_num_threads(args.threads)
    name, overrides = parse_variant(args.worker)
    out: dict = {"method": args.worker}
    if name == "retrain":
        return run_retrain_worker(args, out)
    if name not in list_search_methods():
        out["missing"] = True
        return out
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        out["error"] = "CUDA requested but not available"
        return out
    baseline = _rss_mib()
    cls = get_search_method(name)
    fields = set(cls.Config.model_fields)
    wanted = {"C": args.C, "layers": args.layers, "arch_warmup_epochs": 0, "stem": args.stem,
              **overrides}
    unknown = set(overrides) - fields
    if unknown:
        out["error"] = f"{name} has no setting(s) {', '.join(sorted(unknown))}"
        return out
    cfg = cls.Config(**{k: v for k, v in wanted.items() if k in fields})

    def build():
        torch.manual_seed(0)
        method = cls(cfg, SearchContext(num_classes=args.classes, device=device, seed=0))
        for module in method.modules():
            module.to(device)
        method.begin_epoch(0, max(int(method.planned_epochs()), 1))
        return method

    method = build()
    eager = None
    if args.compile:
        from harness.accel import compile_modules
        eager = build()
        out["compiled_modules"] = compile_modules(method.modules(), True)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, 3, args.size, args.size, generator=g).to(device)
    y = torch.randint(0, args.classes, (args.batch,), generator=g).to(device)
    xv = torch.randn(args.batch, 3, args.size, args.size, generator=g).to(device)
    yv = torch.randint(0, args.classes, (args.batch,), generator=g).to(device)
    _time_steps(out, args, device, lambda: method.step((x, y), (xv, yv)),
                None if eager is None else (lambda: eager.step((x, y), (xv, yv))))
    out.update(params=sum(p.numel() for m in method.modules() for p in m.parameters()),
               images_per_step=2 * args.batch,   # a training and a validation batch
               planned_epochs=int(method.planned_epochs()), uses_data=bool(cls.uses_data))
    _memory(out, device, baseline)
    return out


def _time_steps(out: dict, args: argparse.Namespace, device, step, paired=None) -> None:
    """Time ``step``: the first call apart (it compiles), ``args.warmup - 1`` more untimed,
    then ``args.repeats`` timed. With ``paired`` (the same step on an eager copy, for a
    compiled row) the two alternate step by step in this one process, so that their ratio is
    measured side by side (between processes this VM drifts by 10-40%)."""
    import torch

    def timed(fn) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return 1000.0 * (time.perf_counter() - t0)

    out["first_step_ms"] = timed(step)
    if paired is not None:
        out["paired_first_step_ms"] = timed(paired)
    for _ in range(args.warmup - 1):
        step()
        if paired is not None:
            paired()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times, paired_times = [], []
    for _ in range(args.repeats):
        times.append(timed(step))
        if paired is not None:
            paired_times.append(timed(paired))
    out.update(ms_median=statistics.median(times), ms_min=min(times), repeats=len(times),
               ms_mean=statistics.fmean(times))
    if paired_times:
        out["paired_eager_ms_mean"] = statistics.fmean(paired_times)


def _memory(out: dict, device, baseline: float) -> None:
    import torch
    if device.type == "cuda":
        out["peak_mib"] = torch.cuda.max_memory_allocated(device) / 2 ** 20
        out["memory_kind"] = "cuda max_memory_allocated"
    else:
        out["peak_mib"] = _rss_mib()
        out["baseline_mib"] = baseline
        out["memory_kind"] = "peak RSS"


def run_retrain_worker(args: argparse.Namespace, out: dict) -> dict:
    """A retraining step of the final 1-bit network (``retrain:genotype=NAME``, default
    darts_v2; C and layers as given, batch ``args.retrain_batch``): AdamW on cross-entropy,
    bf16 autocast and channels_last on CUDA, as `harness train` does."""
    import torch
    import torch.nn.functional as F

    from backbones.registry import create_backbone
    from harness.accel import autocast, prepare_module, setup_device, to_device

    _, overrides = parse_variant(args.worker)
    device = torch.device(args.device)
    baseline = _rss_mib()
    setup_device(device)
    torch.manual_seed(0)
    net = create_backbone("nas", genotype=str(overrides.get("genotype", "darts_v2")), C=args.C,
                          layers=args.layers, num_classes=args.classes, stem=args.stem)
    net = prepare_module(net, device, True)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    x = to_device(torch.randn(args.retrain_batch, 3, args.size, args.size, generator=g),
                  device, True)
    y = torch.randint(0, args.classes, (args.retrain_batch,), generator=g).to(device)

    def stepper(model, optimizer):
        def step() -> None:
            with autocast(device, True):
                loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        return step

    paired = None
    if args.compile:                  # an eager copy, timed alternately (see _time_steps)
        twin = copy.deepcopy(net)
        paired = stepper(twin, torch.optim.AdamW(twin.parameters(), lr=1e-3))
        model = torch.compile(net)
    else:
        model = net
    _time_steps(out, args, device, stepper(model, opt), paired)
    out.update(params=sum(p.numel() for p in net.parameters()),
               images_per_step=args.retrain_batch)
    _memory(out, device, baseline)
    return out


def spawn(name: str, args: argparse.Namespace, compiled: bool = False) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", name,
           "--C", str(args.C), "--layers", str(args.layers), "--batch", str(args.batch),
           "--size", str(args.size), "--repeats", str(args.repeats),
           "--warmup", str(args.warmup), "--threads", str(args.threads),
           "--device", args.device, "--retrain-batch", str(args.retrain_batch),
           "--stem", args.stem, "--classes", str(args.classes)]
    if compiled:
        cmd.append("--compile")
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=str(ROOT))
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        return {"method": name, "error": f"exit {proc.returncode}: {tail}",
                "compiled": compiled}
    return {**json.loads(lines[-1]), "compiled": compiled}


def print_table(rows: list[dict], args: argparse.Namespace) -> None:
    header = ["method", "ms/step (mean)", "ms/step (median)", "ms/step (min)", "images/s",
              "first step s", "peak MiB", "params"]
    body = []
    for r in rows:
        name = label(r["method"]) + (" (compiled)" if r.get("compiled") else "")
        if r.get("missing") or "error" in r:
            note = "skipped" if r.get("missing") else r["error"]
            body.append([name, note, "", "", "", "", "", ""])
            continue
        mem = f"{r['peak_mib']:.0f}"
        if "baseline_mib" in r:
            mem += f" (+{r['peak_mib'] - r['baseline_mib']:.0f})"
        body.append([name, f"{r['ms_mean']:.1f}", f"{r['ms_median']:.1f}", f"{r['ms_min']:.1f}",
                     f"{1000.0 * r['images_per_step'] / r['ms_mean']:.1f}",
                     f"{r['first_step_ms'] / 1000.0:.1f}", mem, f"{r['params']:,}"])
    title = (f"one step: C={args.C} layers={args.layers} batch={args.batch} (retrain "
             f"{args.retrain_batch}) {args.size}x{args.size} device={args.device} "
             f"threads={args.threads} repeats={args.repeats}")
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
        from rich.markup import escape
        for row in body:   # "DCP-NAS [parent_every=2]" is not markup
            table.add_row(*(escape(str(c)) for c in row))
        Console(width=max(160, Console().width)).print(table)   # whole rows in logs too
    mem_kind = next((r["memory_kind"] for r in rows if "memory_kind" in r), "")
    if mem_kind == "peak RSS":
        print("peak MiB: process peak RSS (in brackets: above the import baseline)")
    if any(r.get("compiled") for r in rows):
        print("compiled rows: their process also holds the eager copy they are timed against")


def _timed(rows: list[dict], compiled: bool) -> dict[str, dict]:
    """The rows that have a time, by method: the eager ones or the compiled ones."""
    return {r["method"]: r for r in rows
            if "ms_mean" in r and bool(r.get("compiled")) == compiled}


def _speedup(r: dict) -> float:
    """Eager / compiled of a compiled row, from its side-by-side eager copy."""
    return r["paired_eager_ms_mean"] / r["ms_mean"]


def _compile_seconds(r: dict) -> float:
    """A compiled row's first step minus its eager copy's: the compilation."""
    return (r["first_step_ms"] - r["paired_first_step_ms"]) / 1000.0


def ratio_lines(rows: list[dict]) -> list[str]:
    """On mean step times (a variant with parent_every = k is periodic: its median would be
    the Parent-update step or the other). Every DCP-NAS variant against the two DARTS steps
    (targets), the 1-bit ops' share (direct BNAS / DARTS 1st), the GGN claim (exact / GGN per step vs Table 4.3), and what
    torch.compile buys (eager / compiled, and the compilation time)."""
    lines: list[str] = []
    for r in rows:
        if r.get("compiled") and "paired_eager_ms_mean" in r:
            lines.append(f"torch.compile, {label(r['method'])}: eager / compiled = "
                         f"{_speedup(r):.2f}x (side by side in one process); compilation ~"
                         f"{_compile_seconds(r):.0f} s "
                         f"(first step {r['first_step_ms'] / 1000.0:.0f} s vs "
                         f"{r['paired_first_step_ms'] / 1000.0:.1f} s eager)")
    by, by_compiled = _timed(rows, compiled=False), _timed(rows, compiled=True)
    if not any(parse_variant(m)[0] == "dcpnas" for m in by):
        lines.append("ratios: DCP-NAS not available, no ratios")
        return lines
    for kind, rows_of in (("", by), (" (both compiled)", by_compiled)):
        dcp = [m for m in rows_of if parse_variant(m)[0] == "dcpnas"]
        for ref, target in TARGETS:
            if ref not in rows_of:
                if dcp:
                    lines.append(f"DCP-NAS / {LABELS[ref]}{kind}: {ref} not available")
                continue
            for m in dcp:
                ratio = rows_of[m]["ms_mean"] / rows_of[ref]["ms_mean"]
                verdict = "meets" if ratio <= target else "misses"
                lines.append(f"{label(m)} / {LABELS[ref]}{kind}: {ratio:.2f}x  "
                             f"(target <= {target}x: {verdict})")
    if "direct_bnas" in by and "darts" in by:
        lines.append(f"1-bit supernet step / real one (Direct BNAS / DARTS 1st): "
                     f"{by['direct_bnas']['ms_mean'] / by['darts']['ms_mean']:.2f}x")
    exact = by.get("dcpnas:second_order=exact")
    ggn = by.get("dcpnas")
    if exact and ggn:
        paper = PAPER_EXACT_GGN[0] / PAPER_EXACT_GGN[1]
        lines.append(f"GGN claim: DCP-NAS step exact Hessian / GGN (published) = "
                     f"{exact['ms_mean'] / ggn['ms_mean']:.2f}x (paper, Table 4.3: search cost "
                     f"{PAPER_EXACT_GGN[0]} / {PAPER_EXACT_GGN[1]} = {paper:.1f}x)")
    return lines


def markdown_table(rows: list[dict]) -> str:
    """One line per row, its compiled twin beside it (the snapshot's table)."""
    eager, comp = _timed(rows, compiled=False), _timed(rows, compiled=True)
    lines = ["| row | ms/step (mean) | median | images/s | peak MiB | / DARTS-1st | / DARTS-2nd "
             "| compiled ms/step | eager / compiled, side by side | compile s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in eager.values():
        cells = [label(r["method"]), f"{r['ms_mean']:.0f}", f"{r['ms_median']:.0f}",
                 f"{1000.0 * r['images_per_step'] / r['ms_mean']:.1f}", f"{r['peak_mib']:.0f}"]
        for base in ("darts", "darts_2nd"):
            cells.append(f"{r['ms_mean'] / eager[base]['ms_mean']:.2f}x"
                         if base in eager and r["method"] != "retrain" else "")
        c = comp.get(r["method"])
        if c and "paired_eager_ms_mean" in c:
            cells += [f"{c['ms_mean']:.0f}", f"{_speedup(c):.2f}x", f"{_compile_seconds(c):.0f}"]
        else:
            cells += ["", "", ""]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--C", type=int, default=8, help="initial channels (PC-DARTS with K=4 needs C %% 4 == 0)")
    p.add_argument("--layers", type=int, default=5)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--size", type=int, default=32, help="input height = width")
    p.add_argument("--repeats", type=int, default=8,
                   help="timed steps (a multiple of every parent_every in the rows)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps (>= 1; the first "
                   "is reported separately: it includes torch.compile's compilation)")
    p.add_argument("--retrain-batch", type=int, default=32, help="batch of the retrain rows")
    p.add_argument("--stem", choices=("cifar", "imagenet"), default="cifar",
                   help="the supernet's / network's stem (imagenet: stride 8, use --size 224)")
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--compile", action="store_true",
                   help="also time --compile-methods with torch.compile (search.compile / "
                        "train.compile): eager / compiled ratio and compilation time")
    p.add_argument("--compile-methods", nargs="+", default=list(COMPILE_METHODS),
                   metavar="NAME")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--methods", nargs="+", default=list(METHODS), metavar="NAME")
    p.add_argument("--json", action="store_true", help="also print the raw results as JSON")
    p.add_argument("--markdown", action="store_true",
                   help="also print the table as markdown")
    p.add_argument("--write", action="store_true",
                   help="write the snapshot results/bench/search_step.{json,md} (make bench)")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(run_worker(args)))
        return 0
    rows = []
    for name in args.methods:
        row = spawn(name, args)
        if "ms_mean" in row:    # progress, so that an interrupted run still shows its rows
            print(f"{label(name)}: {row['ms_mean']:.1f} ms/step", file=sys.stderr, flush=True)
        if row.get("missing"):
            print(f"{name}: not registered (its module is missing?), skipped", file=sys.stderr)
        rows.append(row)
        if args.compile and name in args.compile_methods and not row.get("missing"):
            rows.append(spawn(name, args, compiled=True))
            if "ms_mean" in rows[-1]:
                print(f"{label(name)} (compiled): {rows[-1]['ms_mean']:.1f} ms/step",
                      file=sys.stderr, flush=True)
    print_table(rows, args)
    ratios = ratio_lines(rows)
    print("\n".join(ratios))
    table = markdown_table(rows)
    if args.markdown:
        print(table)
    if args.json:
        print(json.dumps(rows, indent=2))
    if args.write:
        from benchmarks import snapshot
        m = snapshot.measured(args.device, args.threads, C=args.C, cells=args.layers,
                              batch=args.batch, retrain_batch=args.retrain_batch,
                              size=args.size, warmup=args.warmup, repeats=args.repeats,
                              compiled=args.compile)
        memory = next((r["memory_kind"] for r in rows if "memory_kind" in r), "")
        md = (f"# One step of each search method\n\n{snapshot.caption(m)} Mean of the timed "
              f"steps; peak MiB: {memory}; a compiled row is timed alternately with an eager "
              f"copy in one process.\n\n{table}\n" + "\n".join(f"- {line}" for line in ratios))
        snapshot.write("search_step", {"measured": m, "rows": rows}, md, device=args.device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
