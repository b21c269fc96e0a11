"""Interchange interventions: run a base input with chosen positions of one layer replaced.

`CaptumPatcher` is the reference and serves any adapter: Captum's `LayerFeatureAblation` with
one mask group per patch group and the replacement activations as `layer_baselines`.
`CachedPatcher` gives the same numbers for Hugging Face causal LMs faster: a patch at layer l and
position p changes nothing below l and, in a causal model, nothing before p, so it reuses the
clean run's keys/values for the prefix and runs only the blocks above l on positions p to the
last read position.

A patch call makes R runs: run r patches base row `rows[r]` with `values[r]` at the positions of
each group of `groups[r]` (-1: not patched), one run per group; every readout reads every run.
"""

from __future__ import annotations

import inspect
import warnings
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from probekit.adapters.base import Adapter, Batch
from probekit.causal.readouts import Readout, ReadoutForward, capture, one_tensor
from probekit.errors import ModelError, UnknownNameError

METHODS = ("auto", "captum", "cached")


def layer_activations(adapter: Adapter, layers: list[str], batch: Batch
                      ) -> dict[str, torch.Tensor]:
    """Each layer's output [B, T, D] for `batch`, through Captum's `LayerActivation`."""
    from captum.attr import LayerActivation

    batch = batch.to(adapter.device)
    keys = tuple(batch.inputs)

    def run(*tensors: torch.Tensor) -> torch.Tensor:
        n = tensors[0].shape[0]
        return adapter.forward(Batch(dict(zip(keys, tensors)), torch.zeros(n, 0, dtype=torch.long),
                                     torch.full((n,), -1), torch.full((n,), -1)))

    modules = [adapter.module(layer) for layer in layers]
    with torch.no_grad():
        acts = LayerActivation(run, modules).attribute(tuple(batch.inputs.values()))
    if len(layers) == 1:
        acts = [acts]
    return {layer: one_tensor(a, layer) for layer, a in zip(layers, acts)}


