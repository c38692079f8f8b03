"""Tests of backbones.search.cpnas (CP-NAS, Algorithm 9)."""
from __future__ import annotations

import io

import pytest
import torch

from backbones.genotypes import NUM_EDGES, Genotype
from backbones.operations import PRIMITIVES
from backbones.search.base import SearchContext, create_search_method, get_search_method
from backbones.losses import kernel_cp_loss
from backbones.search.cpnas import CPNAS, cp_score

torch.set_num_threads(1)
NONE = PRIMITIVES.index("none")


def make(seed: int = 0, **overrides) -> CPNAS:
    cfg = get_search_method("cpnas").Config(**{"C": 4, "layers": 2, **overrides})
    torch.manual_seed(seed)
    ctx = SearchContext(num_classes=10, device=torch.device("cpu"), seed=seed)
    m = create_search_method("cpnas", cfg, ctx)
    assert isinstance(m, CPNAS)
    return m


def batches(n: int, bs: int = 4, size: int = 8, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(bs, 3, size, size, generator=g), torch.randint(0, 10, (bs,), generator=g))
            for _ in range(n)]


def run_epochs(m: CPNAS, n: int, train, val, log=None):
    """What the harness loop does for one method, for ``n`` epochs."""
    for _ in range(n):
        e = m.epochs_done
        m.begin_epoch(e, m.planned_epochs())
        if log is not None:
            log.append(m.current_sample().clone() if not m.finished else None)
        for tb in train:
            out = m.step(tb, tb)
            assert torch.isfinite(torch.tensor(out["loss"]))
        m.end_epoch(e, val)


# -- Eq. 4.15 ------------------------------------------------------------------------------
def test_z_formula_on_known_accuracies():
    assert cp_score(90.0, 80.0, 0.5) == pytest.approx(85.0)
    assert cp_score(90.0, 80.0, 2.0) == pytest.approx(100.0)
    assert cp_score(90.0, 80.0, 0.0) == pytest.approx(80.0)   # Child only
    assert cp_score(70.0, 80.0, 0.5) == pytest.approx(75.0)
    # ... and record() assigns exactly that z to every sampled op, once
    m = make(beta_p=0.25)
    sample = m.current_sample().clone()
    m.record(60.0, 40.0)
    z = 0.25 * (60 - 40) + 40
    hit = torch.zeros_like(m.total_cnt)
    hit.scatter_(2, sample.unsqueeze(-1), 1.0)
    assert torch.equal(m.total_cnt, hit)
    assert torch.allclose(m.total_sum, hit * z)
    assert torch.allclose(m.round_sum, hit * z)


# -- kernel-level CP loss ------------------------------------------------------------------
def test_kernel_cp_loss_zero_iff_child_kernels_equal_parent_kernels():
    m = make()
    m.begin_epoch(0, m.planned_epochs())
    pairs = m.active_kernel_pairs()
    assert pairs and all(p.shape == c.shape for p, c in pairs)
    assert float(m.cp_loss().detach()) > 0
    # binarized (default): the Child's kernel is its conv's binarized weight
    with torch.no_grad():
        for w_p, h_c in pairs:
            w_p.copy_(h_c)
    assert float(m.cp_loss().detach()) == 0.0
    # latent: the Child's real weights (differ from their binarized values)
    m.cfg.cp_kernel = "latent"
    latent = m.active_kernel_pairs()
    assert float(kernel_cp_loss(latent).detach()) > 0
    with torch.no_grad():
        for w_p, w_c in latent:
            w_p.copy_(w_c)
    assert float(kernel_cp_loss(latent).detach()) == 0.0
    with torch.no_grad():
        latent[0][1].add_(0.1)
    assert float(kernel_cp_loss(latent).detach()) > 0


def test_kernel_cp_loss_value_and_gradient_flow():
    w_p = torch.randn(3, 2, 3, 3, requires_grad=True)
    w_c = torch.randn(3, 2, 3, 3, requires_grad=True)
    loss = kernel_cp_loss([(w_p, w_c)])
    expected = ((w_c - w_p) ** 2).flatten(1).mean(1).sum()  # sum over filters of per-filter MSE
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert w_p.grad is None  # the Parent is a fixed target
    assert w_c.grad is not None and w_c.grad.abs().sum() > 0


def test_cp_loss_covers_only_the_sampled_ops():
    m = make()
    m.begin_epoch(0, m.planned_epochs())
    sample = m.current_sample()
    n_pre = sum(1 for owner, _, _ in m._pairs if owner is None)
    expected = n_pre
    for owner, _, _ in m._pairs:
        if owner is not None:
            i, e, k = owner
            c = int(m.child.cells[i].reduction)
            expected += int(sample[c, e] == k)
    assert len(m.active_kernel_pairs()) == expected < len(m._pairs)


