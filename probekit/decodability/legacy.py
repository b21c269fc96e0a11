"""The pooled decodability pieces that `probekit.evaluation.evaluate_task` still assembles
itself. `DecodabilityProbe` replaces them; delete this module once `evaluate_task` calls it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from probekit.decodability.data import (PROBE_KIND, SPLITS, ProbeData, layer_groups,
                                        normalise)
from probekit.errors import DataError
from probekit.probes import fit_linear_probes
from probekit.probes.control import ControlTask
from probekit.tasks import Task
from probekit.worlds import Target


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
