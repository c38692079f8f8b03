"""PNG plots of the reproduction report (matplotlib, Agg; no pyplot global state).

One figure per (dataset, profile) group:
  top1_vs_search_cost_<dataset>_<profile>_<unit>.png  top-1 vs search cost per method
  top1_vs_ops_<dataset>_<profile>.png                 top-1 vs OPs per method
  ablation_tangent_lr_<dataset>_<profile>.png         Table 4.2 (measured bars + paper markers)
  ablation_distance_<dataset>_<profile>.png           Table 4.4 (measured bars + paper markers)
  deploy_latency_vs_ops.png                           measured latency vs counted OPs
  tradeoff_<profile>.png                              top-1, detection mAP, re-ID mAP of every
                                                      backbone vs its OPs and its latency
A plot without data is skipped (logged, no file). Error bars (sample std) when n >= 2.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # harmless if already Agg; figures below never touch pyplot
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

import pandas as pd  # noqa: E402

from backbones.atomic import atomic_write_rendered  # noqa: E402
from harness.report.selection import (deployed_ir, distance_cells, main_rows, paper_rows,
                                      search_rows_for, tangent_lr_cells)  # noqa: E402
from harness.report.stats import Stats, seed_stats  # noqa: E402
from harness.report.vocabulary import (DISTANCES, DISTANCE_LABELS,
                                       DISTANCE_SETTINGS, HEADLINE_SETTINGS,
                                       MAIN_RUN_NOTE, METHOD_ORDER, SETTING_L_FULL,
                                       SETTING_L_NONE, SETTING_L_ONE,
                                       TANGENT_LR_CELLS, TANGENT_LR_LABELS,
                                       dataset_label, detector_label, is_smoke, method_label,
                                       method_sort_key, profile_sort_key)  # noqa: E402

log = logging.getLogger(__name__)

PLOT_PREFIXES = ("top1_vs_search_cost_", "top1_vs_ops_", "ablation_tangent_lr_", "ablation_distance_",
                 "deploy_latency_vs_ops", "tradeoff_")
#: the accuracy panels of the trade-off figure: (stage, column, axis label)
TRADEOFF_TASKS = (("train", "top1", "classification top-1 (%)"),
                  ("detect", "bbox_mAP_50", "detection mAP@50 (%)"),
                  ("reid", "mAP", "re-ID mAP (%)"))
_PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
            "#7f7f7f", "#bcbd22", "#17becf"]


@dataclass
class PlotInfo:
    name: str
    path: Path
    title: str


#: the pipeline's reference backbones, one shape each (readable side by side in one legend)
_KNOWN_MARKERS = {"bireal_resnet18": "P", "reactnet_a": "v", "resnet18_real": "X",
                  "dcpnas_l": "^", "pcdarts_cifar": "s", "pcdarts_imagenet": "D", "darts_v2": "h"}
#: any other reference backbone (a library model, yours)
_REFERENCE_MARKERS = ("p", "<", ">", "d", "H", "8")
#: detection rows: one fill per detector (the marker still names the backbone)
_DETECTOR_FILL = {"faster_rcnn": "full", "retinanet": "none", "ssd": "bottom"}


def _color(method: str) -> str:
    """A search method's fixed colour; reference backbones (not search methods) are black."""
    if method in METHOD_ORDER:
        return _PALETTE[METHOD_ORDER.index(method) % len(_PALETTE)]
    return "black"


def _marker(method: str) -> str:
    """Circles for search methods; the pipeline's references their own shapes; another
    reference backbone a shape picked by a checksum of its name (stable across processes,
    unlike the salted str hash)."""
    if method in METHOD_ORDER:
        return "o"
    if method in _KNOWN_MARKERS:
        return _KNOWN_MARKERS[method]
    return _REFERENCE_MARKERS[sum(map(ord, method)) % len(_REFERENCE_MARKERS)]


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9.\-]+", "-", str(s)).strip("-").lower()


