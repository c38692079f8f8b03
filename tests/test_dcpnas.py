"""Tests of the DCP-NAS search method (backbones/search/dcpnas.py) and its pieces
(backbones/search/tangent.py). Tiny supernets on the CPU (C=4, 1-3 cells, 8x8 inputs)."""
from __future__ import annotations

import copy
import io

import pytest
import torch
import torch.nn.functional as F

import backbones.search.dcpnas as dcp
import backbones.search.tangent as tp
from backbones.binary import binary_convs, reconstruction_loss
from backbones.search.base import SearchContext, get_search_method
from backbones.search.dcpnas import DCPNAS, DCPNASConfig
from backbones.supernet import Supernet

torch.set_num_threads(1)

NUM_CLASSES = 10


def make(seed: int = 0, init_seed: int | None = None, **overrides) -> DCPNAS:
    """A DCP-NAS instance on a tiny supernet; ``seed`` is the run's seed (SearchContext),
    ``init_seed`` (default: seed) the torch seed of the initial weights."""
    torch.manual_seed(seed if init_seed is None else init_seed)
    cfg = DCPNASConfig(**{"C": 4, "layers": 1, "w_lr": 0.05, "arch_lr": 3e-3, **overrides})
    method = DCPNAS(cfg, SearchContext(num_classes=NUM_CLASSES, device=torch.device("cpu"),
                                       seed=seed))
    method.begin_epoch(0, 2)
    return method


def batches(n: int, seed: int = 1, b: int = 4, size: int = 8):
    g = torch.Generator().manual_seed(seed)

    def one():
        return (torch.randn(b, 3, size, size, generator=g),
                torch.randint(0, NUM_CLASSES, (b,), generator=g))
    return [(one(), one()) for _ in range(n)]


def cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a * b).sum() / (a.norm() * b.norm()))


# ---- losses -----------------------------------------------------------------------------
def test_registered_and_config_validated():
    assert get_search_method("dcpnas") is DCPNAS
    with pytest.raises(ValueError, match="distance"):
        DCPNASConfig(distance="l2")
    with pytest.raises(ValueError, match="second_order"):
        DCPNASConfig(second_order="hessian")
    with pytest.raises(ValueError, match="tau"):
        DCPNASConfig(tau=1.5)


def test_kl_zero_for_equal_outputs_positive_otherwise():
    torch.manual_seed(0)
    z = torch.randn(6, NUM_CLASSES)
    assert float(tp.kl_parent_child(z, z)) == pytest.approx(0.0, abs=1e-6)
    # the same distributions from shifted logits: still zero
    assert float(tp.kl_parent_child(z + 3.0, z)) == pytest.approx(0.0, abs=1e-6)
    other = z + torch.randn(6, NUM_CLASSES)
    kl = float(tp.kl_parent_child(other, z))
    assert kl > 1e-3
    # it is KL(parent || child), not the reverse direction
    p, q = F.softmax(z, 1), F.softmax(other, 1)
    assert kl == pytest.approx(float((p * (p.log() - q.log())).sum(1).mean()), rel=1e-5)


def test_reconstruction_zero_for_scaled_sign_weights_positive_for_random():
    torch.manual_seed(0)
    child = make().child
    assert float(reconstruction_loss(child).detach()) > 1.0  # random init
    with torch.no_grad():
        for conv in binary_convs(child):
            w = conv.weight
            beta = torch.rand(w.shape[0], *([1] * (w.dim() - 1))) + 0.1
            w.copy_(beta * torch.where(torch.rand_like(w) > 0.5, 1.0, -1.0))
            if conv.binarizer == "official":   # its scale is 0.02 |M|
                conv.modulation.copy_(beta / 0.02)
            assert torch.allclose(conv.weight_scale(), beta)
    assert float(reconstruction_loss(child).detach()) == pytest.approx(0.0, abs=1e-8)


