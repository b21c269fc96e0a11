"""Extraction: latents at the step positions of every episode, for chosen layers only.

Forward hooks gather just the step positions on the device, and the forward stops once the last
hooked layer has run. Each fixed-size group of episodes (a shard) is written as float16
safetensors as soon as its batches finish, atomically, under a cache keyed by model weights +
precision + task fingerprint + split + layer: memory does not grow with the number of episodes,
and an interrupted run resumes at the first missing shard with the same data. Under
torch.distributed each rank computes the shards i % world_size == rank; rank 0 writes the
manifests once every shard is there.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.numpy import save_file

from probekit import distributed
from probekit.adapters.base import Adapter
from probekit.adapters.hooks import Site, intercept
from probekit.errors import DataError, StorageError, UnknownNameError, UserError
from probekit.io import atomic_path, write_json
from probekit.latents import Latents
from probekit.tasks import Task, cache_root, rows_of

SHARD_SIZE = 256  # episodes per shard (fixed, so resumed runs and ranks cut shards the same way)
FP16_MAX = float(np.finfo(np.float16).max)
AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}
CPU_BATCH = 32  # `batch_size="auto"` on the CPU, where larger batches are no faster
GPU_MEMORY_SHARE = 0.8  # of the free GPU memory that an automatic batch size may fill


def precision(adapter: Adapter, autocast: str | None = None) -> str:
    """What the latents are computed in: the weights' dtype, and the autocast dtype if any
    (e.g. `float32-autocast-bf16`)."""
    return adapter.identity.dtype + (f"-autocast-{autocast}" if autocast else "")


def latents_dir(adapter: Adapter, task: Task, split: str, autocast: str | None = None) -> Path:
    """Where the latents of (model weights, precision, task, split) are cached."""
    return (cache_root() / "latents" / adapter.identity.sha256[:16] /
            precision(adapter, autocast) / task.fingerprint / split)


def extract(adapter: Adapter, task: Task, split: str, layers: list[str] | None = None, *,
            batch_size: int | str = 32, autocast: str | None = None,
            progress: bool = True) -> Latents:
    """Latents of `split` at `layers`, computed only for the layers and shards not yet cached.

    batch_size: episodes per forward pass, or "auto": the most that fit in the free GPU memory
    (at most a shard; 32 on the CPU). autocast: "bf16" or "fp16" runs the forward under
    torch.autocast in that dtype (its latents are cached apart from full-precision ones).
    """
    layers = adapter.check_layers(layers)
    if autocast is not None and autocast not in AUTOCAST:
        raise UnknownNameError("autocast dtype", autocast, AUTOCAST)
    if batch_size != "auto" and (not isinstance(batch_size, int) or batch_size < 1):
        raise UserError(f"batch_size must be a positive integer or 'auto', got {batch_size!r}")
    dataset = task.dataset(split)
    n = len(dataset)
    n_steps = len(dataset[0]["step_spans"])
    root = latents_dir(adapter, task, split, autocast)
    names = [f"shard-{i:05d}.safetensors" for i in range(math.ceil(n / SHARD_SIZE))]
    todo = [layer for layer in layers if not (root / layer / "manifest.json").exists()]
    if todo:  # every rank sees the same manifests: each call ends at a barrier after writing them
        rank, world = distributed.rank(), distributed.world_size()
        mine = [i for i in range(len(names)) if i % world == rank
                and any(not (root / layer / names[i]).exists() for layer in todo)]
        if mine:
            _extract_shards(adapter, dataset, root, todo, [(i, names[i]) for i in mine],
                            batch_size, autocast, progress and rank == 0,
                            f"{_short(adapter)} {task.name}/{split}")
        distributed.barrier()
        if rank == 0:
            for layer in todo:
                _write_manifest(root / layer, names, n, n_steps, adapter, task, autocast)
        distributed.barrier()
    else:
        from probekit.progress import note

        note("extract", f"{_short(adapter)} {task.name}/{split}",
             f"cached ({n:,} ep × {len(layers)} layers)",
             show=progress and distributed.rank() == 0)
    return Latents(root, tuple(layers), n, n_steps)


def _short(adapter: Adapter) -> str:
    """The model's name in progress lines (its id without the org)."""
    return adapter.identity.id.rsplit("/", 1)[-1]


def auto_batch_size(adapter: Adapter, episodes: list[dict[str, Any]],
                    autocast: str | None = None) -> int:
    """Episodes per forward pass: on CUDA, as many as fit in GPU_MEMORY_SHARE of the free memory
    by the peak memory a forward over `episodes` takes per episode (at most a shard); on the
    CPU, CPU_BATCH."""
    device = adapter.device
    if device.type != "cuda":
        return CPU_BATCH
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    with torch.no_grad(), _autocast(device, autocast):
        adapter.forward(adapter.batch(episodes).to(device))
    per_episode = max(1, torch.cuda.max_memory_allocated(device) - before) / len(episodes)
    free, _ = torch.cuda.mem_get_info(device)
    free += torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    return max(1, min(SHARD_SIZE, int(GPU_MEMORY_SHARE * free / per_episode)))


