"""Genotype: the discrete architecture a search returns, stored as JSON (never eval'ed).

JSON layout (``format`` = "darts-genotype/1")::

    {"format": "darts-genotype/1",
     "normal": [["sep_conv_3x3", 0], ["skip_connect", 1], ...],   # 2 edges per node, 8 in all
     "normal_concat": [2, 3, 4, 5],
     "reduce": [...], "reduce_concat": [2, 3, 4, 5]}

Node i (0-based among the 4 intermediate nodes) may take inputs 0 .. i+1 (0, 1 are the cell
inputs). ``from_alphas`` applies the DARTS rule: per node the two strongest incoming edges by
their best non-'none' op weight.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from backbones.atomic import atomic_write_text
from backbones.operations import PRIMITIVES

FORMAT = "darts-genotype/1"
STEPS = 4  # intermediate nodes per cell
NUM_EDGES = sum(2 + i for i in range(STEPS))  # 14 edges in the supernet cell


#: the candidate ops without weights (``none`` is never in a genotype)
PARAM_FREE: tuple[str, ...] = ("skip_connect", "max_pool_3x3", "avg_pool_3x3")


class GenotypeError(ValueError):
    """A genotype that is malformed or outside the search space."""


Edge = tuple[str, int]


@dataclass(frozen=True)
class Genotype:
    normal: tuple[Edge, ...]
    normal_concat: tuple[int, ...]
    reduce: tuple[Edge, ...]
    reduce_concat: tuple[int, ...]
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "format": FORMAT,
            "normal": [[op, idx] for op, idx in self.normal],
            "normal_concat": list(self.normal_concat),
            "reduce": [[op, idx] for op, idx in self.reduce],
            "reduce_concat": list(self.reduce_concat),
        }
        if self.meta:
            out["meta"] = self.meta
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def op_counts(self) -> dict[str, int]:
        """How many of each cell's 8 edges are parameter-free (skip-connect, pools) and how many
        are skip-connects: the signature of the skip-connect collapse DARTS is known for (a
        normal cell of skips has almost no capacity)."""
        out = {}
        for cell, edges in (("normal", self.normal), ("reduce", self.reduce)):
            out[f"{cell}_param_free"] = sum(op in PARAM_FREE for op, _ in edges)
            out[f"{cell}_skip"] = sum(op == "skip_connect" for op, _ in edges)
        return out

    @classmethod
    def from_dict(cls, data: Any, source: str = "<genotype>") -> "Genotype":
        """Validate and build; every error names ``source`` and the offending key."""
        if not isinstance(data, dict):
            raise GenotypeError(f"{source}: expected a JSON object with keys normal, "
                                f"normal_concat, reduce, reduce_concat; got {type(data).__name__}")
        fmt = data.get("format", FORMAT)
        if fmt != FORMAT:
            raise GenotypeError(f"{source}: key 'format' is {fmt!r}, expected {FORMAT!r}")
        allowed = {"format", "normal", "normal_concat", "reduce", "reduce_concat", "meta"}
        extra = sorted(set(data) - allowed)
        if extra:
            raise GenotypeError(f"{source}: unknown key(s) {extra}; expected {sorted(allowed)}")
        parts: dict[str, Any] = {}
        for cell in ("normal", "reduce"):
            parts[cell] = _check_edges(data, cell, source)
            parts[f"{cell}_concat"] = _check_concat(data, f"{cell}_concat", source)
        meta = data.get("meta", {})
        if not isinstance(meta, dict):
            raise GenotypeError(f"{source}: key 'meta' must be an object")
        return cls(meta=meta, **parts)

    @classmethod
    def from_json(cls, text: str, source: str = "<genotype>") -> "Genotype":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise GenotypeError(f"{source}: not valid JSON ({exc.msg} at line {exc.lineno}, "
                                f"column {exc.colno}); expected a genotype object") from None
        return cls.from_dict(data, source)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "Genotype":
        path = Path(path)
        if not path.is_file():
            raise GenotypeError(f"{path}: genotype file not found (expected a JSON file "
                                f"written by `harness search`)")
        return cls.from_json(path.read_text(), str(path))

    def save(self, path: str | os.PathLike[str]) -> None:
        atomic_write_text(Path(path), self.to_json())


def _check_edges(data: dict[str, Any], key: str, source: str) -> tuple[Edge, ...]:
    if key not in data:
        raise GenotypeError(f"{source}: missing key {key!r} (a list of {2 * STEPS} "
                            f"[op, input] pairs)")
    edges = data[key]
    if not isinstance(edges, list) or len(edges) != 2 * STEPS:
        n = len(edges) if isinstance(edges, list) else type(edges).__name__
        raise GenotypeError(f"{source}: key {key!r} has {n} edges, expected {2 * STEPS} "
                            f"(2 incoming edges for each of {STEPS} nodes)")
    out: list[Edge] = []
    for i, edge in enumerate(edges):
        node = i // 2
        if (not isinstance(edge, (list, tuple)) or len(edge) != 2
                or not isinstance(edge[0], str) or type(edge[1]) is not int):
            raise GenotypeError(f"{source}: {key}[{i}] = {edge!r}, expected [op_name, input]")
        op, idx = edge
        if op not in PRIMITIVES or op == "none":
            raise GenotypeError(f"{source}: {key}[{i}] names unknown op {op!r}; expected one of "
                                f"{', '.join(p for p in PRIMITIVES if p != 'none')}")
        if not 0 <= idx < node + 2:
            raise GenotypeError(f"{source}: {key}[{i}] takes input {idx}, but node {node} can "
                                f"only take inputs 0..{node + 1}")
        out.append((op, idx))
    return tuple(out)


def _check_concat(data: dict[str, Any], key: str, source: str) -> tuple[int, ...]:
    concat = data.get(key)
    valid = range(2, 2 + STEPS)
    if (not isinstance(concat, list) or not concat
            or any(type(c) is not int or c not in valid for c in concat)
            or len(set(concat)) != len(concat)):
        raise GenotypeError(f"{source}: key {key!r} = {concat!r}, expected a non-empty list of "
                            f"distinct node indices in {list(valid)}")
    return tuple(concat)


def parse_alphas(weights: torch.Tensor, primitives: tuple[str, ...] = PRIMITIVES) -> list[Edge]:
    """DARTS rule: per node keep the 2 incoming edges whose best non-'none' op is strongest.
    NaN or +inf weights (a diverged search) raise GenotypeError; -inf marks a removed op."""
    if weights.shape != (NUM_EDGES, len(primitives)):
        raise ValueError(f"alpha has shape {tuple(weights.shape)}, expected "
                         f"({NUM_EDGES}, {len(primitives)})")
    w = weights.detach().cpu()
    bad = torch.isnan(w) | torch.isposinf(w)      # -inf is an op removed (CP-NAS's pruning)
    if bool(bad.any()):
        raise GenotypeError(f"alpha holds {int(bad.sum())} NaN or +inf values: no cell can be "
                            f"read from it")
    none_idx = primitives.index("none") if "none" in primitives else None
    gene: list[Edge] = []
    start = 0
    for node in range(STEPS):
        n_in = node + 2
        rows = w[start:start + n_in]

        def best(row: torch.Tensor) -> tuple[float, int]:
            cand = [(float(row[k]), k) for k in range(len(primitives)) if k != none_idx]
            # ties broken by the lower op index, so the result is deterministic
            return max(cand, key=lambda t: (t[0], -t[1]))

        scored = sorted(range(n_in), key=lambda j: (-best(rows[j])[0], j))[:2]
        for j in sorted(scored):
            gene.append((primitives[best(rows[j])[1]], j))
        start += n_in
    return gene


def from_alphas(alpha_normal: torch.Tensor, alpha_reduce: torch.Tensor,
                meta: dict[str, Any] | None = None) -> Genotype:
    concat = tuple(range(2, 2 + STEPS))
    return Genotype(tuple(parse_alphas(torch.softmax(alpha_normal, -1))), concat,
                    tuple(parse_alphas(torch.softmax(alpha_reduce, -1))), concat, meta or {})


def random_genotype(generator: torch.Generator) -> Genotype:
    """A uniformly random genotype of the space (the random-search baseline)."""
    ops = [p for p in PRIMITIVES if p != "none"]

    def cell() -> tuple[Edge, ...]:
        gene: list[Edge] = []
        for node in range(STEPS):
            inputs = torch.randperm(node + 2, generator=generator)[:2].sort().values.tolist()
            for j in inputs:
                gene.append((ops[int(torch.randint(len(ops), (1,), generator=generator))], j))
        return tuple(gene)

    concat = tuple(range(2, 2 + STEPS))
    return Genotype(cell(), concat, cell(), concat)


# DARTS-V2 (Liu et al., ICLR 2019), the published real-valued DARTS cell: a reference genotype.
DARTS_V2 = Genotype(
    normal=(("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("sep_conv_3x3", 1),
            ("sep_conv_3x3", 1), ("skip_connect", 0), ("skip_connect", 0), ("dil_conv_3x3", 2)),
    normal_concat=(2, 3, 4, 5),
    reduce=(("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 1),
            ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("max_pool_3x3", 1)),
    reduce_concat=(2, 3, 4, 5),
    meta={"source": "DARTS_V2, Liu et al., ICLR 2019"},
)

_OFFICIAL = "YanjingLi0202/DCP-NAS, utils/genotypes_m.py"


def _published(normal: list[list[Edge]], reduce: list[list[Edge]], source: str) -> Genotype:
    """A cell as the official file writes it: one [op, input] pair per node."""
    concat = tuple(range(2, 2 + STEPS))
    return Genotype(tuple(e for node in normal for e in node), concat,
                    tuple(e for node in reduce for e in node), concat, meta={"source": source})


# DCP-NAS-L (Li et al., IJCV 2023): genotype DDPNAS_MCN_2 of the official repository, which
# its README retrains with --init_channels 108 --layers 10 on ImageNet.
DCPNAS_L = _published(
    normal=[[("sep_conv_5x5", 1), ("max_pool_3x3", 0)], [("dil_conv_3x3", 2), ("skip_connect", 0)],
            [("sep_conv_3x3", 3), ("avg_pool_3x3", 1)], [("dil_conv_3x3", 4), ("avg_pool_3x3", 3)]],
    reduce=[[("max_pool_3x3", 0), ("sep_conv_3x3", 1)], [("dil_conv_3x3", 1), ("sep_conv_3x3", 0)],
            [("max_pool_3x3", 1), ("dil_conv_5x5", 2)], [("dil_conv_5x5", 2), ("sep_conv_5x5", 1)]],
    source=f"DCP-NAS-L: DDPNAS_MCN_2, {_OFFICIAL} (README: C=108, 10 layers, ImageNet)")

# PC-DARTS (Xu et al., ICLR 2020), its published CIFAR-10 and ImageNet cells, as carried by
# the official DCP-NAS repository (utils/genotypes.py: PC_DARTS_cifar, PC_DARTS_image).
PC_DARTS_CIFAR = _published(
    normal=[[("sep_conv_3x3", 1), ("skip_connect", 0)], [("sep_conv_3x3", 0), ("dil_conv_3x3", 1)],
            [("sep_conv_5x5", 0), ("sep_conv_3x3", 1)], [("avg_pool_3x3", 0), ("dil_conv_3x3", 1)]],
    reduce=[[("sep_conv_5x5", 1), ("max_pool_3x3", 0)], [("sep_conv_5x5", 1), ("sep_conv_5x5", 2)],
            [("sep_conv_3x3", 0), ("sep_conv_3x3", 3)], [("sep_conv_3x3", 1), ("sep_conv_3x3", 2)]],
    source="PC-DARTS CIFAR-10 cell (Xu et al., ICLR 2020): PC_DARTS_cifar, "
           "YanjingLi0202/DCP-NAS, utils/genotypes.py")
PC_DARTS_IMAGENET = _published(
    normal=[[("skip_connect", 1), ("sep_conv_3x3", 0)], [("sep_conv_3x3", 0), ("skip_connect", 1)],
            [("sep_conv_3x3", 1), ("sep_conv_3x3", 3)], [("sep_conv_3x3", 1), ("dil_conv_5x5", 4)]],
    reduce=[[("sep_conv_3x3", 0), ("skip_connect", 1)], [("dil_conv_5x5", 2), ("max_pool_3x3", 1)],
            [("sep_conv_3x3", 2), ("sep_conv_3x3", 1)], [("sep_conv_5x5", 0), ("sep_conv_3x3", 3)]],
    source="PC-DARTS ImageNet cell (Xu et al., ICLR 2020): PC_DARTS_image, "
           "YanjingLi0202/DCP-NAS, utils/genotypes.py")

#: the published cells by the name they go by in the harness (``harness train --method``,
#: ``reference_backbones``, ``backbones``, ``create_backbone("nas", genotype=...)``)
PUBLISHED: dict[str, Genotype] = {"darts_v2": DARTS_V2, "dcpnas_l": DCPNAS_L,
                                  "pcdarts_cifar": PC_DARTS_CIFAR,
                                  "pcdarts_imagenet": PC_DARTS_IMAGENET}

