#!/usr/bin/env python
"""DCP-NAS's second-order term, three ways: cost per step and accuracy of H_G v, side by side.

    python benchmarks/bench_second_order.py --C 8 --layers 5 --batch 8 --repeats 5

For ``second_order`` = ggn (the Fisher from one label draw per example), ggn_exact (the GGN
product itself, the published default: forward-mode J v, one backward) and exact (the true
Hessian by double backward) it prints, in one run:
- the median ms of a whole DCP-NAS ``step`` (same supernet, batch and seed), and of a DARTS
  first-order step on the same supernet size (the published DCP-NAS step / DARTS-1st ratio);
- the median ms of the product alone: the Child's forward, its architecture gradient and the
  product, minus the forward and plain gradient (the double-vjp GGN is timed beside the
  forward-mode one, and the GGN / exact Hessian product ratio is printed next to the paper's
  2.9 / 27.9);
- the accuracy of the product H_G v it uses, at the same point and for the same direction v:
  the cosine with the exact GGN product and with the exact Hessian product (the sampled
  estimator: mean and min over ``--draws`` draws), and the relative error to the GGN.
"Cheaper per unit of accuracy" is read off these two columns. A benchmark: it asserts nothing.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

MODES = ("ggn", "ggn_exact", "exact")
NAMES = {"ggn": "ggn (one label draw; ablation `dcpnas-ggn`)",
         "ggn_exact": "**ggn_exact** (the published method; default)",
         "exact": "exact (the Hessian; ablation `dcpnas-exact`)"}
PRODUCTS = {"ggn_exact": "forward-mode GGN", "ggn_double_vjp": "double-vjp GGN",
            "exact": "exact Hessian-vector product", "ggn": "sampled GGN"}


def _median_step_ms(m, args: argparse.Namespace) -> float:
    """Median ms of ``m.step`` on one fixed pair of batches, after one warm-up step."""
    import torch
    m.begin_epoch(0, 2)
    g = torch.Generator().manual_seed(0)
    batch = lambda: (torch.randn(args.batch, 3, args.size, args.size, generator=g),  # noqa: E731
                     torch.randint(0, 10, (args.batch,), generator=g))
    t, v = batch(), batch()
    m.step(t, v)   # warm-up
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        m.step(t, v)
        times.append(1000 * (time.perf_counter() - t0))
    return statistics.median(times)


def step_ms(mode: str, args: argparse.Namespace) -> float:
    import torch

    from backbones.search.base import SearchContext
    from backbones.search.dcpnas import DCPNAS, DCPNASConfig
    torch.manual_seed(0)
    return _median_step_ms(DCPNAS(DCPNASConfig(C=args.C, layers=args.layers, second_order=mode),
                                  SearchContext(num_classes=10, device=torch.device("cpu"),
                                                seed=0)), args)


def darts_step_ms(args: argparse.Namespace) -> float:
    """A DARTS first-order step (real supernet, same size and batch) timed like ``step_ms``."""
    import torch

    from backbones.search.base import SearchContext
    from backbones.search.darts import DARTS, DartsConfig
    torch.manual_seed(0)
    return _median_step_ms(DARTS(DartsConfig(C=args.C, layers=args.layers),
                                 SearchContext(num_classes=10, device=torch.device("cpu"),
                                               seed=0)), args)


def _child_problem(args: argparse.Namespace):
    """The second-order term's inputs, the same for every measurement: a 1-bit Child supernet
    (weights frozen: only alpha_hat is differentiated), a batch, the real Parent's logits on it
    and one random direction v. Returns (net, arch, x, parent_logits, v)."""
    import torch

    from backbones.supernet import Supernet
    torch.manual_seed(0)
    net = Supernet(args.C, 10, args.layers, binary=True)
    parent = Supernet(args.C, 10, args.layers, binary=False)
    arch = net.arch_parameters()
    for p in net.weight_parameters():
        p.requires_grad_(False)
    x = torch.randn(args.batch, 3, args.size, args.size,
                    generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        p_logits = parent(x)
    return net, arch, x, p_logits, [torch.randn_like(a) for a in arch]


def product_ms(args: argparse.Namespace) -> dict[str, float]:
    """Median ms of the Child's architecture pass with each product, interleaved (one of each
    per round, so drift hits all alike); 'base' is the pass without a product."""
    import backbones.search.tangent as tp
    net, arch, x, p_logits, v = _child_problem(args)

    def run(kind: str) -> None:
        logits = net(x)
        kl = tp.kl_parent_child(logits, p_logits)
        exact = kind == "exact"
        g_kl = tp.grad_or_zeros(kl, arch, create_graph=exact, retain_graph=kind != "base")
        if kind == "ggn_exact":
            tp.ggn_vector_product(net, x, logits, arch, v, retain_graph=False)
        elif kind == "ggn_double_vjp":
            tp.ggn_vector_product_double_vjp(logits, arch, v, retain_graph=False)
        elif exact:
            tp.exact_hessian_vector_product(g_kl, arch, v)

    kinds = ("base", "ggn_exact", "ggn_double_vjp", "exact")
    times: dict[str, list[float]] = {k: [] for k in kinds}
    for k in kinds:
        run(k)   # warm-up
    for _ in range(args.repeats):
        for k in kinds:
            t0 = time.perf_counter()
            run(k)
            times[k].append(1000 * (time.perf_counter() - t0))
    return {k: statistics.median(v) for k, v in times.items()}


def product_accuracy(args: argparse.Namespace) -> dict[str, tuple[float, float, float]]:
    """(mean cosine to the GGN, mean cosine to the Hessian, min cosine to the GGN) per mode."""
    import torch

    import backbones.search.tangent as tp
    net, arch, x, p_logits, v = _child_problem(args)
    logits = net(x)
    kl = tp.kl_parent_child(logits, p_logits)
    g_kl = tp.grad_or_zeros(kl, arch, create_graph=True, retain_graph=True)
    hess = tp.flat([-h for h in tp.exact_hessian_vector_product(g_kl, arch, v,
                                                                 retain_graph=True)])
    ggn = tp.flat(tp.ggn_vector_product(net, x, logits, arch, v, retain_graph=True))

    def cos(a, b) -> float:
        return float((a @ b) / (a.norm() * b.norm()))
    draws = [tp.flat(tp.fisher_vector_product(logits, arch, v, samples=1, retain_graph=True,
                                              generator=torch.Generator().manual_seed(k)))
             for k in range(args.draws)]
    c_ggn = [cos(d, ggn) for d in draws]
    return {"ggn": (statistics.mean(c_ggn), statistics.mean(cos(d, hess) for d in draws),
                    min(c_ggn)),
            "ggn_exact": (1.0, cos(ggn, hess), 1.0),
            "exact": (cos(hess, ggn), 1.0, cos(hess, ggn))}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--C", type=int, default=8)
    p.add_argument("--layers", type=int, default=5)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--draws", type=int, default=20)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--write", action="store_true",
                   help="write the snapshot results/bench/second_order.{json,md} (make bench)")
    args = p.parse_args(argv)
    import torch
    torch.set_num_threads(args.threads)
    acc = product_accuracy(args)
    rows = [(mode, step_ms(mode, args), *acc[mode]) for mode in MODES]
    darts = darts_step_ms(args)
    prod = product_ms(args)
    alone = {k: prod[k] - prod["base"] for k in prod if k != "base"}
    base, published, exact = rows[0][1], rows[1][1], rows[2][1]
    table = ["| second_order | ms/step | cosine to the GGN product | min over draws | "
             "cosine to the Hessian product |", "|---|---|---|---|---|"]
    for mode, ms, c_ggn, c_h, c_min in rows:
        table.append(f"| {NAMES[mode]} | {ms:.0f} | {c_ggn:.2f} | {c_min:.2f} | {c_h:.2f} |")
    lines = [
        f"published DCP-NAS step (ggn_exact) / DARTS 1st-order step ({darts:.0f} ms): "
        f"{published / darts:.2f}x (target <= 1.5x)",
        f"exact / ggn step time: {exact / base:.2f}x (the paper's exact / GGN search cost "
        f"27.9 / 2.9 = {27.9 / 2.9:.1f}x)",
        f"the product alone, on top of the Child's architecture pass ({prod['base']:.0f} ms): "
        + ", ".join(f"{PRODUCTS[k]} {v:.0f} ms" for k, v in alone.items()),
        f"GGN product (forward mode) / exact Hessian product: "
        f"{alone['ggn_exact'] / alone['exact']:.2f}x (target <= 0.5x; the paper's 2.9 / 27.9 = "
        f"{2.9 / 27.9:.2f}x); double-vjp GGN / exact: "
        f"{alone['ggn_double_vjp'] / alone['exact']:.2f}x"]
    print("\n".join(table))
    print("\n".join(lines))
    if args.write:
        from benchmarks import snapshot
        m = snapshot.measured("cpu", args.threads, C=args.C, cells=args.layers,
                              batch=args.batch, size=args.size, repeats=args.repeats,
                              draws=args.draws)
        md = (f"# DCP-NAS's second-order term, three ways\n\n{snapshot.caption(m)} Eager, "
              f"medians; the products interleaved in one process; cosines for one random "
              f"direction (the sampled estimator: mean and min over the draws).\n\n"
              + "\n".join(table) + "\n\n" + "\n".join(f"- {line}" for line in lines))
        snapshot.write("second_order", {
            "measured": m, "darts_ms": darts, "product_ms": prod,
            "rows": [dict(zip(("second_order", "ms", "cos_ggn", "cos_hessian", "min_cos_ggn"),
                              r)) for r in rows]}, md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
