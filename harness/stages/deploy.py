"""`harness deploy`: a retrained 1-bit network on OpenVINO's bit-packed CPU kernels.

Writes runs/<profile>/deploy/<name>/seed<k>/: ir/binary/model.xml+.bin (every conv with
binary weights and binary input is a BinaryConvolution), ir/fp32/model.xml+.bin (the same
function on FP32 kernels; each pair replaced as a whole, ``openvino_ir.save_ir``) and
metrics.json: agreement with PyTorch on the test set, then latency (batch 1; 1 thread and all
threads), throughput, IR size, peak memory and per-layer time of the binary IR, the FP32 IR
and PyTorch eager, measured side by side in one run, with the speed-up the OPs count predicts.

A real-valued network (no 1-bit conv at all: a torchvision or timm model, a real NAS network)
is deployed as the full-precision point of the comparison: FP32 IR and PyTorch only, measured
the same way, so "what 1-bit buys" is read against a real network's latency, not only against
the 1-bit network's own FP32 translation. A network with 1-bit convs none of which has binary
input is refused: it is meant to be 1-bit, and nothing of it could run on binary kernels.

``--paper-size`` deploys the network at its paper size (``deploy.paper_size``: DCP-NAS-L is
C=108, 10 cells, ImageNet stem, 224x224) untrained: latency does not depend on the values of
the weights, and agreement is then checked on random inputs.
"""
from __future__ import annotations

import copy
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from torch import nn

from backbones.checkpoint import build_network, load_network, nas_arch
from backbones.distributed import cpu_model
from backbones.binary import binary_convs, set_weight_binarization
from backbones.genotypes import PUBLISHED
from harness.config import Params
from harness.costs import model_cost
from harness.deploy.engines import ENGINES, EngineJob, all_threads, measure_engines
from harness.deploy.openvino_ir import (DeployError, OPENVINO_VERSION, check_binary_runtime,
                                        RewriteResult, compile_ir, convert, ir_xml,
                                        require_openvino, rewrite_binary_convs, save_ir)
from harness.records import DeployRecord, read_record
from harness.provenance import data_digest, file_sha256, fingerprint, now_iso
from harness.stages.common import (common_metrics, ensure_writable, locked, resolve_network,
                                   run_dir, stage_provenance, write_metrics)

#: below this top-1 agreement (%) of the binary IR with PyTorch the deploy stage stops: near-0
#: sign inputs flip a few images (99-100 % measured), a mistranslated rewrite most (20 % seen)
MIN_AGREEMENT = 95.0
MIN_AGREEMENT_IMAGES = 100
#: random inputs of the agreement check of an untrained (paper-size) network
RANDOM_CHECK_IMAGES = 8


def _paper_size_record(params: Params, name: str, seed: int) -> dict[str, Any]:
    """Arch record of ``name`` (a published cell or a search run's genotype) at paper size."""
    size = params.active.deploy.paper_size
    named = resolve_network(params, name, seed, flag="--paper-size")
    if named.genotype is None:
        raise DeployError(f"--paper-size {name!r}: a backbone without cells; expected a search "
                          f"run or a published cell ({', '.join(PUBLISHED)})")
    genotype = named.genotype
    return nas_arch(genotype, C=size.C, layers=size.layers, stem=size.stem,
                    num_classes=size.num_classes, binarizer=params.active.train.binarizer)


def _load_trained(params: Params, name: str, seed: int) -> tuple[nn.Module, dict[str, Any], Path]:
    path = run_dir(params, "train", name, seed) / "model.pt"
    if not path.is_file():
        raise DeployError(f"backbone {name!r}: no retrained checkpoint at {path}; run `harness "
                          f"train --method {name} --seed {seed}` first (or deploy an untrained "
                          f"network at paper size with --paper-size)")
    net, record = load_network(path)
    return net, record, path


