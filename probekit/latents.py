"""`Latents`: the step latents of one (model, task, split) as extraction writes them — float16
safetensors shards per layer under a manifest — read back a layer at a time by the probes.

It knows nothing of models: extraction (`probekit.extraction`) writes the shards, decodability
and the other probes read them through this class.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file

from probekit.errors import DataError, StorageError


@dataclass(frozen=True)
class Latents:
    """Step latents of one (model, task, split), read from the shards a layer at a time:
    `layer(name)` is [N, S, D], `stack(names)` is [L, N, S, D]."""

    root: Path
    layers: tuple[str, ...]
    n_episodes: int
    n_steps: int

    def manifest(self, name: str) -> dict[str, Any]:
        """The manifest of layer `name`: its shards, episodes, steps and width."""
        try:
            manifest = json.loads((self.root / name / "manifest.json").read_text())
            if not {"shards", "dim"} <= set(manifest):
                raise ValueError("the manifest lacks its shards or width")
            return manifest
        except (OSError, ValueError) as e:
            raise StorageError(f"cached latents in {str(self.root / name)!r} are unreadable "
                               f"({e}); delete that folder and run again to recompute them"
                               ) from None

    def dim(self, name: str) -> int:
        """The width of layer `name`, from its manifest (nothing is loaded)."""
        return int(self.manifest(name)["dim"])

    def layer(self, name: str) -> np.ndarray:
        out = np.empty((self.n_episodes, self.n_steps, self.dim(name)), np.float32)
        self._fill(name, out)
        return out

    def stack(self, layers: list[str] | None = None) -> np.ndarray:
        """[L, N, S, D] float32 for `layers` (all by default), which must share one width."""
        names = list(layers or self.layers)
        dims = {self.dim(n) for n in names}
        if len(dims) > 1:
            raise DataError(f"layers {names} differ in width ({sorted(dims)}); stack layers of "
                            "one width at a time")
        out = np.empty((len(names), self.n_episodes, self.n_steps, dims.pop()), np.float32)
        for i, name in enumerate(names):
            self._fill(name, out[i])
        return out

    def _fill(self, name: str, out: np.ndarray) -> None:
        """Copy layer `name` into `out` shard by shard (float16 → float32, no second copy)."""
        folder = self.root / name
        try:
            lo = 0
            for shard in self.manifest(name)["shards"]:
                part = load_file(str(folder / shard))["latents"]
                out[lo:lo + len(part)] = part
                lo += len(part)
            if lo != len(out):
                raise ValueError(f"the shards hold {lo} episodes, the manifest {len(out)}")
        except (OSError, ValueError, KeyError, SafetensorError) as e:
            raise StorageError(f"cached latents in {str(folder)!r} are unreadable ({e}); delete "
                               "that folder and run again to recompute them") from None
