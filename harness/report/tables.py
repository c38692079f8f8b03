"""The report's tables, each a DataFrame built from the loaded metrics and the paper numbers.
"""
from __future__ import annotations

import pandas as pd

from harness.records import RecordBase, STAGES
from harness.report.protocol import (best_of_n, fmt_ri, fmt_skips, relative_improvement,
                                     row_protocol)
from harness.report.selection import (Cell, delta_cell, deployed_ir, device_list, group_sorted,
                                      paper_cell,
                                      paper_entries, stage_rows, column_stats, variant_settings,
                                      distance_cells, paper_rows, paper_text, search_rows_for,
                                      second_order_of, short_source, skip_counts,
                                      tangent_lr_cells)
from harness.report.stats import fmt_stats, seed_stats
from harness.report.vocabulary import (DISTANCES, DISTANCE_LABELS, DISTANCE_SETTINGS,
                                       EXACT_SECOND_ORDER, HEADLINE_SETTINGS, MAIN_RUN_NOTE,
                                       PUBLISHED_AS, SETTING_L_FULL, SETTING_L_NONE,
                                       SETTING_L_ONE, TABLE_43, TANGENT_LR_CELLS, dataset_label,
                                       is_paper_scale, is_smoke, method_sort_key,
                                       profile_sort_key)


BEST_HEADER = "best of N top-1 (%) [max, not a mean]"
RI_HEADER = "RI vs random (%)"
DELTA_HEADER = "Δ top-1 (measured − paper)"
DELTA5_HEADER = "Δ top-5 (measured − paper)"
PAPER1_HEADER = "paper top-1 % (dataset, source)"
PAPER5_HEADER = "paper top-5 % (dataset, source)"


def commit_label(rec: RecordBase) -> str:
    """The commit that made a record, short, with '+dirty' for uncommitted changes; 'unknown'
    for a file written before records carried their provenance."""
    prov = rec.provenance
    if prov is None or not prov.commit:
        return "unknown"
    return prov.commit[:10] + ("+dirty" if prov.dirty else "")


def provenance_cell(runs: pd.DataFrame) -> str:
    """'' when the runs behind a table row share one commit and one profile, else a warning
    naming what they mix (a row should compare like with like)."""
    parts = []
    for col, what in (("commit", "commits"), ("profile", "profiles")):
        values = sorted(set(runs[col].dropna())) if col in runs else []
        if len(values) > 1:
            parts.append(f"mixed {what}: {', '.join(map(str, values))}")
    return "; ".join(parts)


def provenance_note(runs: pd.DataFrame) -> str:
    """Which commits and profiles a table's rows come from (runs per commit)."""
    counts = runs["commit"].value_counts()
    commits = ", ".join(f"{c} ({n} run{'s' if n > 1 else ''})" for c, n in counts.items())
    profiles = ", ".join(sorted(set(runs["profile"]), key=profile_sort_key))
    return f"Provenance: commit {commits}; profile {profiles} (`harness provenance <run>` for one run)."


def _with_provenance(df: pd.DataFrame, cells: list[str]) -> pd.DataFrame:
    """Add the 'provenance' column when some row mixes commits or profiles."""
    if any(cells):
        df = df.copy()
        df["provenance"] = cells
    return df


def _search_cost_cell(rows: pd.DataFrame, note: str = "") -> str:
    if rows.empty:
        return "— (no search run)"
    parts = [f"{fmt_stats(seed_stats(g['search_cost_value']), '.3g')} {unit}"
             for unit, g in sorted(rows.groupby("search_cost_unit"))]
    return "; ".join(parts) + (f" ({note})" if note else "")