def _input_size(params: Params, record: dict[str, Any], paper_size: bool) -> int:
    if paper_size:
        return params.active.deploy.paper_size.image_size
    return 32 if params.active.data.name == "cifar10" else params.active.data.image_size


#: sign inputs closer to 0 than this can flip under float reassociation (fused BN/PReLU)
NEAR_ZERO = 1e-6


class _near_threshold_counter:
    """Counts, over PyTorch forward passes, the binary-conv inputs within NEAR_ZERO of the
    sign threshold: the values whose bit a differently fused float computation may flip."""

    def __init__(self, net: nn.Module) -> None:
        self.total = self.near = 0
        self.handles = [c.register_forward_hook(self._hook) for c in binary_convs(net)
                        if c.binary_input]

    def _hook(self, module: nn.Module, inputs: tuple[torch.Tensor, ...], output: Any) -> None:
        x = inputs[0]
        self.total += x.numel()
        self.near += int((x.abs() < NEAR_ZERO).sum())

    def close(self) -> None:
        for h in self.handles:
            h.remove()


def _agreement(net: nn.Module, compiled: dict[str, Any], batches: list[torch.Tensor],
               labels: list[torch.Tensor] | None) -> dict[str, Any]:
    """PyTorch vs each compiled IR ({engine: compiled model}) on the same images; PyTorch
    float64 as the floor: sign() is discontinuous, so rounding differences upstream flip bits."""
    net64 = copy.deepcopy(net).double().eval()
    near = _near_threshold_counter(net)
    logits: dict[str, list[np.ndarray]] = {k: [] for k in ("torch", "torch64", *compiled)}
    batch = int(next(iter(compiled.values())).input(0).get_shape()[0])
    with torch.inference_mode():
        for x in batches:
            n = x.shape[0]
            padded = torch.cat([x, x[:1].expand(batch - n, *x.shape[1:])]) if n < batch else x
            logits["torch"].append(net(x).numpy())
            logits["torch64"].append(net64(x.double()).numpy())
            for k, ir in compiled.items():
                logits[k].append(ir(padded.numpy())[0][:n])
    near.close()
    cat = {k: np.concatenate(v) for k, v in logits.items()}
    ref = cat["torch"]
    scale = float(np.abs(ref).max()) or 1.0
    out: dict[str, Any] = {"images": int(ref.shape[0]), "on": "test set" if labels else
                           "random inputs", "sign_inputs": near.total,
                           "sign_inputs_near_zero": near.near, "near_zero_tol": NEAR_ZERO}
    for k in (*compiled, "torch64"):
        dev = float(np.abs(cat[k] - ref).max())
        out[k] = {"top1_agreement": 100.0 * float((cat[k].argmax(1) == ref.argmax(1)).mean()),
                  "max_logit_dev": dev, "max_logit_dev_rel": dev / scale}
    if labels:
        y = torch.cat(labels).numpy()
        out["top1"] = {k: 100.0 * float((v.argmax(1) == y).mean()) for k, v in cat.items()
                       if k != "torch64"}
    return out


def _check_batches(params: Params, seed: int, paper_size: bool, shape: tuple[int, ...]
                   ) -> tuple[list[torch.Tensor], list[torch.Tensor] | None]:
    dep = params.active.deploy
    if paper_size:
        g = torch.Generator().manual_seed(seed)
        return [torch.randn(RANDOM_CHECK_IMAGES, *shape[1:], generator=g)], None
    from harness.data import build_train_loaders
    from harness.stages.common import data_config
    _, test_loader, _ = build_train_loaders(data_config(params, dep.throughput_batch), seed=seed)
    xs, ys, seen = [], [], 0
    for x, y in test_loader:
        if dep.test_images is not None and seen >= dep.test_images:
            break
        if dep.test_images is not None:
            x, y = x[: dep.test_images - seen], y[: dep.test_images - seen]
        xs.append(x)
        ys.append(y)
        seen += x.shape[0]
    return xs, ys


