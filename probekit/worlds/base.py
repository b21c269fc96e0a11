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

from probekit.errors import ProbekitError, SpecError


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
        if (self.min is not None and value < self.min) or \
                (self.max is not None and value > self.max):
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
    one: the model's token prediction just before it is the token readout. `frames` is the
    episode rendered as video [T·F, C, H, W] uint8, set only for tasks that declare frames
    (`probekit.worlds.render`).
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
    frames: np.ndarray | None = None

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
        if self.frames is not None:
            row["frames"] = self.frames
        return row


@dataclass
class Counterfactual:
    """A source episode differing from its base in one intervened variable at one step, and the
    label the readout must take if the model follows the source world.

    `diff_steps`, `diff_tokens` and `changed` are filled by `annotate` (the task calls it):
    the steps whose surface differs, the positions in `tokens` that differ (the closing
    question's answer word left out: it is the readout, never an input to it) and the label
    columns whose last-step value differs. `placebo` is the pair's placebo, when the world makes
    one: a source that changes a variable the readout does not depend on, so its
    `counterfactual_label` equals `base_label`."""

    source: Episode
    step: int
    variable: str
    readout_target: str
    base_label: int | float
    counterfactual_label: int | float
    diff_steps: list[int] = field(default_factory=list)
    diff_tokens: list[int] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    placebo: Counterfactual | None = None


@dataclass
class Violation:
    """Two edits of one base episode at the same step: `impossible` breaks the world's rules
    there (`kind` names the rule), `possible` is a legal edit of the same size where the world
    has one (the base itself where no other step is possible, as in a deterministic automaton).

    The impossible episode's text, tokens and observations show the edit; its `state` and labels
    equal the base's before `step` (look-ahead targets included) and are undefined from `step`
    on (-1 for integer columns, NaN for float ones): the world does not define the state after
    an impossible event.
    Diffs (filled by `annotate`) are against the base."""

    possible: Episode
    impossible: Episode
    step: int
    kind: str
    variable: str
    possible_diff_steps: list[int] = field(default_factory=list)
    possible_diff_tokens: list[int] = field(default_factory=list)
    impossible_diff_steps: list[int] = field(default_factory=list)
    impossible_diff_tokens: list[int] = field(default_factory=list)


class AlignmentError(ProbekitError):
    """A world made a pair whose episodes do not align step for step (a world bug)."""


def aligned(base: Episode, other: Episode) -> str | None:
    """Why `other` does not align with `base`, or None: the same number of steps, of world
    tokens in each step and after the last, and of words in each step."""
    if other.n_steps != base.n_steps:
        return f"{other.n_steps} steps, the base has {base.n_steps}"
    if len(other.tokens) != len(base.tokens) or other.token_steps != base.token_steps:
        return "the world tokens of some step differ in number"
    for s, (a, b) in enumerate(zip(base.surface, other.surface)):
        if len(a.split()) != len(b.split()):
            return f"step {s} has {len(b.split())} words, the base's has {len(a.split())}"
    return None


def diff(base: Episode, other: Episode) -> tuple[list[int], list[int]]:
    """Steps whose surface differs and positions in `tokens` that differ (before the closing
    question's answer word, which is the readout itself) between two aligned episodes."""
    steps = [s for s, (a, b) in enumerate(zip(base.surface, other.surface)) if a != b]
    n = len(base.tokens) - (1 if base.query_answer else 0)
    a, b = np.asarray(base.tokens[:n]), np.asarray(other.tokens[:n])
    return steps, np.flatnonzero(a != b).tolist()


def changed_labels(base: Episode, other: Episode) -> list[str]:
    """Label columns (target names) whose last-step value differs."""
    return [k for k, v in base.labels.items() if not _same(v[-1], other.labels[k][-1])]


def _same(a: Any, b: Any) -> bool:
    return bool(a == b) or (isinstance(a, float) and isinstance(b, float) and a != a and b != b)


def annotate(world: str, base: Episode, made: Counterfactual | Violation) -> None:
    """Check that a pair (its placebo) or a violation pair aligns with its base and fill in its
    diffs; an AlignmentError names the world and what differs."""
    if isinstance(made, Counterfactual):
        items = [("source", made)] + ([("placebo", made.placebo)] if made.placebo else [])
        for what, cf in items:
            why = aligned(base, cf.source)
            if why:
                raise AlignmentError(f"world {world}: {what} episode does not align with its "
                                     f"base ({why})")
            cf.diff_steps, cf.diff_tokens = diff(base, cf.source)
            cf.changed = changed_labels(base, cf.source)
        return
    for what in ("possible", "impossible"):
        ep = getattr(made, what)
        why = aligned(base, ep)
        if why:
            raise AlignmentError(f"world {world}: {what} episode of a violation pair does not "
                                 f"align with its base ({why})")
        steps, tokens = diff(base, ep)
        setattr(made, f"{what}_diff_steps", steps)
        setattr(made, f"{what}_diff_tokens", tokens)


def undefined_from(episode: Episode, t: int, base: Episode) -> Episode:
    """`episode` with its state and labels those of `base` before step `t` (look-ahead
    targets included: before the impossible event they say what the world would do) and
    undefined from `t` on (-1 in integer columns, NaN in float ones), as every impossible
    episode carries them."""
    def blank(a: np.ndarray, before: np.ndarray) -> np.ndarray:
        a = np.array(a, copy=True)
        a[:t] = before[:t]
        a[t:] = np.nan if a.dtype.kind == "f" else -1
        return a

    episode.state = blank(episode.state, base.state)
    episode.labels = {k: blank(v, base.labels[k]) for k, v in episode.labels.items()}
    return episode


class World(ABC):
    """A simulator. Subclasses set `name`, `version` (bump when output changes), `knobs`,
    and implement `targets`, `vocabulary`, `episode`, and where the world has them
    `counterfactual` (with `counterfactual_knobs`), `placebo` and `violation` (with
    `violation_knobs`, or `no_violations` saying why there are none)."""

    name: ClassVar[str]
    version: ClassVar[str]
    knobs: ClassVar[tuple[Knob, ...]]
    counterfactual_knobs: ClassVar[tuple[Knob, ...]] = ()
    violation_knobs: ClassVar[tuple[Knob, ...]] = ()
    # Why the world makes no violation pairs (set where `violation_knobs` is empty on purpose).
    no_violations: ClassVar[str] = ""
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

    def placebo(self, base: Episode, pair: Counterfactual, rng: np.random.Generator,
                settings: dict[str, Any]) -> Counterfactual | None:
        """A placebo source for `pair`: it changes a variable the pair's readout does not depend
        on, aligned with the base like the pair's source, and keeps the readout's label (its
        `counterfactual_label` equals `base_label`); None where the world makes none."""
        return None

    def violation(self, base: Episode, rng: np.random.Generator,
                  settings: dict[str, Any]) -> Violation | None:
        """An impossible and a possible edit of `base` at one step (`violation_knobs` settings),
        or None where this episode admits none."""
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
