"""One way to read and edit a model's layers during a forward: capture, edit, stop early.

Extraction (latents at the step positions), interchange interventions, DAS and steering all go
through `intercept`: forward hooks on the adapter's layer modules that keep a layer's output
(`capture`, optionally gathered at given positions), replace it by a function of itself
(`edit`), and end the forward once nothing later is needed (`stop_after`). A layer's output is
its one tensor [batch, positions, dim] (a 1-tuple, or a tuple whose first item is the hidden
state, is unwrapped by `layer_output`, the one rule for tuple outputs).

A `Site` names where a latent lives: a layer and, per example, the positions (pyvene's
representation config, as data).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from probekit.errors import ModelError

if TYPE_CHECKING:
    from probekit.adapters.base import Adapter

Edit = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Site:
    """A layer and the positions read or written there: `positions` [B, P] indices (gathered,
    -1 allowed for none, read as position 0) or None for every position. With `width` > 1
    a position is read as the mean over the `width` positions ending at it (a step of a
    vision model: all its patch tokens, `Adapter.step_width`)."""

    layer: str
    positions: torch.Tensor | None = None
    width: int = 1


class Stop(Exception):
    """Raised by a hook once the deepest layer a forward needs has run."""


def layer_output(output: Any, layer: str, strict: bool = False) -> torch.Tensor:
    """A layer's output as its one tensor [batch, positions, dim]. A 1-tuple is unwrapped; a
    longer tuple gives its first item (the hidden state, as transformers blocks return it)
    unless `strict` (interventions need a layer whose whole output is that tensor)."""
    if isinstance(output, (tuple, list)) and output and (len(output) == 1 or not strict):
        output = output[0]
    if not isinstance(output, torch.Tensor) or output.ndim != 3:
        what = (f"a tuple of {len(output)} values" if isinstance(output, (tuple, list))
                else type(output).__name__ if not isinstance(output, torch.Tensor)
                else f"a {output.ndim}-D tensor")
        raise ModelError(f"layer {layer} outputs {what}; probekit needs a layer that outputs one "
                         "tensor [batch, positions, dim] — choose another layer")
    return output


def _replace(output: Any, new: torch.Tensor) -> Any:
    """`output` with its hidden state replaced by `new` (tuples keep their other items)."""
    if isinstance(output, tuple):
        return (new, *output[1:])
    if isinstance(output, list):
        return [new, *output[1:]]
    return new


@contextmanager
def intercept(adapter: Adapter, *, capture: Sequence[Site] = (),
              edit: Mapping[str, Edit] | None = None, stop_after: str | None = None,
              fired: list[str] | None = None) -> Iterator[dict[str, torch.Tensor]]:
    """Hooks for the duration of the block: the yielded dict fills with each captured site's
    output ([B, T, D], or [B, P, D] gathered at its positions; a layer that runs twice keeps
    its last output) as the forward runs; `edit[layer]` replaces that layer's output by a
    function of it (applied before capturing it); the forward ends (a `Stop` raised inside the
    model and caught here) right after `stop_after` has run; `fired`, when given, gets each
    hooked layer's name every time it runs. Modules are looked up on entry; every hook is
    removed on exit."""
    edit = dict(edit or {})
    caught: dict[str, torch.Tensor] = {}
    sites = {s.layer: s for s in capture}
    layers = list(dict.fromkeys([*sites, *edit, *([stop_after] if stop_after else [])]))

    def hook(layer: str):
        def run(module: nn.Module, args: Any, output: Any) -> Any:
            if fired is not None:
                fired.append(layer)
            h = layer_output(output, layer, strict=layer in edit)
            changed = None
            if layer in edit:
                changed = edit[layer](h)
                h = changed
            if layer in sites:
                where, width = sites[layer].positions, sites[layer].width
                if where is None:
                    caught[layer] = h
                elif width == 1:
                    rows = torch.arange(h.shape[0], device=h.device)[:, None]
                    caught[layer] = h[rows, where.to(h.device).clamp_min(0)]
                else:
                    rows = torch.arange(h.shape[0], device=h.device)[:, None, None]
                    back = torch.arange(width - 1, -1, -1, device=h.device)
                    span = (where.to(h.device).clamp_min(0)[..., None] - back).clamp_min(0)
                    caught[layer] = h[rows, span].mean(-2)
            if layer == stop_after:
                raise Stop
            return None if changed is None else _replace(output, changed)
        return run

    handles = [adapter.module(layer).register_forward_hook(hook(layer)) for layer in layers]
    try:
        yield caught
    except Stop:
        pass
    finally:
        for h in handles:
            h.remove()


def capture(adapter: Adapter, batch: Any, layers: Sequence[str],
            positions: torch.Tensor | None = None, stop: bool = True
            ) -> dict[str, torch.Tensor]:
    """Each layer's output for `batch` (at `positions` [B, P] when given), from one forward
    that stops after the deepest of them when `stop` (no gradient)."""
    order = adapter.layers()
    deepest = max(layers, key=order.index)
    batch = batch.to(adapter.device)
    with torch.no_grad(), intercept(adapter, capture=[Site(layer, positions) for layer in layers],
                                    stop_after=deepest if stop else None) as caught:
        adapter.forward(batch)
    missing = [layer for layer in layers if layer not in caught]
    if missing:
        raise ModelError(f"layer {missing[0]} of {adapter.identity.id} did not run in a forward "
                         "pass; choose layers the model's forward uses")
    return caught


def logits_at(adapter: Adapter, batch: Any, positions: torch.Tensor,
              edit: Mapping[str, Edit] | None = None) -> torch.Tensor:
    """[B, V] next-token logits at `positions` [B] of a forward with `edit` applied. Where the
    adapter names its head module, only the head's input at those positions goes through the
    head (a pre-hook gathers it and ends the forward); else the full output is indexed."""
    head = adapter.head_module()
    positions = positions.to(adapter.device)
    rows = torch.arange(len(positions), device=adapter.device)
    if head is None:
        with intercept(adapter, edit=edit):
            out = adapter.forward(batch)
        return out[rows, positions]
    kept: list[torch.Tensor] = []

    def gather(module: nn.Module, args: Any) -> None:
        kept.append(args[0][rows, positions])
        raise Stop

    handle = head.register_forward_pre_hook(gather)
    try:
        with intercept(adapter, edit=edit):
            adapter.forward(batch)
    except Stop:
        pass
    finally:
        handle.remove()
    if not kept:
        raise ModelError(f"the head of {adapter.identity.id} did not run in a forward pass")
    return head(kept[0])


def latents_at(adapter: Adapter, batch: Any, layer: str, positions: torch.Tensor,
               edit: Mapping[str, Edit] | None = None) -> torch.Tensor:
    """[B, D] output of `layer` at `positions` [B] of a forward with `edit` applied (the
    forward stops after that layer), read over the batch's step width."""
    site = Site(layer, positions[:, None], adapter.step_width(batch))
    with intercept(adapter, capture=[site], edit=edit, stop_after=layer) as caught:
        adapter.forward(batch)
    if layer not in caught:
        raise ModelError(f"layer {layer} of {adapter.identity.id} did not run in a forward pass")
    return caught[layer][:, 0]