# -- sampling ------------------------------------------------------------------------------
def test_sampling_without_replacement_covers_each_remaining_op_once_per_round():
    m = make()
    seen_rounds = 0
    while not m.finished and seen_rounds < 3:
        k = m.ops_left()
        remaining = m.remaining.clone()
        samples = []
        for _ in range(k):
            m.begin_epoch(m.epochs_done, m.planned_epochs())
            s = m.current_sample().clone()
            # the supernet masks keep exactly the sampled op, and only it is computed
            for net in (m.parent, m.child):
                masks = torch.stack([net.mask_normal, net.mask_reduce])
                assert torch.equal(masks.sum(-1), torch.ones(2, NUM_EDGES))
                assert torch.equal(masks.argmax(-1), s)
                for cell in net.cells:
                    for e, mixed in enumerate(cell.edges):
                        assert mixed.active == (int(s[int(cell.reduction), e]),)
            samples.append(s)
            m.record(50.0, 40.0)
        stacked = torch.stack(samples, -1)  # [2, 14, k]
        for c in range(2):
            for e in range(NUM_EDGES):
                assert sorted(stacked[c, e].tolist()) == remaining[c, e].nonzero().flatten().tolist()
        assert m.ops_left() == k - 1  # one op dropped per edge at the end of the round
        seen_rounds += 1
    # the orders differ between edges (it is a random permutation per edge)
    assert len({tuple(stacked[0, e].tolist()) for e in range(NUM_EDGES)}) > 1


def test_pruning_follows_the_scores_and_none_never_survives():
    """Accuracies that depend only on the op sampled on normal edge 0: the highest-scoring op
    must survive there and the others must be dropped worst-first; 'none', given the best score,
    must still be dropped in the last round."""
    m = make(beta_p=0.5)
    order = []
    while not m.finished:
        op = int(m.current_sample()[0, 0])
        acc = 100.0 if op == NONE else 10.0 * op
        m.record(acc, acc - 5.0)
        order = [d for d in m.dropped if d[1] == "normal" and d[2] == 0]
    assert m.epochs_done == m.planned_epochs() == 35
    names = [d[3] for d in order]
    assert names == list(PRIMITIVES[1:7]) + ["none"]
    assert m.remaining[0, 0].nonzero().flatten().tolist() == [PRIMITIVES.index("dil_conv_5x5")]
    assert (m.remaining.sum(-1) == 1).all()
    assert (m.remaining[:, :, NONE] == 0).all()
    assert len(m.dropped) == 7 * 2 * NUM_EDGES


def test_schedule_length_and_caps():
    assert make().planned_epochs() == 8 + 7 + 6 + 5 + 4 + 3 + 2
    assert make(include_none=False).planned_epochs() == 7 + 6 + 5 + 4 + 3 + 2
    assert make(sweeps_per_round=2).planned_epochs() == 70
    assert make(samples_per_round=2).planned_epochs() == 14
    m = make(include_none=False, samples_per_round=3)
    assert (m.remaining[:, :, NONE] == 0).all()
    n = 0
    while not m.finished:
        m.record(50.0, 50.0)
        n += 1
    assert n == m.planned_epochs() == 3 * 5 + 2
    assert (m.remaining.sum(-1) == 1).all()


# -- genotype ------------------------------------------------------------------------------
def test_genotype_valid_before_during_and_after():
    m = make()
    g = m.genotype()
    Genotype.from_dict(g.to_dict())
    assert g.meta["finished"] is False
    for _ in range(11):  # into round 1
        m.record(50.0, 40.0)
    Genotype.from_dict(m.genotype().to_dict())


