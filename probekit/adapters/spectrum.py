"""Spectrum checkpoints (`probekit.spectrum`): a `ModuleAdapter` over the built-in model, loaded
from its folder of JSON and safetensors, with its spectrum position in the identity.

A model trained on frames reads each row's `frames` [T·F, C, H, W] uint8 as one position per
step ([B, T, F·C, H, W], `encode_frames`); the module is called with that one tensor, carried
under the `obs` input key, since to `ModuleAdapter` it is a continuous input like `obs`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from probekit.adapters.base import Batch, files_sha256
from probekit.adapters.module import INPUT_KEY, ModuleAdapter
from probekit.errors import DataError


class SpectrumAdapter(ModuleAdapter):
    """A spectrum model: world tokens, observations or frames in, layers `embed`, `block.i`; a
    token surprise where it has a token head, a latent surprise where it keeps its latent
    predictor."""

    ADAPTER = "spectrum"

    @classmethod
    def from_folder(cls, folder: str | Path, *, model_id: str | None = None,
                    device: str | torch.device = "auto") -> SpectrumAdapter:
        from probekit.spectrum import checkpoint

        folder = Path(folder).expanduser().resolve()
        model, meta = checkpoint.load(folder)
        sha = files_sha256([folder / checkpoint.WEIGHTS])
        last = f"block.{len(model.blocks) - 1}"
        inputs = "obs" if model.config.inputs == "frames" else model.config.inputs
        return cls(model, model.layer_names(), inputs,
                   model_id=model_id or f"local/{folder.name}", revision=sha[:12],
                   token_head=model.has_token_head, family=meta.family, alpha=meta.alpha,
                   width=model.config.d_model, depth=model.config.n_layers,
                   head="heads.0" if model.has_token_head else None,
                   head_layer=last if model.has_token_head else None,
                   predict=predict_next if model.config.predictor else None, device=device)

    def batch(self, episodes: list[dict[str, Any]]) -> Batch:
        config: Any = self.model.config
        if config.inputs != "frames":
            return super().batch(episodes)
        frames = episodes[0].get("frames") if episodes else None
        n = 0 if frames is None else len(frames)
        fps = n // max(len(episodes[0]["step_spans"]), 1)
        if fps * config.frame_size ** 2 == 0 or config.frame_channels % fps:
            raise DataError(f"model {self.identity.id} reads frames, and these episodes carry "
                            "none or frames that do not fit it; evaluate it on the frames task "
                            "it was trained on (a *-frames task)")
        return encode_frames(episodes, fps, INPUT_KEY["obs"])


def predict_next(module: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The `ModuleAdapter` latent predictor of a spectrum model that keeps one."""
    from probekit.spectrum.model import SpectrumModel

    assert isinstance(module, SpectrumModel)
    return module.predict_next(x)


def encode_frames(episodes: list[dict[str, Any]], frames_per_step: int,
                  key: str = "frames") -> Batch:
    """Right-padded frames [B, T, F·C, H, W] uint8 (step s's F frames stacked as channels)
    under `key`, with an attention mask; step s at position s, no query readout."""
    if not episodes:
        raise DataError("no episodes to encode")
    seqs = []
    for e in episodes:
        f = np.asarray(e["frames"], dtype=np.uint8)
        T = len(e["step_spans"])
        if f.ndim != 4 or len(f) != T * frames_per_step:
            raise DataError(f"an episode of {T} steps has frames of shape {f.shape}; expected "
                            f"[{T}·{frames_per_step}, C, H, W]")
        seqs.append(torch.from_numpy(f.reshape(T, frames_per_step * f.shape[1], *f.shape[2:])))
    n_steps = len(seqs[0])
    if any(len(s) != n_steps for s in seqs):
        raise DataError("episodes in one batch must have the same number of steps")
    x = torch.stack(seqs)
    B = len(seqs)
    mask = torch.ones(B, n_steps, dtype=torch.long)
    positions = torch.arange(n_steps).expand(B, n_steps).clone()
    none = torch.full((B,), -1, dtype=torch.long)
    return Batch({key: x, "attention_mask": mask}, positions, none, none.clone())
