"""Model adapters: `load_model` turns a folder, a shipped checkpoint name, a Hub id or an
`Adapter` into the one interface that extraction and probes use."""

from __future__ import annotations

from pathlib import Path

import torch

from probekit.adapters.base import Adapter, Batch, ModelIdentity, resolve_device
from probekit.adapters.hf import HFAdapter, local_path, looks_like_hub_id
from probekit.adapters.module import ModuleAdapter
from probekit.adapters.spectrum import SpectrumAdapter
from probekit.adapters.vision import ImageAdapter, VisionAdapter, VJEPA2Adapter
from probekit.errors import ModelError, UserError

CHECKPOINTS = Path(__file__).resolve().parent.parent / "checkpoints"


def shipped_checkpoints() -> list[str]:
    """Names of the checkpoints that ship inside the package (`probekit eval NAME`): Hugging
    Face ones, then the spectrum family's."""
    from probekit.spectrum.checkpoint import shipped

    if not CHECKPOINTS.is_dir():
        return []
    return sorted(p.name for p in CHECKPOINTS.iterdir() if (p / "config.json").is_file()) + \
        shipped()


def load_model(model: str | Path | Adapter, *, device: str | torch.device = "auto",
               revision: str | None = None, trust_remote_code: bool = False,
               truncate: bool = False) -> Adapter:
    """An adapter for `model`: an Adapter as is; else a local folder (a spectrum checkpoint or a
    Hugging Face one), else a shipped checkpoint name, else a Hub id (`trust_remote_code` stays
    off unless asked). A Hugging Face checkpoint whose config names a vision encoder (V-JEPA 2,
    I-JEPA, ViT, …) gets the vision adapter, a folder and a Hub id alike."""
    from probekit.adapters import vision
    from probekit.spectrum import checkpoint

    if isinstance(model, Adapter):
        return model
    if isinstance(model, torch.nn.Module):
        raise UserError("wrap a torch.nn.Module in probekit.adapters.ModuleAdapter(module, "
                        "layers={name: submodule, ...}, inputs='tokens'|'obs') to evaluate it")
    name = str(model)
    path = local_path(name)
    if path.is_dir() and checkpoint.is_checkpoint(path):
        return SpectrumAdapter.from_folder(path, device=device)
    if not path.exists() and name in checkpoint.shipped():
        return SpectrumAdapter.from_folder(checkpoint.SHIPPED / name, model_id=f"probekit/{name}",
                                           device=device)
    model_id = None
    if not path.exists() and name in shipped_checkpoints():
        name, model_id, revision = str(CHECKPOINTS / name), f"probekit/{name}", None
    elif not path.exists() and not looks_like_hub_id(name):
        shipped = ", ".join(shipped_checkpoints()) or "none"
        raise ModelError(f"model path {name!r} does not exist; pass a checkpoint folder, a Hub "
                         f"id (org/name) or a shipped checkpoint ({shipped})")
    if vision.is_vision(vision.model_type(name, revision)):
        return vision.load(name, revision=revision, device=device,
                           trust_remote_code=trust_remote_code, model_id=model_id)
    return HFAdapter.from_pretrained(name, revision=revision, device=device,
                                     trust_remote_code=trust_remote_code, truncate=truncate,
                                     model_id=model_id)


__all__ = ["Adapter", "Batch", "ModelIdentity", "HFAdapter", "ImageAdapter", "ModuleAdapter",
           "SpectrumAdapter", "VisionAdapter", "VJEPA2Adapter", "load_model", "resolve_device",
           "shipped_checkpoints"]
