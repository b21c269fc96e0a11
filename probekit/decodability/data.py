"""What decodability probes read: latents per split (`ProbeData`) and the ground truth
(`Labels`), the depth buckets of an episode, and chance levels."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from probekit.errors import UserError
from probekit.latents import Latents
from probekit.probes.control import surface_keys
from probekit.tasks import Task, step_column
from probekit.worlds import Target

SPLITS = ("train", "val", "test")
LONG = "test_long"  # the held-out split of longer episodes, where a task has one
PROBE_KIND = {"class": "logistic", "regress": "ridge"}
METRIC = {"class": "accuracy", "regress": "r2"}
PROBE_MEMORY = 1 << 30  # bytes of float32 latents the probes load at once (fitting copies them)


@dataclass(frozen=True)
class ProbeData:
    """Probe inputs of one split: X [L, N·S, D] — an array, or extracted Latents that are read
    from their shards a few layers at a time — with Y [N·S, targets] and control keys."""

    X: np.ndarray | Latents
    Y: np.ndarray
    keys: np.ndarray
    n_episodes: int
    n_steps: int

    @property
    def n_layers(self) -> int:
        return len(self.X.layers) if isinstance(self.X, Latents) else self.X.shape[0]

    def width(self, layer: int) -> int:
        return self.X.dim(self.X.layers[layer]) if isinstance(self.X, Latents) else \
            self.X.shape[2]

    def rows(self, layers: range) -> np.ndarray:
        """X of `layers` (one width), [len(layers), N·S, D] float32."""
        if not isinstance(self.X, Latents):
            return self.X[layers.start:layers.stop]
        x = self.X.stack(list(self.X.layers[layers.start:layers.stop]))
        return x.reshape(len(layers), -1, x.shape[-1])

    def select(self, cols: list[int]) -> ProbeData:
        """The same latents with only the label columns `cols`."""
        return replace(self, Y=self.Y[:, cols])


def probe_data(task: Task, split: str, latents: np.ndarray | Latents,
               targets: list[Target]) -> ProbeData:
    """`latents` from extraction (Latents, or an array [L, N, S, D]), with the split's labels
    and control keys."""
    ds = task.dataset(split)
    Y = np.stack([np.asarray(ds[f"label.{t.name}"], dtype=np.float64).reshape(-1)
                  for t in targets], axis=1)
    keys = surface_keys(ds["surface"], task.spec.control["feature"])
    if isinstance(latents, Latents):
        return ProbeData(latents, Y, keys, latents.n_episodes, latents.n_steps)
    L, N, S, D = latents.shape
    return ProbeData(latents.reshape(L, N * S, D), Y, keys, N, S)


def layer_groups(data: Mapping[str, ProbeData]) -> list[range]:
    """Runs of consecutive layers of one width whose float32 latents, every split together,
    fit in PROBE_MEMORY (one layer at least): what the probes load at once."""
    per_dim = 4 * sum(len(d.Y) for d in data.values())
    train = data["train"]
    groups: list[range] = []
    for i in range(train.n_layers):
        width = train.width(i)
        last = groups[-1] if groups else None
        if last and train.width(last.start) == width and \
                (len(last) + 1) * width * per_dim <= PROBE_MEMORY:
            groups[-1] = range(last.start, i + 1)
        else:
            groups.append(range(i, i + 1))
    return groups


@dataclass(frozen=True)
class Labels:
    """The ground truth a `DecodabilityProbe` reads, per split: `y[split]` [N, S, targets]
    (class labels 0..C-1 with -1 for missing, or real values with NaN for missing) and, for the
    control task, one surface key per step `keys[split]` [N, S]. `chance` maps a target name or
    family to its chance level (else the majority rate on train, 0 for regression).

    `Labels.of_task(task)` reads them from a registered task; build one by hand to probe latents
    of episodes that no task holds (the spectrum trainer's held-out draws, synthetic data)."""

    name: str
    targets: tuple[Target, ...]
    y: Mapping[str, np.ndarray]
    keys: Mapping[str, np.ndarray] | None = None
    chance: Mapping[str, float] = field(default_factory=dict)
    control_seed: int = 0

    @classmethod
    def of_task(cls, task: Task, splits: Sequence[str]) -> Labels:
        """The labels and control keys of `splits` of `task`."""
        y, keys = {}, {}
        for split in splits:
            ds = task.dataset(split)
            table = ds.with_format("arrow")  # once per split: each call copies the dataset
            y[split] = np.stack([step_column(table, f"label.{t.name}").astype(np.float64)
                                 for t in task.targets], axis=-1)
            keys[split] = surface_keys(ds["surface"], task.spec.control["feature"]).reshape(
                y[split].shape[:2])
        return cls(task.name, tuple(task.targets), y, keys, cls.task_chance(task),
                   task.spec.control["seed"])

    @staticmethod
    def task_chance(task: Task) -> dict[str, float]:
        """The chance levels a task's spec gives, by target name or family."""
        return {t.name: t.chance for t in task.spec.targets if t.chance is not None}

    def check(self) -> None:
        """Shapes agree: every split [N, S, targets], keys [N, S]."""
        for split, y in self.y.items():
            if np.ndim(y) != 3 or y.shape[2] != len(self.targets):
                raise UserError(f"labels of split {split!r} have shape {np.shape(y)}; they need "
                                f"[episodes, steps, {len(self.targets)} targets]")
            if self.keys is not None and split in self.keys and \
                    np.shape(self.keys[split]) != y.shape[:2]:
                raise UserError(f"control keys of split {split!r} have shape "
                                f"{np.shape(self.keys[split])}; they need {y.shape[:2]}")


def constant_targets(targets: Sequence[Target], y_train: np.ndarray) -> list[int]:
    """Columns of y_train [rows, targets] that say nothing: a class target with fewer than two
    classes among its labels, a regression target with fewer than two distinct values."""
    out = []
    for j, t in enumerate(targets):
        y = y_train[:, j]
        seen = y[y >= 0] if t.kind == "class" else y[~np.isnan(y)]
        if len(np.unique(seen)) < 2:
            out.append(j)
    return out


def depth_buckets(n_steps: int, n: int = 4) -> list[tuple[str, np.ndarray]]:
    """(name, step indices) of the depth buckets of an episode of `n_steps` steps: `q1`…`qn`
    (step s is in bucket ceil(n·(s+1)/S), so the last step is always in `qn`), `last` and
    `all`. With S a multiple of n each bucket holds S/n consecutive steps; with S < n some
    early buckets are empty."""
    s = np.arange(n_steps)
    q = np.array([math.ceil(n * (i + 1) / n_steps) for i in s], dtype=np.int64)
    return ([(f"q{i}", s[q == i]) for i in range(1, n + 1)]
            + [("last", s[-1:]), ("all", s)])


def chance_levels(task: Task | Labels, targets: Sequence[Target], y_train: np.ndarray
                  ) -> np.ndarray:
    """Per target: the given chance (task spec, or `Labels.chance`, by name or family), else the
    majority-class rate on train (0 for regression, whose metric R² is already 0 at the mean)."""
    given = task.chance if isinstance(task, Labels) else Labels.task_chance(task)
    out = []
    for j, t in enumerate(targets):
        chance = given.get(t.name, given.get(t.family))
        if chance is not None:
            out.append(chance)
        elif t.kind == "class":
            y = y_train[:, j]
            _, counts = np.unique(y[y >= 0], return_counts=True)
            out.append(counts.max() / counts.sum())
        else:
            out.append(0.0)
    return np.asarray(out, dtype=np.float64)


def normalise(score: np.ndarray, chance: np.ndarray) -> np.ndarray:
    """(score − chance) / (1 − chance): chance 0, perfect 1."""
    return (score - chance) / np.maximum(1 - chance, 1e-12)