def build_runs_summary(metrics: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for stage in STAGES:
        g = stage_rows(metrics, stage)
        if g.empty:
            continue
        rows.append({
            "stage": stage, "files": len(g),
            "profiles": ", ".join(sorted(set(g["profile"]), key=profile_sort_key)),
            "datasets": ", ".join(sorted(set(g["dataset"]))),
            "methods": ", ".join(sorted(set(g["method"]), key=method_sort_key)),
            "variants": ", ".join(sorted(set(g["variant"]), key=lambda v: (v != "main", v))),
            "seeds": ", ".join(str(s) for s in sorted(set(g["seed"]))),
            "commits": ", ".join(sorted(set(g["commit"]))),
            "devices": device_list(g),
        })
    return pd.DataFrame(rows)


#: the classification columns that compare with the papers: a table of their own
#: (``classification_vs_paper``), so each table reads on one screen
PAPER_COLUMNS = (PAPER1_HEADER, DELTA_HEADER, PAPER5_HEADER, DELTA5_HEADER)
CLASSIFICATION_KEYS = ("method", "variant", "dataset", "profile")


def _classification_rows(metrics: pd.DataFrame, paper: pd.DataFrame
                         ) -> tuple[list[dict], list[str]]:
    """One row per (method, variant, dataset, profile) of the retrained networks, with every
    column of both classification tables; and the provenance cell of each row."""
    train, search = stage_rows(metrics, "train"), stage_rows(metrics, "search")
    rows = []
    groups = sorted(train.groupby(["method", "ablation_key", "dataset", "profile"], sort=False),
                    key=lambda kv: (profile_sort_key(kv[0][3]), kv[0][2], kv[0][1] != "",
                                    method_sort_key(kv[0][0]), kv[1]["variant"].iloc[0]))
    # rows: best profile first, then dataset; main runs of all methods before ablation variants
    has_best = "best_top1" in train and train["best_top1"].notna().any()
    mixed: list[str] = []
    for (method, akey, dataset, profile), g in groups:
        first = g.iloc[0]
        settings = variant_settings(first)
        paper_method = PUBLISHED_AS.get(method, (method,))[0]   # dcpnas_l -> DCP-NAS-L's rows
        if method in PUBLISHED_AS and akey == "":
            settings = [SETTING_L_FULL]
        e1 = paper_entries(paper, paper_method, settings, "top1") if settings else []
        e5 = paper_entries(paper, paper_method, settings, "top5") if settings else []
        top1, top5 = column_stats(g, "top1"), column_stats(g, "top5")
        srows, note = search_rows_for(search, method, akey, dataset, profile, g["seed"])
        mixed.append(provenance_cell(pd.concat([g, srows])))
        rand = train[(train["method"] == "random") & (train["ablation_key"] == "")
                     & (train["dataset"] == dataset) & (train["profile"] == profile)]
        rows.append({
            "method": method, "variant": first["variant"], "dataset": dataset, "profile": profile,
            "protocol": row_protocol(g), "n seeds": int(top1.n),
            "top-1 (%)": fmt_stats(top1), BEST_HEADER: best_of_n(g),
            RI_HEADER: fmt_ri(relative_improvement(g, rand)) if method != "random" else "0",
            "skips, normal cell": fmt_skips(skip_counts(srows)),
            "top-5 (%)": fmt_stats(top5),
            **({"best-epoch top-1 (%)": fmt_stats(column_stats(g, "best_top1"))} if has_best else {}),
            "params (M)": fmt_stats(column_stats(g, "params_m"), ".3g"),
            "OPs (M)": fmt_stats(column_stats(g, "ops_m"), ".4g"),
            "memory (Mbit)": fmt_stats(column_stats(g, "memory_mbit"), ".3g"),
            "search cost": _search_cost_cell(srows, note),
            PAPER1_HEADER: paper_cell(e1), PAPER5_HEADER: paper_cell(e5),
            DELTA_HEADER: delta_cell(top1, e1, dataset, profile),
            DELTA5_HEADER: delta_cell(top5, e5, dataset, profile),
        })
    return rows, mixed


def build_classification(metrics: pd.DataFrame, paper: pd.DataFrame) -> pd.DataFrame:
    """The retrained networks: accuracy, protocol, costs (the papers' numbers beside them are
    ``build_classification_vs_paper``; the devices are in the table's note)."""
    rows, mixed = _classification_rows(metrics, paper)
    df = pd.DataFrame([{k: v for k, v in r.items() if k not in PAPER_COLUMNS} for r in rows])
    return _with_provenance(df, mixed)


def build_classification_vs_paper(metrics: pd.DataFrame, paper: pd.DataFrame) -> pd.DataFrame:
    """The same rows against the papers: measured top-1 / top-5, the papers' numbers for the
    method (whatever their dataset) and the difference where the dataset matches."""
    rows, mixed = _classification_rows(metrics, paper)
    keep = (*CLASSIFICATION_KEYS, "n seeds", "top-1 (%)", PAPER1_HEADER, DELTA_HEADER,
            "top-5 (%)", PAPER5_HEADER, DELTA5_HEADER)
    return _with_provenance(pd.DataFrame([{k: r[k] for k in keep} for r in rows]), mixed)


def devices_note(metrics: pd.DataFrame, stages: tuple[str, ...]) -> str:
    """The devices a table's runs ran on, for its note."""
    runs = metrics[metrics["stage"].isin(stages)]
    return f"Devices: {device_list(runs)}." if not runs.empty else ""


def _paper_search_cost_rows(paper: pd.DataFrame, method: str, run: pd.Series) -> pd.DataFrame:
    """The paper search costs a search group compares with: the method's headline and Table
    4.3 rows for a main run; for DCP-NAS's main run and Table 4.3 ablation the Table 4.3 rows
    of the same second order (exact: 27.9; GGN: 2.9, and the headline rows); none for other
    ablations."""
    rows = paper_rows(paper, method=method, metric="search_cost")
    exact = rows["setting"].str.contains(EXACT_SECOND_ORDER, regex=False)
    t43 = rows["table"] == TABLE_43
    if method == "dcpnas" and (run["ablation_key"] == "" or run["abl_table"] == TABLE_43):
        # Table 4.3's DCP-NAS-L rows by second order; the headline rows are GGN runs
        so_exact = second_order_of(run) == "exact"
        keep = (t43 & (exact if so_exact else ~exact))
        if run["ablation_key"] == "" and not so_exact:
            keep |= rows["setting"].isin(HEADLINE_SETTINGS)
        return rows[keep]
    if run["ablation_key"] == "":
        return rows[(rows["setting"].isin(HEADLINE_SETTINGS) | t43) & ~exact]
    return rows.iloc[0:0]


def build_search_cost(metrics: pd.DataFrame, paper: pd.DataFrame) -> pd.DataFrame:
    search = stage_rows(metrics, "search")
    has_supernet = "supernet_top1" in search and search["supernet_top1"].notna().any()
    rows = []
    for (method, akey, dataset, profile, unit), g in group_sorted(
            search, ["method", "ablation_key", "dataset", "profile", "search_cost_unit"]):
        prow = _paper_search_cost_rows(paper, method, g.iloc[0])
        pcell = "; ".join(f"{paper_text(r)} {r['unit']} ({r['dataset']}, {short_source(r)}"
                          + (f", {r['setting']}" if r["setting"] not in HEADLINE_SETTINGS
                             and r["setting"] != "Table 4.3" else "") + ")"
                          for _, r in prow.iterrows()) or "—"
        if prow.empty:
            comp = "—"
        else:
            notes = []
            for _, r in prow.iterrows():
                if r["unit"] != "GPU-days":
                    notes.append("no: paper's unit not stated")
                elif is_smoke(profile):
                    notes.append("no: smoke data")
                elif unit != r["unit"]:
                    notes.append(f"no: measured in {unit}, paper in {r['unit']}")
                elif dataset_label(dataset) != r["dataset"]:
                    notes.append(f"no: searched on {dataset}, paper on {r['dataset']}")
                elif not is_paper_scale(profile):
                    notes.append(f"partly: reduced {profile} budget")
                else:
                    notes.append("yes (GPU model may differ)")
            comp = "; ".join(dict.fromkeys(notes))
        row = {
            "method": method, "variant": g.iloc[0]["variant"], "dataset": dataset, "profile": profile,
            "device": device_list(g), "n seeds": len(g),
            "search time (s)": fmt_stats(column_stats(g, "search_seconds"), ".1f"),
            "search cost": f"{fmt_stats(column_stats(g, 'search_cost_value'), '.3g')} {unit}",
            "peak memory (MB)": fmt_stats(column_stats(g, "peak_memory_mb"), ".0f"),
            "epochs": fmt_stats(column_stats(g, "epochs"), ".0f"),
        }
        if has_supernet:
            row["supernet top-1 (%)"] = fmt_stats(column_stats(g, "supernet_top1"))
        row["paper search cost (dataset, source)"] = pcell
        row["comparable with paper?"] = comp
        rows.append(row)
    return pd.DataFrame(rows)


def _ablation_row_common(cell: Cell, entries1, entries5, dataset, profile) -> dict:
    s1, s5 = cell.stats("top1"), cell.stats("top5")
    return {
        "measured from": cell.source, "n seeds": int(s1.n),
        "top-1 (%)": fmt_stats(s1) if s1.n else "not run",
        "top-5 (%)": fmt_stats(s5) if s5.n else "not run",
        PAPER1_HEADER: paper_cell(entries1), PAPER5_HEADER: paper_cell(entries5),
        DELTA_HEADER: delta_cell(s1, entries1, dataset, profile),
        DELTA5_HEADER: delta_cell(s5, entries5, dataset, profile),
    }


def build_ablation_tangent_lr(metrics: pd.DataFrame, paper: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    cells_by_group = tangent_lr_cells(stage_rows(metrics, "train"))
    rows, used_main = [], False
    setting = {(False, False): SETTING_L_NONE, (True, True): SETTING_L_FULL,
               (True, False): SETTING_L_ONE, (False, True): SETTING_L_ONE}
    for (dataset, profile), cells in cells_by_group.items():
        for key in TANGENT_LR_CELLS:
            cell = cells[key]
            used_main |= cell.source == MAIN_RUN_NOTE
            e1 = paper_entries(paper, "dcpnas", [setting[key]], "top1")
            e5 = paper_entries(paper, "dcpnas", [setting[key]], "top5")
            rows.append({"dataset": dataset, "profile": profile,
                         "tangent constraint": "on" if key[0] else "off",
                         "L_R": "on" if key[1] else "off",
                         **_ablation_row_common(cell, e1, e5, dataset, profile)})
    notes = ["Shape of Table 4.2 (DCP-NAS-L, ImageNet in the paper): tangent constraint on/off × "
             "reconstruction loss L_R on/off.",
             "The paper's single-component cells are 68.3 and 68.2 top-1; the paper does not "
             "say which is tangent-only and which is L_R-only, so both are shown for both cells "
             "(ambiguous).",
             "Δ is computed only for non-smoke runs on the paper's dataset."]
    if used_main:
        notes.insert(1, f"Rows with 'measured from' = '{MAIN_RUN_NOTE}': no Table 4.2 ablation run "
                        "of the tangent + L_R cell exists, so the main DCP-NAS run (tangent on, L_R on, "
                        "F-norm) stands in for it.")
    return pd.DataFrame(rows), notes


def build_ablation_distance(metrics: pd.DataFrame, paper: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    cells_by_group = distance_cells(stage_rows(metrics, "train"))
    rows, used_main = [], False
    for (dataset, profile), cells in cells_by_group.items():
        for dist in DISTANCES:
            cell = cells[dist]
            used_main |= cell.source == MAIN_RUN_NOTE
            st = [DISTANCE_SETTINGS[dist]]
            rows.append({"dataset": dataset, "profile": profile, "distance": DISTANCE_LABELS[dist],
                         **_ablation_row_common(cell, paper_entries(paper, "dcpnas", st, "top1"),
                                                paper_entries(paper, "dcpnas", st, "top5"),
                                                dataset, profile)})
    notes = ["Shape of Table 4.4 (DCP-NAS-S, ImageNet in the paper): distance D between the Child's "
             "gradient and the Parent's tangent direction.",
             "Δ is computed only for non-smoke runs on the paper's dataset."]
    if used_main:
        notes.insert(1, f"Rows with 'measured from' = '{MAIN_RUN_NOTE}': no Table 4.4 ablation run "
                        "with the F-norm distance exists, so the main DCP-NAS run (F-norm) stands in.")
    return pd.DataFrame(rows), notes


def _transfer_table(metrics: pd.DataFrame, stage: str, keys: dict[str, str],
                    values: dict[str, str]) -> pd.DataFrame:
    """One row per (keys..., ablation variant) of a downstream stage: the key columns (metrics
    column -> table header), the seed count, each value as mean ± std, and the devices."""
    runs = stage_rows(metrics, stage)
    show_variant = (runs["ablation_key"] != "").any() if not runs.empty else False
    rows, mixed = [], []
    for group, g in group_sorted(runs, [*keys, "ablation_key"]):
        mixed.append(provenance_cell(g))
        row = {header: value for header, value in zip(keys.values(), group)}
        if show_variant:
            row["variant"] = g.iloc[0]["variant"]
        row["n seeds"] = len(g)
        row.update({header: fmt_stats(column_stats(g, col)) for header, col in values.items()})
        row["device"] = device_list(g)
        rows.append(row)
    return _with_provenance(pd.DataFrame(rows), mixed)


def build_detection(metrics: pd.DataFrame) -> pd.DataFrame:
    return _transfer_table(
        metrics, "detect",
        {"method": "backbone", "detector": "detector", "dataset": "dataset", "profile": "profile"},
        {"bbox mAP (%)": "bbox_mAP", "bbox mAP@50 (%)": "bbox_mAP_50"})


def build_reid(metrics: pd.DataFrame) -> pd.DataFrame:
    return _transfer_table(
        metrics, "reid",
        {"method": "backbone", "dataset": "dataset", "profile": "profile", "loss": "loss"},
        {"mAP (%)": "mAP", "Rank-1 (%)": "rank1", "Rank-5 (%)": "rank5", "Rank-10 (%)": "rank10"})


def _triple(e: dict, key: str, sub: str, fmt: str = "{:.2f}") -> str:
    """'binary / fp32 / torch' of one measurement of the three engines."""
    vals = []
    for engine in ("binary_ir", "fp32_ir", "torch"):
        v = (e.get(engine) or {}).get(key)
        v = v.get(sub) if isinstance(v, dict) and sub else v
        vals.append(fmt.format(v) if isinstance(v, (int, float)) else "–")
    return " / ".join(vals)


def _where_time_goes(binary: dict, top: int = 3) -> str:
    """The binary IR's costliest layer types (OpenVINO per-layer counters, 1 thread)."""
    kinds = ((binary.get("per_layer") or {}).get("by_type") or [])[:top]
    return "; ".join(f"{k['layer_type']} [{k['kernel']}] {100 * k['share']:.0f}%" for k in kinds)


def build_deployment(metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per deployed network: correctness first, then speed, size and memory."""
    runs = stage_rows(metrics, "deploy")
    rows = []
    for _, r in runs.sort_values(["run", "seed"]).iterrows():
        e, a = r["engines"], r["agreement"]
        top1 = a.get("top1") or {}
        shape = r.get("input_shape") or []
        ir = deployed_ir(e)
        real = ir == "fp32_ir"
        rows.append({
            "network": r["run"] + ("" if r["trained"] else " (untrained)")
                       + (" (real-valued)" if real else ""),
            "seed": int(r["seed"]), "input": "x".join(str(v) for v in shape[1:]),
            "BinaryConv / 1-bit convs": f"{int(r['binary_convs'])} / "
                                        f"{int(r['binary_capable_convs'])}",
            "top-1 agreement % (images)": f"{a[ir]['top1_agreement']:.2f} "
                                          f"({a['images']}, {a['on']})"
                                          + (" FP32 IR" if real else ""),
            "max logit dev. (rel.): binary IR / fp64 floor":
                f"{a[ir]['max_logit_dev_rel']:.2g}" + (" (FP32 IR)" if real else "")
                + f" / {a['torch64']['max_logit_dev_rel']:.2g}",
            "top-1 % PyTorch / binary IR": (f"{top1['torch']:.2f} / {top1[ir]:.2f}"
                                            + (" (FP32 IR)" if real else "") if top1 else "–"),
            "latency 1 thread ms (binary / FP32 / PyTorch)": _triple(e, "latency_1t",
                                                                     "median_ms"),
            "p90 1 thread ms": _triple(e, "latency_1t", "p90_ms"),
            "latency all threads ms": _triple(e, "latency_all", "median_ms"),
            "speed-up vs FP32 IR: 1 thread / all (OPs predict)":
                "– (real-valued)" if real else
                f"{r['measured_speedup_1t']:.2f}x / {r['measured_speedup_all']:.2f}x "
                f"({r['predicted_speedup']:.2f}x)",
            "throughput img/s": _triple(e, "throughput", "images_per_s", "{:.1f}"),
            "weights MB (binary IR / FP32 IR / PyTorch state)": _triple(
                {k: {"mb": v["weights_bytes"] / 1e6} for k, v in e.items() if v}, "mb", ""),
            "peak memory MB": _triple(e, "peak_mem_mb", "", "{:.0f}"),
            "binary IR time by layer type": _where_time_goes(e.get("binary_ir") or {}),
            "sign inputs within 1e-6 of 0": (f"{a['sign_inputs_near_zero']} of "
                                             f"{a['sign_inputs']}"
                                             if "sign_inputs" in a and not real else "–"),
            "CPU (threads)": f"{r['cpu_model']} ({int(r['threads_all'])})",
        })
    return pd.DataFrame(rows)


DEPLOY_NOTES = [
    "Engines: binary IR = OpenVINO IR whose binary-weight, binary-input convs are "
    "BinaryConvolution (xnor-popcount on bit-packed u1 kernels, checked in the compiled runtime "
    "graph); FP32 IR = the same function on FP32 kernels; PyTorch = eager, inference mode. "
    "All FP32 precision (no bf16 downcast), batch 1, median (and p90) over the profile's "
    "deploy.runs runs after warm-up; throughput at deploy.throughput_batch, all threads; each "
    "engine measured in its own fresh process.",
    "Speed-up = FP32 IR latency / binary IR latency; 'OPs predict' = (FLOPs + BOPs) / "
    "(FLOPs + BOPs/64), what the counted OPs promise when every binary MAC costs 1/64 of a "
    "FP MAC and the rest costs the same.",
    "Agreement: top-1 of the binary IR vs PyTorch on the same images; the fp64 floor is "
    "PyTorch float64 vs float32 on the same images: sign() is discontinuous, so rounding "
    "differences upstream flip bits in both, and a deviation at the floor is not a bug. The "
    "binary IR's CPU plugin fuses the binarization, BN, PReLU and the scale into the kernels "
    "around each BinaryConvolution (other rounding), so sign inputs within ~1e-6 of 0 "
    "(counted) can flip there and not in PyTorch: the logit "
    "deviation grows with that count while top-1 agreement stays the measure that matters.",
    "Depthwise binary-weight convs (no grouped binary kernel) and convs with real input (the "
    "official layout's 1x1 preprocessing, FactorizedReduce and stem) stay FP32: the per-layer "
    "column says how much of the binary IR's time they take.",
    "A real-valued network (no 1-bit conv: the full-precision reference) has no binary IR: "
    "its row gives the FP32 IR and PyTorch, and the agreement of its FP32 IR; read a 1-bit "
    "network's binary-IR latency against it for what 1-bit buys over a real network.",
]
