"""Export a 1-bit network to OpenVINO IR with real bit-packed binary convolutions.

``ov.convert_model`` traces the network into ordinary ops: every binary weight becomes a
constant +-m (sign times the per-channel scale, folded), and our activation sign
(``backbones.binary._sign``: sign(sign(x) + 1/2), so sign(0) = +1) becomes Sign -> Add(0.5) ->
Sign. That graph is the **FP32 IR**: the same function on ordinary FP32 kernels.

The **binary IR** rewrites each Convolution whose input is that sign pattern and whose weights
are +-m_o per output channel into
``BinaryConvolution(FakeQuantize_2(x), u1 kernel, "xnor-popcount", pad_value=0) * m``:
- FakeQuantize with levels=2, in [-2e-30, 0] -> out [-1, +1]. The CPU plugin fuses it into the
  binary conv as a threshold (bit = x > threshold): with this interval x = 0 maps to +1, as our
  sign does (a symmetric [-1, 1] interval maps 0 to -1; in_low = in_high = 0 gives NaN when
  the FakeQuantize is not fused), and the unfused reference formula gives the same values;
- a per-channel constant added just before the sign (ReActNet's RSign shift: sign(x + b)) is
  folded into the interval, [nextafter(-b), -b] per channel: left in the graph, the CPU plugin
  folds it itself into [-2e-30 - b, -b], which float32 rounds to an empty interval
  (in_low = in_high), and the binary IR then disagreed with PyTorch on most images;
- the kernel is the sign bits (1 = +1), packed LSB-first into a u1 constant;
- pad_value 0 makes the kernel skip padded positions, which is exactly a zero-padded conv of
  +-1 input (checked in tests/test_deploy.py on 3x3 convs);
- xnor-popcount computes sum(x_b * w_b) over +-1 values, so times m_o it is the original conv.
Grouped (depthwise) binary convs have no binary kernel and stay FP32, as do convs whose input
is real (the official layout's depthwise and 1x1 preprocessing convs).
"""
from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
from torch import nn

from backbones.atomic import UMASK
from harness.deploy.signal_stack import roomy_alt_stack

#: the version the rewrite and its runtime check were verified with (docs/deployment.md: why pinned)
OPENVINO_VERSION = "2026.4.1"
#: FakeQuantize interval that reproduces sign(0) = +1 fused and unfused (module docstring)
BIN_IN_LOW, BIN_IN_HIGH = -2e-30, 0.0


class DeployError(ValueError):
    """A network cannot be deployed as asked (reported as one line by the CLI)."""


def require_openvino() -> ModuleType:
    try:
        import openvino as ov
    except ImportError as exc:
        raise DeployError(f"openvino is not installed ({exc}); `make install` installs "
                          f"openvino=={OPENVINO_VERSION} (or pip install "
                          f"openvino=={OPENVINO_VERSION})") from None
    return ov


@dataclass
class RewriteResult:
    """What the binary rewrite did: rewritten convs, and binary-input convs left in FP32."""
    binary_convs: list[str] = field(default_factory=list)
    kept_fp32: dict[str, str] = field(default_factory=dict)   # friendly name -> why


def convert(net: nn.Module, input_shape: tuple[int, ...]) -> Any:
    """The network as an ov.Model with the static input shape ``input_shape`` (FP32 IR)."""
    ov = require_openvino()
    net = net.eval()
    try:
        # OpenVINO traces with torch.jit, which warns that it is deprecated on every call
        with torch.no_grad(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning, module="torch.jit")
            return ov.convert_model(net, example_input=torch.zeros(input_shape),
                                    input=[list(input_shape)])
    except Exception as exc:   # the frontend raises OpConversionFailure / RuntimeError
        msg = str(exc).strip().splitlines()
        words = {w.strip("'\",.:") for line in msg for w in line.split()}
        ops = sorted(w for w in words if w.startswith(("aten::", "prim::"))
                     and w != "prim::Constant")
        what = f"unsupported op(s) {', '.join(ops)}" if ops else (msg[0] if msg else repr(exc))
        raise DeployError(f"OpenVINO {ov.__version__.split('-')[0]} cannot convert "
                          f"{type(net).__name__}: {what}") from None


