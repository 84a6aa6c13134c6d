"""Data-parallel training under `torchrun`: one process per device, gradients all-reduced.

Single-process runs never touch torch.distributed. Under torchrun (WORLD_SIZE > 1) every
process draws its own batches (batch_size is per process), rank 0 alone writes checkpoints,
plots and samples, and NCCL is used on GPUs, gloo on CPUs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Dist:
    device: torch.device
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1


def setup(device: str) -> Dist:
    """Join the torchrun process group if there is one; pick this process's device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    wanted = torch.device(device)
    if world_size <= 1:
        return Dist(wanted)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if wanted.type == "cuda":
        wanted = torch.device("cuda", local_rank)
        torch.cuda.set_device(wanted)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if wanted.type == "cuda" else "gloo")
    return Dist(wanted, dist.get_rank(), dist.get_world_size())


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def barrier(d: Dist) -> None:
    if d.active:
        dist.barrier()


def broadcast_flag(d: Dist, flag: bool) -> bool:
    """Rank 0's `flag` in every process (the flag itself where there is one process)."""
    if not d.active:
        return flag
    value = torch.tensor([float(flag)], device=d.device)
    dist.broadcast(value, 0)
    return bool(value.item())
