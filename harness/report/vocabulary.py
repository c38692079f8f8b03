"""The report's vocabulary: verdicts, labels of methods, datasets and paper settings, how a
profile counts (smoke / reduced / paper), tolerances of the claim rules.
"""
from __future__ import annotations

SUPPORTS = "supports"
CONTRADICTS = "contradicts"
CANNOT_SAY = "cannot say"
VERDICTS = (SUPPORTS, CONTRADICTS, CANNOT_SAY)

#: harness dataset id -> dataset name used in results/paper_numbers.csv. Only these exact
#: pairs are treated as "the same dataset" when comparing with a paper's number.
DATASET_LABELS = {"cifar10": "CIFAR-10", "imagenet": "ImageNet"}

#: strength of the evidence of each regime (higher is better); see profile_regime
REGIME_RANK = {"paper": 2, "reduced": 1, "smoke": 0}
METHOD_LABELS = {
    "dcpnas": "DCP-NAS",
    "cpnas": "CP-NAS",
    "direct_bnas": "direct BNAS",
    "darts": "DARTS (1st order)",
    "darts_2nd": "DARTS (2nd order)",
    "pcdarts": "PC-DARTS",
    "random": "random search",
    "bnas": "BNAS (Chen et al.)",
    "bats": "BATS",
    "bireal_resnet18": "Bi-Real ResNet-18 (reference)",
    "reactnet_a": "ReActNet-A (reference)",
    "resnet18_real": "ResNet-18, real-valued (reference)",
    "dcpnas_l": "DCP-NAS-L (published cell)",
    "pcdarts_cifar": "PC-DARTS CIFAR cell (published)",
    "pcdarts_imagenet": "PC-DARTS ImageNet cell (published)",
    "darts_v2": "DARTS-V2 cell (published)",
}

#: published cells retrained by the harness, and the paper model they stand for
PUBLISHED_AS = {"dcpnas_l": ("dcpnas", "L")}

#: display / sort order of methods
METHOD_ORDER = ("dcpnas", "cpnas", "direct_bnas", "darts", "darts_2nd", "pcdarts", "random",
                "bnas", "bats")

#: methods DCP-NAS is claimed to beat besides CP-NAS
BASELINES = ("direct_bnas", "darts", "darts_2nd", "pcdarts", "random", "bnas", "bats")

#: searchers CP-NAS is claimed to be faster than ("prior arts")
PRIOR_ART_SEARCHERS = ("darts", "darts_2nd", "pcdarts", "direct_bnas", "bnas")

# `setting` values of results/paper_numbers.csv
SETTING_MAIN = "main"
SETTING_L_FULL = "DCP-NAS-L; tangent on, L_R on"
SETTING_L_NONE = "DCP-NAS-L; tangent off, L_R off"
SETTING_L_ONE = "DCP-NAS-L; one of tangent/L_R"
SETTING_S_FNORM = "DCP-NAS-S; distance F-norm"
SETTING_S_L1 = "DCP-NAS-S; distance L1"
SETTING_S_COS = "DCP-NAS-S; distance cosine"

#: settings that are a method's headline result (the others are ablation cells)
HEADLINE_SETTINGS = (SETTING_MAIN, SETTING_L_FULL, SETTING_S_FNORM)

#: Table 4.3's rows (the comparison of search strategies, and DCP-NAS-L's four component rows)
TABLE_43 = "4.3"
EXACT_SECOND_ORDER = "exact second order"

#: the GGN claim: supported when the measured exact / GGN search-time ratio is at least this
#: fraction of the paper's (27.9 / 2.9), contradicted below half of this fraction
GGN_RATIO_SUPPORT = 0.5
DISTANCES = ("fnorm", "l1", "cosine")
DISTANCE_LABELS = {"fnorm": "F-norm", "l1": "L1", "cosine": "cosine"}
DISTANCE_SETTINGS = {"fnorm": SETTING_S_FNORM, "l1": SETTING_S_L1, "cosine": SETTING_S_COS}

#: Table 4.2 cells in the book's order: (tangent constraint, L_R)
TANGENT_LR_CELLS = ((False, False), (True, False), (False, True), (True, True))
TANGENT_LR_LABELS = {(False, False): "neither", (True, False): "tangent only",
                     (False, True): "L_R only", (True, True): "tangent + L_R"}

#: absolute-accuracy tolerance in percentage points (widened to 2 seed std when larger)
ABS_TOL_PP = 1.0

#: memory claim tolerance (relative)
MEMORY_REL_TOL = 0.10

#: a GPU-days claim is supported up to this factor of the paper's cost, contradicted above
#: COST_CONTRADICT_FACTOR (different GPU models make anything closer undecidable)
COST_SUPPORT_FACTOR = 1.5
COST_CONTRADICT_FACTOR = 2.0
MAIN_RUN_NOTE = "main DCP-NAS run (ablation null)"
ABLATION_RUN_NOTE = "ablation runs"
NOT_RUN_NOTE = "not run"


def method_label(method: str) -> str:
    return METHOD_LABELS.get(method, method)


DETECTOR_LABELS = {"faster_rcnn": "Faster R-CNN", "retinanet": "RetinaNet", "ssd": "SSD"}


def detector_label(detector: str) -> str:
    return DETECTOR_LABELS.get(detector, detector)


def method_sort_key(method: str) -> tuple:
    return (METHOD_ORDER.index(method) if method in METHOD_ORDER else len(METHOD_ORDER), method)


def profile_regime(profile: str) -> str:
    """What a profile's runs can speak for, from its name: ``smoke`` (synthetic data: nothing
    quantitative) for ``smoke`` / ``smoke-*``; ``paper`` (the papers' settings) for ``paper`` /
    ``paper-*`` (e.g. ``paper-imagenet``); ``reduced`` (real data, reduced budget) for
    ``real-subset`` and any other profile."""
    if profile == "smoke" or profile.startswith("smoke-"):
        return "smoke"
    if profile == "paper" or profile.startswith("paper-"):
        return "paper"
    return "reduced"


def profile_rank(profile: str) -> int:
    return REGIME_RANK[profile_regime(profile)]


def is_smoke(profile: str) -> bool:
    return profile_regime(profile) == "smoke"


def is_paper_scale(profile: str) -> bool:
    return profile_regime(profile) == "paper"


def profile_sort_key(profile: str) -> tuple:
    return (-profile_rank(profile), profile)


def dataset_label(dataset: str) -> str | None:
    return DATASET_LABELS.get(dataset)
