"""Readouts: what a patched run is judged by — class logits read at one position per example.

The token readout is the model's own next-token prediction at the query, restricted to the
task's answer tokens; the probe readout is a linear probe on a later layer's latents at the last
step, so models without a token head (JEPA-style encoders) are judged the same way.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from probekit.adapters.base import Adapter, Batch
from probekit.causal.pairs import PairBatch
from probekit.errors import DataError, ModelError
from probekit.tasks import Task

LOGIT_FLOOR = -1e4  # logit of a class a probe never saw in training (keeps margins finite)


class Readout(ABC):
    """Class logits [B, K] from one vector per example: the model's output (`layer` None) or a
    layer's latents, gathered at `position(batch)`. `classes` are the label values of the K
    columns; `heads` lists what `which` indexes (one probe per readout target)."""

    name: ClassVar[str]
    layer: str | None
    classes: np.ndarray
    heads: tuple[str, ...]

    @abstractmethod
    def position(self, batch: Batch) -> torch.Tensor:
        """[B] the input position each example is read at (-1: none)."""

    @abstractmethod
    def head(self, vectors: torch.Tensor, which: torch.Tensor) -> torch.Tensor:
        """[B, K] logits from vectors [B, F] (F: vocabulary or latent size)."""

    @abstractmethod
    def labels(self, pairs: PairBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """[B] head index, base class and counterfactual class (-1: not a class) of each pair."""

    def index(self, values: Any) -> np.ndarray:
        """Column index of each label value (-1 for a value that is not a class)."""
        lookup = {v: i for i, v in enumerate(self.classes.tolist())}
        return np.asarray([lookup.get(v, -1) for v in np.asarray(values).tolist()], dtype=np.int64)


class TokenReadout(Readout):
    """The model's next-token logits at the query position over the candidate answer tokens."""

    name = "token"
    layer = None
    heads = ("answer",)

    def __init__(self, adapter: Adapter, candidates: list[int]):
        if not adapter.has_token_head:
            raise ModelError(f"model {adapter.identity.id} has no token head, so it has no token "
                             "readout; use the probe readout (readout='probe')")
        if len(set(candidates)) < 2:
            raise DataError("the token readout needs at least two candidate answer tokens; "
                            f"the pairs give {len(set(candidates))}")
        self.classes = np.asarray(sorted(set(candidates)), dtype=np.int64)
        self._columns = torch.as_tensor(self.classes)

    def position(self, batch: Batch) -> torch.Tensor:
        return batch.query_positions

    def head(self, vectors: torch.Tensor, which: torch.Tensor) -> torch.Tensor:
        return vectors[:, self._columns.to(vectors.device)]

    def labels(self, pairs: PairBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        which = torch.zeros(len(pairs.step), dtype=torch.long)
        return (which, torch.as_tensor(self.index(pairs.base.answer_ids)),
                torch.as_tensor(self.index(pairs.source.answer_ids)))


class ProbeReadout(Readout):
    """Linear probes on `layer`'s latents at the last step, one per readout target (`heads`);
    `coef` [H, K, D] and `intercept` [H, K] live in the latents' own space."""

    name = "probe"

    def __init__(self, layer: str, heads: list[str], classes: np.ndarray, coef: np.ndarray,
                 intercept: np.ndarray):
        self.layer, self.heads, self.classes = layer, tuple(heads), np.asarray(classes)
        self.coef = torch.as_tensor(coef, dtype=torch.float32)
        self.intercept = torch.as_tensor(np.maximum(intercept, LOGIT_FLOOR), dtype=torch.float32)

    @classmethod
    def fit(cls, adapter: Adapter, task: Task, layer: str, heads: list[str], *,
            batch_size: int = 32, progress: bool = False) -> "ProbeReadout":
        """Probes for `heads` (label columns) on the clean train latents of `layer` at the last
        step, penalty chosen on val."""
        probes = fit_probes(adapter, task, [layer], heads, steps="last", batch_size=batch_size,
                            progress=progress)
        return cls(layer, heads, probes.classes, probes.coef[0], probes.intercept[0])

    def position(self, batch: Batch) -> torch.Tensor:
        return batch.positions[:, -1]

    def head(self, vectors: torch.Tensor, which: torch.Tensor) -> torch.Tensor:
        W = self.coef.to(vectors.device)[which]
        return torch.einsum("bd,bkd->bk", vectors.to(W.dtype), W) + \
            self.intercept.to(vectors.device)[which]

    def labels(self, pairs: PairBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        heads = {h: i for i, h in enumerate(self.heads)}
        which = [heads.get(p["readout_target"], -1) for p in pairs.pairs]
        if min(which) < 0:
            raise DataError("a pair's readout target has no probe in this readout; fit the "
                            "probe readout on every readout target of the pairs")
        base = self.index([p["base_label"] for p in pairs.pairs])
        cf = self.index([p["counterfactual_label"] for p in pairs.pairs])
        return torch.as_tensor(which), torch.as_tensor(base), torch.as_tensor(cf)


class FittedProbes:
    """Logistic probes per layer × target (label column) over shared `classes`: for layer l,
    coef[l] [H, K, D_l] and intercept[l] [H, K] (-inf for classes a target never showed)."""

    def __init__(self, targets: list[str], classes: np.ndarray, coef: list[np.ndarray],
                 intercept: list[np.ndarray]):
        self.targets, self.classes, self.coef, self.intercept = targets, classes, coef, intercept


def fit_probes(adapter: Adapter, task: Task, layers: list[str], targets: list[str], *,
               steps: str = "all", max_episodes: int | None = None, batch_size: int = 32,
               progress: bool = False) -> FittedProbes:
    """Fit logistic probes for label columns `targets` on train latents (`steps`: every step,
    or the last one only; the first `max_episodes` episodes of each split), penalty chosen on
    val; latents come from the extraction cache. Layers of one width are fit together."""
    from probekit.extraction import extract
    from probekit.probes import fit_linear_probes

    X: dict[str, list[np.ndarray]] = {}
    Y: dict[str, np.ndarray] = {}
    for split in ("train", "val"):
        latents = extract(adapter, task, split, layers, batch_size=batch_size, progress=progress)
        ds = task.dataset(split)
        missing = [t for t in targets if f"label.{t}" not in ds.column_names]
        if missing:
            raise DataError(f"task {task.name} has no label column {missing[0]!r} to probe")
        labels = np.stack([np.asarray(ds[f"label.{t}"]) for t in targets], -1)[:max_episodes]
        if not np.issubdtype(labels.dtype, np.integer):
            raise DataError(f"probe readouts and steering need class labels; {targets} of task "
                            f"{task.name} are not integer classes")
        xs = [latents.layer(layer)[:max_episodes] for layer in layers]  # [N, S, D_l] each
        if steps == "last":
            xs, labels = [x[:, -1] for x in xs], labels[:, -1]
        X[split] = [x.reshape(-1, x.shape[-1]) for x in xs]
        Y[split] = labels.reshape(-1, len(targets))
    classes = np.unique(np.concatenate([Y[s].ravel() for s in Y]))
    index = {v: i for i, v in enumerate(classes.tolist())}
    encode = np.vectorize(index.__getitem__, otypes=[np.int64])
    coef: list[np.ndarray] = [np.empty(0)] * len(layers)
    intercept: list[np.ndarray] = [np.empty(0)] * len(layers)
    for width in sorted({x.shape[-1] for x in X["train"]}):
        group = [i for i, x in enumerate(X["train"]) if x.shape[-1] == width]
        probes = fit_linear_probes(np.stack([X["train"][i] for i in group]),
                                   encode(Y["train"]), "logistic",
                                   X_val=np.stack([X["val"][i] for i in group]),
                                   Y_val=encode(Y["val"]), n_classes=len(classes),
                                   device=adapter.device)
        for j, i in enumerate(group):
            coef[i], intercept[i] = probes.coef_[j], probes.intercept_[j]
    return FittedProbes(list(targets), classes, coef, intercept)


class ReadoutForward:
    """Readouts as one function of the model's input tensors (in `keys` order) followed by read
    positions [B, R] and head indices [B, R] (one column per readout): the readouts' logits side
    by side [B, ΣK] from one run — the forward function Captum perturbs."""

    def __init__(self, adapter: Adapter, readouts: list[Readout], keys: tuple[str, ...]):
        self.adapter, self.readouts, self.keys = adapter, readouts, keys

    def __call__(self, *args: torch.Tensor) -> torch.Tensor:
        tensors, read, which = args[:-2], args[-2], args[-1]
        vectors = self.vectors(dict(zip(self.keys, tensors)), read)
        return torch.cat([r.head(v, which[:, i].to(v.device)) for i, (r, v) in
                          enumerate(zip(self.readouts, vectors))], 1)

    def split(self, logits: torch.Tensor) -> list[torch.Tensor]:
        """[..., ΣK] → one [..., K] per readout."""
        return list(torch.split(logits, [len(r.classes) for r in self.readouts], -1))

    def vectors(self, inputs: dict[str, torch.Tensor], read: torch.Tensor
                ) -> list[torch.Tensor]:
        """Each readout's input vector [B, F] at its read position, from one run that stops
        after the deepest layer read when no readout needs the model's output."""
        n = next(iter(inputs.values())).shape[0]
        batch = Batch(inputs, torch.zeros(n, 0, dtype=torch.long),
                      torch.full((n,), -1), torch.full((n,), -1))
        layers = sorted({r.layer for r in self.readouts if r.layer is not None})
        output = any(r.layer is None for r in self.readouts)
        out = None
        with capture(self.adapter, layers, stop=not output) as caught:
            out = self.adapter.forward(batch)
        vectors = []
        for i, r in enumerate(self.readouts):
            source = out if r.layer is None else caught[r.layer]
            rows = torch.arange(n, device=source.device)
            vectors.append(source[rows, read[:, i].to(source.device)])
        return vectors


class _Stop(Exception):
    """Raised by a hook once the deepest layer needed has run."""


@contextmanager
def capture(adapter: Adapter, layers: list[str], stop: bool = False
            ) -> Iterator[dict[str, torch.Tensor]]:
    """Keep the outputs of `layers` during a run (in the yielded dict); with `stop`, end the
    run right after the deepest of them. Modules are looked up on entry."""
    order = adapter.layers()
    deepest = max(layers, key=order.index) if layers else None
    caught: dict[str, torch.Tensor] = {}

    def keep(layer: str):
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            caught[layer] = one_tensor(output, layer)
            if stop and layer == deepest:
                raise _Stop
        return hook

    handles = [adapter.module(layer).register_forward_hook(keep(layer)) for layer in layers]
    try:
        yield caught
    except _Stop:
        pass
    finally:
        for h in handles:
            h.remove()


def one_tensor(output: Any, layer: str) -> torch.Tensor:
    """A layer's output as its one tensor; anything else is a ModelError (Captum needs one)."""
    if isinstance(output, (tuple, list)) and len(output) == 1:
        output = output[0]
    if not isinstance(output, torch.Tensor) or output.ndim != 3:
        what = (f"a tuple of {len(output)} values" if isinstance(output, (tuple, list))
                else type(output).__name__ if not isinstance(output, torch.Tensor)
                else f"a {output.ndim}-D tensor")
        raise ModelError(f"layer {layer} outputs {what}; interventions need a layer that outputs "
                         "one tensor [batch, positions, dim] — choose another layer")
    return output
