"""The World contract: a deterministic simulator that yields episodes in three views plus truth.

A world turns knobs and a numpy Generator into one `Episode`; everything else (splits, seeds,
caching, control labels) is the task's business, so a new world is one small class.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from probekit.errors import SpecError


@dataclass(frozen=True)
class Knob:
    """One difficulty knob: its type, default and valid range (checked when a task loads)."""

    name: str
    type: type
    default: Any
    doc: str
    min: float | None = None
    max: float | None = None
    choices: tuple | None = None

    def validate(self, value: Any, where: str) -> Any:
        if self.type is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if self.type is tuple and isinstance(value, list):
            value = tuple(value)
        if not isinstance(value, self.type) or (self.type is not bool and isinstance(value, bool)):
            raise SpecError(f"{where}.{self.name}: expected {self.type.__name__}, got {value!r}"
                            f" ({self.doc}; {self.range_text()})")
        if self.type is float and not math.isfinite(value):
            raise SpecError(f"{where}.{self.name}: {value!r} is not finite ({self.range_text()})")
        if self.choices is not None:
            items = value if self.type is tuple else (value,)
            bad = [v for v in items if v not in self.choices]
            if bad or (self.type is tuple and not items):
                raise SpecError(f"{where}.{self.name}: {value!r} is not valid; {self.range_text()}")
        if (self.min is not None and value < self.min) or (self.max is not None and value > self.max):
            raise SpecError(f"{where}.{self.name}: {value!r} is out of range; {self.range_text()}")
        return value

    def range_text(self) -> str:
        if self.choices is not None:
            return "valid: " + ", ".join(map(str, self.choices))
        lo = "-inf" if self.min is None else self.min
        hi = "inf" if self.max is None else self.max
        return f"valid range [{lo}, {hi}]" if self.type is not bool else "valid: true, false"


@dataclass(frozen=True)
class Target:
    """One concrete label column: `name` is `<family>.<entity>` or just `<family>`."""

    name: str
    kind: str  # "class" | "regress"
    n_classes: int | None = None

    @property
    def family(self) -> str:
        return self.name.split(".", 1)[0]


@dataclass
class Episode:
    """One episode in all views: text + step spans, world tokens + step positions, observations,
    the true state and one label array per target (each of length T = number of steps).

    `query_span`/`query_answer` mark the answer word of a closing question, when the world asks
    one: the model's token prediction just before it is the token readout.
    """

    text: str
    step_spans: list[list[int]]
    tokens: list[int]
    token_steps: list[int]
    obs: np.ndarray  # [T, D] float32
    state: np.ndarray  # [T, S]
    surface: list[str]  # [T] the step's surface form, for control tasks
    labels: dict[str, np.ndarray]  # target name -> [T]
    query_span: list[int] = field(default_factory=lambda: [-1, -1])
    query_answer: str = ""

    @property
    def n_steps(self) -> int:
        return len(self.step_spans)

    def row(self) -> dict[str, Any]:
        """The episode as one dataset row (plain lists; labels as `label.<target>` columns)."""
        row = {
            "text": self.text,
            "step_spans": self.step_spans,
            "tokens": self.tokens,
            "token_steps": self.token_steps,
            "obs": np.asarray(self.obs, dtype=np.float32).tolist(),
            "state": np.asarray(self.state).tolist(),
            "surface": self.surface,
            "query_span": self.query_span,
            "query_answer": self.query_answer,
        }
        for name, values in self.labels.items():
            row[f"label.{name}"] = np.asarray(values).tolist()
        return row


@dataclass
class Counterfactual:
    """A source episode differing from its base in one intervened variable at one step, and the
    label the readout must take if the model follows the source world."""

    source: Episode
    step: int
    variable: str
    readout_target: str
    base_label: int | float
    counterfactual_label: int | float


class World(ABC):
    """A simulator. Subclasses set `name`, `version` (bump when output changes), `knobs`,
    and implement `targets`, `vocabulary`, `episode` and `counterfactual`."""

    name: ClassVar[str]
    version: ClassVar[str]
    knobs: ClassVar[tuple[Knob, ...]]
    counterfactual_knobs: ClassVar[tuple[Knob, ...]] = ()
    description: ClassVar[str] = ""

    def __init__(self, **params: Any):
        self.params = self.validate_knobs(params, f"world {self.name}")

    @classmethod
    def validate_knobs(cls, params: dict[str, Any], where: str,
                       knobs: tuple[Knob, ...] | None = None) -> dict[str, Any]:
        knobs = cls.knobs if knobs is None else knobs
        by_name = {k.name: k for k in knobs}
        unknown = sorted(set(params) - set(by_name))
        if unknown:
            raise SpecError(f"{where}: unknown knob {unknown[0]!r}; valid knobs: "
                            + ", ".join(sorted(by_name)))
        out = {}
        for k in knobs:
            out[k.name] = k.validate(params[k.name], where) if k.name in params else k.default
        if knobs is cls.knobs:
            cls.check_knobs(out, where)
        return out

    @classmethod
    def check_knobs(cls, params: dict[str, Any], where: str) -> None:
        """Cross-knob constraints (override; raise SpecError naming the knobs)."""

    @abstractmethod
    def targets(self) -> list[Target]:
        """Every label column this world provides under its knobs."""

    @abstractmethod
    def vocabulary(self) -> list[str]:
        """The world's own token vocabulary (the `tokens` view indexes into it)."""

    @abstractmethod
    def episode(self, rng: np.random.Generator) -> Episode:
        """One episode drawn with `rng` (the only source of randomness)."""

    def counterfactual(self, base: Episode, rng: np.random.Generator,
                       settings: dict[str, Any]) -> Counterfactual | None:
        """A minimal counterfactual source for `base`, or None when the world has none."""
        return None


def build_text(steps: list[list[str]], vocab: dict[str, int],
               query: list[str] | None = None, answer: str | None = None
               ) -> tuple[str, list[list[int]], list[int], list[int], list[int], str]:
    """Join word lists into text; return text, step spans, world tokens, token step positions
    (the last token of each step), the query answer's span and the answer word. Every step
    has at least one word; words are joined by single spaces."""
    parts = [" ".join(step) for step in steps]
    spans: list[list[int]] = []
    token_steps: list[int] = []
    pos = n = 0
    for part, step in zip(parts, steps):
        spans.append([pos, pos + len(part)])
        pos += len(part) + 1
        n += len(step)
        token_steps.append(n - 1)
    words = [w for step in steps for w in step]
    qspan = [-1, -1]
    if query is not None and answer is not None:
        parts += [*query, answer]
        words += [*query, answer]
        end = sum(len(p) + 1 for p in parts) - 1
        qspan = [end - len(answer), end]
    text = " ".join(parts)
    tokens = [vocab[w] for w in words]
    return text, spans, tokens, token_steps, qspan, answer or ""
