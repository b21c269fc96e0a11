"""Interchange interventions as data, run through the adapter's one hook path.

An intervention is, per run r and per edited layer: the positions to write (`pos` [R, P]), the
values to swap in there (`values` [R, P, D], the source episode's clean activations at those
positions), and the featurizer (`basis` [R, D, k] or [D, k], orthonormal; `full[r]` swaps the
whole vector). The edit sets h ← h + Q Qᵀ (values − h) at those positions (or h ← values).
Steering adds a vector instead. Runs of one forward may mix sites, featurizers and sources; an
intervention "at l and every later layer" is one edit per layer.

`captum_reference` recomputes a full-vector patch with Captum's `LayerFeatureAblation`, the
independent path every causal run checks the hook path against on its first batch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from probekit.adapters.base import Adapter, Batch
from probekit.adapters.hooks import Edit
from probekit.causal.readouts import Labels, Readout


def index_lists(mask: torch.Tensor) -> torch.Tensor:
    """[R, T] bool → [R, P] positions, P the most any row has. Short rows repeat their first
    position (writing the same value twice is harmless); rows with none hold -1."""
    R = mask.shape[0]
    P = max(int(mask.sum(1).max()) if R else 0, 1)
    order = torch.argsort((~mask).to(torch.int8), dim=1, stable=True)[:, :P]
    count = mask.sum(1, keepdim=True)
    slot = torch.arange(P)[None]
    pos = torch.where(slot < count, order, order[:, :1])
    return torch.where(count > 0, pos, torch.full_like(pos, -1))


@dataclass
class Swap:
    """A featurized interchange at one layer (see the module docstring)."""

    pos: torch.Tensor  # [R, P] (-1: no position)
    values: torch.Tensor  # [R, P, D]
    basis: torch.Tensor | None = None  # [R, D, k] or [D, k]
    full: torch.Tensor | None = None  # [R] bool: runs that swap the whole vector

    def part(self, idx: torch.Tensor, start: int = 0, stop: int | None = None) -> Swap:
        """The runs `idx` on the slice of positions [start, stop) (positions outside it are
        dropped: in a causal model they cannot reach what the slice reads)."""
        basis = self.basis
        if basis is not None and basis.ndim == 3:
            basis = basis[idx]
        return Swap(_shifted(self.pos[idx], start, stop), self.values[idx], basis,
                    None if self.full is None else self.full[idx])

    def edit(self) -> Edit:
        pos, values, basis, full = self.pos, self.values, self.basis, self.full

        def run(h: torch.Tensor) -> torch.Tensor:
            rows, idx, ok, cur = _gather(h, pos)
            delta = values.to(device=h.device, dtype=h.dtype) - cur
            if basis is not None:
                Q = basis.to(device=h.device, dtype=h.dtype)
                if Q.ndim == 2:
                    proj = (delta @ Q) @ Q.T
                else:
                    proj = torch.einsum("rpk,rdk->rpd", torch.einsum("rpd,rdk->rpk", delta, Q), Q)
                delta = proj if full is None else torch.where(
                    full.to(h.device)[:, None, None], delta, proj)
            new = torch.where(ok, cur + delta, cur)
            return h.index_put((rows, idx), new)

        return run


def _gather(h: torch.Tensor, pos: torch.Tensor
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Row and position indices of `pos` [R, P] in `h` [R, T, D] (-1 clamped to 0), which of
    them are real (`ok` [R, P, 1]) and the vectors there [R, P, D]."""
    p = pos.to(h.device)
    idx = p.clamp_min(0)
    rows = torch.arange(h.shape[0], device=h.device)[:, None].expand_as(idx)
    return rows, idx, (p >= 0)[..., None], h[rows, idx]


@dataclass
class Add:
    """Steering: add `vectors` [R, D] at positions `pos` [R, P] (-1: none)."""

    pos: torch.Tensor
    vectors: torch.Tensor

    def part(self, idx: torch.Tensor, start: int = 0, stop: int | None = None) -> Add:
        return Add(_shifted(self.pos[idx], start, stop), self.vectors[idx])

    def edit(self) -> Edit:
        pos, vectors = self.pos, self.vectors

        def run(h: torch.Tensor) -> torch.Tensor:
            rows, idx, ok, cur = _gather(h, pos)
            new = torch.where(ok, cur + vectors.to(device=h.device, dtype=h.dtype)[:, None], cur)
            return h.index_put((rows, idx), new)

        return run


def _shifted(pos: torch.Tensor, start: int, stop: int | None = None) -> torch.Tensor:
    """Positions relative to `start`; -1 for none and for those at or after `stop`."""
    keep = (pos >= start) & (pos < stop if stop is not None else True)
    return torch.where(keep, pos - start, -1)


def gather_values(acts: torch.Tensor, rows: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """[R, P, D] activations `acts` [B, T, D] of batch rows `rows` [R] at `pos` [R, P]."""
    return acts[rows.to(acts.device)[:, None], pos.clamp_min(0).to(acts.device)]


def run_edits(adapter: Adapter, readout: Readout, base: Batch, rows: torch.Tensor,
              labels: Labels, edits: dict[str, Callable[[torch.Tensor], torch.Tensor]]
              ) -> torch.Tensor:
    """[R, K] readout logits of runs r = base row `rows[r]` with `edits` applied (one forward;
    `labels` are the batch's, indexed by `rows`)."""
    from probekit.causal.pairs import take

    batch = take(base, rows)
    return readout.logits(adapter, batch, labels.rows(rows), edits)


def captum_reference(adapter: Adapter, readout: Readout, base: Batch, labels: Labels,
                     layer: str, mask: torch.Tensor, source_acts: torch.Tensor,
                     rows: list[int]) -> torch.Tensor:
    """[len(rows)] readout margins logit[cf] − logit[base] after a full-vector patch of `layer`
    at `mask` [B, T] with `source_acts` [B, T, D], computed by Captum's `LayerFeatureAblation`
    (one mask group holding every position; the positions not patched keep their own
    activation as the group's baseline)."""
    from captum.attr import LayerFeatureAblation

    from probekit.adapters.hooks import capture

    base = base.to(adapter.device)
    keys = tuple(base.inputs)
    own = capture(adapter, base, [layer])[layer]
    out = []
    for b in rows:
        one = labels.rows(torch.tensor([b]))

        def margin(*tensors: torch.Tensor) -> torch.Tensor:
            n = tensors[0].shape[0]
            batch = Batch(dict(zip(keys, tensors)), base.positions[b:b + 1].expand(n, -1),
                          base.query_positions[b:b + 1].expand(n),
                          base.answer_ids[b:b + 1].expand(n))
            z = readout.logits(adapter, batch, Labels(one.position.expand(n),
                                                      one.base.expand(n), one.cf.expand(n),
                                                      one.extra.expand(n, *one.extra.shape[1:])))
            return z[:, int(one.cf)] - z[:, int(one.base)]

        m = mask[b].to(own.device)
        baseline = torch.where(m[:, None], source_acts[b].to(own.device, own.dtype), own[b])
        inputs = tuple(t[b:b + 1] for t in base.inputs.values())
        with torch.no_grad():
            clean = margin(*inputs)
            diff = LayerFeatureAblation(margin, adapter.module(layer)).attribute(
                inputs, layer_baselines=baseline[None],
                layer_mask=torch.zeros(1, m.shape[0], 1, dtype=torch.long, device=own.device))
        out.append(clean - diff.reshape(-1)[0])  # Captum: f(base) − f(patched)
    return torch.stack(out).reshape(-1)
