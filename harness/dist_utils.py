"""Distributed helpers: torchrun sets RANK/WORLD_SIZE/MASTER_ADDR; we join with gloo on CPU
and nccl on GPU. Only rank 0 writes artifacts; every rank computes the same architecture."""
from __future__ import annotations

import os

import torch
import torch.distributed as dist

from backbones.search.base import rank, world_size  # noqa: F401 - re-exported for the harness


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


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
