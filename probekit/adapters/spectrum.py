"""Spectrum checkpoints (`probekit.spectrum`): a `ModuleAdapter` over the built-in model, loaded
from its folder of JSON and safetensors, with its spectrum position in the identity."""

from __future__ import annotations

from pathlib import Path

import torch

from probekit.adapters.base import files_sha256
from probekit.adapters.module import ModuleAdapter


class SpectrumAdapter(ModuleAdapter):
    """A spectrum model: world tokens or observations in, layers `embed`, `block.i`; a token
    surprise where it has a token head, a latent surprise where it keeps its latent predictor."""

    ADAPTER = "spectrum"

    @classmethod
    def from_folder(cls, folder: str | Path, *, model_id: str | None = None,
                    device: str | torch.device = "auto") -> SpectrumAdapter:
        from probekit.spectrum import checkpoint

        folder = Path(folder).expanduser().resolve()
        model, meta = checkpoint.load(folder)
        sha = files_sha256([folder / checkpoint.WEIGHTS])
        last = f"block.{len(model.blocks) - 1}"
        return cls(model, model.layer_names(), model.config.inputs,
                   model_id=model_id or f"local/{folder.name}", revision=sha[:12],
                   token_head=model.has_token_head, family=meta.family, alpha=meta.alpha,
                   head="heads.0" if model.has_token_head else None,
                   head_layer=last if model.has_token_head else None,
                   predict=predict_next if model.config.predictor else None, device=device)


def predict_next(module: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The `ModuleAdapter` latent predictor of a spectrum model that keeps one."""
    from probekit.spectrum.model import SpectrumModel

    assert isinstance(module, SpectrumModel)
    return module.predict_next(x)
