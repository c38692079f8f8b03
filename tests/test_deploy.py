"""`harness deploy`: the BinaryConvolution rewrite is exact, the stage measures a retrained
network side by side, and bad input ends in one clear error."""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("openvino")

from backbones.binary import BinaryConv2d, binary_convs  # noqa: E402
from backbones.registry import create_backbone  # noqa: E402
from harness.cli import main  # noqa: E402
from harness.deploy.openvino_ir import (DeployError, check_binary_runtime, compile_ir,  # noqa: E402
                                 convert, require_openvino, rewrite_binary_convs)
from tests.test_pipeline import tiny_params  # noqa: E402


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _binary_ir(net: nn.Module, shape: tuple[int, ...]):
    model = convert(net, shape)
    rewrite = rewrite_binary_convs(model)
    compiled = compile_ir(model)
    kernels = check_binary_runtime(compiled, len(rewrite.binary_convs), "test")
    return compiled, rewrite, kernels


@pytest.mark.parametrize("binarizer", ["official", "mean_abs"])
@pytest.mark.parametrize("kernel,stride,padding", [(3, 1, 1), (1, 2, 0), (5, 1, 2)])
def test_single_binary_conv_is_exact(binarizer, kernel, stride, padding):
    """One BinaryConv2d: xnor-popcount on packed bits times m equals the PyTorch conv,
    including sign(0) = +1 (exact zeros in the input) and zero padding at the borders."""
    torch.manual_seed(0)
    conv = BinaryConv2d(16, 8, kernel, stride, padding, bias=False, binarizer=binarizer).eval()
    x = torch.randn(1, 16, 9, 9)
    x[0, :4, 2, 2] = 0.0
    x[0, 4:6, 3, 3] = -0.0
    compiled, rewrite, kernels = _binary_ir(conv, tuple(x.shape))
    assert len(rewrite.binary_convs) == 1 and sum(kernels.values()) == 1
    with torch.no_grad():
        ref = conv(x).numpy()
    got = compiled(x.numpy())[0]
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)


def test_sign_of_zero_would_differ_with_a_symmetric_interval():
    """The FakeQuantize interval matters: [-1, 1] maps 0 to -1, ours maps it to +1 (so the
    test above can fail)."""
    ov = require_openvino()
    from openvino import opset1
    p = opset1.parameter([1, 4], np.float32)
    x = np.array([[0.0, -0.3, 0.3, 1e-8]], np.float32)
    f32 = np.float32
    sym = opset1.fake_quantize(p, f32(-1), f32(1), f32(-1), f32(1), 2)
    ours = opset1.fake_quantize(p, f32(-2e-30), f32(0), f32(-1), f32(1), 2)
    core = ov.Core()
    assert core.compile_model(ov.Model([sym], [p]), "CPU")(x)[0][0, 0] == -1.0
    np.testing.assert_array_equal(core.compile_model(ov.Model([ours], [p]), "CPU")(x)[0],
                                  [[1.0, -1.0, 1.0, 1.0]])


def test_nas_network_agrees_and_keeps_depthwise_fp32():
    """A DCP-NAS-L cell network: every pointwise binary conv becomes a BinaryConvolution, the
    depthwise ones are listed as kept in FP32, and top-1 agrees with PyTorch."""
    torch.manual_seed(0)
    net = create_backbone("dcpnas_l", C=8, layers=3, num_classes=10, stem="cifar")
    with torch.no_grad():   # calibrate BN statistics so activations are O(1), as in training
        net.train()
        for _ in range(4):
            net(torch.randn(32, 3, 32, 32))
    net.eval()
    x = torch.randn(64, 3, 32, 32)
    model = convert(net, (64, 3, 32, 32))
    rewrite = rewrite_binary_convs(model)
    compiled = compile_ir(model)
    check_binary_runtime(compiled, len(rewrite.binary_convs), "test")
    capable = [m for m in net.modules() if isinstance(m, BinaryConv2d) and m.binary_input]
    assert len(rewrite.binary_convs) == len(capable) > 0
    assert not rewrite.kept_fp32      # depthwise convs have real input: never matched
    with torch.no_grad():
        ref = net(x).numpy()
    got = compiled(x.numpy())[0]
    assert (ref.argmax(1) == got.argmax(1)).mean() >= 0.99
    assert np.abs(got - ref).max() <= 0.05 * np.abs(ref).max()