class Patcher(ABC):
    """Runs interchange interventions of one adapter, read by several readouts at once."""

    def __init__(self, adapter: Adapter, readouts: Sequence[Readout]):
        self.adapter, self.readouts = adapter, list(readouts)

    @abstractmethod
    def patch(self, layer: str, base: Batch, groups: torch.Tensor, values: torch.Tensor,
              which: torch.Tensor, rows: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Per readout, [R, G, K] logits of the patched runs (G = groups.max() + 1; a group a
        run lacks reads clean). `which` [B, readouts] holds each base row's head indices."""

    def function(self, keys: tuple[str, ...]) -> ReadoutForward:
        """The readouts as a function of input tensors in `keys` order (Captum's forward)."""
        return ReadoutForward(self.adapter, self.readouts, keys)

    def read_positions(self, batch: Batch) -> torch.Tensor:
        """[B, readouts] where each readout reads each example."""
        return torch.stack([r.position(batch) for r in self.readouts], 1)

    def clean(self, batch: Batch, which: torch.Tensor) -> list[torch.Tensor]:
        """Per readout, [B, K] logits of unpatched runs."""
        batch = batch.to(self.adapter.device)
        f = self.function(tuple(batch.inputs))
        with torch.no_grad():
            return f.split(f(*batch.inputs.values(), self.read_positions(batch), which))


class CaptumPatcher(Patcher):
    """Captum's `LayerFeatureAblation`, one call per run: mask groups are the run's patch
    groups, `layer_baselines` its replacement activations, and positions outside every group
    join the first group with their own activations (a no-op), since Captum ablates every mask
    element. `perturbations_per_eval` groups share a forward (all of a run's by default)."""

    def __init__(self, adapter: Adapter, readouts: Sequence[Readout],
                 perturbations_per_eval: int | None = None):
        super().__init__(adapter, readouts)
        self.perturbations_per_eval = perturbations_per_eval

    def patch(self, layer: str, base: Batch, groups: torch.Tensor, values: torch.Tensor,
              which: torch.Tensor, rows: torch.Tensor | None = None) -> list[torch.Tensor]:
        from captum.attr import LayerFeatureAblation

        device = self.adapter.device
        base = base.to(device)
        rows = torch.arange(len(groups)) if rows is None else rows.cpu()
        groups, values, which = groups.to(device), values.to(device), which.to(device)
        f = self.function(tuple(base.inputs))
        read = self.read_positions(base)
        clean = torch.cat(self.clean(base, which), 1)
        own = layer_activations(self.adapter, [layer], base)[layer]
        G = max(int(groups.max()) + 1, 1)
        out = clean[rows][:, None].repeat(1, G, 1)
        ablation = LayerFeatureAblation(f, self.adapter.module(layer))
        for r, b in enumerate(rows.tolist()):
            g = groups[r]
            present = torch.unique(g[g >= 0])
            if len(present) == 0:
                continue
            mask = torch.where(g >= 0, g, present[0])
            baseline = torch.where((g >= 0)[:, None], values[r].to(own.dtype), own[b])
            with torch.no_grad():
                diff = ablation.attribute(
                    tuple(t[b:b + 1] for t in base.inputs.values()),
                    layer_baselines=baseline[None], layer_mask=mask[None, :, None],
                    additional_forward_args=(read[b:b + 1], which[b:b + 1]),
                    perturbations_per_eval=self.perturbations_per_eval or len(present))
            first = torch.stack([(g == i).nonzero()[0, 0] for i in present])
            out[r, present] = clean[b] - diff[:, first, 0].T  # Captum: f(base) − f(patched)
        return f.split(out)


class CachedPatcher(Patcher):
    """Patching for Hugging Face causal LMs that recomputes only what a patch can change:
    blocks above the patched layer, on positions from the first patched one to the last read
    one, with the clean run's keys/values standing in for the prefix. The clean run of a base
    batch is kept and reused while the same batch object is patched again."""

    def __init__(self, adapter: Adapter, readouts: Sequence[Readout], max_rows: int = 256):
        super().__init__(adapter, readouts)
        if not self.supports(adapter):
            raise ModelError(f"model {adapter.identity.id} is not a Hugging Face causal LM with "
                             "a plain key/value cache; use method='captum'")
        self.max_rows = max_rows
        model = adapter.model
        params = inspect.signature(model.forward).parameters
        self._cache_arg = "cache" if "cache" in params else "past_key_values"
        first = adapter.module("block.0")
        self._blocks = next(m for m in model.modules()
                            if isinstance(m, nn.ModuleList) and len(m) and m[0] is first)
        self._depth = {name: i - 1 for i, name in enumerate(adapter.layers())}  # embed: -1
        self._memo: tuple[Batch, dict[str, Any]] | None = None

    @staticmethod
    def supports(adapter: Adapter) -> bool:
        """A Hugging Face causal LM (with or without its head) with full attention."""
        from probekit.adapters.hf import HFAdapter

        if not isinstance(adapter, HFAdapter):
            return False
        from transformers.models.auto.modeling_auto import (MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
                                                            MODEL_MAPPING_NAMES)

        config = adapter.model.config
        name = type(adapter.model).__name__
        causal = name in set(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values()) or (
            MODEL_MAPPING_NAMES.get(config.model_type) == name
            and config.model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES)
        sliding = getattr(config, "sliding_window", None) is not None or any(
            t != "full_attention" for t in getattr(config, "layer_types", None) or [])
        return causal and not sliding and not config.is_encoder_decoder and \
            _prefix_independent(adapter.model)

    def patch(self, layer: str, base: Batch, groups: torch.Tensor, values: torch.Tensor,
              which: torch.Tensor, rows: torch.Tensor | None = None) -> list[torch.Tensor]:
        self.adapter.check_layers([layer])
        device = self.adapter.device
        state = self._clean_state(base, which)
        rows = torch.arange(len(groups), device=device) if rows is None else rows.to(device)
        groups, values = groups.to(device), values.to(device)
        which = which.to(device)
        hidden = state["hidden"][layer]
        read = state["read"]  # [B, readouts]
        G = max(int(groups.max()) + 1, 1)
        outs = [c[rows][:, None].repeat(1, G, 1) for c in state["clean"]]
        li = self._depth[layer]
        depth = [len(self._depth) - 1 if r.layer is None else self._depth[r.layer]
                 for r in self.readouts]  # the head counts as the deepest layer
        cells: list[tuple[int, int, int]] = []  # (first patched position, run, group)
        for r, b in enumerate(rows.tolist()):
            for g in torch.unique(groups[r][groups[r] >= 0]).tolist():
                mine = groups[r] == g
                start = int(mine.nonzero()[0, 0])
                for i, readout in enumerate(self.readouts):
                    if depth[i] == li:  # the readout reads the patched layer itself
                        p = int(read[b, i])
                        vec = values[r, p].to(hidden.dtype) if mine[p] else hidden[b, p]
                        outs[i][r, g] = readout.head(vec[None], which[b:b + 1, i])[0]
                if any(depth[i] > li and start <= read[b, i] for i in range(len(depth))):
                    cells.append((start, r, g))
        with torch.no_grad():
            for chunk in self._chunks(sorted(cells), groups.shape[1]):
                start = chunk[0][0]  # runs starting later recompute a few clean positions
                runs = torch.as_tensor([r for _, r, _ in chunk], device=device)
                own = torch.as_tensor([g for _, _, g in chunk], device=device)
                base_rows = rows[runs]
                end = int(read[base_rows].max()) + 1
                mine = (groups[runs, start:end] == own[:, None])[..., None]
                x = torch.where(mine, values[runs, start:end].to(hidden.dtype),
                                hidden[base_rows, start:end])
                vectors = self._run(li, x, [k[base_rows, :, :start] for k in state["keys"]],
                                    [v[base_rows, :, :start] for v in state["values"]],
                                    (read[base_rows] - start).clamp(0, end - start - 1))
                for i, readout in enumerate(self.readouts):
                    if depth[i] <= li:
                        continue
                    reached = read[base_rows, i] >= start  # else the patch is downstream
                    logits = readout.head(vectors[i], which[base_rows, i])
                    outs[i][runs[reached], own[reached]] = logits[reached]
        return outs

    def _chunks(self, cells: list[tuple[int, int, int]], length: int
                ) -> Iterator[list[tuple[int, int, int]]]:
        """Cells sorted by first patched position, cut into runs of at most `max_rows` whose
        starts lie within `length // 8` positions of each other (few calls, little waste)."""
        slack = max(1, length // 8)
        chunk: list[tuple[int, int, int]] = []
        for cell in cells:
            if chunk and (len(chunk) == self.max_rows or cell[0] - chunk[0][0] > slack):
                yield chunk
                chunk = []
            chunk.append(cell)
        if chunk:
            yield chunk

    def _clean_state(self, base: Batch, which: torch.Tensor) -> dict[str, Any]:
        """One clean forward of `base`: every layer's output, every block's keys/values, the
        read positions and the readouts' clean logits (kept for the next call on `base`)."""
        if self._memo is not None and self._memo[0] is base:
            return self._memo[1]
        batch = base.to(self.adapter.device)
        with capture(self.adapter, self.adapter.layers()) as hidden, torch.no_grad():
            out = self.adapter.model(**batch.inputs, use_cache=True)
        cache = getattr(out, "cache", None) or getattr(out, "past_key_values", None)
        read = self.read_positions(batch)
        which = which.to(self.adapter.device)
        clean = []
        for i, r in enumerate(self.readouts):
            source = out.logits if r.layer is None else hidden[r.layer]
            rows = torch.arange(len(read), device=source.device)
            clean.append(r.head(source[rows, read[:, i]], which[:, i]))
        state = {"hidden": hidden, "keys": [lay.keys for lay in cache.layers],
                 "values": [lay.values for lay in cache.layers], "read": read, "clean": clean}
        self._memo = (base, state)
        return state

    def _run(self, li: int, x: torch.Tensor, keys: list[torch.Tensor],
             values: list[torch.Tensor], read: torch.Tensor) -> list[torch.Tensor]:
        """Blocks li+1.. on hidden states `x` [n, t, D] that follow a clean prefix; returns each
        readout's input vector [n, F] at relative positions `read` [n, readouts]."""
        from transformers import DynamicCache

        n = x.shape[0]
        prefix = keys[0].shape[2]
        kwargs: dict[str, Any] = {"inputs_embeds": x, "use_cache": prefix > 0}
        if prefix > 0:
            kwargs[self._cache_arg] = DynamicCache(ddp_cache_data=list(zip(keys, values)))
        layers = sorted({r.layer for r in self.readouts
                         if r.layer is not None and self._depth[r.layer] > li})
        output = any(r.layer is None for r in self.readouts)
        embed = self.adapter.module("embed")  # looked up before the block list is cut
        out = None
        with capture(self.adapter, layers, stop=not output) as caught, \
                _only_blocks(self._blocks, li + 1), _replace_output(embed, x):
            out = self.adapter.model(**kwargs)
        rows = torch.arange(n, device=x.device)
        vectors = []
        for i, r in enumerate(self.readouts):
            source = out.logits if r.layer is None else caught.get(r.layer)
            vectors.append(None if source is None else source[rows, read[:, i]])
        return vectors


@contextmanager
def _only_blocks(blocks: nn.ModuleList, first: int) -> Iterator[None]:
    """Run only blocks[first:] (each keeps its own cache index) for the duration."""
    saved = blocks._modules
    blocks._modules = OrderedDict((str(i), m) for i, m in enumerate(list(saved.values())[first:]))
    try:
        yield
    finally:
        blocks._modules = saved


@contextmanager
def _replace_output(module: nn.Module, x: torch.Tensor) -> Iterator[None]:
    """Make `module` output `x` (where the model calls it at all)."""
    handle = module.register_forward_hook(lambda mod, args, output: x)
    try:
        yield
    finally:
        handle.remove()


def _prefix_independent(model: nn.Module) -> bool:
    """Whether earlier positions ignore later tokens: an encoder class (BERT with is_decoder
    off) attends both ways, and a cached prefix would then be wrong."""
    ids = torch.tensor([[1, 2, 3, 4], [1, 2, 3, 5]], device=next(model.parameters()).device)
    with torch.no_grad():
        hidden = model(input_ids=ids, output_hidden_states=True).hidden_states[-1]
    return bool(torch.allclose(hidden[0, :3], hidden[1, :3], atol=1e-5))


def make_patcher(adapter: Adapter, readouts: Sequence[Readout], method: str = "auto",
                 perturbations_per_eval: int | None = None) -> Patcher:
    """`cached` for the causal LMs it serves, else `captum`; `auto` picks the fast one it can."""
    if method not in METHODS:
        raise UnknownNameError("patching method", method, METHODS)
    if method == "cached" or (method == "auto" and CachedPatcher.supports(adapter)):
        return CachedPatcher(adapter, readouts)
    return CaptumPatcher(adapter, readouts, perturbations_per_eval)


def agrees(fast: Patcher, reference: Patcher, layer: str, base: Batch, groups: torch.Tensor,
           values: torch.Tensor, which: torch.Tensor, atol: float = 1e-4) -> bool:
    """Whether two patchers give the same readouts on one batch (the fast path's self-check);
    warns with the largest difference when they do not."""
    a = torch.cat(fast.patch(layer, base, groups, values, which), -1)
    b = torch.cat(reference.patch(layer, base, groups, values, which), -1)
    if torch.allclose(a, b, atol=atol, rtol=1e-4):
        return True
    warnings.warn(f"the cached patching path disagrees with Captum on layer {layer} "
                  f"(max |diff| {float((a - b).abs().max()):.2e}); using Captum", stacklevel=2)
    return False
