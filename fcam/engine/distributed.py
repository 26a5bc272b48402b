"""Process-group set-up for ``torchrun`` and the few collectives the engine needs.

A run started without ``torchrun`` is a world of one process and every helper here is then a
no-op, so the same code path serves one CPU process and N GPUs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from fcam.errors import FcamError


@dataclass(frozen=True)
class DistContext:
    """Where this process stands: its rank, the world size, its device and how many processes
    share its machine."""

    rank: int
    world_size: int
    device: torch.device
    local_world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(preference: str, local_rank: int = 0) -> torch.device:
    """Map the config's ``device`` ('auto', 'cpu', 'cuda') to a torch device."""
    if preference == "cpu":
        return torch.device("cpu")
    if preference == "cuda" and not torch.cuda.is_available():
        raise FcamError("config key 'device' is 'cuda' but no CUDA device is available; use device=auto or cpu")
    if torch.cuda.is_available():
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def setup_distributed(preference: str = "auto") -> DistContext:
    """Join the process group when launched by ``torchrun`` (it sets WORLD_SIZE, RANK, LOCAL_RANK,
    LOCAL_WORLD_SIZE).

    These variables are torchrun's documented launch interface, read once here; NCCL on CUDA,
    gloo on the CPU.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    local_world_size = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    device = resolve_device(preference, local_rank)
    if world_size > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistContext(rank=rank, world_size=world_size, device=device, local_world_size=local_world_size)


def cleanup_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_arrays(arrays: dict[str, np.ndarray], ctx: DistContext) -> dict[str, np.ndarray]:
    """Sum additive numpy arrays (metric counts, histograms) over all ranks.

    Float64 on the CPU side keeps integer counts exact; the collective runs on the process
    group's device.
    """
    if not ctx.distributed:
        return arrays
    out = {}
    for key in sorted(arrays):
        value = np.asarray(arrays[key])
        tensor = torch.from_numpy(value.astype(np.float64)).to(ctx.device)
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        out[key] = tensor.cpu().numpy().astype(value.dtype)
    return out


def broadcast_flag(flag: bool, ctx: DistContext) -> bool:
    """True on every rank when ``flag`` is true on any rank (e.g. a non-finite loss)."""
    if not ctx.distributed:
        return flag
    tensor = torch.tensor([1.0 if flag else 0.0], device=ctx.device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return bool(tensor.item() > 0)


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        dist.barrier()


def broadcast_buffers(module: torch.nn.Module, ctx: DistContext) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) to every rank.

    DDP broadcasts buffers at the start of each forward, so after the last training step each
    rank still holds the statistics of its own last batch; validation must use rank 0's, the
    ones that are saved.
    """
    if not ctx.distributed:
        return
    for buffer in module.buffers():
        dist.broadcast(buffer.data, src=0)
