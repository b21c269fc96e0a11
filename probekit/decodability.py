"""Decodability: linear probes per layer × target, a control task and a random-init twin.

The layer is chosen on the validation split and reported on test with a bootstrap 95% interval
over test episodes. Scores are normalised so chance is 0 and perfect is 1 before they are
averaged over targets.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from probekit.errors import DataError
from probekit.extraction import Latents
from probekit.probes import fit_linear_probes
from probekit.probes.control import ControlTask, surface_keys
from probekit.tasks import Task
from probekit.worlds import Target

SPLITS = ("train", "val", "test")
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


def layer_groups(data: dict[str, ProbeData]) -> list[range]:
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


def chance_levels(task: Task, targets: list[Target], y_train: np.ndarray) -> np.ndarray:
    """Per target: the spec's chance, else the majority-class rate on train (0 for regression,
    whose metric R² is already 0 at the mean)."""
    spec_chance = {t.name: t.chance for t in task.spec.targets}
    out = []
    for j, t in enumerate(targets):
        given = spec_chance.get(t.name, spec_chance.get(t.family))
        if given is not None:
            out.append(given)
        elif t.kind == "class":
            _, counts = np.unique(y_train[:, j], return_counts=True)
            out.append(counts.max() / counts.sum())
        else:
            out.append(0.0)
    return np.asarray(out)


def normalise(score: np.ndarray, chance: np.ndarray) -> np.ndarray:
    return (score - chance) / np.maximum(1 - chance, 1e-12)


@dataclass
class ProbeScores:
    """Raw metric per split, [L, targets], and test predictions [L, N·S, targets]."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    test_pred: np.ndarray


def fit_scores(data: dict[str, ProbeData], Y: dict[str, np.ndarray], targets: list[Target],
               device: str) -> ProbeScores:
    """Fit one probe per layer × target (logistic for class targets, ridge for regression) with
    the regularisation chosen on val; score every split. Layers are loaded a group at a time
    (`layer_groups`); each layer's probes are independent of the others'."""
    L = data["train"].n_layers
    out = {s: np.zeros((L, len(targets))) for s in SPLITS}
    pred = np.zeros((L, len(Y["test"]), len(targets)))
    constant = [t.name for t, _ in informative(targets, Y["train"], keep=False)]
    if constant:
        raise DataError(f"target {constant[0]} has a single class in the train split; drop it "
                        "from the task's targets or enlarge the split")
    for group in layer_groups(data):
        X = {s: data[s].rows(group) for s in SPLITS}
        at = slice(group.start, group.stop)
        for kind in ("class", "regress"):
            cols = [j for j, t in enumerate(targets) if t.kind == kind]
            if not cols:
                continue
            probes = fit_linear_probes(X["train"], Y["train"][:, cols], kind=PROBE_KIND[kind],
                                       X_val=X["val"], Y_val=Y["val"][:, cols], device=device)
            for s in SPLITS:
                out[s][at, cols] = probes.score(X[s], Y[s][:, cols])
            pred[at, :, cols] = probes.predict(X["test"])
        del X
    return ProbeScores(out["train"], out["val"], out["test"], pred)


def informative(targets: list[Target], y_train: np.ndarray, keep: bool = True
                ) -> list[tuple[Target, int]]:
    """(target, column) of the class targets that take at least two values on train (keep), or
    of those that take one (keep=False); regression targets always count as informative."""
    out = []
    for j, t in enumerate(targets):
        varied = t.kind != "class" or len(np.unique(y_train[:, j])) > 1
        if varied == keep:
            out.append((t, j))
    return out


def control_labels(task: Task, targets: list[Target], data: dict[str, ProbeData]
                   ) -> dict[str, np.ndarray]:
    """Control labels for every split, one column per target."""
    seed = task.spec.control["seed"]
    out = {s: np.zeros_like(data[s].Y) for s in SPLITS}
    for j, t in enumerate(targets):
        ctl = ControlTask(seed).fit(data["train"].keys, data["train"].Y[:, j], t.name)
        for s in SPLITS:
            out[s][:, j] = ctl.labels(data[s].keys)
    return out


def choose_layer(val: np.ndarray, chance: np.ndarray) -> int:
    """The layer with the best mean normalised validation score."""
    return int(np.argmax(normalise(val, chance).mean(axis=1)))


def bootstrap_ci(pred: np.ndarray, y: np.ndarray, targets: list[Target], chance: np.ndarray,
                 n_episodes: int, n_boot: int = 1000, seed: int = 0) -> tuple[float, float]:
    """95% interval of the normalised mean score, resampling whole test episodes."""
    S = len(y) // n_episodes
    rng = np.random.default_rng(seed)
    W = rng.multinomial(n_episodes, np.full(n_episodes, 1 / n_episodes), size=n_boot)  # [B, N]
    scores = []
    for j, t in enumerate(targets):
        p = pred[:, j].reshape(n_episodes, S)
        yy = y[:, j].reshape(n_episodes, S)
        if t.kind == "class":
            per_ep = (p == yy).sum(axis=1)
            scores.append(W @ per_ep / (W.sum(axis=1) * S))
        else:
            sse = W @ ((p - yy) ** 2).sum(axis=1)
            n = W.sum(axis=1) * S
            sum_y, sum_y2 = W @ yy.sum(axis=1), W @ (yy ** 2).sum(axis=1)
            sst = sum_y2 - sum_y ** 2 / n
            scores.append(1 - sse / np.maximum(sst, 1e-12))
    norm = normalise(np.stack(scores, axis=1), chance).mean(axis=1)
    lo, hi = np.percentile(norm, [2.5, 97.5])
    return float(lo), float(hi)
