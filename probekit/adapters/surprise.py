"""Surprise per step, the one definition every adapter uses.

A step's *tokens* (or input positions) are those after the previous step's last position, up to
and including its own last position (`Batch.positions`): for step 0, from position 1 (the first
position has nothing before it and is never scored) to its last position.

- **token surprise** (models with a token head): the summed surprisal −log p(x_j | x_<j) of the
  step's tokens, in **nats**, read from the logits at position j − 1;
- **latent surprise** (latent predictors): the summed distance between the latent the model
  predicted for position j (made at j − 1) and the latent it encodes there, the distance being
  the mean absolute difference over the latent's dimensions (L1 / d, the V-JEPA surprise).

Both are [batch, steps] float64 tensors on the CPU; `top1` (token models) is the model's top-1
next token at each step's last position [batch, steps].
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from probekit.errors import DataError, ModelError
from probekit.record import SURPRISE_UNITS as UNITS

KINDS = tuple(UNITS)


@dataclass
class StepPredictions:
    """What a model expects at each step of a batch: `surprise` [B, S] (float64, CPU) of
    `kind`, and for token models the top-1 next token after each step [B, S] (else None)."""

    kind: str
    surprise: torch.Tensor
    top1: torch.Tensor | None = None


def step_index(positions: torch.Tensor, length: int) -> torch.Tensor:
    """[B, T]: the step each input position belongs to (-1: before step 0's scored tokens, after
    the last step, or position 0, which nothing predicts)."""
    B, S = positions.shape
    if (positions < 0).any():
        raise DataError("a step has no input position; surprise needs every step placed")
    if S > 1 and (positions[:, 1:] <= positions[:, :-1]).any():
        raise DataError("step positions must increase within an episode")
    if (positions[:, -1] >= length).any():
        raise DataError("a step's last position lies beyond the inputs")
    j = torch.arange(length)[None, :].expand(B, -1)
    # the step of position j is the first s with positions[s] >= j
    idx = torch.searchsorted(positions.contiguous(), j.contiguous(), right=False)
    idx = torch.where((idx >= S) | (j == 0), torch.full_like(idx, -1), idx)
    return idx


def per_step(values: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Sum per-position values [B, T] (value j belongs to position j) into steps [B, S]."""
    B, T = values.shape
    S = positions.shape[1]
    idx = step_index(positions.cpu(), T)
    keep = idx >= 0
    out = torch.zeros(B, S + 1, dtype=torch.float64)
    out.scatter_add_(1, torch.where(keep, idx, S), torch.where(keep, values.double().cpu(), 0.0))
    return out[:, :S]


def token_predictions(logits: torch.Tensor, input_ids: torch.Tensor,
                      positions: torch.Tensor) -> StepPredictions:
    """Token surprise (nats) and top-1 next tokens from next-token logits [B, T, V]."""
    if logits.dim() != 3 or logits.shape[:2] != input_ids.shape:
        raise ModelError(f"the token head returned logits of shape {tuple(logits.shape)} for "
                         f"inputs of shape {tuple(input_ids.shape)}; surprise needs next-token "
                         "logits [batch, positions, vocabulary]")
    ids = input_ids.to(logits.device)
    nll = torch.zeros(ids.shape, dtype=torch.float32, device=logits.device)
    # −log softmax(z)[x] = logsumexp(z) − z[x], without a second [B, T, V] tensor
    nll[:, 1:] = torch.logsumexp(logits[:, :-1].float(), -1) - \
        logits[:, :-1].gather(-1, ids[:, 1:, None])[..., 0].float()
    if not torch.isfinite(nll).all():
        raise ModelError("the token head gave a token probability of 0 (infinite surprisal); "
                         "surprise needs finite logits")
    rows = torch.arange(len(ids), device=logits.device)[:, None]
    top1 = logits[rows, positions.to(logits.device)].argmax(-1).cpu()
    return StepPredictions("token", per_step(nll, positions), top1)


def latent_predictions(predicted: torch.Tensor, encoded: torch.Tensor,
                       positions: torch.Tensor) -> StepPredictions:
    """Latent surprise from `predicted[:, j]` (the latent expected at j + 1, made at j) and
    `encoded[:, j]` (the latent at j), both [B, T, d]."""
    if predicted.shape != encoded.shape or predicted.dim() != 3:
        raise ModelError(f"the latent predictor returned {tuple(predicted.shape)} predicted and "
                         f"{tuple(encoded.shape)} encoded latents; both must be [batch, "
                         "positions, dim], the same shape")
    err = torch.zeros(encoded.shape[:2], dtype=torch.float32, device=encoded.device)
    err[:, 1:] = (predicted[:, :-1].float() - encoded[:, 1:].float()).abs().mean(-1)
    if not torch.isfinite(err).all():
        raise ModelError("the latent predictor gave non-finite latents")
    return StepPredictions("latent", per_step(err, positions))
