"""Probe-direction steering (after the Othello-GPT interventions): move a latent along a probe's
class directions until the probe decodes the counterfactual state, then see whether the model's
downstream readout follows the edited world.
"""

from __future__ import annotations

import torch

MARGIN = 2.0  # logits by which the edited class must beat every other class


def steer(h: torch.Tensor, coef: torch.Tensor, intercept: torch.Tensor, current: torch.Tensor,
          target: torch.Tensor, margin: float = MARGIN) -> tuple[torch.Tensor, torch.Tensor]:
    """Edit latents h [B, D] along d = W[target] − W[current] (unit length), by the smallest step
    that makes the probe (coef [B, K, D], intercept [B, K]) prefer `target` over every other
    class by `margin`. Returns the edited latents and [B] whether that step exists (when some
    class gains on `target` along d, the edit takes the largest step any class asks for, and
    fails if that class still wins)."""
    rows = torch.arange(len(h), device=h.device)
    d = coef[rows, target] - coef[rows, current]
    d = d / d.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    z = torch.einsum("bd,bkd->bk", h, coef) + intercept
    gap = z[rows, target][:, None] - z  # [B, K] how far `target` leads each class
    slope = torch.einsum("bd,bkd->bk", d, coef[rows, target][:, None] - coef)
    need = torch.where(slope > 0, (margin - gap) / slope.clamp_min(1e-12), 0.0)
    need[rows, target] = 0.0
    step = need.amax(-1).clamp_min(0.0)
    edited = h + step[:, None] * d
    z_new = torch.einsum("bd,bkd->bk", edited, coef) + intercept
    lead = z_new[rows, target][:, None] - z_new
    lead[rows, target] = float("inf")
    return edited, lead.amin(-1) >= margin - 1e-3