def _extract_shards(adapter: Adapter, dataset: Any, root: Path, layers: list[str],
                    shards: list[tuple[int, str]], batch_size: int | str, autocast: str | None,
                    progress: bool, desc: str) -> None:
    """Run the model over `shards` (index, file name), writing each as soon as it is done."""
    from probekit.progress import count, phase

    n = len(dataset)
    if batch_size == "auto":
        batch_size = auto_batch_size(adapter, rows_of(dataset, range(min(8, n))), autocast)
    total = sum(min(SHARD_SIZE, n - i * SHARD_SIZE) for i, _ in shards)
    bar = phase("extract", desc, total=total, unit="ep", show=progress)
    bar.summary = f"{count(total, 'ep')} × {len(layers)} layers"
    cuda = adapter.device.type == "cuda"
    with bar, _Hooks(adapter, layers) as hooks, torch.no_grad(), \
            _autocast(adapter.device, autocast):
        hooks.learn(adapter.batch(rows_of(dataset, [shards[0][0] * SHARD_SIZE])).to(
            adapter.device))
        for i, name in shards:
            lo, hi = i * SHARD_SIZE, min(n, (i + 1) * SHARD_SIZE)
            chunks: dict[str, list[torch.Tensor]] = {layer: [] for layer in layers}
            for start in range(lo, hi, batch_size):
                rows = rows_of(dataset, range(start, min(hi, start + batch_size)))
                hooks.run(adapter.batch(rows).to(adapter.device))
                for layer in layers:  # from CUDA: into pinned memory, without waiting
                    chunks[layer].append(hooks.out[layer].to("cpu", non_blocking=True))
                bar.update(len(rows))
            if cuda:
                torch.cuda.synchronize(adapter.device)  # the copies have landed
            for layer in layers:
                if not (root / layer / name).exists():  # finished shards stay as they are
                    _write_shard(root / layer / name, torch.cat(chunks[layer]), layer)


def _write_shard(path: Path, latents: torch.Tensor, layer: str) -> None:
    x = latents.float()
    if not torch.isfinite(x).all():
        raise DataError(f"layer {layer} produced NaN or infinite latents; check the checkpoint "
                        "(or its dtype) and leave that layer out with --layers")
    if x.abs().max() > FP16_MAX:
        raise DataError(f"layer {layer} has latents beyond the float16 range (|x| > {FP16_MAX:g});"
                        " leave that layer out with --layers")
    with atomic_path(path) as tmp:
        save_file({"latents": x.to(torch.float16).numpy()}, str(tmp))


def _write_manifest(folder: Path, names: list[str], n: int, n_steps: int, adapter: Adapter,
                    task: Task, autocast: str | None) -> None:
    """The manifest that marks a layer complete, once every shard is on disk."""
    missing = [name for name in names if not (folder / name).exists()]
    if missing:
        raise StorageError(f"{len(missing)} shards of {str(folder)!r} are missing (first: "
                           f"{missing[0]}) after every rank finished; a process sharing the "
                           "cache removed them — run again to recompute them")
    with safe_open(str(folder / names[0]), framework="numpy") as f:
        dim = int(f.get_slice("latents").get_shape()[-1])
    write_json(folder / "manifest.json",
               {"layer": folder.name, "episodes": n, "steps": n_steps, "dim": dim,
                "shards": names, "shard_size": SHARD_SIZE, "dtype": "float16",
                "autocast": autocast, "model_sha256": adapter.identity.sha256,
                "task": task.fingerprint})


@contextmanager
def _autocast(device: torch.device, autocast: str | None) -> Iterator[None]:
    with torch.autocast(device.type, dtype=AUTOCAST.get(autocast or ""),
                        enabled=autocast is not None):
        yield


class _Hooks:
    """Keeps only the step positions of each hooked layer's output (through the adapters' one
    capture path, `probekit.adapters.hooks.intercept`).

    `learn` runs one full forward and records the order the hooked layers ran in; when each
    ran once, later forwards stop right after the last of them (a model's head is often its
    costliest part; a layer that runs twice keeps its last output and nothing stops early)."""

    def __init__(self, adapter: Adapter, layers: list[str]):
        self.adapter, self.layers = adapter, layers
        self.out: dict[str, torch.Tensor] = {}
        self.stop_after: str | None = None

    def __enter__(self) -> _Hooks:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def learn(self, batch: Any) -> None:
        """A full forward over `batch` (one episode is enough) to see whether forwards may stop
        early."""
        fired: list[str] = []
        self.stop_after = None
        self.run(batch, fired)
        once = all(fired.count(layer) == 1 for layer in self.layers)
        self.stop_after = fired[-1] if once and fired else None

    def run(self, batch: Any, fired: list[str] | None = None) -> None:
        """One forward over `batch`, filling `out` with [B, S, D] latents per layer."""
        width = self.adapter.step_width(batch)
        sites = [Site(layer, batch.positions, width) for layer in self.layers]
        with intercept(self.adapter, capture=sites, stop_after=self.stop_after,
                       fired=fired) as caught:
            self.adapter.forward(batch)
        missing = [layer for layer in self.layers if layer not in caught]
        if missing:
            raise DataError(f"layer {missing[0]} of {self.adapter.identity.id} did not run in "
                            "a forward pass; choose layers the model's forward uses")
        self.out = {layer: t.detach() for layer, t in caught.items()}