def _subtitle(profile: str) -> str:
    if is_smoke(profile):
        return " (synthetic smoke data: not comparable with the papers)"
    return ""


def _err(s: Stats):
    return s.std if s.n >= 2 else None


def _save(fig: Figure, path: Path) -> None:
    FigureCanvasAgg(fig)
    atomic_write_rendered(path, lambda buf: fig.savefig(buf, format="png", dpi=110,
                                                        bbox_inches="tight"))


def _scatter_legend(ax) -> None:
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False,
              borderaxespad=0.0)


def _top1_vs_search_cost(metrics: pd.DataFrame, paper: pd.DataFrame, plots_dir: Path) -> list[PlotInfo]:

    train = main_rows(metrics[metrics["stage"] == "train"])
    search = metrics[metrics["stage"] == "search"]
    if train.empty or search.empty:
        log.info("skipping plot top1_vs_search_cost: no %s metrics", "train" if train.empty else "search")
        return []
    out = []
    for (dataset, profile), g in sorted(train.groupby(["dataset", "profile"]),
                                        key=lambda kv: (kv[0][0], profile_sort_key(kv[0][1]))):
        by_unit: dict[str, list] = {}
        for method, gm in sorted(g.groupby("method"), key=lambda kv: method_sort_key(kv[0])):
            srows, _ = search_rows_for(search, method, "", dataset, profile, gm["seed"])
            for unit, su in srows.groupby("search_cost_unit"):
                tr = gm[gm["seed"].isin(su["seed"])]
                by_unit.setdefault(unit, []).append(
                    (method, seed_stats(su["search_cost_value"]), seed_stats(tr["top1"])))
        if not by_unit:
            log.info("skipping plot top1_vs_search_cost for %s/%s: no matching search metrics",
                     dataset, profile)
            continue
        for unit, pts in sorted(by_unit.items()):
            fig = Figure(figsize=(7.5, 4.6))
            ax = fig.add_subplot(111)
            for method, x, y in pts:
                _scatter_point(ax, method, x, y)
            lab = dataset_label(dataset)
            if unit == "GPU-days" and not is_smoke(profile) and lab:
                cost = paper_rows(paper, metric="search_cost", dataset=lab)
                cost = cost[cost["unit"] == "GPU-days"]
                for _, r in cost.iterrows():
                    acc = paper_rows(paper, method=r["method"], metric=("top1",),
                                       settings=HEADLINE_SETTINGS, dataset=lab)
                    acc = acc[acc["paper"] == r["paper"]]
                    if acc.empty:
                        continue
                    ax.plot(float(r["value"]), float(acc.iloc[0]["value"]), marker="*", ms=14,
                            ls="none", mfc="none", mec=_color(r["method"]), mew=1.5,
                            label=f"paper: {method_label(r['method'])} ({r['paper']})")
            title = f"Top-1 vs search cost — {dataset}, profile {profile}"
            out.append(_finish_scatter(
                fig, ax, f"search cost ({unit})", title, profile, plots_dir,
                f"top1_vs_search_cost_{_slug(dataset)}_{_slug(profile)}_{_slug(unit)}",
                f"{title} ({unit})"))
    return out


def _top1_vs_ops(metrics: pd.DataFrame, plots_dir: Path) -> list[PlotInfo]:
    train = main_rows(metrics[metrics["stage"] == "train"])
    if train.empty:
        log.info("skipping plot top1_vs_ops: no train metrics")
        return []
    out = []
    for (dataset, profile), g in sorted(train.groupby(["dataset", "profile"]),
                                        key=lambda kv: (kv[0][0], profile_sort_key(kv[0][1]))):
        fig = Figure(figsize=(7.5, 4.6))
        ax = fig.add_subplot(111)
        for method, gm in sorted(g.groupby("method"), key=lambda kv: method_sort_key(kv[0])):
            _scatter_point(ax, method, seed_stats(gm["ops_m"]), seed_stats(gm["top1"]))
        title = f"Top-1 vs OPs — {dataset}, profile {profile}"
        out.append(_finish_scatter(fig, ax, "OPs (M) = FLOPs + BOPs / 64", title, profile,
                                   plots_dir, f"top1_vs_ops_{_slug(dataset)}_{_slug(profile)}",
                                   title))
    return out


