"""Counterfactual pairs that align position for position under a model's input encoding, and
the positions a patch can name in them.

A pair is used only when base and source encode to the same length with every step (and the
query) at the same position; the others are dropped and counted (`unaligned`), never silently.
Each pair also gets an unrelated episode for the baseline patch (the base of another pair with
the same layout, so every position means the same thing) and, where the world makes one, a
placebo source (a counterfactual the readout does not depend on).

Positions are named from the pair (DESIGN.md, "Site"):
- `diff`: every position where base and source inputs differ, up to the readout position;
- `read`: the positions decodability probes read (each step's position, or all the positions
  of its span where the adapter reads a step over several: `Adapter.step_width`), from the
  intervened step to the last;
- `last`: the last step's position (its span);
- `query`: the position whose next-token prediction answers the closing question.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from probekit.adapters.base import Adapter, Batch
from probekit.errors import DataError
from probekit.tasks import Task, rows_of

SOURCE, PLACEBO = "source.", "placebo."
POSITIONS = ("diff", "read", "last", "query")


def take(batch: Batch, rows: slice | torch.Tensor) -> Batch:
    """Rows of a batch (a slice or an index tensor; inputs keep their padded length)."""
    return Batch({k: v[rows] for k, v in batch.inputs.items()}, batch.positions[rows],
                 batch.query_positions[rows], batch.answer_ids[rows])


def lengths(batch: Batch) -> torch.Tensor:
    """[B] encoded length of each example (the attention mask's sum, else the padded length)."""
    mask = batch.inputs.get("attention_mask")
    if mask is not None:
        return mask.sum(1)
    n, T = batch.positions.shape[0], next(iter(batch.inputs.values())).shape[1]
    return torch.full((n,), T)


def differ(a: Batch, b: Batch) -> torch.Tensor:
    """[B, T] where the inputs of two aligned batches differ (any input tensor, any feature)."""
    out = None
    for key, x in a.inputs.items():
        if key == "attention_mask":
            continue
        d = x != b.inputs[key]
        while d.ndim > 2:
            d = d.any(-1)
        out = d if out is None else out | d
    return out


def episode_row(pair: dict[str, Any], prefix: str) -> dict[str, Any]:
    """The episode stored in a pair row under `prefix` (`source.`, `placebo.`)."""
    return {k[len(prefix):]: v for k, v in pair.items() if k.startswith(prefix)}


def source_row(pair: dict[str, Any]) -> dict[str, Any]:
    return episode_row(pair, SOURCE)


def placebo_row(pair: dict[str, Any]) -> dict[str, Any] | None:
    """The pair's placebo source, where the world made one."""
    if not pair.get("has_placebo"):
        return None
    return episode_row(pair, PLACEBO)


@dataclass
class PairBatch:
    """One batch of pairs, every episode encoded to one padded length. `unrelated` and
    `placebo` rows are the base itself where a pair has none (`has_unrelated`, `has_placebo`
    say which are real)."""

    base: Batch
    source: Batch
    unrelated: Batch
    placebo: Batch
    has_unrelated: torch.Tensor  # [B] bool
    has_placebo: torch.Tensor  # [B] bool
    step: torch.Tensor  # [B] the intervened step
    placebo_step: torch.Tensor  # [B]
    pairs: list[dict[str, Any]]
    bases: list[dict[str, Any]]
    sources: list[dict[str, Any]]
    width: int = 1  # positions per step, ending at its position (`Adapter.step_width`)

    def __len__(self) -> int:
        return len(self.step)

    def positions(self, name: str, readout: torch.Tensor, variant: str = "source"
                  ) -> torch.Tensor:
        """[B, T] bool: the positions `name` of each pair for a patch from `variant` (source,
        unrelated or placebo), given the readout positions [B]."""
        base = self.base
        B, T = base.positions.shape[0], next(iter(base.inputs.values())).shape[1]
        at = torch.arange(T)[None]
        step = self.placebo_step if variant == "placebo" else self.step
        if name == "diff":
            other = self.placebo if variant == "placebo" else self.source
            mask = differ(base, other) & (at <= readout[:, None])
        elif name == "read":
            S = base.positions.shape[1]
            later = torch.arange(S)[None] >= step[:, None]
            mask = torch.zeros(B, T, dtype=torch.bool)
            b, s = later.nonzero(as_tuple=True)
            for w in range(self.width):
                mask[b, (base.positions[b, s] - w).clamp_min(0)] = True
        elif name == "last":
            last = base.positions[:, -1:]
            mask = (at <= last) & (at > last - self.width)
        elif name == "query":
            q = base.query_positions
            mask = (at == q[:, None]) & (q[:, None] >= 0)
        else:
            raise ValueError(name)
        return mask


class PairSet:
    """The aligned counterfactual pairs of one split (a seeded subsample of at most
    `max_pairs`); `dropped` counts those left out and why."""

    def __init__(self, split: str, pairs: list[dict[str, Any]], bases: list[dict[str, Any]],
                 layouts: list[tuple], dropped: Counter, drawn: int):
        self.split, self.pairs, self.bases, self.drawn = split, pairs, bases, drawn
        self.dropped = dropped
        self.sources = [source_row(p) for p in pairs]
        self.placebos = [placebo_row(p) for p in pairs]
        self.unrelated = _partners(layouts)

    def __len__(self) -> int:
        return len(self.pairs)

    @classmethod
    def build(cls, adapter: Adapter, task: Task, split: str = "test", *, max_pairs: int = 200,
              seed: int = 0, batch_size: int = 32) -> PairSet:
        """Draw up to `max_pairs` pairs of `split` (seeded) and keep those that align."""
        if max_pairs < 2:
            raise DataError(f"max_pairs must be at least 2, got {max_pairs}")
        table = task.pairs(split)  # UserError for a task without counterfactual pairs
        episodes = task.dataset(split)
        order = np.random.default_rng(seed).permutation(len(table))[:max_pairs]
        pairs = rows_of(table, order)
        bases = rows_of(episodes, [p["base_index"] for p in pairs])
        keep, layouts = [], []
        placebos = [placebo_row(p) for p in pairs]
        for lo in range(0, len(pairs), batch_size):
            hi = min(len(pairs), lo + batch_size)
            n = hi - lo
            rows = bases[lo:hi] + [source_row(p) for p in pairs[lo:hi]]
            batch = adapter.batch(rows)
            base, source = take(batch, slice(0, n)), take(batch, slice(n, 2 * n))
            same = _same_layout(base, source)
            for i in range(n):
                if same[i]:
                    keep.append(lo + i)
                    layouts.append(_layout(base, i))
        dropped = Counter({"unaligned": len(pairs) - len(keep)}) if len(keep) < len(pairs) \
            else Counter()
        kept = [pairs[i] for i in keep]
        # a placebo that does not align with its base is left out (the pair is kept); encoded
        # batch_size pairs at a time, as the pairs are
        with_placebo = [j for j, i in enumerate(keep) if placebos[i] is not None]
        for lo in range(0, len(with_placebo), batch_size):
            js = with_placebo[lo:lo + batch_size]
            n = len(js)
            b = adapter.batch([bases[keep[j]] for j in js] + [placebos[keep[j]] for j in js])
            same = _same_layout(take(b, slice(0, n)), take(b, slice(n, 2 * n)))
            for j, ok in zip(js, same.tolist()):
                if not ok:
                    kept[j] = {**kept[j], "has_placebo": False}
        if len(kept) < 2:
            raise DataError(f"only {len(kept)} counterfactual pairs of split {split} align under "
                            f"the model's encoding ({len(pairs) - len(kept)} dropped); "
                            "interventions need at least two (evaluate with causal=False, "
                            "--no-causal, to skip them)")
        return cls(split, kept, [bases[i] for i in keep], layouts, dropped, len(pairs))

    def batches(self, adapter: Adapter, batch_size: int) -> Iterator[PairBatch]:
        """The pairs in order, `batch_size` at a time, encoded by `adapter`."""
        for lo in range(0, len(self), batch_size):
            hi = min(len(self), lo + batch_size)
            n = hi - lo
            idx = range(lo, hi)
            unrelated = [self.unrelated[i] for i in idx]
            rows = (self.bases[lo:hi] + self.sources[lo:hi]
                    + [self.bases[u] if u is not None else self.bases[i]
                       for i, u in zip(idx, unrelated)]
                    + [self.placebos[i] or self.bases[i] for i in idx])
            batch = adapter.batch(rows)
            has_placebo = torch.as_tensor([self.placebos[i] is not None for i in idx])
            step = torch.as_tensor([int(self.pairs[i]["step"]) for i in idx])
            placebo_step = torch.as_tensor([int(self.pairs[i].get("placebo_step", -1) or 0)
                                            if self.placebos[i] is not None else 0 for i in idx])
            yield PairBatch(take(batch, slice(0, n)), take(batch, slice(n, 2 * n)),
                            take(batch, slice(2 * n, 3 * n)), take(batch, slice(3 * n, 4 * n)),
                            torch.as_tensor([u is not None for u in unrelated]), has_placebo,
                            step, placebo_step, self.pairs[lo:hi], self.bases[lo:hi],
                            self.sources[lo:hi], adapter.step_width(batch))


def _layout(batch: Batch, i: int) -> tuple:
    """What must be equal for two encoded episodes to share positions."""
    return (int(lengths(batch)[i]), tuple(batch.positions[i].tolist()),
            int(batch.query_positions[i]))


def _same_layout(a: Batch, b: Batch) -> torch.Tensor:
    return ((lengths(a) == lengths(b)) & (a.positions == b.positions).all(1)
            & (a.query_positions == b.query_positions))


def _partners(layouts: list[tuple]) -> list[int | None]:
    """For each pair, another pair whose base shares its layout (the next one in order, cyclic
    within the layout), or None when no other pair has that layout."""
    groups: dict[tuple, list[int]] = {}
    for i, key in enumerate(layouts):
        groups.setdefault(key, []).append(i)
    out: list[int | None] = [None] * len(layouts)
    for members in groups.values():
        if len(members) > 1:
            for j, i in enumerate(members):
                out[i] = members[(j + 1) % len(members)]
    return out