# ---- tangent and distances ------------------------------------------------------------------
def test_tangent_is_the_log_likelihood_gradient_and_literal_sum_is_zero():
    torch.manual_seed(0)
    net = Supernet(4, NUM_CLASSES, 1)
    (x, y), _ = batches(1)[0]
    arch = net.arch_parameters()
    logits = net(x)
    t = tp.flat(tp.tangent_direction(logits, y, arch, retain_graph=True))
    logp_y = F.log_softmax(logits, 1).gather(1, y[:, None]).mean()
    ref = tp.flat(tp.grad_or_zeros(logp_y, arch, retain_graph=True))
    assert torch.allclose(t, ref, atol=1e-7) and float(t.norm()) > 0
    # Eq. 4.29 read literally (sum over the classes of dp_n/dalpha) vanishes identically
    literal = tp.flat(tp.grad_or_zeros(F.softmax(logits, 1).sum(), arch))
    assert float(literal.abs().max()) < 1e-6


def test_distances_differ_and_vanish_at_equality():
    torch.manual_seed(0)
    g, t = torch.randn(224), torch.randn(224)
    values = {k: float(tp.distance(g, t, k)) for k in tp.DISTANCES}
    assert len({round(v, 6) for v in values.values()}) == 3
    assert values["fnorm"] == pytest.approx(float(((g - t) ** 2).sum()), rel=1e-6)
    assert values["l1"] == pytest.approx(float((g - t).abs().sum()), rel=1e-6)
    assert values["cosine"] == pytest.approx(1 - cos(g, t), rel=1e-5)
    for k in tp.DISTANCES:
        assert float(tp.distance(g, g.clone(), k)) == pytest.approx(0.0, abs=1e-6)
        assert float(tp.distance(g, t, k)) > 0
    assert float(tp.distance(2 * g, g, "cosine")) == pytest.approx(0.0, abs=1e-6)
    _, v = tp.distance_and_direction(g, t, "fnorm")
    assert torch.allclose(v, 2 * (g - t))
    _, v = tp.distance_and_direction(g, t, "l1")
    assert torch.equal(v, torch.sign(g - t))
    with pytest.raises(ValueError):
        tp.distance(g, t, "l2")


def test_ggn_direction_agrees_with_exact_where_the_ggn_is_exact():
    """dD/dalpha_hat = H_G v by the GGN/Fisher estimate and by double backward, through the
    method's own ``_second_order_term``, at a point where the Child's output distribution equals
    the Parent's. There the residual term of the Hessian vanishes and H_G = -F exactly
    (Eqs. 4.39-4.41 hold with equality), so the two differ only by the Monte-Carlo error of the
    label draws, which shrinks like 1/sqrt(samples). With 64 draws the cosine measured 0.94-0.98
    over four seeds (0.995 with 256; 0.4-0.6 with 1): threshold 0.9. The 10 largest components
    of the exact direction must have the same sign in the estimate (10/10 in all seeds)."""
    m = make(seed=3, mu=1.0, ggn_samples=64)
    child = m.child
    with torch.no_grad():
        for a in child.arch_parameters():
            a.normal_(0, 0.5)
    x = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(5))
    arch = child.arch_parameters()
    tangent = [0.1 * torch.randn_like(a) for a in arch]
    with torch.no_grad():
        target = child(x)  # train-mode BN: the same batch gives the same outputs below

    def d_gradient(mode: str) -> torch.Tensor:
        m.cfg.second_order = mode
        logits = child(x)
        kl = tp.kl_parent_child(logits, target)
        g_kl = tp.grad_or_zeros(kl, arch, create_graph=(mode == "exact"), retain_graph=True)
        # the Child fits the target: dG/dalpha = 0
        assert float(tp.flat(g_kl).detach().norm()) < 1e-6
        extra, d = m._second_order_term(x, logits, g_kl, tangent)
        assert float(d) > 0
        return tp.flat(extra)

    exact = d_gradient("exact")
    ggn = d_gradient("ggn")
    assert float(exact.norm()) > 0 and float(ggn.norm()) > 0
    assert 0.5 < float(ggn.norm() / exact.norm()) < 2.0
    assert cos(ggn, exact) > 0.9
    top = exact.abs().topk(10).indices
    assert torch.equal(torch.sign(ggn[top]), torch.sign(exact[top]))
    # not trivially the same computation: a single draw is a (rank-1) estimate, not the exact
    m.cfg.ggn_samples = 1
    one = d_gradient("ggn")
    assert float(one.norm()) > 0 and cos(one, exact) < 0.999


