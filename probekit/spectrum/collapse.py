"""Collapse is measured, not hoped away: the effective rank of a model's latents and a quick
linear probe of the world state against the random-init twin.

A joint-embedding objective has a trivial minimum — every input mapped to the same latent — so
a run at a > 0 can "succeed" on its loss while its latents carry nothing. `CollapseMonitor`
says so: latents are collapsed when their effective rank falls below `min_rank` of their width
(dimensional collapse) or their spread — the across-input std per dimension relative to their
RMS size — below `min_spread` (every input at nearly one point).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from probekit.errors import UserError


def effective_rank(z: torch.Tensor | np.ndarray) -> float:
    """exp of the entropy of the normalised singular values of centred latents z [N, d]
    (Roy & Vetterli 2007): d for isotropic latents, 1 for latents on one line, 0 for a point."""
    z = torch.as_tensor(z, dtype=torch.float64)
    s = torch.linalg.svdvals(z - z.mean(0))
    if s.sum() <= 1e-9 * max(1.0, float(z.abs().max())):
        return 0.0
    p = s / s.sum()
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


def spread(z: torch.Tensor | np.ndarray) -> float:
    """Mean across-input std per dimension of latents z [N, d], relative to their RMS value
    (scale-free: about 1 for latents spread around the origin, 0 for one point)."""
    z = torch.as_tensor(z, dtype=torch.float64)
    rms = float(z.pow(2).mean().sqrt())
    return 0.0 if rms < 1e-12 else float(z.std(0).mean()) / rms


@dataclass(frozen=True)
class CollapseReport:
    """One check: effective rank of the latents out of their width, their spread, and (when
    probed) the quick probe's score for the model and its random-init twin: the
    `DecodabilityProbe` headline, normalised late decodability (`spectrum.train.quick_probe`)."""

    effective_rank: float
    dim: int
    spread: float
    collapsed: bool
    probe: float | None = None
    random_init_probe: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        text = f"effective rank {self.effective_rank:.1f}/{self.dim}, spread {self.spread:.3f}"
        if self.probe is not None:
            text += f", probe {self.probe:.3f} (random init {self.random_init_probe:.3f})"
        return text + (" — COLLAPSED" if self.collapsed else "")


class CollapseMonitor:
    """Flags latents whose effective rank is below `min_rank` × their width or whose spread is
    below `min_spread`."""

    def __init__(self, min_rank: float = 0.05, min_spread: float = 0.05):
        self.min_rank, self.min_spread = min_rank, min_spread

    def check(self, latents: torch.Tensor | np.ndarray, probe: float | None = None,
              random_init_probe: float | None = None) -> CollapseReport:
        """Report on latents [N, d] (one row per position)."""
        for name in ("min_rank", "min_spread"):
            if not 0 < getattr(self, name) < 1:
                raise UserError(f"{name} must be in (0, 1), got {getattr(self, name)}")
        z = torch.as_tensor(latents, dtype=torch.float64)
        if z.ndim != 2 or len(z) < 2:
            raise UserError(f"latents must be [N >= 2, d], got shape {tuple(z.shape)}")
        rank, spread_ = effective_rank(z), spread(z)
        collapsed = rank < self.min_rank * z.shape[1] or spread_ < self.min_spread
        return CollapseReport(rank, z.shape[1], spread_, collapsed, probe, random_init_probe)
