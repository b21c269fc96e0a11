"""The model adapter contract: identity, layer names, episodes → inputs, forward, layer modules.

One small interface serves every model on the NTP → JEPA spectrum; extraction and causal probes
talk only to it.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from probekit.errors import ModelError, UnknownNameError, UserError


@dataclass(frozen=True)
class ModelIdentity:
    """Who the model is: enough to tell two results apart and to file them in a store."""

    id: str
    revision: str
    sha256: str
    adapter: str
    n_params: int
    dtype: str
    family: str | None = None  # spectrum family (e.g. "ntp", "jepa"), when known
    alpha: float | None = None  # spectrum mixing coefficient, when known
    architecture: str | None = None  # e.g. the config's model_type ("gpt2"), when known
    width: int | None = None  # size of a block's latent (d_model, hidden_size), when known
    depth: int | None = None  # number of blocks (transformer layers), when known

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["spectrum"] = {"family": d.pop("family"), "alpha": d.pop("alpha")}
        return d


@dataclass
class Batch:
    """Model inputs for a list of episodes, plus where each step (and the query) sits.

    `positions[b, s]` is the input position whose latent represents step s of episode b;
    `query_positions[b]` is the position whose output predicts the query answer (-1: none);
    `answer_ids[b]` is the answer's token id under the model's vocabulary (-1: none).
    """

    inputs: dict[str, torch.Tensor]
    positions: torch.Tensor
    query_positions: torch.Tensor
    answer_ids: torch.Tensor

    def to(self, device: torch.device | str) -> Batch:
        """The batch on `device`; to a GPU it goes through pinned memory, without waiting."""
        pin = torch.device(device).type == "cuda"
        move = lambda t: (t.pin_memory() if pin else t).to(device, non_blocking=True)  # noqa: E731
        return Batch({k: move(v) for k, v in self.inputs.items()}, move(self.positions),
                     move(self.query_positions), move(self.answer_ids))


class Adapter(ABC):
    """A model seen through probekit: subclasses wrap one kind of checkpoint."""

    identity: ModelIdentity
    model: nn.Module
    device: torch.device

    @abstractmethod
    def layers(self) -> list[str]:
        """Stable layer names, input side first (e.g. `embed`, `block.0`, …)."""

    @abstractmethod
    def module(self, layer: str) -> nn.Module:
        """The module whose output (one tensor [batch, positions, dim]) is `layer`'s latents."""

    @abstractmethod
    def batch(self, episodes: list[dict[str, Any]]) -> Batch:
        """Inputs for dataset rows (episodes), on the CPU."""

    @abstractmethod
    def forward(self, batch: Batch) -> torch.Tensor:
        """Run the model; returns its output (token logits [B, T, V] where it has a head)."""

    @abstractmethod
    def random_init(self, seed: int) -> Adapter:
        """The same architecture with freshly initialised weights (the random-init baseline)."""

    has_token_head: bool = False
    #: The layer whose output feeds the token head position by position (final norm and
    #: unembedding act per position), when known: a patch there can reach a token readout only
    #: at the readout's own position, where it is the readout's own input.
    head_layer: str | None = None

    def head_module(self) -> nn.Module | None:
        """The module mapping the last hidden state at one position to next-token logits (its
        input is what it reads), when the adapter knows it."""
        return None

    def word_ids(self, words: list[str], vocabulary: list[str]) -> list[int]:
        """The model's token id of each word of a world's `vocabulary` as it appears in an
        episode (models over the world's own tokens index the vocabulary itself)."""
        index = {w: i for i, w in enumerate(vocabulary)}
        return [index[w] for w in words]

    def step_width(self, batch: Batch) -> int:
        """How many input positions each step of `batch` spans, ending at its position: a step
        is read as the mean of a layer's latents over them. 1 (read at the step's position
        alone, its last token) for every adapter but the vision ones, whose steps are all the
        patch tokens of their frames (`probekit.adapters.vision`)."""
        return 1

    def check_task(self, task: Any) -> None:
        """Refuse (UserError, one line) a task this model cannot read, before any latents: a
        video model given a task without frames, say. Nothing to check by default."""
        return None

    def surprise_kinds(self) -> tuple[str, ...]:
        """The surprises this model defines, headline first: `token` (it has a token head),
        `latent` (it has a latent predictor). See `probekit.adapters.surprise`."""
        return ("token",) if self.has_token_head else ()

    def surprise(self, batch: Batch, kind: str | None = None) -> torch.Tensor:
        """How surprised the model is by each step of `batch` [batch, steps] (float64, CPU):
        token surprisal in nats, or latent prediction error (`kind`; default: the first of
        `surprise_kinds()`). See `probekit.adapters.surprise` for the definitions."""
        return self.step_predictions(batch, kind).surprise

    @torch.no_grad()
    def step_predictions(self, batch: Batch, kind: str | None = None):
        """`surprise` with, for token models, the top-1 next token after each step: a
        `probekit.adapters.surprise.StepPredictions`, from one forward pass."""
        from probekit.adapters.surprise import token_predictions

        kind = self._surprise_kind(kind)
        if kind != "token":
            raise ModelError(f"model {self.identity.id} defines no {kind} surprise")
        moved = batch.to(self.device)
        logits = self.forward(moved)
        return token_predictions(logits, moved.inputs["input_ids"], batch.positions)

    def _surprise_kind(self, kind: str | None) -> str:
        """`kind` checked against `surprise_kinds()` (None: the first); ModelError naming the
        model's kinds otherwise."""
        from probekit.adapters.surprise import KINDS

        kinds = self.surprise_kinds()
        if kind is not None and kind not in KINDS:
            raise UnknownNameError("surprise", str(kind), KINDS)
        if not kinds:
            raise ModelError(f"model {self.identity.id} has neither a token head nor a latent "
                             "predictor, so it defines no surprise; give a ModuleAdapter "
                             "token_head=True or predict=fn(module, inputs)")
        if kind is None:
            return kinds[0]
        if kind not in kinds:
            raise ModelError(f"model {self.identity.id} defines no {kind} surprise (it has: "
                             f"{', '.join(kinds)}); use surprise={kinds[0]!r}")
        return kind

    def capture(self, batch: Batch, layers: list[str], positions: torch.Tensor | None = None,
                stop: bool = True) -> dict[str, torch.Tensor]:
        """Each layer's output [B, T, D] (or at `positions` [B, P]) from one forward."""
        from probekit.adapters.hooks import capture

        return capture(self, batch, layers, positions, stop)

    def check_layers(self, names: list[str] | None) -> list[str]:
        """`names` validated against `layers()` (all of them when None)."""
        known = self.layers()
        if not names:
            return known
        for n in names:
            if n not in known:
                raise UnknownNameError(f"layer of model {self.identity.id}", n, known)
        return [n for n in known if n in set(names)]


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """`auto` → CUDA when present, else CPU; a device that is malformed or absent on this machine
    is a UserError (checked by placing an empty tensor there)."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise UserError(f"device {str(device)!r} is not a device; use auto, cpu, cuda or "
                        "cuda:N") from None
    if resolved.type == "meta":
        raise UserError("device 'meta' holds no data; use auto, cpu, cuda or cuda:N")
    try:
        torch.empty(0, device=resolved)
    except (RuntimeError, AssertionError, ValueError) as e:
        why = str(e).strip().split(". ")[0][:120] or type(e).__name__
        raise UserError(f"device {str(device)!r} is not available here ({why}); use auto or "
                        "cpu") from None
    return resolved


def state_sha256(model: nn.Module) -> str:
    """A hash of the weights themselves (names, shapes, dtypes and bytes)."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def files_sha256(paths: list[Path]) -> str:
    """A hash of weight files, streamed."""
    h = hashlib.sha256()
    for p in sorted(paths):
        h.update(p.name.encode())
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