def _write_irs(net: nn.Module, shape: tuple[int, ...], irs: dict[str, Path], name: str,
               capable: int, real_valued: bool) -> tuple[dict[str, int], RewriteResult]:
    """Convert ``net`` and write its FP32 IR and (1-bit networks) its binary IR; {engine: IR
    bytes} and what the binary rewrite did. A real-valued network's folder keeps no binary IR."""
    sizes = {"fp32_ir": save_ir(convert(net, shape), irs["fp32_ir"])}
    if real_valued:
        if irs["binary_ir"].exists():
            shutil.rmtree(irs["binary_ir"])
        return sizes, RewriteResult()
    bin_model = convert(net, shape)
    rewrite = rewrite_binary_convs(bin_model)
    if not rewrite.binary_convs:
        reasons = sorted(set(rewrite.kept_fp32.values())) or ["no sign-input conv found"]
        raise DeployError(f"backbone {name!r}: none of its {capable} binary convs could become "
                          f"a BinaryConvolution ({'; '.join(reasons)})")
    sizes["binary_ir"] = save_ir(bin_model, irs["binary_ir"])
    return sizes, rewrite


def _check_agreement(agree: dict[str, Any], real_valued: bool, rewrite: RewriteResult,
                     label: str, console: Console) -> None:
    """Stop before timing an IR that computes another function than PyTorch (a few random
    inputs of an untrained network are too few to judge by); warn below 99 %."""
    ir_name = "FP32" if real_valued else "binary"
    agreement = agree["fp32_ir" if real_valued else "binary_ir"]["top1_agreement"]
    if agreement < MIN_AGREEMENT and agree["images"] >= MIN_AGREEMENT_IMAGES:
        why = ("OpenVINO's conversion changes this network" if real_valued else
               f"the BinaryConvolution rewrite mistranslates this network (kept FP32: "
               f"{len(rewrite.kept_fp32)} convs)")
        raise DeployError(f"{label}: the {ir_name} IR agrees with PyTorch on only "
                          f"{agreement:.2f}% of {agree['images']} images (expected >= "
                          f"{MIN_AGREEMENT:g}%): {why}; nothing is timed")
    if agreement < 99.0:
        console.print(f"[bold yellow]warning:[/] {label}: the {ir_name} IR agrees with PyTorch "
                      f"on only {agreement:.2f}% of {agree['images']} images (target >= 99%)")