def test_fisher_estimate_is_negative_semidefinite():
    torch.manual_seed(0)
    net = Supernet(4, NUM_CLASSES, 1, binary=True)
    x = torch.randn(4, 3, 8, 8)
    arch = net.arch_parameters()
    for seed in range(3):
        v = [torch.randn_like(a) for a in arch]
        hv = tp.fisher_vector_product(net(x), arch, v, samples=2,
                                      generator=torch.Generator().manual_seed(seed))
        assert float(tp.flat(hv) @ tp.flat(v)) < 0


# ---- decoupled optimization ---------------------------------------------------------------
def test_backtrack_mask_ranks_op_types_by_weight_norm():
    norms = torch.zeros(1, 3, 8)
    norms[0, :, 4] = 5.0   # op 4 largest
    norms[0, :, 6] = 3.0
    norms[0, :, 7] = 1.0
    norms[0, 0, 5] = 2.0   # op 5 only on one edge: total 2
    mask = tp.backtrack_mask(norms, tau=0.75)          # top quarter of 8 ops: 4 and 6
    assert mask[0, :, 4].all() and mask[0, :, 6].all()
    assert int(mask.sum()) == 6
    assert int(tp.backtrack_mask(norms, tau=0.5).sum()) == 12   # ops 4, 5, 6, 7
    assert int(tp.backtrack_mask(norms, tau=0.0).sum()) == 24
    op_mask = torch.ones(1, 3, 8)
    op_mask[0, 1, 4] = 0
    assert not tp.backtrack_mask(norms, tau=0.75, op_mask=op_mask)[0, 1, 4]


def test_backtracking_changes_alpha_only_above_tau():
    """Same seed with decouple on and off: after the first step (psi~ not yet updated) the two
    alphas differ exactly by eta psi~ alpha^t on the ops ranked above tau, nowhere else."""
    data = batches(1)
    on, off = make(decouple=True, tau=0.75, eta2=50.0), make(decouple=False)
    with torch.no_grad():  # a visible alpha^t
        for m in (on, off):
            for a in m.parent.arch_parameters():
                a.copy_(torch.linspace(-1, 1, a.numel()).view_as(a))
            m.child.copy_arch_from(m.parent)
    alpha_t = on._alpha(on.parent).clone()
    out = on.step(*data[0])
    off.step(*data[0])
    a_on, a_off = on._alpha(on.parent), off._alpha(off.parent)
    # the mask from the Supernet's own (slow) op_weight_norms, ranked per op type
    norms = torch.stack(on.child.op_weight_norms())
    per_op = norms.sum(1)
    expected = torch.zeros_like(norms, dtype=torch.bool)
    for cell in range(2):
        smaller = (per_op[cell][:, None] > per_op[cell][None, :]).sum(1)
        expected[cell] = (smaller.float() / 8 >= 0.75)[None, :].expand(14, 8)
    expected &= per_op[:, None, :].expand_as(norms) > 0
    assert torch.equal(on.bt_mask, expected)
    assert out["backtracked"] == float(expected.sum()) > 0
    assert torch.equal(a_on[~expected], a_off[~expected])           # exactly unchanged
    shift = on.eta * on.psi * alpha_t
    assert torch.allclose(a_on[expected], (a_off + shift)[expected], atol=1e-7)
    assert float((a_on - a_off)[expected].abs().max()) > 1e-4        # and really moved


def test_op_weight_norms_match_supernet():
    child = make(layers=3).child
    fast = tp.op_weight_norms(child)
    slow = torch.stack(child.op_weight_norms())
    assert torch.allclose(fast, slow, rtol=1e-5)