def test_binary_input_group_conv_is_kept_fp32_and_reported():
    conv = BinaryConv2d(8, 8, 3, padding=1, groups=8, bias=False).eval()
    model = convert(conv, (1, 8, 6, 6))
    rewrite = rewrite_binary_convs(model)
    assert not rewrite.binary_convs
    assert "grouped" in next(iter(rewrite.kept_fp32.values()))


def test_unsupported_op_is_one_clear_error():
    class Svd(nn.Module):
        def forward(self, x):
            return torch.linalg.svd(x.flatten(2))[1]
    with pytest.raises(DeployError, match=r"cannot convert Svd: unsupported op\(s\) "
                                          r"aten::linalg_svd"):
        convert(Svd(), (1, 3, 4, 4))


def test_missing_openvino_is_one_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)
    with pytest.raises(DeployError, match="openvino is not installed.*make install"):
        require_openvino()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A retrained published cell (dcpnas_l) and a real-valued reference, on tiny settings."""
    tmp = tmp_path_factory.mktemp("deploy")
    params = tiny_params(tmp)
    doc = __import__("yaml").safe_load(params.read_text())
    doc["profiles"]["smoke"]["deploy"] = {"runs": 3, "warmup": 1, "throughput_batch": 8,
                                          "test_images": 40}
    params.write_text(__import__("yaml").safe_dump(doc))
    assert main(["--params", str(params), "prepare"]) == 0
    assert main(["--params", str(params), "train", "--method", "dcpnas_l"]) == 0
    return tmp, params


def test_deploy_stage_measures_three_engines(trained, capsys):
    tmp, params = trained
    assert main(["--params", str(params), "deploy", "--backbone", "dcpnas_l"]) == 0
    out = tmp / "runs/smoke/deploy/dcpnas_l/seed0"
    for f in ("ir/binary/model.xml", "ir/binary/model.bin", "ir/fp32/model.xml",
              "ir/fp32/model.bin", "metrics.json"):
        assert (out / f).is_file(), f
    m = json.loads((out / "metrics.json").read_text())
    assert m["stage"] == "deploy" and m["trained"] and m["binary_convs"] > 0
    narrow = [r for r in m["kept_fp32"].values() if "not a multiple of 8" in r]
    assert m["binary_convs"] + len(narrow) == m["binary_capable_convs"]
    assert sum(m["runtime_binary_kernels"].values()) == m["binary_convs"]
    a = m["agreement"]
    assert a["images"] == 40 and a["on"] == "test set"
    assert a["binary_ir"]["top1_agreement"] >= 99.0
    assert a["fp32_ir"]["max_logit_dev_rel"] < 1e-4    # same function, ordinary kernels
    assert set(a["top1"]) == {"torch", "binary_ir", "fp32_ir"}
    for engine in ("binary_ir", "fp32_ir", "torch"):
        e = m["engines"][engine]
        assert e["latency_1t"]["runs"] == 3 and e["latency_1t"]["median_ms"] > 0
        assert e["latency_1t"]["p90_ms"] >= e["latency_1t"]["median_ms"]
        assert e["throughput"]["batch"] == 8 and e["throughput"]["images_per_s"] > 0
        assert e["peak_mem_mb"] >= 0 and e["weights_bytes"] > 0
    # the binary IR stores 1 bit per binary weight: smaller than the FP32 IR
    assert m["engines"]["binary_ir"]["weights_bytes"] < m["engines"]["fp32_ir"]["weights_bytes"]
    kinds = {k["layer_type"] for k in m["engines"]["binary_ir"]["per_layer"]["by_type"]}
    assert "BinaryConvolution" in kinds
    assert m["predicted_speedup"] == pytest.approx(m["fp_ops_m"] / m["ops_m"])
    assert m["measured_speedup_1t"] == pytest.approx(
        m["engines"]["fp32_ir"]["latency_1t"]["median_ms"]
        / m["engines"]["binary_ir"]["latency_1t"]["median_ms"])
    # the report reads it into the deployment table and the latency-vs-OPs plot
    assert main(["--params", str(params), "report"]) == 0
    table = (tmp / "results/report/deployment.md").read_text()
    assert "dcpnas_l" in table and "BinaryConvolution" in table
    assert (tmp / "results/report/plots/deploy_latency_vs_ops.png").is_file()


def test_deploy_without_checkpoint_is_one_clear_error(trained, capsys):
    _, params = trained
    assert main(["--params", str(params), "deploy", "--backbone", "bireal_resnet18"]) == 2
    err = capsys.readouterr().err
    assert "no retrained checkpoint at" in err and "harness train --method bireal_resnet18" in err


def test_a_real_valued_network_is_deployed_on_fp32_kernels(trained, capsys):
    """No 1-bit conv: the full-precision point of the comparison, FP32 IR and PyTorch only;
    the report shows it beside the 1-bit rows."""
    tmp, params = trained
    ckpt = torch.load(tmp / "runs/smoke/train/dcpnas_l/seed0/model.pt", weights_only=True)
    record = ckpt["arch"]
    record["kwargs"]["binary"] = False
    real = create_backbone("nas", **{**record["kwargs"], "genotype": "dcpnas_l"})
    from backbones.atomic import atomic_torch_save
    out = tmp / "runs/smoke/train/real_net/seed0"
    out.mkdir(parents=True)
    atomic_torch_save({"model": real.state_dict(), "arch": record}, out / "model.pt")
    assert main(["--params", str(params), "deploy", "--backbone", "real_net"]) == 0
    assert "real-valued: no binary IR" in capsys.readouterr().err
    dep = tmp / "runs/smoke/deploy/real_net/seed0"
    m = json.loads((dep / "metrics.json").read_text())
    assert m["real_valued"] and m["binary_convs"] == m["binary_capable_convs"] == 0
    assert set(m["engines"]) == {"fp32_ir", "torch"} and "binary_ir" not in m["agreement"]
    assert m["predicted_speedup"] is None and m["measured_speedup_all"] is None
    assert m["agreement"]["fp32_ir"]["top1_agreement"] >= 99.0
    assert sorted(p.name for p in (dep / "ir").iterdir()) == ["fp32"]
    assert main(["--params", str(params), "report"]) == 0
    table = (tmp / "results/report/deployment.md").read_text()
    assert "real_net (real-valued)" in table and "– (real-valued)" in table
    assert (tmp / "results/report/plots/deploy_latency_vs_ops.png").is_file()


def test_a_1bit_network_without_binary_activations_is_one_clear_error(trained, monkeypatch,
                                                                      capsys):
    import harness.stages.deploy as deploy_stage
    load = deploy_stage._load_trained

    def weights_only_binary(*args):
        net, record, path = load(*args)
        for conv in binary_convs(net):
            conv.binary_input = False
        return net, record, path
    monkeypatch.setattr(deploy_stage, "_load_trained", weights_only_binary)
    _, params = trained
    assert main(["--params", str(params), "deploy", "--backbone", "dcpnas_l"]) == 2
    assert "1-bit convs but none with binary activations" in capsys.readouterr().err


def test_ir_pair_is_replaced_as_a_whole(tmp_path):
    """save_ir writes the .xml/.bin pair into a temporary folder that takes the old pair's
    place: no half-written or mismatched pair, no leftover after a normal write."""
    from harness.deploy.openvino_ir import ir_xml, save_ir
    conv = BinaryConv2d(8, 4, 3, 1, 1, bias=False).eval()
    folder = tmp_path / "binary"
    n1 = save_ir(convert(conv, (1, 8, 5, 5)), folder)
    first = ir_xml(folder).read_bytes()
    wide = BinaryConv2d(8, 16, 3, 1, 1, bias=False).eval()
    n2 = save_ir(convert(wide, (1, 8, 5, 5)), folder)
    assert n2 > n1 and ir_xml(folder).read_bytes() != first
    assert ir_xml(folder).with_suffix(".bin").stat().st_size == n2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["binary"]
    assert sorted(p.name for p in folder.iterdir()) == ["model.bin", "model.xml"]


@pytest.mark.parametrize("c_in,c_out,stride", [(16, 16, 1), (16, 32, 2)])
def test_reactnet_blocks_are_exact_on_binary_kernels(c_in, c_out, stride):
    """ReActNet-A's blocks (a learnable per-channel shift before each sign, RPReLU, duplicated
    1x1 convs): the shift is folded into the FakeQuantize interval, so the binary IR computes
    the block; left to the CPU plugin the interval became empty and the IR disagreed."""
    from backbones.reactnet import ReActBlock
    torch.manual_seed(0)
    block = ReActBlock(c_in, c_out, stride).eval()
    for m in block.modules():
        if hasattr(m, "shift"):
            m.shift.data.uniform_(-0.3, 0.3)
    x = torch.randn(2, c_in, 8, 8)
    with torch.no_grad():
        ref = block(x).numpy()
    compiled, rewrite, _ = _binary_ir(block, (2, c_in, 8, 8))
    assert len(rewrite.binary_convs) == 1 + c_out // c_in
    out = compiled(x.numpy())[0]
    assert np.abs(out - ref).max() < 1e-5 * max(1.0, np.abs(ref).max())


def test_narrow_binary_convs_stay_fp32():
    """With 4 input channels the CPU plugin's BinaryConvolution was measured wrong: such a conv
    is kept FP32 and says why."""
    conv = nn.Sequential(BinaryConv2d(4, 8, 3, 1, 1, bias=False)).eval()
    model = convert(conv, (1, 4, 8, 8))
    rewrite = rewrite_binary_convs(model)
    assert rewrite.binary_convs == [] and "not a multiple of 8" in next(iter(rewrite.kept_fp32.values()))


def test_a_binary_ir_that_disagrees_is_not_timed(trained, monkeypatch, capsys):
    """A rewrite that computes another function (ReActNet-A's, before its fix: 20 %) stops the
    stage with one line instead of recording the speed of a wrong function."""
    import harness.stages.deploy as deploy_stage
    real = deploy_stage._agreement

    def wrong(*args, **kwargs):
        out = real(*args, **kwargs)
        out["binary_ir"]["top1_agreement"] = 20.0
        return out
    monkeypatch.setattr(deploy_stage, "_agreement", wrong)
    monkeypatch.setattr(deploy_stage, "MIN_AGREEMENT_IMAGES", 1)
    tmp, params = trained
    assert main(["--params", str(params), "deploy", "--backbone", "dcpnas_l"]) == 2
    err = capsys.readouterr().err
    assert "agrees with PyTorch on only 20.00%" in err and "nothing is timed" in err


def test_compiling_leaves_a_roomy_signal_stack():
    """OpenVINO's CPU plugin leaves a 20 KiB alternate signal stack on the compiling thread, too
    small for AMX signal frames: a later SIGCHLD from a DataLoader worker then killed the
    process (SIGSEGV). After compile_ir the thread has none or one of ALT_STACK_BYTES."""
    from harness.deploy.signal_stack import ALT_STACK_BYTES, SS_DISABLE, current_alt_stack
    model = convert(BinaryConv2d(16, 16, 3, 1, 1, bias=False).eval(), (1, 16, 8, 8))
    compiled = compile_ir(model)
    compiled(np.zeros((1, 16, 8, 8), dtype=np.float32))
    flags, size = current_alt_stack()
    assert flags & SS_DISABLE or size >= ALT_STACK_BYTES, (flags, size)
