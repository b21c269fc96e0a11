"""Extraction across processes with torch.distributed, for `torchrun -m probekit eval …`.

Each rank extracts the shards i % world_size == rank into the shared cache (PROBEKIT_CACHE must be
one folder every rank sees); rank 0 then writes the manifests, fits the probes and writes the
results. The process group starts only when torchrun's WORLD_SIZE is above 1: gloo on the CPU,
NCCL on CUDA, where each rank takes the GPU numbered LOCAL_RANK.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Iterator

import torch
import torch.distributed as dist

from probekit.adapters.base import resolve_device

# Ranks wait at a barrier for the slowest one, and for rank 0 writing manifests.
TIMEOUT = datetime.timedelta(hours=2)


def rank() -> int:
    """This process's rank (0 outside a process group)."""
    return dist.get_rank() if _joined() else 0


def world_size() -> int:
    """How many processes share the work (1 outside a process group)."""
    return dist.get_world_size() if _joined() else 1


def is_main() -> bool:
    """Whether this process fits the probes and writes results (rank 0)."""
    return rank() == 0


def barrier() -> None:
    """Wait until every rank gets here; nothing to wait for in a single process."""
    if world_size() > 1:
        if dist.get_backend() == "nccl":
            dist.barrier(device_ids=[torch.cuda.current_device()])
        else:
            dist.barrier()


@contextlib.contextmanager
def group(device: str = "auto") -> Iterator[str]:
    """Join torchrun's process group for the block when WORLD_SIZE > 1 (and leave it after);
    yields the device this rank should use: `auto` or `cuda` become this rank's GPU."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or _joined():
        yield device
        return
    resolved = resolve_device(device)
    if resolved.type == "cuda":
        if resolved.index is None:
            resolved = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(resolved)
    dist.init_process_group("nccl" if resolved.type == "cuda" else "gloo", timeout=TIMEOUT)
    try:
        yield str(resolved)
    finally:
        dist.destroy_process_group()


def _joined() -> bool:
    return dist.is_available() and dist.is_initialized()
