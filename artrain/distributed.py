"""Data-parallel training under torchrun: which process this is, and the few collective calls fit needs.

``torchrun --nproc_per_node=N -m artrain fit ...`` sets WORLD_SIZE, RANK and LOCAL_RANK; a plain
``artrain fit`` has none of them and stays a single process. Every rank draws the same global batch from
the shared seed and trains on its contiguous shard of it, so N processes and 1 process follow the same
loss curve (DDP averages the shard gradients: the mean over the global batch). Rank 0 alone logs,
evaluates and writes checkpoints.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from arrun.contract.errors import UsageError


@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    grouped: bool = False  # in a process group (under torchrun, even of one process: DDP and nccl run)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls, device: str) -> "Distributed":
        """Join the process group torchrun prepared (gloo on CPU, nccl on CUDA), if there is one."""
        if "RANK" not in os.environ:  # a plain `artrain fit`
            return cls()
        ctx = cls(int(os.environ["RANK"]), int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("LOCAL_RANK", "0")),
                  grouped=True)
        if device == "cuda":
            torch.cuda.set_device(ctx.local_rank)
        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if device == "cuda" else "gloo")
        return ctx

    def device(self, device: str) -> str:
        return f"cuda:{self.local_rank}" if device == "cuda" else device

    def shard(self, batch_size: int) -> slice:
        """This rank's rows of a global batch; the batch must split evenly."""
        if batch_size % self.world_size:
            raise UsageError(f"--batch-size {batch_size} does not split over {self.world_size} processes; "
                             f"use a multiple of {self.world_size}")
        per = batch_size // self.world_size
        return slice(self.rank * per, (self.rank + 1) * per)

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        """The mean of a scalar over the ranks (the global-batch loss from the shard losses)."""
        if self.grouped:
            value = value.clone()
            dist.all_reduce(value)
            value /= self.world_size
        return value

    def barrier(self) -> None:
        if self.grouped:
            dist.barrier()

    def close(self) -> None:
        if self.grouped and dist.is_initialized():
            dist.destroy_process_group()
