"""A content-addressed cache of one model's fitted decodability probes, as their scores.

A probe pass (the fits along the penalty path, the control task, the MDL code) is a pure
function of its inputs: the latents, the labels, the penalties it is given, the settings that
decide the numbers, the code that fits, the torch version and the device type. The key hashes
every one of them — the latents by the bytes of their shards on disk (or of the array given),
the code by the source text of the modules that fit and score — so a hit returns exactly the
arrays a new fit would, and any change to any input is a miss. Entries live under
`$PROBEKIT_CACHE/probes/<key>.safetensors` (arrays, and the fit's warnings as metadata; nothing
pickled), written atomically; an unreadable entry is refitted and replaced.
`DecodabilityProbe(cache=False)` always fits.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

from probekit.io import atomic_path, stable_hash
from probekit.latents import Latents
from probekit.tasks import cache_root

# the modules whose source decides the numbers of a probe pass
CODE = ("probekit.probes.batched", "probekit.probes.control", "probekit.decodability.probe",
        "probekit.decodability.mdl", "probekit.decodability.data")


def digest_array(h: Any, a: np.ndarray) -> None:
    """Feed an array's dtype, shape and bytes to the hash `h`."""
    a = np.ascontiguousarray(a)
    h.update(f"{a.dtype.str}{a.shape}".encode())
    h.update(a.data.cast("B"))


def digest_latents(h: Any, X: np.ndarray | Latents, layers: range) -> None:
    """Feed the latents of `layers` to `h`: for extracted Latents the bytes of their shard files
    (float16, as stored; nothing is decoded), for an array its bytes."""
    if not isinstance(X, Latents):
        digest_array(h, X[layers.start:layers.stop])
        return
    h.update(f"{X.n_episodes},{X.n_steps}".encode())
    for name in X.layers[layers.start:layers.stop]:
        manifest = X.manifest(name)
        h.update(stable_hash(manifest, 64).encode())
        for shard in manifest["shards"]:
            h.update((X.root / name / shard).read_bytes())


def code_version() -> str:
    """The source of the modules in CODE, torch's version: what else decides the numbers."""
    h = hashlib.sha256(torch.__version__.encode())
    for name in CODE:
        h.update(Path(sys.modules[name].__file__ or "").read_bytes())
    return h.hexdigest()


def key(settings: Mapping[str, Any], latents: Mapping[str, Any], layers: range,
        arrays: Mapping[str, np.ndarray | None]) -> str:
    """The cache key of one pass over the layer group `layers`."""
    h = hashlib.sha256(code_version().encode())
    h.update(stable_hash(dict(settings), 64).encode())
    for split in sorted(latents):
        h.update(split.encode())
        digest_latents(h, latents[split], layers)
    for name in sorted(arrays):
        h.update(name.encode())
        value = arrays[name]
        if value is not None:
            digest_array(h, value)
    return h.hexdigest()[:32]


def path(k: str) -> Path:
    return cache_root() / "probes" / f"{k}.safetensors"


def load(k: str) -> tuple[dict[str, np.ndarray], list[str]] | None:
    """The arrays and warning texts stored under key `k`, or None (absent or unreadable:
    refit)."""
    p = path(k)
    if not p.is_file():
        return None
    try:
        with safe_open(str(p), framework="numpy") as f:
            arrays = {name: f.get_tensor(name) for name in f.keys()}
            texts = json.loads((f.metadata() or {}).get("warnings", "[]"))
    except (OSError, ValueError, SafetensorError):
        return None
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        return None
    return arrays, texts


def save(k: str, arrays: Mapping[str, np.ndarray], warnings: list[str]) -> None:
    """Store `arrays` and the fit's warning texts under key `k` (atomically)."""
    with atomic_path(path(k)) as tmp:
        save_file({name: np.ascontiguousarray(a) for name, a in arrays.items()}, str(tmp),
                  metadata={"warnings": json.dumps(warnings)})
