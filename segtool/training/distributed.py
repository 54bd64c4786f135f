"""DistributedDataParallel when launched by torchrun; a no-op otherwise.

`torchrun --nproc_per_node N segtool train ...` sets RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR and MASTER_PORT. Each process then trains on its own patches (its
own seed stream), gradients are averaged (NCCL on GPUs, gloo on CPUs), only rank
0 reads/writes the model folder and validates, and the others wait for it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from segtool.errors import UsageError


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def from_env(env=None) -> Dist:
    env = os.environ if env is None else env
    try:
        world = int(env.get("WORLD_SIZE", "1"))
        rank = int(env.get("RANK", "0"))
        local = int(env.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise UsageError("RANK, WORLD_SIZE and LOCAL_RANK must be integers (set by torchrun)") from None
    if world < 1 or not 0 <= rank < world:
        raise UsageError(f"bad distributed environment: RANK={rank} WORLD_SIZE={world}")
    return Dist(rank, world, local)


def device_for(d: Dist, requested: str) -> torch.device:
    """The device of this process: with CUDA under torchrun, cuda:LOCAL_RANK."""
    from segtool.sliding_window import pick_device

    device = pick_device(requested)
    if device.type == "mps" and d.enabled:
        device = torch.device("cpu")
    if device.type == "cuda" and d.enabled and device.index is None:
        device = torch.device("cuda", d.local_rank % torch.cuda.device_count())
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device


def setup(d: Dist, device: torch.device) -> None:
    """Join the process group (NCCL on CUDA, gloo otherwise)."""
    if d.enabled and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        kwargs = {"device_id": device} if backend == "nccl" else {}
        dist.init_process_group(backend, rank=d.rank, world_size=d.world_size, timeout=timedelta(hours=1), **kwargs)


def cleanup(d: Dist) -> None:
    if d.enabled and dist.is_initialized():
        dist.destroy_process_group()


def barrier(d: Dist) -> None:
    if d.enabled:
        dist.barrier()


def mean(d: Dist, value: float, device: torch.device) -> float:
    """The mean of ``value`` over the ranks."""
    if not d.enabled:
        return float(value)
    t = torch.tensor([float(value)], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t.item()) / d.world_size


def any_true(d: Dist, flag: bool, device: torch.device) -> bool:
    """True on every rank if it is true on any (so all ranks stop together)."""
    if not d.enabled:
        return bool(flag)
    t = torch.tensor([1 if flag else 0], dtype=torch.int32, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def broadcast_object(d: Dist, obj):
    """Rank 0's ``obj`` on every rank (small picklable values only)."""
    if not d.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The model itself, outside its DistributedDataParallel wrapper if it has one."""
    return model.module if hasattr(model, "module") else model