def test_op_norms_follow_the_book_definition():
    """Pools: a fixed 1/K^2 kernel per channel (C/9); identity: 1 per channel (C); none: 0;
    conv ops: the squared norm of their reconstructed 1-bit kernels s_c sign(w)."""
    from backbones.binary import BinaryConv2d
    from backbones.operations import PRIMITIVES
    from backbones.supernet import op_norm
    child = make(layers=1).child
    mixed = child.cells[0].edges[0]   # a normal-cell edge: stride 1, C = 4
    C = mixed.channels
    r = {name: float(op_norm(name, op, C)) for name, op in zip(PRIMITIVES, mixed.ops)}
    assert r["none"] == 0.0 and r["skip_connect"] == C
    assert r["max_pool_3x3"] == r["avg_pool_3x3"] == pytest.approx(C / 9)
    op = mixed.ops[PRIMITIVES.index("sep_conv_3x3")]
    by_hand = sum(float(c.binarized_weight().detach().pow(2).sum()) for c in op.modules()
                  if isinstance(c, BinaryConv2d))
    assert r["sep_conv_3x3"] == pytest.approx(by_hand, rel=1e-5)


def test_backtrack_mask_changes_when_the_weight_norms_change_order():
    """The ranking is not fixed by the op types: when one op type's 1-bit kernels grow, it
    enters the backtracked set and another op type leaves it."""
    from backbones.binary import BinaryConv2d
    from backbones.operations import PRIMITIVES
    child = make(layers=1).child
    before = tp.backtrack_mask(tp.op_weight_norms(child), tau=0.75)
    k = PRIMITIVES.index("dil_conv_5x5")
    assert not before[0, :, k].any()
    with torch.no_grad():   # grow dil_conv_5x5's reconstructed kernels (its scales M)
        for cell in child.cells:
            for mixed in cell.edges:
                for conv in mixed.ops[k].modules():
                    if isinstance(conv, BinaryConv2d):
                        conv.modulation.mul_(1e3)
    after = tp.backtrack_mask(tp.op_weight_norms(child), tau=0.75)
    assert after[0, :, k].all()
    assert not torch.equal(before, after)


def test_psi_stays_non_negative():
    psi = torch.tensor([0.5, 1.0, 0.0])
    new = tp.psi_update(psi, torch.tensor([2.0, -1.0, 0.0]), eta_psi=1.0)
    assert torch.equal(new, torch.tensor([1.5, 2.0, 0.0]))
    # in the method, with a step size that drives psi~ across zero
    m = make(eta_psi=1e9, eta2=10.0)
    with torch.no_grad():
        for a in m.parent.arch_parameters():
            a.copy_(torch.linspace(-1, 1, a.numel()).view_as(a))
        m.child.copy_arch_from(m.parent)
    for tb, vb in batches(3):
        m.step(tb, vb)
        assert float(m.psi.min()) >= 0.0
    assert bool((m.psi != 1.0).any())


# ---- the step ------------------------------------------------------------------------------
def test_same_seed_same_genotype():
    data = batches(3)
    runs = []
    for _ in range(2):
        m = make(seed=7, arch_lr=0.05)
        for tb, vb in data:
            m.step(tb, vb)
        runs.append(m)
    a, b = runs
    assert a.genotype() == b.genotype()
    assert torch.equal(a.parent.alpha_normal, b.parent.alpha_normal)
    assert torch.equal(a.parent.alpha_reduce, b.parent.alpha_reduce)
    # and the architecture did move
    fresh = make(seed=7)
    assert not torch.equal(a.parent.alpha_normal, fresh.parent.alpha_normal)


