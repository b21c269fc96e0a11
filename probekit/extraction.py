"""Extraction: latents at the step positions of every episode, for chosen layers only.

Forward hooks gather just the step positions on the device; batches are written as float16
safetensors shards under a cache keyed by model weights + task fingerprint + split + layer, each
shard written atomically, so an interrupted run resumes at the first missing shard.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from probekit.adapters.base import Adapter
from probekit.errors import DataError, StorageError
from probekit.io import atomic_path, write_json
from probekit.tasks import Task, cache_root

SHARD_SIZE = 256  # episodes per shard (fixed, so resumed runs cut shards the same way)
FP16_MAX = float(np.finfo(np.float16).max)


@dataclass(frozen=True)
class Latents:
    """Step latents of one (model, task, split): `layer(name)` loads one layer [N, S, D]."""

    root: Path
    layers: tuple[str, ...]
    n_episodes: int
    n_steps: int

    def layer(self, name: str) -> np.ndarray:
        folder = self.root / name
        try:
            manifest = json.loads((folder / "manifest.json").read_text())
            parts = [load_file(str(folder / f))["latents"] for f in manifest["shards"]]
        except (OSError, ValueError, KeyError, SafetensorError) as e:
            raise StorageError(f"cached latents in {str(folder)!r} are unreadable ({e}); delete "
                               "that folder and run again to recompute them") from None
        return np.concatenate(parts).astype(np.float32)

    def stack(self, layers: list[str] | None = None) -> np.ndarray:
        """[L, N, S, D] float32 for `layers` (all by default)."""
        return np.stack([self.layer(n) for n in (layers or self.layers)])


def latents_dir(adapter: Adapter, task: Task, split: str) -> Path:
    return (cache_root() / "latents" / adapter.identity.sha256[:16] / task.fingerprint / split)


def extract(adapter: Adapter, task: Task, split: str, layers: list[str] | None = None, *,
            batch_size: int = 32, progress: bool = True) -> Latents:
    """Latents of `split` at `layers`, computed only for the layers and shards not yet cached."""
    from tqdm.auto import tqdm

    layers = adapter.check_layers(layers)
    dataset = task.dataset(split)
    n = len(dataset)
    n_steps = len(dataset[0]["step_spans"])
    root = latents_dir(adapter, task, split)
    n_shards = math.ceil(n / SHARD_SIZE)
    names = [f"shard-{i:05d}.safetensors" for i in range(n_shards)]
    todo = [layer for layer in layers if not (root / layer / "manifest.json").exists()]
    pending = [i for i in range(n_shards)
               if any(not (root / layer / names[i]).exists() for layer in todo)]
    if pending:
        bar = tqdm(total=sum(min(SHARD_SIZE, n - i * SHARD_SIZE) for i in pending),
                   desc=f"extract {task.name}/{split}", unit="ep", disable=not progress,
                   leave=False)
        with bar, _Hooks(adapter, todo) as hooks, torch.no_grad():  # a failure clears the bar
            for i in pending:
                lo, hi = i * SHARD_SIZE, min(n, (i + 1) * SHARD_SIZE)
                chunks: dict[str, list[torch.Tensor]] = {layer: [] for layer in todo}
                for start in range(lo, hi, batch_size):
                    rows = dataset.select(range(start, min(hi, start + batch_size)))
                    batch = adapter.batch(list(rows)).to(adapter.device)
                    hooks.positions = batch.positions
                    adapter.forward(batch)
                    for layer in todo:
                        chunks[layer].append(hooks.out[layer].to("cpu", non_blocking=True))
                    bar.update(len(rows))
                for layer in todo:
                    if not (root / layer / names[i]).exists():  # finished shards stay as they are
                        _write_shard(root / layer / names[i], torch.cat(chunks[layer]), layer)
    for layer in todo:
        write_json(root / layer / "manifest.json",
                   {"layer": layer, "episodes": n, "steps": n_steps, "shards": names,
                    "shard_size": SHARD_SIZE, "dtype": "float16",
                    "model_sha256": adapter.identity.sha256, "task": task.fingerprint})
    return Latents(root, tuple(layers), n, n_steps)


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


class _Hooks:
    """Forward hooks that keep only the step positions of each hooked layer's output."""

    def __init__(self, adapter: Adapter, layers: list[str]):
        self.adapter, self.layers = adapter, layers
        self.positions: torch.Tensor | None = None
        self.out: dict[str, torch.Tensor] = {}
        self._handles: list[Any] = []

    def __enter__(self) -> "_Hooks":
        for layer in self.layers:
            self._handles.append(self.adapter.module(layer).register_forward_hook(
                self._hook(layer)))
        return self

    def __exit__(self, *exc: Any) -> None:
        for h in self._handles:
            h.remove()

    def _hook(self, layer: str):
        def hook(module, args, output):
            hidden = output[0] if isinstance(output, (tuple, list)) else output
            rows = torch.arange(hidden.shape[0], device=hidden.device)[:, None]
            self.out[layer] = hidden[rows, self.positions].detach()

        return hook
