"""Hand-built models over the boxes world's own tokens (`ops` style) whose expectations are known
exactly, for the prediction axis's tests.

- `RuleModel` knows the rule: it tracks where every object is from the operation tokens and
  predicts the next token as the world allows it — `.` after an operation, then any *legal*
  operation with equal probability, an illegal one with probability ~e^-12 less. Its token
  surprise is high exactly at an impossible operation. `rule_predict` is the same knowledge as
  a latent predictor: it predicts 0 everywhere and encodes 1 at an illegal operation.
- `BlindModel` ignores the state: the same next-token distribution at every position (uniform),
  so the possible and impossible episodes of a pair are equally surprising.
- `LookAhead` reads the whole episode (a bidirectional mix), which the prefix check must catch;
  `Noisy` is not deterministic, which the repeat check must catch.
"""

from __future__ import annotations

import torch
from torch import nn

from probekit.worlds.boxes import OUT, Boxes

OPS_TASK = """\
name: boxes-vio-tiny
version: 1
world: boxes
description: A small one-token-per-operation boxes task with violation pairs.
license: cc-by-4.0
knobs: {n_boxes: 3, n_objects: 3, n_ops: 6, style: ops}
splits:
  train: {size: 60, seed: 1}
  val: {size: 30, seed: 2}
  test: {size: 150, seed: 3}
targets:
  - {name: location, kind: class}
control: {feature: step_text_and_index, seed: 0}
counterfactual: {variable: destination, step: last_touch, readout: query}
violations: {kinds: [same_box, absent_leave], step: random}
"""

N_BOXES, N_OBJECTS = 3, 3
ILLEGAL = -12.0


class _Rules:
    """The boxes world's vocabulary read as operations: object and destination per op token."""

    def __init__(self) -> None:
        world = Boxes(n_boxes=N_BOXES, n_objects=N_OBJECTS, n_ops=6, style="ops")
        self.vocab = world.vocabulary()
        self.index = {w: i for i, w in enumerate(self.vocab)}
        self.objects = world.objects
        self.op: dict[int, tuple[int, int]] = {}  # token id -> (object, destination; N_BOXES: out)
        for o, name in enumerate(self.objects):
            for d in [*range(N_BOXES), None]:
                self.op[self.index[f"{name}>{OUT if d is None else d}"]] = \
                    (o, N_BOXES if d is None else d)
        self.dot = self.index["."]

    @staticmethod
    def legal(loc: list[int], o: int, d: int) -> bool:
        """Whether `o` may go to `d` (N_BOXES: out) with the objects at `loc`."""
        return d != loc[o] if d != N_BOXES else loc[o] != N_BOXES

    def walk(self, ids: list[int]):
        """(position, token, op or None, legal or None, locations before it) along one episode."""
        loc = [N_BOXES] * N_OBJECTS
        for j, t in enumerate(ids):
            op = self.op.get(t)
            ok = None if op is None else self.legal(loc, *op)
            yield j, t, op, ok, list(loc)
            if op is not None:
                loc[op[0]] = op[1]


class RuleModel(nn.Module):
    """Next-token logits from the world's own rule (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self.rules = _Rules()
        self.embed = nn.Identity()  # a named layer for the adapter (the one-hot inputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        V = len(self.rules.vocab)
        onehot = self.embed(nn.functional.one_hot(x, V).float())
        out = torch.zeros(x.shape[0], x.shape[1], V)
        for b, ids in enumerate(x.tolist()):
            for j, t, op, _, loc in self.rules.walk(ids):
                if op is not None:  # after an operation comes "."
                    out[b, j] = ILLEGAL
                    out[b, j, self.rules.dot] = 0.0
                    continue
                loc = list(loc)  # after "." (or anything else): a legal operation
                row = torch.full((V,), ILLEGAL)
                for tid, (o, d) in self.rules.op.items():
                    if self.rules.legal(loc, o, d):
                        row[tid] = 0.0
                out[b, j] = row
        return out + 0 * onehot.sum()


def rule_predict(module: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The rule as a latent predictor: predicted 0, encoded 1 at an illegal operation."""
    rules = module.rules
    encoded = torch.zeros(x.shape[0], x.shape[1], 2)
    for b, ids in enumerate(x.tolist()):
        for j, _, op, ok, _ in rules.walk(ids):
            if op is not None and not ok:
                encoded[b, j] = 1.0
    return torch.zeros_like(encoded), encoded


class BlindModel(nn.Module):
    """The same (uniform) next-token distribution everywhere: blind to the state."""

    def __init__(self) -> None:
        super().__init__()
        self.n = len(_Rules().vocab)
        self.embed = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed(torch.zeros(x.shape[0], x.shape[1], self.n))


class LookAhead(RuleModel):
    """The rule's logits plus a term from the whole episode's tokens: reads later inputs."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ramp = torch.linspace(0, 1, len(self.rules.vocab))
        return super().forward(x) + x.float().mean(1)[:, None, None] * ramp


class Noisy(RuleModel):
    """The rule's logits plus fresh noise on every call."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) + torch.randn(x.shape[0], x.shape[1], 1) * 0.1 + \
            torch.randn(x.shape[0], x.shape[1], len(self.rules.vocab)) * 0.1
