"""Any `torch.nn.Module` with named layers: the way a user brings a JEPA-style encoder or
predictor, or a model of their own, without writing an adapter.

The module is called with one tensor: the episode's world `tokens` [B, T] (step positions:
`token_steps`), or its observations `obs` [B, T, D] (step positions: the step index).
Episodes are right-padded; a causal module ignores the padding, a bidirectional one sees it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from probekit.adapters.base import (
    Adapter,
    Batch,
    ModelIdentity,
    n_params,
    resolve_device,
    state_sha256,
)
from probekit.errors import DataError, ModelError, UserError

INPUTS = ("tokens", "obs")
INPUT_KEY = {"tokens": "input_ids", "obs": "obs"}


class ModuleAdapter(Adapter):
    """`ModuleAdapter(module, layers={"name": submodule or dotted path, …}, inputs="tokens")`.

    `layers` lists the layers input side first; each must output one tensor [B, T, d] (or a
    tuple whose first element is). With `token_head`, the module's output is next-token logits
    over the world's vocabulary (the token readout); without, any tensor. The random-init twin
    is a copy re-initialised by every module's `reset_parameters()`, or by `init(module)`, under
    `torch.manual_seed(seed)`. `head` (a submodule or dotted path) is the token head, reading
    one position's last hidden state; `head_layer` the layer whose output reaches the head
    position by position (after a per-position norm at most): a patch there can change a token
    readout only at the readout's own position. Both are optional; causal probes use them to
    read logits cheaply and to mark cells that cannot reach the readout.

    `predict` makes the module a latent predictor (its `latent` surprise):
    `predict(module, inputs) -> (predicted, encoded)`, both [B, T, d], `predicted[:, j]` the
    latent the model expects at position j + 1 (made at j) and `encoded[:, j]` the latent it
    encodes at j. Its weights must live in `module`, so the random-init twin re-initialises
    them; the twin calls the same `predict` on its own module.
    """

    ADAPTER = "module"

    def __init__(self, module: nn.Module, layers: Mapping[str, nn.Module | str],
                 inputs: str = "tokens", *, model_id: str | None = None,
                 revision: str | None = None, token_head: bool = False,
                 family: str | None = None, alpha: float | None = None,
                 width: int | None = None, depth: int | None = None,
                 init: Callable[[nn.Module], None] | None = None,
                 head: nn.Module | str | None = None, head_layer: str | None = None,
                 predict: Callable[[nn.Module, torch.Tensor],
                                   tuple[torch.Tensor, torch.Tensor]] | None = None,
                 device: str | torch.device = "auto"):
        if not isinstance(module, nn.Module):
            raise UserError(f"ModuleAdapter wraps a torch.nn.Module, got {type(module).__name__}")
        if inputs not in INPUTS:
            raise UserError(f"inputs {inputs!r} is not valid; valid: {', '.join(INPUTS)}")
        if token_head and inputs != "tokens":
            raise ModelError("a token head was asked of a continuous-only model (inputs='obs'); "
                             "token logits need token inputs — pass token_head=False")
        if not layers:
            raise UserError("name at least one layer: layers={'name': submodule or dotted path}")
        self.paths = {name: _path(module, name, m) for name, m in layers.items()}
        self.head_path = None if head is None else _path(module, "head", head)
        if head_layer is not None and head_layer not in self.paths:
            raise UserError(f"head_layer {head_layer!r} is not one of the named layers "
                            f"({', '.join(self.paths)})")
        self.head_layer = head_layer
        if predict is not None and not callable(predict):
            raise UserError(f"predict must be a callable predict(module, inputs) -> (predicted, "
                            f"encoded), got {type(predict).__name__}")
        self.predict = predict
        self.inputs, self.has_token_head, self.init = inputs, token_head, init
        self.device = resolve_device(device)
        self.model = module.to(self.device).eval()
        sha = state_sha256(module)
        dtype = next((p.dtype for p in module.parameters()), torch.float32)
        self.identity = ModelIdentity(
            id=model_id or f"module/{type(module).__name__}", revision=revision or sha[:12],
            sha256=sha, adapter=self.ADAPTER, n_params=n_params(module),
            dtype=str(dtype).split(".")[-1], family=family, alpha=alpha,
            architecture=type(module).__name__, width=width, depth=depth)

    def layers(self) -> list[str]:
        return list(self.paths)

    def module(self, layer: str) -> nn.Module:
        self.check_layers([layer])
        return self.model.get_submodule(self.paths[layer])

    def head_module(self) -> nn.Module | None:
        return None if self.head_path is None else self.model.get_submodule(self.head_path)

    def batch(self, episodes: list[dict[str, Any]]) -> Batch:
        return encode(episodes, self.inputs)

    def forward(self, batch: Batch) -> torch.Tensor:
        out = self.model(batch.inputs[INPUT_KEY[self.inputs]])
        if isinstance(out, (tuple, list)) and out:
            out = out[0]
        if not isinstance(out, torch.Tensor):
            raise ModelError(f"model {self.identity.id} returned {type(out).__name__}; its "
                             "forward must return a tensor (or a tuple whose first item is)")
        return out

    def surprise_kinds(self) -> tuple[str, ...]:
        return super().surprise_kinds() + (("latent",) if self.predict is not None else ())

    @torch.no_grad()
    def step_predictions(self, batch: Batch, kind: str | None = None):
        from probekit.adapters.surprise import latent_predictions

        if self._surprise_kind(kind) != "latent":
            return super().step_predictions(batch, kind)
        out = self.predict(self.model, batch.to(self.device).inputs[INPUT_KEY[self.inputs]])
        if not (isinstance(out, (tuple, list)) and len(out) == 2
                and all(isinstance(t, torch.Tensor) for t in out)):
            raise ModelError(f"predict of model {self.identity.id} returned "
                             f"{type(out).__name__}; it must return (predicted, encoded) latents")
        return latent_predictions(out[0], out[1], batch.positions)

    def random_init(self, seed: int) -> ModuleAdapter:
        twin = copy.deepcopy(self.model).cpu()  # CPU: the same draws on every device
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            (self.init or reset_parameters)(twin)
        ident = self.identity
        return type(self)(twin, self.paths, self.inputs, model_id=f"{ident.id}@random-init",
                          revision=f"seed{seed}", token_head=self.has_token_head,
                          family=ident.family, alpha=ident.alpha, width=ident.width,
                          depth=ident.depth, init=self.init,
                          head=self.head_path, head_layer=self.head_layer,
                          predict=self.predict, device=self.device)


def reset_parameters(module: nn.Module) -> None:
    """Re-initialise every submodule through its own `reset_parameters()`; a parameter no such
    method covers is an error (its fresh value would be a guess)."""
    for name, m in module.named_modules():
        reset = getattr(m, "reset_parameters", None) or getattr(m, "_reset_parameters", None)
        if callable(reset):
            reset()
            continue
        own = [p for p, _ in m.named_parameters(recurse=False)]
        if own:
            where = f"{name}.{own[0]}" if name else own[0]
            raise ModelError(f"parameter {where!r} ({type(m).__name__}) has no "
                             "reset_parameters(); pass init=fn(module) to ModuleAdapter to "
                             "initialise the random-init twin")


def _path(module: nn.Module, name: str, layer: nn.Module | str) -> str:
    """The dotted path of a layer given as a submodule or a path."""
    if isinstance(layer, str):
        try:
            module.get_submodule(layer)
        except AttributeError:
            known = [n for n, _ in module.named_modules() if n][:12]
            raise ModelError(f"layer {name!r}: {type(module).__name__} has no submodule "
                             f"{layer!r}; submodules: {', '.join(known)}") from None
        return layer
    for path, m in module.named_modules():
        if m is layer and path:
            return path
    raise ModelError(f"layer {name!r} is not a submodule of {type(module).__name__}; pass one "
                     "of its submodules or a dotted path")


def encode(episodes: list[dict[str, Any]], inputs: str) -> Batch:
    """Right-padded inputs for episodes in the world's own views, with an attention mask.

    tokens: ids [B, T], step s at `token_steps[s]`, the query answer's token read just before
    it (its id in the world vocabulary); obs: observations [B, T, D], step s at position s,
    no query readout.
    """
    if not episodes:
        raise DataError("no episodes to encode")
    n_steps = len(episodes[0]["step_spans"])
    B = len(episodes)
    query = torch.full((B,), -1, dtype=torch.long)
    answer = torch.full((B,), -1, dtype=torch.long)
    if inputs == "tokens":
        seqs = [torch.as_tensor(e["tokens"], dtype=torch.long) for e in episodes]
        steps = [e["token_steps"] for e in episodes]
    else:
        seqs = [torch.as_tensor(e["obs"], dtype=torch.float32) for e in episodes]
        steps = [list(range(len(s))) for s in seqs]
    T = max(len(s) for s in seqs)
    x = torch.zeros((B, T) + seqs[0].shape[1:], dtype=seqs[0].dtype)
    mask = torch.zeros(B, T, dtype=torch.long)
    for b, (e, s) in enumerate(zip(episodes, seqs)):
        if len(steps[b]) != n_steps:
            raise DataError("episodes in one batch must have the same number of steps "
                            f"({len(steps[b])} != {n_steps})")
        x[b, :len(s)], mask[b, :len(s)] = s, 1
        q0 = e.get("query_span", [-1, -1])[0]
        if inputs == "tokens" and q0 >= 0:
            words = e["text"].split(" ")
            if len(words) != len(s):
                raise DataError(f"episode {e['text'][:40]!r}… has {len(s)} tokens but "
                                f"{len(words)} words; its world's tokens must be its words")
            w = e["text"][:q0].count(" ")
            if w > 0:
                query[b], answer[b] = w - 1, s[w]
    positions = torch.as_tensor(steps, dtype=torch.long)
    return Batch({INPUT_KEY[inputs]: x, "attention_mask": mask}, positions, query, answer)