def _sign_input(conv: Any) -> Any | None:
    """x when the conv's input is Sign(Add(Sign(x), 0.5)) (our sign), or Sign(x); else None."""
    s2 = conv.input_value(0).get_node()
    if s2.get_type_name() != "Sign":
        return None
    inner = s2.input_value(0).get_node()
    if inner.get_type_name() != "Add":
        return s2.input_value(0)
    a, b = (inner.input_value(i).get_node() for i in (0, 1))
    sign, const = (a, b) if a.get_type_name() == "Sign" else (b, a)
    if sign.get_type_name() != "Sign" or const.get_type_name() != "Constant" or \
            not np.allclose(const.get_data(), 0.5):
        return s2.input_value(0)
    return sign.input_value(0)


def _fold_shift(x: Any) -> tuple[Any, Any, Any]:
    """(input, in_low, in_high) of the FakeQuantize that binarizes ``x`` as our sign does; when
    ``x`` = y + c with a constant c (scalar or per channel), the FakeQuantize reads y with the
    interval moved by -c, each bound exact in float32 (module docstring)."""
    f32 = np.float32
    node = x.get_node()
    if node.get_type_name() == "Add":
        a, b = node.input_value(0), node.input_value(1)
        y, c = (a, b) if b.get_node().get_type_name() == "Constant" else (b, a)
        if c.get_node().get_type_name() == "Constant":
            shift = c.get_node().get_data().astype(f32)
            high = -shift
            low = np.minimum(np.nextafter(high, f32(-np.inf)), high + f32(BIN_IN_LOW))
            return y, low.astype(f32), high.astype(f32)
    return x, f32(BIN_IN_LOW), f32(BIN_IN_HIGH)


