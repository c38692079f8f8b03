"""The published defaults and the NAS-reproduction protocol (harness/report/protocol.py): what the
main `dcpnas` run is, skip counts, RI, best-of-N, mixed protocols, CP-NAS's retraining loss."""
from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from backbones.genotypes import DARTS_V2, Genotype
from backbones.search import tangent as tp
from backbones.search.dcpnas import DCPNASConfig
from harness.config import load_params
from harness.report.protocol import (INDEPENDENT, REFERENCE, SAME_SEARCH, best_of_n, fmt_ri,
                                     fmt_skips, relative_improvement, row_protocol)
from harness.report.selection import skip_counts


def test_dcpnas_defaults_are_the_published_method() -> None:
    """Book §4.4: the GGN second order, D weighted 5e-3 and L_R 0.2, decoupled on."""
    cfg = DCPNASConfig()
    assert cfg.second_order == "ggn_exact"
    assert (cfg.mu, cfg.lambda_r) == (5e-3, 0.2)
    assert cfg.decouple and cfg.tangent and cfg.recon and cfg.distance == "fnorm"
    assert cfg.backtrack_norm == "book"


def test_params_name_every_departure_and_table_43() -> None:
    params = load_params()
    abl = params.ablations
    assert abl["dcpnas-exact"].set == {"second_order": "exact", "decouple": True}
    assert abl["dcpnas-scaled-weights"].set == {"mu": 0.2, "lambda_r": 0.005}
    table43 = {(a.set.get("second_order"), a.set.get("decouple"))
               for a in abl.values() if a.table == "4.3" and a.set.get("second_order") != "ggn"}
    assert table43 == {("exact", True), ("ggn_exact", False), ("exact", False)}
    for name in params.ablations:   # every ablation has its reason in its label
        assert abl[name].label, name
    for prof in params.profiles.values():   # no profile overrides the published method
        dcp = prof.search.per_method.get("dcpnas", {})
        assert not {"second_order", "mu", "lambda_r", "decouple"} & set(dcp)


def test_one_weight_decay_on_alpha() -> None:
    from backbones.search.base import SearchContext
    from backbones.search.dcpnas import DCPNAS
    m = DCPNAS(DCPNASConfig(C=4, layers=2), SearchContext(num_classes=4,
                                                        device=torch.device("cpu"), seed=0))
    assert m.p_aopt.param_groups[0]["weight_decay"] == DCPNASConfig().arch_wd > 0
    assert m.c_aopt.param_groups[0]["weight_decay"] == 0.0


def test_relative_backtracking_norms_are_scale_free() -> None:
    init = torch.tensor([0.0, 16.0, 1e-4, 2e-4])     # none, identity (C=16), two 1-bit convs
    now = torch.tensor([0.0, 16.0, 3e-4, 1e-4])
    rel = tp.relative_norms(now, init)
    assert rel.tolist() == pytest.approx([0.0, 1.0, 3.0, 0.5])
    # the book's absolute ranking puts the identity on top; the relative one the grown conv
    assert int(now.argmax()) == 1 and int(rel.argmax()) == 2


def test_skip_counts_of_a_known_genotype() -> None:
    assert DARTS_V2.op_counts() == {"normal_param_free": 2, "normal_skip": 2,
                                    "reduce_param_free": 8, "reduce_skip": 3}
    skips = Genotype(tuple(("skip_connect", i % 2) for i in range(8)), (2, 3, 4, 5),
                     DARTS_V2.reduce, DARTS_V2.reduce_concat)
    assert skips.op_counts()["normal_skip"] == 8
    frame = pd.DataFrame([{"cell": DARTS_V2.op_counts()}, {"cell": skips.op_counts()},
                          {"cell": None}])
    assert skip_counts(frame) == [2, 8]
    assert fmt_skips([2, 8]) == "2, 8 (1 of 2 collapsed)"


def _train(method: str, seed: int, top1: float, genotype: str | None) -> dict:
    return {"method": method, "seed": seed, "top1": top1, "genotype": genotype}


def test_relative_improvement_over_random() -> None:
    rand = pd.DataFrame([_train("random", 0, 40.0, "x"), _train("random", 1, 60.0, "x")])
    runs = pd.DataFrame([_train("dcpnas", 0, 55.0, "x"), _train("dcpnas", 1, 45.0, "x")])
    ri = relative_improvement(runs, rand)           # base 50: +10 %, -10 %
    assert ri.n == 2 and ri.mean == pytest.approx(0.0) and ri.std == pytest.approx(
        math.sqrt(200.0))
    assert fmt_ri(relative_improvement(runs, rand.iloc[0:0])) == "—"
    assert best_of_n(runs) == "55.00 (best of 2)"


def test_protocol_of_a_row_is_labelled_and_mixed_rows_marked() -> None:
    own = [_train("dcpnas", s, 50.0, f"runs/p/search/dcpnas/seed{s}/genotype.json")
           for s in range(3)]
    assert row_protocol(pd.DataFrame(own)) == f"3 {INDEPENDENT}"
    same = [_train("dcpnas", s, 50.0, "runs/p/search/dcpnas/seed0/genotype.json")
            for s in range(2)]
    assert row_protocol(pd.DataFrame(same)) == \
        f"MIXED: {SAME_SEARCH} (1 genotype file(s) for 2 runs)"
    mixed = own[:2] + [_train("dcpnas", 2, 50.0, "published:dcpnas_l")]
    assert row_protocol(pd.DataFrame(mixed)).startswith("MIXED: ")
    assert row_protocol(pd.DataFrame([_train("bireal", 0, 50.0, None)])) == \
        f"{REFERENCE} 1x"


def test_cpnas_cells_retrain_with_their_cp_loss() -> None:
    from harness.config import TrainSection
    from harness.records import SearchRecord
    from harness.stages.train import published_cp_loss

    def record(method: str) -> SearchRecord:
        return SearchRecord.model_construct(method=method, config={"cp_weight": 2e-3,
                                                                   "cp_kernel": "latent"})
    cfg = TrainSection()
    assert published_cp_loss(cfg, record("cpnas")).cp_loss.weight == 2e-3
    assert published_cp_loss(cfg, record("cpnas")).cp_loss.kernel == "latent"
    assert published_cp_loss(cfg, record("dcpnas")).cp_loss.weight == 0.0
    assert published_cp_loss(cfg, None).cp_loss.weight == 0.0
    off = TrainSection(cp_loss={"weight": 0.0})            # set by the profile: kept
    assert published_cp_loss(off, record("cpnas")).cp_loss.weight == 0.0
    assert TrainSection().amp is False                      # fp32, as the official code
