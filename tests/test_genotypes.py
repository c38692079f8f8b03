"""Genotype JSON: round trip, DARTS parsing rule, and rejection of bad files."""
import json

import pytest
import torch

from backbones.genotypes import (DARTS_V2, NUM_EDGES, Genotype, GenotypeError, from_alphas,
                                 random_genotype)
from backbones.operations import PRIMITIVES


def test_json_round_trip(tmp_path):
    path = tmp_path / "g.json"
    DARTS_V2.save(path)
    assert Genotype.load(path) == DARTS_V2
    assert json.loads(path.read_text())["format"] == "darts-genotype/1"


def test_random_genotypes_are_valid_and_seeded():
    a = random_genotype(torch.Generator().manual_seed(1))
    b = random_genotype(torch.Generator().manual_seed(1))
    c = random_genotype(torch.Generator().manual_seed(2))
    assert a == b and a != c
    Genotype.from_json(a.to_json())


def test_from_alphas_picks_two_strongest_edges_and_never_none():
    alpha = torch.zeros(NUM_EDGES, len(PRIMITIVES))
    alpha[:, PRIMITIVES.index("none")] = 10.0       # 'none' strongest everywhere: ignored
    alpha[0, PRIMITIVES.index("sep_conv_3x3")] = 5.0  # node 0, input 0
    alpha[1, PRIMITIVES.index("max_pool_3x3")] = 4.0  # node 0, input 1
    alpha[4, PRIMITIVES.index("dil_conv_5x5")] = 6.0  # node 1, input 2
    alpha[2, PRIMITIVES.index("skip_connect")] = 3.0  # node 1, input 0
    g = from_alphas(alpha, alpha)
    assert g.normal[:2] == (("sep_conv_3x3", 0), ("max_pool_3x3", 1))
    assert g.normal[2:4] == (("skip_connect", 0), ("dil_conv_5x5", 2))
    assert all(op != "none" for op, _ in g.normal + g.reduce)


def _bad(**change):
    d = DARTS_V2.to_dict()
    d.update(change)
    return json.dumps(d)


@pytest.mark.parametrize("text, message", [
    ("{not json", "not valid JSON"),
    ("[]", "expected a JSON object"),
    (_bad(normal=[["sep_conv_3x3", 0]] * 7), "has 7 edges, expected 8"),
    (_bad(normal=[["conv_9x9", 0]] + [["sep_conv_3x3", 0]] * 7), "unknown op 'conv_9x9'"),
    (_bad(normal=[["none", 0]] + [["sep_conv_3x3", 0]] * 7), "unknown op 'none'"),
    (_bad(normal=[["sep_conv_3x3", 2]] + [["sep_conv_3x3", 0]] * 7), "node 0 can only take"),
    (_bad(reduce_concat=[1, 2]), "reduce_concat"),
    (_bad(normal=[["sep_conv_3x3", "0"]] + [["sep_conv_3x3", 0]] * 7), "expected \\[op_name"),
    (_bad(extra=1), "unknown key"),
])
def test_bad_genotypes_are_rejected_with_the_file_and_key(tmp_path, text, message):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(GenotypeError, match=message) as info:
        Genotype.load(path)
    assert str(path) in str(info.value)


def test_genotype_text_is_never_evaluated(tmp_path):
    path = tmp_path / "evil.json"
    path.write_text("Genotype(normal=__import__('os').system('touch pwned'))")
    with pytest.raises(GenotypeError):
        Genotype.load(path)
    assert not (tmp_path / "pwned").exists()