def run_deploy(params: Params, name: str, seed: int, *, paper_size: bool = False,
               console: Console | None = None) -> dict[str, Any]:
    console = console or Console(stderr=True)
    started, t0 = now_iso(), time.perf_counter()
    ov = require_openvino()
    if paper_size:
        record = _paper_size_record(params, name, seed)
        torch.manual_seed(seed)
        net, checkpoint = build_network(record, f"{name} at paper size"), None
    else:
        net, record, checkpoint = _load_trained(params, name, seed)
    net.eval()
    set_weight_binarization(net, True)
    one_bit = list(binary_convs(net))
    capable = [c for c in one_bit if c.binary_input]
    if one_bit and not capable:
        raise DeployError(f"backbone {name!r} ({type(net).__name__}) has {len(one_bit)} 1-bit "
                          f"convs but none with binary activations: nothing of it can run on "
                          f"BinaryConvolution")
    real_valued = not one_bit
    engines_run = tuple(e for e in ENGINES if not (real_valued and e == "binary_ir"))
    train_metrics = run_dir(params, "train", name, seed) / "metrics.json"
    method = read_record(train_metrics).method if not paper_size and train_metrics.is_file() \
        else name                                  # read before the minutes of timing below
    label = f"{name}-paper" if paper_size else name
    out = ensure_writable(run_dir(params, "deploy", label, seed))
    dep = params.active.deploy
    # the images the agreement check reads (ImageNet: its val folder only, not 1.28 M files)
    d = params.active.data
    data = None if paper_size else data_digest(
        Path(d.root) / "val" if d.name == "imagenet" else d.root)
    fp = fingerprint("deploy", [record, dep, paper_size, seed], world_size=1, data=data,
                     **({"checkpoint": file_sha256(checkpoint)} if checkpoint else {}))
    with locked(out, f"`harness deploy --backbone {name} --seed {seed}`"):
        size = _input_size(params, record, paper_size)
        shape = (1, 3, size, size)

        irs = {e: out / "ir" / e.split("_")[0] for e in ENGINES if e != "torch"}
        with console.status(f"deploy {label}: converting to OpenVINO IR"):
            sizes, rewrite = _write_irs(net, shape, irs, name, len(capable), real_valued)
        kernels: dict[str, int] = {}
        compiled = {e: compile_ir(ir_xml(irs[e]), batch=dep.throughput_batch)
                    for e in engines_run if e != "torch"}
        if not real_valued:
            kernels = check_binary_runtime(compiled["binary_ir"], len(rewrite.binary_convs),
                                           f"{label} binary IR")
        with console.status(f"deploy {label}: agreement with PyTorch"):
            batches, labels = _check_batches(params, seed, paper_size, shape)
            agree = _agreement(net, compiled, batches, labels)
        del compiled
        _check_agreement(agree, real_valued, rewrite, label, console)

        jobs = [EngineJob(engine=e, input_shape=shape, runs=dep.runs, warmup=dep.warmup,
                          throughput_batch=dep.throughput_batch, seed=seed,
                          ir=str(ir_xml(irs[e])) if e != "torch" else None,
                          record=record if e == "torch" else None,
                          checkpoint=str(checkpoint) if e == "torch" and checkpoint else None)
                for e in engines_run]
        with console.status(f"deploy {label}: timing {', '.join(engines_run)} "
                            f"({dep.runs} runs each, 1 and {all_threads()} threads)"):
            engines = measure_engines(jobs)

        cost = model_cost(net, shape[1:])
        fp_ops = cost.flops_m + cost.bops_m          # every binary MAC as a FP MAC
        sizes["torch"] = sum(t.numel() * t.element_size() for t in net.state_dict().values())
        for e in engines_run:
            engines[e]["weights_bytes"] = sizes[e]

        def speedup(label_: str) -> float | None:
            if real_valued:
                return None
            return (engines["fp32_ir"][f"latency_{label_}"]["median_ms"]
                    / engines["binary_ir"][f"latency_{label_}"]["median_ms"])

        result = DeployRecord(
            **common_metrics(params, method, seed, f"cpu:{cpu_model()}", "cpu"),
            run=label, backbone=name, paper_size=paper_size, trained=checkpoint is not None,
            checkpoint=str(checkpoint) if checkpoint else None, input_shape=list(shape),
            openvino_version=ov.__version__, cpu_model=cpu_model(), threads_all=all_threads(),
            binary_capable_convs=len(capable), binary_convs=len(rewrite.binary_convs),
            kept_fp32=rewrite.kept_fp32, runtime_binary_kernels=kernels,
            params_m=cost.params_m, flops_m=cost.flops_m, bops_m=cost.bops_m, ops_m=cost.ops_m,
            real_valued=real_valued, fp_ops_m=fp_ops,
            predicted_speedup=None if real_valued else fp_ops / cost.ops_m,
            measured_speedup_1t=speedup("1t"), measured_speedup_all=speedup("all"),
            agreement=agree, engines=engines,
            provenance=stage_provenance("deploy", fp, data, started, t0))
        metrics = write_metrics(out / "metrics.json", result)
    if OPENVINO_VERSION not in ov.__version__:
        console.print(f"[yellow]note:[/] openvino {ov.__version__} (verified with "
                      f"{OPENVINO_VERSION})")
    return metrics