def test_switches(monkeypatch):
    data = batches(1)

    def fail(*args, **kwargs):
        raise AssertionError("must not be called")

    # tangent off: D is not computed (no second-order term at all)
    monkeypatch.setattr(tp, "fisher_vector_product", fail)
    monkeypatch.setattr(tp, "ggn_vector_product", fail)
    monkeypatch.setattr(tp, "exact_hessian_vector_product", fail)
    out = make(tangent=False).step(*data[0])
    assert out["dist"] == 0.0
    monkeypatch.undo()
    calls = []
    real = tp.fisher_vector_product
    monkeypatch.setattr(tp, "fisher_vector_product",
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    out = make(tangent=True, second_order="ggn").step(*data[0])
    assert out["dist"] > 0 and calls == [1]
    monkeypatch.undo()
    # recon off: L_R is not computed, the loss is the KL term alone
    monkeypatch.setattr(dcp, "reconstruction_loss", fail)
    out = make(recon=False).step(*data[0])
    assert out["recon"] == 0.0 and out["loss"] == pytest.approx(out["kl"], rel=1e-6)
    monkeypatch.undo()
    m = make(recon=True)
    out = m.step(*data[0])
    assert out["recon"] > 0
    assert out["loss"] == pytest.approx(out["kl"] + m.cfg.lambda_r * out["recon"], rel=1e-5)
    # and L_R is in the weight update: on the first step (no momentum yet, no clipping at this
    # size) the two runs' Child weights differ by exactly -lr * lambda_r * grad L_R(w_0)
    on, off = make(recon=True, lambda_r=0.05, grad_clip=0.0), make(recon=False, grad_clip=0.0)
    weights = list(on.child.weight_parameters())
    grad_lr = torch.autograd.grad(reconstruction_loss(on.child), weights, allow_unused=True)
    on.step(*data[0])
    off.step(*data[0])
    lr = on.c_wopt.param_groups[0]["lr"]
    for w_on, w_off, g in zip(weights, off.child.weight_parameters(), grad_lr):
        expected = torch.zeros_like(w_on) if g is None else -lr * 0.05 * g
        assert torch.allclose(w_on - w_off, expected, atol=1e-6)
    with torch.no_grad():
        assert max(float((w1 - w2).abs().max()) for w1, w2 in
                   zip(weights, off.child.weight_parameters())) > 1e-4


@pytest.mark.parametrize("overrides", [
    {"child_arch_batch": "train"},
    {"second_order": "exact"},
    {"child_arch_batch": "train", "second_order": "exact", "distance": "cosine"},
    {"distance": "l1", "layers": 3},
])
def test_variants_run_and_stay_finite(overrides):
    m = make(**overrides)
    for tb, vb in batches(1 if m.cfg.layers > 1 else 2):
        out = m.step(tb, vb)
        assert all(v == v and abs(v) < 1e9 for v in out.values()), out
        assert out["dist"] > 0


def test_search_steps_reduce_the_child_loss():
    """4 steps on one fixed batch (train = val): the Parent fits the labels and the Child
    follows it. Child loss = KL(final Parent || Child) on the batch: the trained Child's is at
    most 0.8 of the initial Child's (ratios measured 0.42-0.66 over 6 seeds), and the Parent's
    cross-entropy falls (2.2-2.5 -> 1.8-2.0). (The Child's own cross-entropy to the labels is
    not used: after 4 steps it fell in only 4 of the 6 seeds.)"""
    m = make(seed=0, w_lr=0.05, arch_lr=3e-3)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(8, 3, 8, 8, generator=g), torch.randint(0, NUM_CLASSES, (8,), generator=g)
    child0, parent0 = copy.deepcopy(m.child), copy.deepcopy(m.parent)
    for _ in range(4):
        m.step((x, y), (x, y))
    with torch.no_grad():
        p_end, c_end, c_start = m.parent(x), m.child(x), child0(x)
        loss_end = float(tp.kl_parent_child(c_end, p_end))
        loss_start = float(tp.kl_parent_child(c_start, p_end))
        assert loss_end < 0.8 * loss_start
        assert float(F.cross_entropy(p_end, y)) < 0.95 * float(F.cross_entropy(parent0(x), y))


def test_state_dict_round_trip_gives_identical_next_step():
    data = batches(3)
    a = make(seed=1)
    for tb, vb in data[:2]:
        a.step(tb, vb)
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    b = make(seed=1, init_seed=2)  # other initial weights, overwritten by the state
    b.load_state_dict(state)
    out_a, out_b = a.step(*data[2]), b.step(*data[2])
    assert out_a == out_b
    for x, y in zip(a.state_dict()["parent"].values(), b.state_dict()["parent"].values()):
        assert torch.equal(x, y)
    for x, y in zip(a.child.parameters(), b.child.parameters()):
        assert torch.equal(x, y)
    assert torch.equal(a.psi, b.psi) and a.steps == b.steps == 3
    assert a.genotype() == b.genotype()


def test_alphas_and_modules():
    m = make()
    al = m.alphas()
    assert set(al) == {"normal", "reduce"} and len(al["normal"]) == 14
    assert len(al["normal"][0]) == 8
    assert m.modules() == [m.parent, m.child]
    assert not m.parent.binary and m.child.binary


def _distributed_worker(rank: int, world: int, tmp: str) -> None:
    import torch.distributed as dist
    dist.init_process_group("gloo", init_method=f"file://{tmp}/init", rank=rank,
                            world_size=world)
    try:
        torch.set_num_threads(1)
        m = make(seed=0, child_arch_batch="val")
        for tb, vb in batches(2, seed=10 + rank):       # every rank sees other data
            m.step(tb, vb)
        state = [m._alpha(m.parent), m.psi, m.bt_mask.float()]
        state += [p.detach() for p in m.child.weight_parameters()]
        state += [p.detach() for p in m.parent.weight_parameters()]
        torch.save([t.clone() for t in state], f"{tmp}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_distributed_ranks_stay_identical(tmp_path):
    """Two gloo ranks on different batches (and different Fisher label draws) end with
    identical alphas, psi~, masks and weights: every update is averaged over the ranks."""
    import multiprocessing as mp
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_distributed_worker, args=(r, 2, str(tmp_path)))
             for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
        assert p.exitcode == 0
    results = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    assert len(results[0]) == len(results[1]) > 3
    for a, b in zip(*results):
        assert torch.equal(a, b)


def test_exact_ggn_product_equals_explicit_jt_h_j_v():
    """ggn_vector_product against J^T H_z J v built explicitly: the full Jacobian of the
    logits w.r.t. alpha_hat row by row, H_z = blockdiag(diag(q_n) - q_n q_n^T), on a 1-cell
    binary supernet in train mode (BN couples the examples: J is the batch Jacobian)."""
    torch.manual_seed(0)
    net = Supernet(4, NUM_CLASSES, 1, binary=True)
    arch = net.arch_parameters()
    for p in net.weight_parameters():
        p.requires_grad_(False)
    x = torch.randn(3, 3, 8, 8)
    logits = net(x)
    v = [torch.randn_like(a) for a in arch]
    got = tp.flat(tp.ggn_vector_product(net, x, logits, arch, v))
    reference = tp.flat(tp.ggn_vector_product_double_vjp(logits, arch, v))
    rows = []
    for i in range(logits.numel()):
        e = torch.zeros_like(logits).view(-1)
        e[i] = 1.0
        rows.append(tp.flat(tp.grad_or_zeros(logits, arch, grad_outputs=e.view_as(logits),
                                             retain_graph=True)))
    J = torch.stack(rows)                                  # (B*K) x P
    q = torch.softmax(logits.detach(), dim=1)
    H = torch.block_diag(*[torch.diag(qn) - torch.outer(qn, qn) for qn in q])
    expected = -(J.T @ (H @ (J @ tp.flat(v)))) / logits.shape[0]
    assert torch.allclose(got, expected, rtol=1e-4, atol=1e-7)
    assert torch.allclose(reference, expected, rtol=1e-4, atol=1e-7)
    assert expected.abs().max() > 1e-6
    # the sampled estimator is an estimate of the same vector
    est = tp.flat(tp.fisher_vector_product(net(x), arch, v, samples=400,
                                           generator=torch.Generator().manual_seed(0)))
    assert cos(est, expected) > 0.9


@pytest.mark.parametrize("binary", [True, False])
@pytest.mark.parametrize("partial_channels", [1, 2])
def test_forward_mode_ggn_product_equals_the_double_vjp_one(binary, partial_channels,
                                                           monkeypatch):
    """The fast GGN product (forward-mode J v, closed-form H_z, one backward) equals the
    reverse-only double-vjp product for several random directions, on 1-bit and real
    supernets with and without partial channels; it never builds a graph of a graph, and it
    leaves BatchNorm's running statistics as the architecture pass left them."""
    torch.manual_seed(1)
    net = Supernet(4, NUM_CLASSES, 3, binary=binary, partial_channels=partial_channels)
    arch = net.arch_parameters()
    x = torch.randn(4, 3, 8, 8)
    logits = net(x)
    stats = {n: b.clone() for n, b in net.named_buffers()}
    real_grad = torch.autograd.grad

    def no_create_graph(*args, **kwargs):
        assert not kwargs.get("create_graph"), "the fast GGN product differentiated twice"
        return real_grad(*args, **kwargs)

    for k in range(3):
        v = [torch.randn_like(a) for a in arch]
        ref = tp.flat(tp.ggn_vector_product_double_vjp(logits, arch, v))
        monkeypatch.setattr(torch.autograd, "grad", no_create_graph)
        got = tp.flat(tp.ggn_vector_product(net, x, logits, arch, v))
        monkeypatch.undo()
        assert torch.allclose(got, ref, rtol=1e-4, atol=1e-8), (k, cos(got, ref))
        assert ref.abs().max() > 0
    assert all(torch.equal(b, stats[n]) for n, b in net.named_buffers())


def test_ggn_exact_is_a_second_order_option():
    m = make(second_order="ggn_exact")
    for tb, vb in batches(2):
        out = m.step(tb, vb)
        assert all(v == v for v in out.values()) and out["dist"] > 0


def test_parent_every_skips_parent_updates_and_reuses_its_tangent():
    """parent_every=2: on odd steps the Parent's weights and its Adam state do not move, psi~
    is not updated, and the Child's D term uses the tangent of the Parent's last update."""
    data = batches(3)
    m = make(seed=0, parent_every=2)
    m.step(*data[0])                                        # step 0: Parent updates
    tangent0 = [t.clone() for t in m.last_tangent]
    weights = [p.detach().clone() for p in m.parent.weight_parameters()]
    psi = m.psi.clone()
    adam_steps = m.p_aopt.state[m.parent.arch_parameters()[0]]["step"].clone()
    out = m.step(*data[1])                                  # step 1: forward only
    assert out["dist"] > 0                                  # D still computed, old tangent
    assert all(torch.equal(a, b) for a, b in zip(m.last_tangent, tangent0))
    assert all(torch.equal(w, p) for w, p in zip(weights, m.parent.weight_parameters()))
    assert torch.equal(m.psi, psi)
    assert torch.equal(m.p_aopt.state[m.parent.arch_parameters()[0]]["step"], adam_steps)
    m.step(*data[2])                                        # step 2: Parent updates again
    assert any(not torch.equal(w, p) for w, p in zip(weights, m.parent.weight_parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(m.last_tangent, tangent0))


def test_parent_every_one_is_the_default_step_and_resumes_exactly():
    """parent_every=1 is the unchanged step; with k=2 a resumed run (its last tangent in the
    checkpoint) takes the same next step as an uninterrupted one."""
    data = batches(3)
    a, b = make(seed=3), make(seed=3, parent_every=1)
    assert a.step(*data[0]) == b.step(*data[0])
    c = make(seed=4, parent_every=2)
    c.step(*data[0])
    buf = io.BytesIO()
    torch.save(c.state_dict(), buf)
    buf.seek(0)
    d = make(seed=4, init_seed=5, parent_every=2)
    d.load_state_dict(torch.load(buf, weights_only=True))
    assert c.step(*data[1]) == d.step(*data[1])
    with pytest.raises(ValueError, match=r"parent_every\s+Input should be greater than or equal to 1"):
        DCPNASConfig(parent_every=0)


@pytest.mark.parametrize("second_order", ["exact", "ggn_exact", "ggn"])
def test_compiled_step_matches_eager(second_order):
    """``search.compile`` compiles the Parent's and the Child's edges; the pass that is
    differentiated twice (exact) runs eagerly inside the step (a compiled graph has no double
    backward: without the force-eager switch this step raises); the GGN product (forward-mode
    J v and one backward) and the sampled Fisher run compiled. Two steps give the same losses
    and architectures as eager within float tolerance. (aot_eager: the same
    AOTAutograd graphs as inductor without its minutes of C++ compilation; inductor's
    numerics are tested in test_accel.py.)"""
    from harness.accel import compile_modules
    data = batches(2)
    eager, compiled = make(second_order=second_order), make(second_order=second_order)
    assert compile_modules(compiled.modules(), True, backend="aot_eager") == 2 * 14
    for tb, vb in data:
        out_e, out_c = eager.step(tb, vb), compiled.step(tb, vb)
        assert out_c == pytest.approx(out_e, rel=1e-4, abs=1e-6)
    for a, b in zip(eager.child.arch_parameters(), compiled.child.arch_parameters()):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6)
