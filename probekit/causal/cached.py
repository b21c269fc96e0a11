"""The cached fast path for Hugging Face causal LMs: a patch at layer l and positions ≥ p changes
nothing below l and, in a causal model, nothing before p, so a patched run reuses the clean
run's hidden state at l and its keys/values for the prefix, and recomputes only the blocks above
l on positions p to the last read one. Every causal run checks it against the hook path on its
first batch (and falls back to the hook path, with a warning, if they disagree).
"""

from __future__ import annotations

import inspect
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from probekit.adapters.base import Adapter, Batch
from probekit.adapters.hooks import intercept
from probekit.causal.interventions import Add, Swap
from probekit.causal.readouts import Labels, Readout


class CachedRunner:
    """Patched runs of one adapter and readout, prefix reused (see the module docstring)."""

    def __init__(self, adapter: Adapter, readout: Readout, max_rows: int = 512):
        self.adapter, self.readout, self.max_rows = adapter, readout, max_rows
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
        """A Hugging Face causal LM (with or without its head) with full attention whose earlier
        positions ignore later tokens."""
        from probekit.adapters.hf import HFAdapter

        if not isinstance(adapter, HFAdapter):
            return False
        from transformers.models.auto.modeling_auto import (
            MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
            MODEL_MAPPING_NAMES,
        )

        config = adapter.model.config
        name = type(adapter.model).__name__
        causal = name in set(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values()) or (
            MODEL_MAPPING_NAMES.get(config.model_type) == name
            and config.model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES)
        sliding = getattr(config, "sliding_window", None) is not None or any(
            t != "full_attention" for t in getattr(config, "layer_types", None) or [])
        return causal and not sliding and not config.is_encoder_decoder and \
            _prefix_independent(adapter.model)

    def _state(self, base: Batch, hidden: dict[str, torch.Tensor]) -> dict[str, Any]:
        """The clean run of `base`: every block's keys/values (kept while `base` is patched)."""
        if self._memo is not None and self._memo[0] is base:
            return self._memo[1]
        batch = base.to(self.adapter.device)
        with torch.no_grad():
            out = self.adapter.model(**batch.inputs, use_cache=True)
        cache = getattr(out, "cache", None) or getattr(out, "past_key_values", None)
        state = {"keys": [lay.keys for lay in cache.layers],
                 "values": [lay.values for lay in cache.layers], "hidden": hidden}
        self._memo = (base, state)
        return state

    def run(self, base: Batch, hidden: dict[str, torch.Tensor], rows: torch.Tensor,
            labels: Labels, swaps: dict[str, Swap | Add]) -> torch.Tensor:
        """[R, K] readout logits of the runs (base rows `rows`, a swap or an addition per
        layer at the same positions at every layer); `hidden` are the clean base activations
        per layer."""
        state = self._state(base, hidden)
        first = min(swaps, key=lambda name: self._depth[name])
        li = self._depth[first]
        pos = swaps[first].pos
        lab = labels.rows(rows)
        read = lab.position
        starts = torch.where(pos >= 0, pos, torch.iinfo(torch.long).max).amin(1)
        starts = torch.minimum(starts, read)  # a run with no position: recompute from the read
        results: list[tuple[torch.Tensor, torch.Tensor]] = []
        order = torch.argsort(starts, stable=True)
        slack = max(1, int(read.max()) // 3)  # fewer, longer runs: per-call overhead dominates
        chunk: list[int] = []
        for i in order.tolist():
            if chunk and (len(chunk) == self.max_rows
                          or int(starts[i]) - int(starts[chunk[0]]) > slack):
                results.append(self._chunk(state, rows, lab, swaps, first, li, starts, chunk))
                chunk = []
            chunk.append(i)
        if chunk:
            results.append(self._chunk(state, rows, lab, swaps, first, li, starts, chunk))
        K = results[0][1].shape[-1]
        out = torch.empty(len(rows), K, device=results[0][1].device)
        for idx, logits in results:
            out[idx.to(out.device)] = logits
        return out

    def _chunk(self, state: dict[str, Any], rows: torch.Tensor, lab: Labels,
               swaps: dict[str, Swap | Add], first: str, li: int, starts: torch.Tensor,
               chunk: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        from transformers import DynamicCache

        device = self.adapter.device
        idx = torch.as_tensor(chunk)
        start = int(starts[idx].min())
        base_rows = rows[idx].to(device)
        read = lab.position[idx]
        end = int(read.max()) + 1
        h = state["hidden"][first][base_rows, start:end]
        edits = {name: s.part(idx, start, end) for name, s in swaps.items()}
        x = edits[first].edit()(h)
        later = {name: e.edit() for name, e in edits.items() if name != first}
        keys = [k[base_rows, :, :start] for k in state["keys"]]
        values = [v[base_rows, :, :start] for v in state["values"]]
        kwargs: dict[str, Any] = {"inputs_embeds": x, "use_cache": start > 0}
        if start > 0:
            kwargs[self._cache_arg] = DynamicCache(ddp_cache_data=list(zip(keys, values)))
        rel = Labels(read - start, lab.base[idx], lab.cf[idx], lab.extra[idx])
        vectors = self._vectors(kwargs, rel.position, later, li, x)
        return idx, self.readout.head(vectors, rel.extra.to(vectors.device))

    def _vectors(self, kwargs: dict[str, Any], position: torch.Tensor, edits: dict[str, Any],
                 li: int, x: torch.Tensor) -> torch.Tensor:
        """The readout's input vector at relative `position` from one run of blocks li+1.. on
        `x` (modules are looked up before the block list is cut)."""
        from probekit.adapters.hooks import Site, Stop

        a = self.adapter
        rows = torch.arange(len(position), device=a.device)
        position = position.to(a.device)
        embed = a.module("embed")
        if self.readout.layer is not None:
            site = Site(self.readout.layer, position[:, None])
            with intercept(a, capture=[site], edit=edits, stop_after=self.readout.layer) as got, \
                    _only_blocks(self._blocks, li + 1), _replace_output(embed, x):
                a.model(**kwargs)
            return got[self.readout.layer][:, 0]
        head = a.head_module()
        kept: list[torch.Tensor] = []

        def gather(module: nn.Module, args: Any) -> None:
            kept.append(args[0][rows, position])
            raise Stop

        handle = head.register_forward_pre_hook(gather)
        try:
            with intercept(a, edit=edits), _only_blocks(self._blocks, li + 1), \
                    _replace_output(embed, x):
                a.model(**kwargs)
        finally:
            handle.remove()
        return head(kept[0])


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
