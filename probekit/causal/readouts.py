"""Readouts: what a patched run is judged by — K class logits read at one position per pair.

- `token`: the model's next-token logits at the query position over the task's answer tokens
  (models with a token head, tasks whose episodes end with a question);
- `legal`: the model's next-step distribution at the last step, as Li et al. (2023) read
  Othello-GPT's next-move logits, for tasks with a `legal.*` label family and no question:
  two classes, the log-sum-exp of the logits of the steps legal only in the base world and of
  those legal only in the source world;
- `probe`: a linear probe on the last layer's latents at the last step, for every model
  (JEPA-style encoders included). Class targets give the probe's classes; a regression target
  gives two classes, minus the squared distance of the prediction to the base and to the
  source value.

For each pair the readout gives its read position, the base class and the counterfactual class
(-1 where the pair cannot be read), and per-pair data its head needs.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from probekit.adapters.base import Adapter, Batch
from probekit.adapters.hooks import Edit, latents_at, logits_at
from probekit.causal.pairs import PairBatch
from probekit.errors import DataError, ModelError

LOGIT_FLOOR = -1e4  # logit of a class a probe never saw in training (keeps margins finite)


@dataclass
class Labels:
    """Per pair of a batch: read position, base and counterfactual class (-1: unreadable), and
    what the head needs (`extra`, indexed by pair)."""

    position: torch.Tensor  # [B]
    base: torch.Tensor  # [B]
    cf: torch.Tensor  # [B]
    extra: torch.Tensor  # [B, ...]

    @property
    def readable(self) -> torch.Tensor:
        return (self.position >= 0) & (self.base >= 0) & (self.cf >= 0)

    def rows(self, index: torch.Tensor) -> Labels:
        return Labels(self.position[index], self.base[index], self.cf[index], self.extra[index])


class Readout(ABC):
    """Class logits from one forward: `vectors` reads what the head needs at each run's read
    position, `head` turns it into [R, K] logits. `layer` is where a probe readout reads (None:
    the model's output)."""

    name: ClassVar[str]
    layer: str | None = None

    @abstractmethod
    def labels(self, pb: PairBatch) -> Labels:
        """Read positions, classes and head data of each pair of a batch."""

    @abstractmethod
    def head(self, vectors: torch.Tensor, extra: torch.Tensor) -> torch.Tensor:
        """[R, K] logits from read vectors [R, F] and the runs' head data."""

    def vectors(self, adapter: Adapter, batch: Batch, position: torch.Tensor,
                edit: Mapping[str, Edit] | None = None) -> torch.Tensor:
        if self.layer is None:
            return logits_at(adapter, batch, position, edit)
        return latents_at(adapter, batch, self.layer, position, edit)

    def logits(self, adapter: Adapter, batch: Batch, labels: Labels,
               edit: Mapping[str, Edit] | None = None) -> torch.Tensor:
        """[R, K] logits of a forward of `batch` (R runs) with `edit`; `labels` per run."""
        v = self.vectors(adapter, batch.to(adapter.device), labels.position, edit)
        return self.head(v, labels.extra.to(v.device))

    def describe(self) -> dict[str, Any]:
        return {"readout": self.name, "layer": self.layer}


class TokenReadout(Readout):
    """The model's next-token logits at the query position over the candidate answer tokens."""

    name = "token"

    def __init__(self, adapter: Adapter, candidates: list[int]):
        if not adapter.has_token_head:
            raise ModelError(f"model {adapter.identity.id} has no token head, so it has no token "
                             "readout; use the probe readout (readout='probe')")
        if len(set(candidates)) < 2:
            raise DataError("the token readout needs at least two candidate answer tokens; "
                            f"the pairs give {len(set(candidates))}")
        self.classes = np.asarray(sorted(set(candidates)), dtype=np.int64)
        self._columns = torch.as_tensor(self.classes)
        self._lookup = {v: i for i, v in enumerate(self.classes.tolist())}

    def labels(self, pb: PairBatch) -> Labels:
        def index(ids: torch.Tensor) -> torch.Tensor:
            return torch.as_tensor([self._lookup.get(int(i), -1) for i in ids.tolist()])

        B = len(pb)
        return Labels(pb.base.query_positions.clone(), index(pb.base.answer_ids),
                      index(pb.source.answer_ids), torch.zeros(B, 1))

    def head(self, vectors: torch.Tensor, extra: torch.Tensor) -> torch.Tensor:
        return vectors[:, self._columns.to(vectors.device)]

    def describe(self) -> dict[str, Any]:
        return {"readout": self.name, "layer": None, "classes": len(self.classes)}


class LegalReadout(Readout):
    """Next-step legality at the last step: class 0 gathers the steps legal only in the base
    world, class 1 those legal only in the source world (log-sum-exp of their logits). A pair
    where either set is empty has no contrast and cannot be read."""

    name = "legal"

    def __init__(self, adapter: Adapter, task: Any, steps: list[str]):
        if not adapter.has_token_head:
            raise ModelError(f"model {adapter.identity.id} has no token head, so it has no "
                             "next-step readout; use the probe readout (readout='probe')")
        self.steps = steps  # the `legal.<step>` entity names, in column order
        vocabulary = task.spec.world_for().vocabulary()
        missing = [s for s in steps if s not in vocabulary]
        if missing:
            raise DataError(f"task {task.name}: legal.{missing[0]} names no word of the world's "
                            "vocabulary, so its next-step logit cannot be read")
        self._ids = torch.as_tensor(adapter.word_ids(steps, vocabulary))

    def labels(self, pb: PairBatch) -> Labels:
        def legal(rows: list[dict[str, Any]]) -> torch.Tensor:
            return torch.as_tensor([[int(r[f"label.legal.{s}"][-1]) for s in self.steps]
                                    for r in rows], dtype=torch.bool)

        base, source = legal(pb.bases), legal(pb.sources)
        only_base, only_source = base & ~source, source & ~base
        ok = only_base.any(1) & only_source.any(1)
        cls = torch.where(ok, 0, -1)
        extra = torch.stack([only_base, only_source], 1)  # [B, 2, steps]
        return Labels(pb.base.positions[:, -1].clone(), cls, torch.where(ok, 1, -1), extra)

    def head(self, vectors: torch.Tensor, extra: torch.Tensor) -> torch.Tensor:
        z = vectors[:, self._ids.to(vectors.device)]  # [R, steps]
        masked = torch.where(extra, z[:, None, :], torch.tensor(-torch.inf, device=z.device))
        out = torch.logsumexp(masked, -1)
        return torch.nan_to_num(out, neginf=LOGIT_FLOOR)

    def describe(self) -> dict[str, Any]:
        return {"readout": self.name, "layer": None, "classes": 2}


class ProbeReadout(Readout):
    """Linear probes on `layer`'s latents at the last step, one per readout target (`heads`);
    `coef` [H, K, D] and `intercept` [H, K] live in the latents' own space. Regression heads
    (K = 1) read as two classes: −(ŷ − base)² and −(ŷ − source)²."""

    name = "probe"

    def __init__(self, layer: str, heads: list[str], classes: np.ndarray, coef: np.ndarray,
                 intercept: np.ndarray, regress: bool = False):
        self.layer, self.heads, self.classes = layer, tuple(heads), np.asarray(classes)
        self.regress = regress
        self.coef = torch.as_tensor(coef, dtype=torch.float32)
        self.intercept = torch.as_tensor(np.maximum(intercept, LOGIT_FLOOR), dtype=torch.float32)
        self._lookup = {v: i for i, v in enumerate(self.classes.tolist())}

    def labels(self, pb: PairBatch) -> Labels:
        heads = {h: i for i, h in enumerate(self.heads)}
        which = torch.as_tensor([heads.get(p["readout_target"], -1) for p in pb.pairs])
        if (which < 0).any():
            raise DataError("a pair's readout target has no probe in this readout; fit the "
                            "probe readout on every readout target of the pairs")
        position = pb.base.positions[:, -1].clone()
        if self.regress:
            values = torch.as_tensor([[float(p["base_label"]), float(p["counterfactual_label"])]
                                      for p in pb.pairs])
            extra = torch.cat([which[:, None].float(), values], 1)
            B = len(pb)
            return Labels(position, torch.zeros(B, dtype=torch.long),
                          torch.ones(B, dtype=torch.long), extra)
        base = torch.as_tensor([self._lookup.get(p["base_label"], -1) for p in pb.pairs])
        cf = torch.as_tensor([self._lookup.get(p["counterfactual_label"], -1) for p in pb.pairs])
        return Labels(position, base, cf, which[:, None].float())

    def head(self, vectors: torch.Tensor, extra: torch.Tensor) -> torch.Tensor:
        which = extra[:, 0].long()
        W = self.coef.to(vectors.device)[which]
        z = torch.einsum("bd,bkd->bk", vectors.to(W.dtype), W) + \
            self.intercept.to(vectors.device)[which]
        if not self.regress:
            return z
        return -(z[:, :1] - extra[:, 1:3].to(z.device)) ** 2

    def describe(self) -> dict[str, Any]:
        return {"readout": self.name, "layer": self.layer,
                "classes": 2 if self.regress else len(self.classes)}