def _plus_minus_scale(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(sign bits, m) when every output channel's weights are +-m_o, else None."""
    w = weights.reshape(weights.shape[0], -1).astype(np.float32)
    m = np.abs(w).max(axis=1)
    if not np.allclose(np.abs(w), m[:, None], rtol=1e-5, atol=1e-12):
        return None
    return (w >= 0), m


def pack_u1(bits: np.ndarray, shape: tuple[int, ...]) -> Any:
    """A u1 constant of ``shape`` from 0/1 ``bits``, packed LSB-first (OpenVINO's u1 order)."""
    ov = require_openvino()
    tensor = ov.Tensor(ov.Type.u1, ov.Shape(list(shape)))
    tensor.data[:] = np.packbits(bits.reshape(-1).astype(np.uint8), bitorder="little")
    return ov.op.Constant(tensor)


def rewrite_binary_convs(model: Any) -> RewriteResult:
    """Replace, in place, every conv with binary weights and binary input by a
    BinaryConvolution times its per-channel scale (module docstring)."""
    from openvino import opset1
    result = RewriteResult()
    for node in list(model.get_ops()):
        kind = node.get_type_name()
        if kind not in ("Convolution", "GroupConvolution"):
            continue
        x = _sign_input(node)
        if x is None:
            continue                     # real input: an ordinary conv
        name = node.get_friendly_name()
        if kind == "GroupConvolution":
            result.kept_fp32[name] = "grouped conv (no binary kernel for groups)"
            continue
        w_node = node.input_value(1).get_node()
        if w_node.get_type_name() != "Constant":
            result.kept_fp32[name] = f"weights are computed ({w_node.get_type_name()})"
            continue
        weights = w_node.get_data()
        if weights.shape[1] % 8:
            # measured: with 4 input channels the CPU plugin's BinaryConvolution disagrees
            # with the conv (1x1 and 3x3); from 8 on it is exact (tests/test_deploy.py)
            result.kept_fp32[name] = (f"{weights.shape[1]} input channels, not a multiple of 8 "
                                      f"(the binary kernel computes such convs wrongly)")
            continue
        split = _plus_minus_scale(weights)
        if split is None:
            result.kept_fp32[name] = "weights are not +-m per output channel (real weights)"
            continue
        bits, m = split
        f32 = np.float32
        x, low, high = _fold_shift(x)
        fq = opset1.fake_quantize(x, low, high, f32(-1.0), f32(1.0), 2)
        bconv = opset1.binary_convolution(
            fq, pack_u1(bits, weights.shape), list(node.get_strides()),
            list(node.get_pads_begin()), list(node.get_pads_end()), list(node.get_dilations()),
            "xnor-popcount", 0.0, name=f"{name}/binary")
        out = opset1.multiply(bconv, m.reshape(1, -1, 1, 1).astype(np.float32),
                              name=f"{name}/scale")
        node.output(0).replace(out.output(0))
        result.binary_convs.append(name)
    model.validate_nodes_and_infer_types()
    return result


IR_XML = "model.xml"


def ir_xml(folder: Path) -> Path:
    """The .xml of the IR pair in ``folder`` (its .bin lies beside it)."""
    return folder / IR_XML


def save_ir(model: Any, folder: Path) -> int:
    """Write the IR pair ``folder/model.xml`` + ``model.bin`` (FP32 kept: no FP16 compression);
    returns the .bin size in bytes. The pair is written into a temporary folder that then takes
    ``folder``'s place (the old pair is moved aside first and removed after), so a kill at any
    point leaves either the old pair or the new one, never a mix; what a kill leaves aside is
    removed when the run folder is next locked (``harness.runs.remove_stale_temps``)."""
    import os
    import shutil
    import tempfile
    ov = require_openvino()
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
    try:
        ov.save_model(model, str(ir_xml(tmp)), compress_to_fp16=False)
        os.chmod(tmp, 0o777 & ~UMASK)   # mkdtemp makes 0700
        old = None
        if folder.exists():
            old = folder.with_name(f".{folder.name}.old-{os.getpid()}")
            os.replace(folder, old)
        os.replace(tmp, folder)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return ir_xml(folder).with_suffix(".bin").stat().st_size


def compile_ir(xml: Path | Any, threads: int | None = None, perf_count: bool = False,
               batch: int | None = None) -> Any:
    """Compile an IR (path or ov.Model) on the CPU in FP32 (no bf16 downcast), latency mode."""
    ov = require_openvino()
    core = ov.Core()
    model = core.read_model(str(xml)) if isinstance(xml, (str, Path)) else xml
    if batch is not None:
        shape = list(model.input(0).get_partial_shape().to_shape())
        if shape[0] != batch:
            model.reshape({0: [batch, *shape[1:]]})
    config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY",
                              "NUM_STREAMS": 1, "PERF_COUNT": perf_count}
    if threads is not None:
        config["INFERENCE_NUM_THREADS"] = threads
    compiled = core.compile_model(model, "CPU", config)
    roomy_alt_stack()     # the plugin's own is too small for AMX signal frames (signal_stack.py)
    return compiled


def runtime_layer_types(compiled: Any) -> Counter[tuple[str, str]]:
    """(layer type, kernel) of every node of the compiled runtime graph."""
    out: Counter[tuple[str, str]] = Counter()
    for op in compiled.get_runtime_model().get_ops():
        info = op.get_rt_info()
        layer = info["layerType"].astype(str) if "layerType" in info else op.get_type_name()
        prim = info["primitiveType"].astype(str) if "primitiveType" in info else ""
        out[(layer, prim)] += 1
    return out


def check_binary_runtime(compiled: Any, expected: int, what: str) -> dict[str, int]:
    """The compiled graph runs ``expected`` BinaryConvolutions on a bit-packed kernel, or
    DeployError. Returns {kernel name: count} of the binary layers (e.g. jit_avx512_u1)."""
    kernels = {prim: n for (layer, prim), n in runtime_layer_types(compiled).items()
               if layer == "BinaryConvolution"}
    found = sum(kernels.values())
    if found == 0:
        raise DeployError(f"{what}: the compiled model runs no BinaryConvolution (the CPU "
                          f"plugin fell back to other kernels); nothing is measured")
    if found != expected:
        raise DeployError(f"{what}: {expected} binary convs were written to the IR but the "
                          f"compiled model runs {found} BinaryConvolution layers")
    return kernels
