"""Speed settings (harness/accel.py): compiled training matches eager within float tolerance,
and the CUDA-only settings leave a CPU run alone."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from backbones.registry import create_backbone
from backbones.search.base import SearchContext, get_search_method
from backbones.supernet import Supernet
from harness.accel import autocast, channels_last, compile_modules, to_device
from harness.stages.train import _unwrap


def _net():
    torch.manual_seed(0)
    return create_backbone("dcpnas_l", C=4, layers=1, num_classes=10, stem="cifar")


def _loss_and_grads(model, net):
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(8, 3, 8, 8, generator=g), torch.randint(0, 10, (8,), generator=g)
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    return float(loss.detach()), {n: p.grad.clone() for n, p in net.named_parameters()
                                  if p.grad is not None}


def test_compiled_training_step_matches_eager():
    """One forward/backward of a 1-bit DCP-NAS-L cell network (the custom sign and MConv
    autograd Functions included): compiled (inductor) and eager give the same loss and the
    same gradients within float tolerance. (Over several SGD steps the two drift apart by
    ~1e-3 in the loss: sign() turns float-noise differences of activations near 0 into
    whole flips, exactly as between two eager runs on different hardware.)"""
    eager = _net()
    comp_net = copy.deepcopy(eager)
    compiled = torch.compile(comp_net)
    assert _unwrap(compiled) is comp_net
    l_eager, g_eager = _loss_and_grads(eager, eager)
    l_comp, g_comp = _loss_and_grads(compiled, comp_net)
    assert l_comp == pytest.approx(l_eager, rel=1e-5)
    scale = max(float(g.abs().max()) for g in g_eager.values())
    for name, g in g_eager.items():
        assert torch.allclose(g_comp[name], g, rtol=1e-4, atol=1e-5 * scale), name


def test_in_place_compile_keeps_state_dict_keys():
    net = _net()
    keys = list(net.state_dict())
    assert compile_modules([net], True) == 1 and compile_modules([net], False) == 0
    assert list(net.state_dict()) == keys


def test_cuda_settings_are_no_ops_on_cpu():
    cpu = torch.device("cpu")
    assert not channels_last(cpu, True)
    x = torch.randn(2, 3, 4, 4)
    assert to_device(x, cpu, True).is_contiguous()
    with autocast(cpu, True):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32


def test_compiled_supernet_edges_match_eager():
    """``search.compile`` on a 1-bit search supernet compiles each edge (the whole supernet
    does not compile in useful time); one forward/backward agrees with eager within float
    tolerance, for the weights and the architecture parameters alike."""
    torch.manual_seed(0)
    eager = Supernet(C=4, num_classes=10, layers=1, binary=True)
    comp_net = copy.deepcopy(eager)
    assert compile_modules([comp_net], True) == len(comp_net.compile_regions()) == 14
    assert list(comp_net.state_dict()) == list(eager.state_dict())
    l_eager, g_eager = _loss_and_grads(eager, eager)
    l_comp, g_comp = _loss_and_grads(comp_net, comp_net)
    assert l_comp == pytest.approx(l_eager, rel=1e-5)
    assert set(g_comp) == set(g_eager)
    scale = max(float(g.abs().max()) for g in g_eager.values())
    for name, g in g_eager.items():
        assert torch.allclose(g_comp[name], g, rtol=1e-4, atol=1e-5 * scale), name


@pytest.mark.parametrize("name", ["direct_bnas", "darts", "darts_2nd", "pcdarts", "cpnas"])
def test_search_methods_step_compiled_as_eager(name):
    """Every supernet search method runs compiled (``search.compile``: its networks' edges)
    and its steps give the losses of the eager run within float tolerance: DARTS-2nd's
    in-place weight perturbations, PC-DARTS's channel sampling and CP-NAS's single paths
    (an edge's active op is part of its compiled graph's guards) included. (aot_eager: the
    AOTAutograd graphs without inductor's C++ compilation; inductor is tested above.) DCP-NAS:
    tests/test_dcpnas.py::test_compiled_step_matches_eager."""
    cls = get_search_method(name)
    wanted = {"C": 8, "layers": 1, "arch_warmup_epochs": 0}
    cfg = cls.Config(**{k: v for k, v in wanted.items() if k in cls.Config.model_fields})

    def build():
        torch.manual_seed(0)
        method = cls(cfg, SearchContext(num_classes=10, device=torch.device("cpu"), seed=0))
        method.begin_epoch(0, 2)
        return method

    eager, compiled = build(), build()
    assert compile_modules(compiled.modules(), True, backend="aot_eager") > 0
    g = torch.Generator().manual_seed(1)
    for _ in range(2):
        tb, vb = ((torch.randn(4, 3, 8, 8, generator=g), torch.randint(0, 10, (4,), generator=g))
                  for _ in range(2))
        assert compiled.step(tb, vb) == pytest.approx(eager.step(tb, vb), rel=1e-4, abs=1e-6)
