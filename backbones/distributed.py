"""Distributed helpers, one place: the process group torchrun describes (gloo on CPU, nccl on
GPU), this process's rank, and the collectives the harness does by hand (gradient means of a
bi-level step, reductions of Python numbers, means of tensor lists). Without a process group
every helper is the single-process identity. Only rank 0 writes artifacts; every rank computes
the same architecture."""
from __future__ import annotations

import os
import platform
from collections.abc import Iterable

import torch
import torch.distributed as dist
from torch import Tensor, nn


def init_from_env() -> bool:
    """Join the process group torchrun describes; returns True when distributed."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend=backend)
    return True


def is_dist() -> bool:
    return world_size() > 1


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if is_dist():
        dist.barrier()


def device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo), or the architecture where that is unreadable."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe_device(device: torch.device) -> tuple[str, str]:
    """(description, kind) of where a run computes, one format for every record:
    ('cuda:NVIDIA H100', 'gpu') or ('cpu:AMD EPYC 7B13 2 threads', 'cpu')."""
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}", "gpu"
    return f"cpu:{cpu_model()} {torch.get_num_threads()} threads", "cpu"


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def world_size() -> int:
    """Processes in the default process group; 1 when none is initialised."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    """This process's rank in the default process group; before one is initialised, torchrun's
    ``RANK`` (a library may start the group later: mmengine's Runner does), else 0."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return int(os.environ.get("RANK", "0"))


def average_gradients(params: Iterable[nn.Parameter]) -> None:
    """All-reduce (mean) the gradients across ranks, so that weights and alpha take identical
    steps on every rank: the data-parallel part of DDP, done by hand because a bi-level search
    updates two parameter groups on two different batches per step."""
    world = world_size()
    if world == 1:
        return
    for p in params:
        if p.grad is not None:
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
            p.grad.div_(world)


def all_reduce_values(values: list[float], op: str = "sum") -> list[float]:
    """Reduce Python numbers over ranks, element-wise: ``sum`` (counts of an evaluation split
    unevenly across ranks) or ``max`` (a stop flag any rank may raise). One collective; the
    values go through the device the backend needs (CUDA for nccl)."""
    if world_size() == 1:
        return [float(v) for v in values]
    t = torch.tensor([float(v) for v in values], dtype=torch.float64)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t, op={"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX}[op])
    return t.cpu().tolist()


def mean_over_ranks(tensors: list[Tensor]) -> list[Tensor]:
    """All-reduce mean of a list of tensors (copies; the inputs are left alone)."""
    out = [t.detach().clone() for t in tensors]
    world = world_size()
    if world > 1:
        for t in out:
            dist.all_reduce(t)
            t.div_(world)
    return out