def _scatter_point(ax, method: str, x: Stats, y: Stats) -> None:
    """One method: mean with seed-std error bars in both directions."""
    ax.errorbar(x.mean, y.mean, xerr=_err(x), yerr=_err(y), fmt=_marker(method), ms=7,
                capsize=4, color=_color(method), label=f"{method_label(method)} (n={y.n})")


def _finish_scatter(fig, ax, xlabel: str, title: str, profile: str, plots_dir: Path,
                    name: str, caption: str) -> PlotInfo:
    """Axes, title and legend of a top-1 scatter, then save it as ``<name>.png``."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_title(title + _subtitle(profile), fontsize=10)
    ax.grid(alpha=0.3)
    ax.margins(x=0.15, y=0.15)
    _scatter_legend(ax)
    path = plots_dir / f"{name}.png"
    _save(fig, path)
    return PlotInfo(name, path, caption)


def _bar_panel(ax, labels, cells, metric, paper_vals, paper_label, amb_vals, amb_label, xlabel):
    """Measured bars (with std error bars) + paper markers on one axis."""
    xs = list(range(len(labels)))
    for i, cell in enumerate(cells):
        s = cell.stats(metric)
        if s.n == 0:
            ax.text(i, 2, "not run", ha="center", va="bottom", fontsize=8, color="0.4", rotation=90)
            continue
        hatch = "//" if cell.source == MAIN_RUN_NOTE else None
        ax.bar(i, s.mean, width=0.6, color="#4c72b0", alpha=0.85, hatch=hatch, edgecolor="white",
               yerr=_err(s), capsize=4, ecolor="black")
        ax.text(i, s.mean + (s.std if s.n >= 2 else 0) + 1.5, f"{s.mean:.1f}", ha="center",
                va="bottom", fontsize=8)
    px = [i for i, v in enumerate(paper_vals) if v is not None]
    if px:
        ax.plot(px, [paper_vals[i] for i in px], ls="none", marker="D", ms=7, color="#c44e52",
                label=paper_label)
    ax_amb = [(i, v) for i, vs in enumerate(amb_vals) for v in vs]
    if ax_amb:
        ax.plot([i for i, _ in ax_amb], [v for _, v in ax_amb], ls="none", marker="x", ms=8,
                mew=1.8, color="#dd8452", label=amb_label)
    ax.set_xticks(xs)
    ax.set_xticklabels(labels, fontsize=9)
    ax.set_ylim(0, 105)
    ax.grid(axis="y", alpha=0.3)
    mlabel = {"top1": "top-1", "top5": "top-5"}.get(metric, metric)
    ax.set_ylabel(f"{mlabel} accuracy (%)")
    ax.set_title(mlabel, fontsize=9)
    ax.set_xlabel(xlabel)


def _measured_handles(any_main: bool):
    from matplotlib.patches import Patch

    hs = [Patch(facecolor="#4c72b0", alpha=0.85, label="measured (mean ± std over seeds)")]
    if any_main:
        hs.append(Patch(facecolor="#4c72b0", alpha=0.85, hatch="//", edgecolor="white",
                        label=f"measured: {MAIN_RUN_NOTE}"))
    return hs


def _finish_bar_fig(fig, axes, title, cells, plots_dir: Path, name: str,
                    caption: str) -> PlotInfo:
    """Shared legend and title, then save the ablation figure as ``<name>.png``."""
    handles = _measured_handles(any(c.source == MAIN_RUN_NOTE for c in cells.values()))
    seen = {h.get_label() for h in handles}
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in seen:
                handles.append(h)
                seen.add(lab)
    fig.suptitle(title, fontsize=10)
    fig.subplots_adjust(bottom=0.24, wspace=0.25, top=0.86)
    fig.legend(handles=handles, loc="lower center", ncol=2, fontsize=8, frameon=False,
               bbox_to_anchor=(0.5, 0.0))
    path = plots_dir / f"{name}.png"
    _save(fig, path)
    return PlotInfo(name, path, caption)


def _ablation_tangent_lr(metrics: pd.DataFrame, paper: pd.DataFrame, plots_dir: Path) -> list[PlotInfo]:
    groups = tangent_lr_cells(metrics[metrics["stage"] == "train"])
    if not groups:
        log.info("skipping plot ablation_tangent_lr: no Table 4.2 ablation train runs")
        return []
    settings = {(False, False): SETTING_L_NONE, (True, True): SETTING_L_FULL}
    out = []
    for (dataset, profile), cells in groups.items():
        keys = list(TANGENT_LR_CELLS)
        labels = [TANGENT_LR_LABELS[k].replace(" + ", " +\n") for k in keys]
        fig = Figure(figsize=(9.5, 4.8))
        axes = [fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)]
        pds = "ImageNet"
        for ax, metric in zip(axes, ("top1", "top5")):
            pv, amb = [], []
            for k in keys:
                if k in settings:
                    r = paper_rows(paper, method="dcpnas", metric=metric, settings=[settings[k]])
                    pv.append(float(r.iloc[0]["value"]) if not r.empty else None)
                    if not r.empty:
                        pds = r.iloc[0]["dataset"]
                    amb.append([])
                else:
                    r = paper_rows(paper, method="dcpnas", metric=metric, settings=[SETTING_L_ONE])
                    pv.append(None)
                    amb.append([float(v) for v in r["value"]])
            amb_vals = sorted({v for vs in amb for v in vs})
            _bar_panel(ax, labels, [cells[k] for k in keys], metric, pv,
                       f"paper ({pds}, DCP-NAS-L, Table 4.2)", amb,
                       f"paper {' / '.join(f'{v:g}' for v in amb_vals)} ({pds}): ambiguous which "
                       "single-component cell is which", "components used in the search")
        title = (f"Ablation, Table 4.2 (tangent constraint × L_R) — {dataset}, profile {profile}"
                 + _subtitle(profile))
        out.append(_finish_bar_fig(
            fig, axes, title, cells, plots_dir,
            f"ablation_tangent_lr_{_slug(dataset)}_{_slug(profile)}",
            f"Table 4.2 ablation — {dataset}, profile {profile}"))
    return out


def _ablation_distance(metrics: pd.DataFrame, paper: pd.DataFrame, plots_dir: Path) -> list[PlotInfo]:
    groups = distance_cells(metrics[metrics["stage"] == "train"])
    if not groups:
        log.info("skipping plot ablation_distance: no Table 4.4 ablation train runs")
        return []
    out = []
    for (dataset, profile), cells in groups.items():
        labels = [DISTANCE_LABELS[d] for d in DISTANCES]
        fig = Figure(figsize=(9.0, 4.6))
        axes = [fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)]
        pds = "ImageNet"
        for ax, metric in zip(axes, ("top1", "top5")):
            pv = []
            for d in DISTANCES:
                r = paper_rows(paper, method="dcpnas", metric=metric, settings=[DISTANCE_SETTINGS[d]])
                pv.append(float(r.iloc[0]["value"]) if not r.empty else None)
                if not r.empty:
                    pds = r.iloc[0]["dataset"]
            _bar_panel(ax, labels, [cells[d] for d in DISTANCES], metric, pv,
                       f"paper ({pds}, DCP-NAS-S, Table 4.4)", [[] for _ in pv], "",
                       "distance D (Child gradient vs Parent tangent)")
        title = f"Ablation, Table 4.4 (distance D) — {dataset}, profile {profile}" + _subtitle(profile)
        out.append(_finish_bar_fig(
            fig, axes, title, cells, plots_dir,
            f"ablation_distance_{_slug(dataset)}_{_slug(profile)}",
            f"Table 4.4 ablation — {dataset}, profile {profile}"))
    return out


def _deploy_latency_vs_ops(metrics: pd.DataFrame, plots_dir: Path) -> list[PlotInfo]:
    """Every deployed network twice: the binary IR at its counted OPs (FLOPs + BOPs/64) and
    the FP32 IR at FLOPs + BOPs, joined by a line; a real-valued network as its FP32 IR alone;
    1-thread median latency, log-log. If time followed the OPs count, every segment would have
    slope 1 on these log-log axes."""
    runs = metrics[metrics["stage"] == "deploy"]
    if runs.empty:
        log.info("skipping plot deploy_latency_vs_ops: no deploy metrics")
        return []
    fig = Figure(figsize=(7.5, 4.8))
    ax = fig.add_subplot(111)
    xs = []
    for i, (_, r) in enumerate(runs.sort_values(["run", "seed"]).iterrows()):
        e = r["engines"]
        f = e["fp32_ir"]["latency_1t"]["median_ms"]
        color = _PALETTE[i % len(_PALETTE)]
        label = f"{r['run']} s{r['seed']}" + ("" if r["trained"] else " (untrained)")
        if deployed_ir(e) == "binary_ir":
            b = e["binary_ir"]["latency_1t"]["median_ms"]
            ax.plot([r["ops_m"], r["fp_ops_m"]], [b, f], "-", color=color, alpha=0.5)
            ax.plot(r["ops_m"], b, "o", color=color, label=f"{label}: binary IR")
            xs.append(r["ops_m"])
        else:
            label += " (real-valued)"
        ax.plot(r["fp_ops_m"], f, "s", color=color, mfc="none", label=f"{label}: FP32 IR")
        xs.append(r["fp_ops_m"])
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("counted OPs (M): binary IR = FLOPs + BOPs/64, FP32 IR = FLOPs + BOPs")
    ax.set_ylabel("batch-1 latency, 1 thread (ms, median)")
    title = "Measured latency vs counted OPs (OpenVINO CPU)"
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="best")
    path = plots_dir / "deploy_latency_vs_ops.png"
    _save(fig, path)
    return [PlotInfo("deploy_latency_vs_ops", path, title)]


def _tradeoff(metrics: pd.DataFrame, paper: pd.DataFrame, plots_dir: Path) -> list[PlotInfo]:
    """Per profile, one marker per (backbone, seed): each task's accuracy (columns) against the
    backbone's counted OPs (its retraining record, at the classification input) and against
    its deploy record's latency (1 thread, median) as deployed: the binary IR of a 1-bit
    network, the FP32 IR of a real-valued one; searched cells in their method's
    colour, reference backbones (1-bit and real-valued) in black with their own shape; the
    papers' (OPs, top-1) points as stars on the ImageNet panels."""
    train = main_rows(metrics[metrics["stage"] == "train"])
    if train.empty:
        log.info("skipping plot tradeoff: no train metrics")
        return []
    deploy = metrics[metrics["stage"] == "deploy"]
    out = []
    for profile, g in sorted(metrics.groupby("profile"), key=lambda kv: profile_sort_key(kv[0])):
        ops = {(r["method"], r["seed"]): r["ops_m"] for _, r in train[train["profile"] == profile].iterrows()}
        lat = {(r["run"], r["seed"]):
               r["engines"][deployed_ir(r["engines"])]["latency_1t"]["median_ms"]
               for _, r in deploy[(deploy["profile"] == profile)
                                  & ~deploy["paper_size"].astype(bool)].iterrows()}
        if not ops:
            continue
        fig = Figure(figsize=(13, 7.2))
        axes = fig.subplots(2, len(TRADEOFF_TASKS), squeeze=False)
        seen: set[str] = set()
        for col, (stage, key, ylabel) in enumerate(TRADEOFF_TASKS):
            rows = main_rows(g[g["stage"] == stage]) if stage == "train" else g[g["stage"] == stage]
            for row, (xs, xlabel) in enumerate(((ops, "OPs (M) = FLOPs + BOPs / 64"),
                                                (lat, "deployed latency, 1 thread (ms)"))):
                ax = axes[row][col]
                for _, r in rows.sort_values(["method", "seed"]).iterrows():
                    x = xs.get((r["method"], r["seed"]))
                    if x is None or pd.isna(r.get(key)):
                        continue
                    label = method_label(r["method"])
                    fill = _DETECTOR_FILL.get(str(r.get("detector")), "full") \
                        if stage == "detect" else "full"
                    ax.plot(float(x), float(r[key]), _marker(r["method"]), ms=7,
                            color=_color(r["method"]), ls="none", fillstyle=fill,
                            label=None if label in seen else label)
                    seen.add(label)
                if stage == "train" and row == 0:
                    for dataset in sorted(set(rows["dataset"])):
                        lab = dataset_label(dataset)
                        if lab != "ImageNet" or is_smoke(profile):
                            continue
                        for _, p in paper_rows(paper, metric="ops", dataset=lab).iterrows():
                            acc = paper_rows(paper, method=p["method"], metric="top1", dataset=lab)
                            acc = acc[acc["paper"] == p["paper"]]
                            if not acc.empty:
                                name = f"paper: {method_label(p['method'])} ({p['paper']})"
                                ax.plot(float(p["value"]) * 100.0, float(acc.iloc[0]["value"]),
                                        "*", ms=12, mfc="none", color=_color(p["method"]),
                                        ls="none", label=None if name in seen else name)
                                seen.add(name)
                ax.set_xlabel(xlabel, fontsize=8)
                ax.set_ylabel(ylabel, fontsize=8)
                ax.grid(alpha=0.3)
        handles, labels = [], []
        for ax in axes.flat:
            h, lab = ax.get_legend_handles_labels()
            handles += h
            labels += lab
        detectors = sorted(set(g[g["stage"] == "detect"].get("detector", pd.Series()).dropna()))
        for d in detectors:   # what each fill means in the detection column
            handles.append(Line2D([], [], marker="o", color="grey", ls="none",
                                  fillstyle=_DETECTOR_FILL.get(d, "full")))
            labels.append(f"detection: {detector_label(d)}")
        fig.text(0.01, 0.01, "latency as deployed (OpenVINO CPU, batch 1): the binary IR of a "
                 "1-bit network, the FP32 IR of a real-valued one", fontsize=8)
        fig.subplots_adjust(right=0.8, wspace=0.3, hspace=0.3)
        fig.legend(handles, labels, loc="center left", bbox_to_anchor=(0.81, 0.5), fontsize=8,
                   frameon=False)
        title = f"Accuracy vs OPs and vs measured latency, every backbone — profile {profile}"
        fig.suptitle(title + _subtitle(profile), fontsize=10)
        path = plots_dir / f"tradeoff_{_slug(profile)}.png"
        _save(fig, path)
        out.append(PlotInfo(path.stem, path, title))
    return out


def make_plots(metrics: pd.DataFrame, paper: pd.DataFrame, plots_dir: Path) -> list[PlotInfo]:
    """Write every plot that has data into ``plots_dir``; remove stale plots of ours."""
    plots_dir = Path(plots_dir)
    out: list[PlotInfo] = []
    out += _top1_vs_search_cost(metrics, paper, plots_dir)
    out += _ablation_tangent_lr(metrics, paper, plots_dir)
    out += _ablation_distance(metrics, paper, plots_dir)
    out += _top1_vs_ops(metrics, plots_dir)
    out += _deploy_latency_vs_ops(metrics, plots_dir)
    out += _tradeoff(metrics, paper, plots_dir)
    written = {p.path.name for p in out}
    if plots_dir.is_dir():
        for f in plots_dir.glob("*.png"):
            if f.name.startswith(PLOT_PREFIXES) and f.name not in written:
                log.info("removing stale plot %s", f)
                f.unlink()
    for p in out:
        log.info("wrote plot %s", p.path)
    return out
