"""Counterfactual pairs that align position for position under a model's input encoding.

A pair is used only when base and source encode to the same length with every step (and the
query) at the same position; the others are skipped and counted, never dropped silently. Each
used pair also gets an unrelated episode (the base of another pair) for the baseline patch.
Patch sites are the intervened step, each later step (`step+k`) and the query.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from probekit.adapters.base import Adapter, Batch
from probekit.errors import DataError
from probekit.tasks import Task

SOURCE = "source."


def site_names(n_steps: int) -> list[str]:
    """`step`, `step+1`, …, `step+{n_steps-1}`, `query`: offsets from the intervened step."""
    return ["step"] + [f"step+{k}" for k in range(1, n_steps)] + ["query"]


def site_positions(batch: Batch, step: torch.Tensor) -> torch.Tensor:
    """[B, S+1] input positions of every site of each example (-1 where it has none)."""
    B, S = batch.positions.shape
    offsets = step[:, None] + torch.arange(S)[None]
    inside = offsets < S
    steps = torch.where(inside, batch.positions.gather(1, offsets.clamp(max=S - 1)), -1)
    return torch.cat([steps, batch.query_positions[:, None]], 1)


def take(batch: Batch, rows: slice) -> Batch:
    """Rows `rows` of a batch (inputs keep their padded length)."""
    return Batch({k: v[rows] for k, v in batch.inputs.items()}, batch.positions[rows],
                 batch.query_positions[rows], batch.answer_ids[rows])


def lengths(batch: Batch) -> torch.Tensor:
    """[B] encoded length of each example (the attention mask's sum, else the padded length)."""
    mask = batch.inputs.get("attention_mask")
    if mask is not None:
        return mask.sum(1)
    n, T = batch.positions.shape[0], next(iter(batch.inputs.values())).shape[1]
    return torch.full((n,), T)


@dataclass
class PairBatch:
    """One batch of pairs: base, source and unrelated inputs share one padded length."""

    base: Batch
    source: Batch
    unrelated: Batch
    step: torch.Tensor  # [B] the intervened step
    pairs: list[dict[str, Any]]  # pair rows (readout target, labels)
    bases: list[dict[str, Any]]  # base episode rows
    sources: list[dict[str, Any]]  # source episode rows


class PairSet:
    """The aligned counterfactual pairs of one split (a seeded subsample of at most
    `max_pairs`), how many were skipped, and their base/source/unrelated episodes."""

    def __init__(self, pairs: list[dict[str, Any]], bases: list[dict[str, Any]], skipped: int):
        if len(pairs) < 2:
            raise DataError(f"only {len(pairs)} counterfactual pairs align under the model's "
                            f"encoding ({skipped} skipped); interventions need at least two "
                            "(evaluate with causal=False, --no-causal, to skip them)")
        self.pairs, self.bases, self.skipped = pairs, bases, skipped
        self.sources = [source_row(p) for p in pairs]
        self.unrelated = bases[1:] + bases[:1]  # another pair's base: never the same episode

    def __len__(self) -> int:
        return len(self.pairs)

    @classmethod
    def build(cls, adapter: Adapter, task: Task, split: str = "test", *, max_pairs: int = 200,
              seed: int = 0, batch_size: int = 32) -> "PairSet":
        """Draw up to `max_pairs` pairs of `split` (seeded) and keep those that align."""
        table = task.pairs(split)  # UserError for a task without counterfactual pairs
        episodes = task.dataset(split)
        if max_pairs < 2:
            raise DataError(f"max_pairs must be at least 2, got {max_pairs}")
        order = np.random.default_rng(seed).permutation(len(table))[:max_pairs]
        pairs = [table[int(i)] for i in order]
        return cls.aligned(adapter, pairs, [episodes[int(p["base_index"])] for p in pairs],
                           batch_size=batch_size)

    @classmethod
    def aligned(cls, adapter: Adapter, pairs: list[dict[str, Any]],
                bases: list[dict[str, Any]], *, batch_size: int = 32) -> "PairSet":
        """The pairs (with their base episodes) that align under `adapter`; the rest skipped."""
        keep: list[int] = []
        for lo in range(0, len(pairs), batch_size):
            hi = min(len(pairs), lo + batch_size)
            n = hi - lo
            batch = adapter.batch(bases[lo:hi] + [source_row(p) for p in pairs[lo:hi]])
            base, source = take(batch, slice(0, n)), take(batch, slice(n, 2 * n))
            same = ((lengths(base) == lengths(source))
                    & (base.positions == source.positions).all(1)
                    & (base.query_positions == source.query_positions))
            keep += [lo + i for i in range(n) if same[i]]
        return cls([pairs[i] for i in keep], [bases[i] for i in keep], len(pairs) - len(keep))

    def batches(self, adapter: Adapter, batch_size: int) -> Iterator[PairBatch]:
        """The pairs in order, `batch_size` at a time, encoded by `adapter`."""
        for lo in range(0, len(self), batch_size):
            hi = min(len(self), lo + batch_size)
            n = hi - lo
            bases, sources = self.bases[lo:hi], self.sources[lo:hi]
            batch = adapter.batch(bases + sources + self.unrelated[lo:hi])
            step = torch.as_tensor([int(p["step"]) for p in self.pairs[lo:hi]])
            yield PairBatch(take(batch, slice(0, n)), take(batch, slice(n, 2 * n)),
                            take(batch, slice(2 * n, 3 * n)), step, self.pairs[lo:hi], bases,
                            sources)


def source_row(pair: dict[str, Any]) -> dict[str, Any]:
    """The source episode of a pair row, as an episode row."""
    return {k[len(SOURCE):]: v for k, v in pair.items() if k.startswith(SOURCE)}
