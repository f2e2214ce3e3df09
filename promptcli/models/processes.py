"""The processes of one launch: rank and world size under `torchrun` or `accelerate launch` (both set
RANK, WORLD_SIZE, LOCAL_RANK and the rendezvous address), one process otherwise.

Data-parallel `run`, `sweep` and `tune` need only a few collectives (a barrier, a sum), so they use
`torch.distributed` directly: gloo on CPUs, NCCL on GPUs, no dependency beyond torch. Each process
takes its own GPU (`cuda:LOCAL_RANK`) when the device is `auto` or `cuda`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import RunError


@dataclass(frozen=True)
class Processes:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @classmethod
    def current(cls) -> Processes:
        """This process's place, joining the process group on first use when there are several."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
        if not torch.distributed.is_available():
            raise RunError("WORLD_SIZE > 1, but this torch build has no torch.distributed")
        if not torch.distributed.is_initialized():
            backend = "nccl" if torch.cuda.is_available() else "gloo"
            if torch.cuda.is_available():
                torch.cuda.set_device(local)
            torch.distributed.init_process_group(backend=backend)
        return cls(rank=rank, world=world, local_rank=local)

    @property
    def main(self) -> bool:
        return self.rank == 0

    def device(self, device: str) -> str:
        """Each process on its own GPU; a named device (cpu, cuda:N, mps) as given."""
        if self.world > 1 and device in ("auto", "cuda") and torch.cuda.is_available():
            return f"cuda:{self.local_rank}"
        return device

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()

    def shared(self, value: Any) -> Any:
        """The first process's `value`, on every process (e.g. a folder name made from the clock)."""
        if self.world == 1:
            return value
        box = [value]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, value: Any) -> list[Any]:
        """Every process's `value`, in rank order."""
        if self.world == 1:
            return [value]
        found: list[Any] = [None] * self.world
        torch.distributed.all_gather_object(found, value)
        return found

    def total(self, values: list[float]) -> list[float]:
        """Element-wise sums over all processes (the values themselves with one process)."""
        return self._reduce(values, torch.distributed.ReduceOp.SUM) if self.world > 1 else list(values)

    def add_up(self, tensor: torch.Tensor) -> torch.Tensor:
        """`tensor` summed over all processes, in place (e.g. a gradient: each process's share of a batch)."""
        if self.world > 1:
            torch.distributed.all_reduce(tensor)
        return tensor

    def most(self, values: list[float]) -> list[float]:
        """Element-wise maxima over all processes (e.g. the slowest process's time)."""
        return self._reduce(values, torch.distributed.ReduceOp.MAX) if self.world > 1 else list(values)

    def _reduce(self, values: list[float], op) -> list[float]:
        on_gpu = torch.distributed.get_backend() == "nccl"  # NCCL reduces GPU tensors only
        tensor = torch.tensor(values, dtype=torch.float64, device=f"cuda:{self.local_rank}" if on_gpu else "cpu")
        torch.distributed.all_reduce(tensor, op=op)
        return tensor.tolist()
