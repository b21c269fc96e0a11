"""The spectrum objective: L(a) = (1 − a) · CE(next tokens) + a · L_latent.

`L_latent` is a smooth-L1 between a small predictor's output from [h_t ; e(x_{t+1})] and the
stop-gradient, LayerNorm-ed hidden state of an EMA copy of the network (`target` "next": at
t+k; "summary": the mean over t+1 … t+k), optionally with a VICReg variance/covariance term on
the online latents against collapse. a = 0 is next-token prediction (multi-token for k > 1);
a = 1 with no token head is the JEPA end. On frames the first term is next-step pixel
prediction instead (`SpectrumModel.pixel_loss`, reported as `pixel`).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from probekit.errors import ModelError, UnknownNameError, UserError
from probekit.spectrum.model import SpectrumModel, latent_predictor

TARGETS = ("next", "summary")


@dataclass(frozen=True)
class Objective:
    """Where on the spectrum a model trains: mixing coefficient `alpha`, prediction `horizon`
    k, latent `target` type, `vicreg` weight and the EMA momentum rising `ema[0]` → `ema[1]`."""

    alpha: float
    horizon: int = 1
    target: str = "next"
    vicreg: float = 0.0
    ema: tuple[float, float] = (0.99, 0.999)

    def __post_init__(self) -> None:
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, (int, float)) \
                or not 0.0 <= self.alpha <= 1.0:
            raise UserError(f"alpha must be in [0, 1] (0: next-token prediction, 1: JEPA), "
                            f"got {self.alpha!r}")
        if self.horizon < 1:
            raise UserError(f"horizon must be at least 1, got {self.horizon}")
        if self.target not in TARGETS:
            raise UnknownNameError("latent target", self.target, TARGETS)
        if not self.vicreg >= 0:
            raise UserError(f"vicreg must be at least 0, got {self.vicreg}")
        lo, hi = self.ema
        if not 0.0 <= lo <= hi <= 1.0:
            raise UserError(f"ema must rise within [0, 1] (start <= end), got {self.ema}")

    @property
    def station(self) -> str:
        """The spectrum family: ntp, multi-token (token heads for t+1 … t+k, k > 1, and below
        a = 1 a latent target at t+k), next-latent, future-summary (the mean latent over
        t+1 … t+k) or jepa."""
        if self.alpha == 1:
            return "jepa"
        if self.alpha > 0 and self.target == "summary":
            return "future-summary"
        if self.horizon > 1:
            return "multi-token"
        return "ntp" if self.alpha == 0 else "next-latent"

    def momentum(self, step: int, steps: int) -> float:
        """EMA momentum at `step` of `steps`: a cosine rise from ema[0] to ema[1]."""
        lo, hi = self.ema
        return hi - (hi - lo) * (math.cos(math.pi * step / max(steps, 1)) + 1) / 2


class SpectrumLoss(nn.Module):
    """The objective around one model: the latent predictor and the EMA target network exist
    only where alpha > 0. `forward` returns the active terms and their weighted `total`."""

    def __init__(self, model: SpectrumModel, objective: Objective):
        super().__init__()
        config = model.config
        if objective.alpha < 1 and not (model.has_token_head or model.has_pixel_head):
            raise ModelError(f"alpha {objective.alpha} needs a next-token loss, but the model has "
                             "no token head (continuous input); use alpha 1 or token input")
        if model.has_token_head and len(model.heads) != objective.horizon:
            raise ModelError(f"the model has {len(model.heads)} token heads but the objective's "
                             f"horizon is {objective.horizon}")
        self.model, self.objective = model, objective
        if objective.alpha > 0:
            self.predictor = latent_predictor(config)
            self.target = copy.deepcopy(model).requires_grad_(False).eval()

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """Loss terms for inputs `x` (ids [B, T] or observations [B, T, D]) with the valid
        positions `mask` [B, T] (episodes are right-padded)."""
        a, k = self.objective.alpha, self.objective.horizon
        h = self.model.latents(x)
        mask = mask.bool()
        terms: dict[str, torch.Tensor] = {}
        total = h.new_zeros(())
        if a < 1 and self.model.has_pixel_head:  # frames: next-step pixels
            terms["pixel"] = self.model.pixel_loss(x, h, mask)
            total = total + (1 - a) * terms["pixel"]
        elif a < 1:
            ce = []
            for j, head in enumerate(self.model.heads, start=1):
                logits = head(h[:, :-j])
                labels = x[:, j:].masked_fill(~mask[:, j:], -100)
                ce.append(F.cross_entropy(logits.flatten(0, 1), labels.flatten(),
                                          ignore_index=-100))
            terms["token"] = torch.stack(ce).mean()
            total = total + (1 - a) * terms["token"]
        if a > 0:
            terms["latent"] = self.latent_loss(x, h, mask, k)
            total = total + a * terms["latent"]
            if self.objective.vicreg > 0:
                terms["vicreg"] = vicreg(h[mask])
                total = total + a * self.objective.vicreg * terms["vicreg"]
        terms["total"] = total
        return terms

    def latent_loss(self, x: torch.Tensor, h: torch.Tensor, mask: torch.Tensor, k: int
                    ) -> torch.Tensor:
        T = x.shape[1]
        if T <= k:
            raise UserError(f"episodes of {T} positions are too short for horizon {k}")
        with torch.no_grad():
            z = self.target.hidden(x)
            z = F.layer_norm(z, z.shape[-1:])
            if self.objective.target == "next":
                goal = z[:, k:]
            else:
                goal = torch.stack([z[:, j:T - k + j] for j in range(1, k + 1)]).mean(0)
        nxt = self.model.embed.content(x[:, 1:T - k + 1])
        pred = self.predictor(torch.cat([h[:, :T - k], nxt], -1))
        valid = mask[:, k:]
        return F.smooth_l1_loss(pred[valid], goal[valid])

    @torch.no_grad()
    def update_target(self, momentum: float) -> None:
        """EMA step: target ← momentum · target + (1 − momentum) · online."""
        if self.objective.alpha == 0:
            return
        for t, o in zip(self.target.parameters(), self.model.parameters()):
            t.lerp_(o, 1 - momentum)


def vicreg(z: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """VICReg's variance (hinge at unit std per dimension) plus covariance (squared
    off-diagonal covariances / d) terms of latents z [N, d]."""
    z = z - z.mean(0)
    std = torch.sqrt(z.var(0) + eps)
    n, d = z.shape
    cov = (z.T @ z) / max(n - 1, 1)
    off = cov - torch.diag(torch.diag(cov))
    return F.relu(1 - std).mean() + off.pow(2).sum() / d
