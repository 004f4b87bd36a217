"""Several processes: torchrun sets WORLD_SIZE, RANK and LOCAL_RANK; each rank trains on its share of
every global batch under DistributedDataParallel (NCCL on GPUs, gloo on the CPU)."""
from __future__ import annotations

import dataclasses
import os

import torch


@dataclasses.dataclass
class Distributed:
    world: int = 1
    rank: int = 0
    local_rank: int = 0
    owns_group: bool = False  # this module created the process group (and destroys it at the end)

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    def all_sum(self, values: torch.Tensor) -> torch.Tensor:
        if self.enabled:
            torch.distributed.all_reduce(values)
        return values

    def barrier(self) -> None:
        if self.enabled:
            torch.distributed.barrier()


def setup_distributed(device: str | None) -> tuple[Distributed, torch.device]:
    """Join the process group torchrun describes (NCCL on GPUs, gloo on the CPU) and pick the device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("fastalex train: --device cuda, but torch sees no CUDA device")
    if world <= 1:
        return Distributed(), dev
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if dev.type == "cuda":
        dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
    owns = not torch.distributed.is_initialized()
    if owns:
        torch.distributed.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return Distributed(world, rank, local_rank, owns), dev


def gather(obj, dist: Distributed) -> list:
    if not dist.enabled:
        return [obj]
    out = [None] * dist.world
    torch.distributed.all_gather_object(out, obj)
    return out