def test_genotype_ranks_edges_by_accumulated_score():
    """Normal node 0 takes edges 0 and 1; node 1 (edges 2, 3, 4) must keep the two edges whose
    surviving ops scored best."""
    m = make()
    while not m.finished:
        s = m.current_sample()
        # edge 4 and edge 2 are helped by anything non-pooling; edge 3 never
        bonus = 5.0 * float(s[0, 4] > 3) + 3.0 * float(s[0, 2] > 3)
        m.record(50.0 + bonus, 40.0 + bonus)
    g = m.genotype()
    assert g.meta["finished"] is True
    assert sorted(i for _, i in g.normal[2:4]) == [0, 2]   # edges 2 (input 0) and 4 (input 2)
    # every op of the genotype is the one op left on its edge
    starts = [0, 2, 5, 9]
    for node, (op, inp) in enumerate(g.normal):
        edge = starts[node // 2] + inp
        assert m.remaining[0, edge].nonzero().flatten().tolist() == [PRIMITIVES.index(op)]


# -- full schedule with real training ------------------------------------------------------
def test_full_schedule_with_training_ends_with_one_op_per_edge():
    m = make(C=4, layers=2)
    train, val = batches(1, seed=1), batches(1, seed=2)
    run_epochs(m, m.planned_epochs(), train, val)
    assert m.finished and m.epochs_done == 35
    assert (m.remaining.sum(-1) == 1).all()
    assert (m.remaining[:, :, NONE] == 0).all()
    for net in (m.parent, m.child):  # the supernets now run exactly the chosen op per edge
        masks = torch.stack([net.mask_normal, net.mask_reduce])
        assert torch.equal(masks, m.remaining.to(masks))
    Genotype.from_dict(m.genotype().to_dict())
    assert m.end_epoch(35, val) == {}  # extra epochs are harmless


# -- resume --------------------------------------------------------------------------------
def test_state_dict_roundtrip_mid_round_continues_identically():
    train, val = batches(1, seed=1), batches(1, seed=2)
    a = make(seed=0)
    log_a: list = []
    run_epochs(a, 3, train, val, log_a)  # mid-round 0 (8 samples)
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    b = make(seed=9)  # another seed: the sampling state must come from the checkpoint
    b.load_state_dict(torch.load(buf, weights_only=True))
    log_b: list = []
    run_epochs(a, 7, train, val, log_a)  # crosses the end of round 0 (prune, new sweep)
    run_epochs(b, 7, train, val, log_b)
    assert all(torch.equal(x, y) for x, y in zip(log_a[3:], log_b))
    assert a.round == b.round == 1 and a.t == b.t
    for key in ("remaining", "total_sum", "total_cnt", "round_sum", "perm"):
        assert torch.equal(getattr(a, key), getattr(b, key)), key
    for x, y in zip(list(a.parent.parameters()) + list(a.child.parameters()),
                    list(b.parent.parameters()) + list(b.child.parameters())):
        assert torch.equal(x, y)
    assert a.genotype() == b.genotype()
    # and a fresh run with seed 9 would have sampled differently
    c = make(seed=9)
    assert not torch.equal(c.current_sample(), log_a[0])


# -- the Supernet.set_masks helper this method relies on ---------------------------------
def test_set_masks_skip_masked_same_output_and_no_gradient_for_skipped_ops():
    from backbones.supernet import Supernet
    torch.manual_seed(0)
    net = Supernet(4, 10, 3, binary=True).eval()
    g = torch.Generator().manual_seed(3)
    masks = (torch.rand(2, NUM_EDGES, len(PRIMITIVES), generator=g) < 0.4).float()
    masks[:, :, 4] = 1.0  # every edge keeps sep_conv_3x3 at least
    x = torch.randn(2, 3, 16, 16)
    net.set_masks(masks[0], masks[1], skip_masked=False)
    ref = net(x)
    assert all(m.active is None for c in net.cells for m in c.edges)
    net.set_masks(masks[0], masks[1], skip_masked=True)
    out = net(x)
    torch.testing.assert_close(out, ref)
    out.sum().backward()
    cell = net.cells[0]
    for e, mixed in enumerate(cell.edges):
        for k, op in enumerate(mixed.ops):
            grads = [p.grad for p in op.parameters()]
            if masks[0, e, k] == 0:
                assert all(gr is None for gr in grads)
    with pytest.raises(ValueError):
        net.set_masks(torch.zeros(NUM_EDGES, len(PRIMITIVES)), masks[1])


# -- the CP loss in retraining (train.cp_loss) ------------------------------------------------
def test_cp_loss_in_retraining_pulls_the_1bit_kernels_to_the_parent(tmp_path):
    """`harness train` with train.cp_loss: a real Parent of the same genotype trains beside the
    1-bit network; its kernels are the CP loss's targets, logged per step, and resumable."""
    import json
    import yaml
    from harness.cli import main
    from harness.stages import train as train_stage
    from harness.data import generate_cifar_like
    data = tmp_path / "cifar"
    generate_cifar_like(data, n_train=64, n_test=32)
    params = {"profile": "smoke", "seeds": [0], "search_runs": [],
              "paths": {"data": str(tmp_path / "d"), "runs": str(tmp_path / "runs"),
                        "results": str(tmp_path / "r")},
              "profiles": {"smoke": {"data": {"name": "cifar10", "root": str(data)},
                                     "train": {"C": 4, "layers": 3, "epochs": 1,
                                               "batch_size": 16, "max_steps_per_epoch": 2,
                                               "cp_loss": {"weight": 1.0,
                                                           "compact_weight": 0.1}}}}}
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    seen = []
    real_step = train_stage.CPParent.step

    def spy(self, x, y, cfg):
        seen.append(len(self.pairs))
        return real_step(self, x, y, cfg)
    train_stage.CPParent.step = spy
    try:
        assert main(["--params", str(path), "train", "--method", "dcpnas_l"]) == 0
    finally:
        train_stage.CPParent.step = real_step
    assert seen and seen[0] > 10   # every binary conv of the cells has its Parent kernel
    m = json.loads((tmp_path / "runs/smoke/train/dcpnas_l/seed0/metrics.json").read_text())
    assert m["history"][0]["cp_loss"] > 0 and m["history"][0]["parent_loss"] > 0
    ckpt = torch.load(tmp_path / "runs/smoke/train/dcpnas_l/seed0/checkpoint_train.pt",
                      weights_only=True)
    assert "parent" in ckpt["task"] and "parent_optimizer" in ckpt["task"]


def test_intra_class_compactness_by_hand():
    from backbones.losses import intra_class_compactness
    f = torch.tensor([[0.0, 0.0], [2.0, 0.0], [5.0, 5.0]])
    y = torch.tensor([1, 1, 3])
    # class 1 centre (1, 0): distances 1, 1; class 3 alone: 0 -> mean 2/3
    assert float(intra_class_compactness(f, y)) == pytest.approx(2 / 3)
