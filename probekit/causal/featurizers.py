"""Featurizers: which part of a latent an interchange swaps (pyvene's representation configs as
data, MIB's featurizer axis).

- `full`: the whole vector;
- `probe`: the row space of the centred linear (centroid) probes of the state variables the
  readout depends on, at that layer (rank K − 1 per class variable, 1 per regression
  variable) — "swap exactly what a probe of that variable reads" (`StateProbes` says why
  centroids);
- `random`: a random subspace of the same rank (the control: a subspace that large may move the
  readout by chance alone);
- `das`: a learned orthogonal subspace (distributed alignment search, `probekit.causal.das`).

A featurized swap sets h ← h + Q Qᵀ (h_source − h) at the site's positions, Q [D, k]
orthonormal; `full` is Q = I.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from probekit.adapters.base import Adapter
from probekit.errors import DataError
from probekit.tasks import Task, step_column

FEATURIZERS = ("full", "probe", "random", "das")
RANK_TOL = 1e-6


def state_variables(pair: dict[str, Any], base: dict[str, Any], source: dict[str, Any]
                    ) -> list[str]:
    """The label columns the readout depends on for this pair: those of the readout target's
    family whose last-step value differs between base and source (the readout target itself
    when none does), or [] when the readout target is not a label column."""
    target = pair["readout_target"]
    family = target.split(".", 1)[0]
    columns = [k[len("label."):] for k in base if k.startswith("label.")
               and k[len("label."):].split(".", 1)[0] == family]
    changed = [c for c in columns if base[f"label.{c}"][-1] != source[f"label.{c}"][-1]]
    if changed:
        return sorted(changed)
    return [target] if f"label.{target}" in base else []


@dataclass
class StateProbes:
    """Centroid probes of state variables per layer, in the latents' own space: for a class
    variable v at layer l, `means[l][v]` [K, D] holds the mean latent of each class value
    (`classes[v]`) on the train split — the weights of a nearest-centroid linear probe; for a
    regression variable, [1, D] the regression of the latents on the value (cov(h, y) / var(y)).

    Why centroids and not the standardised logistic probes of the decodability axis: a
    featurizer must not depend on the coordinate system of the latent space, and a probe fit on
    per-feature standardised inputs with an L2 penalty has a row space that changes when the
    space is rotated (its penalty is not isotropic there). The span of the centred class means
    is rotation-equivariant, closed-form, and it is what separates the classes on average (the
    difference-of-means direction of CausalGym and of mean-difference steering)."""

    layers: list[str]
    targets: list[str]
    means: list[dict[str, np.ndarray]]
    classes: dict[str, np.ndarray]  # class values of each class variable (absent: regression)

    def basis(self, layer: str, variables: tuple[str, ...]) -> torch.Tensor:
        """[D, k] orthonormal basis of the centred probe rows of `variables` at `layer`."""
        i = self.layers.index(layer)
        rows = []
        for v in variables:
            M = self.means[i][v]
            rows.append(M - M.mean(0, keepdims=True) if v in self.classes else M)
        A = np.concatenate(rows).astype(np.float64)
        u, s, _ = np.linalg.svd(A.T, full_matrices=False)
        keep = s > RANK_TOL * max(float(s.max(initial=0.0)), 1e-30)
        return torch.as_tensor(u[:, keep], dtype=torch.float32)

    def direction(self, layer: str, variables: list[str], base: dict[str, Any],
                  source: dict[str, Any]) -> torch.Tensor | None:
        """[D] unit direction from every variable's base value to its source value at the last
        step (class: the difference of the two class means; regression: the regression
        direction, signed), summed over variables; None when none has a direction."""
        i = self.layers.index(layer)
        total = None
        for v in variables:
            M = self.means[i][v]
            if v in self.classes:
                lookup = {c: j for j, c in enumerate(self.classes[v].tolist())}
                a, b = lookup.get(base[f"label.{v}"][-1]), lookup.get(source[f"label.{v}"][-1])
                if a is None or b is None or a == b:
                    continue
                d = M[b] - M[a]
            else:
                d = M[0] * np.sign(float(source[f"label.{v}"][-1]) - float(base[f"label.{v}"][-1]))
            total = d if total is None else total + d
        if total is None or not np.linalg.norm(total) > 0:
            return None
        return torch.as_tensor(total / np.linalg.norm(total), dtype=torch.float32)


def _train_rows(adapter: Adapter, task: Task, layers: list[str], targets: list[str],
                split: str, steps: str, max_episodes: int | None, batch_size: int,
                progress: bool) -> tuple[list[np.ndarray], np.ndarray]:
    """Latents [N·S, D] per layer (every step, or the last) and labels [N·S, targets]."""
    from probekit.extraction import extract

    latents = extract(adapter, task, split, layers, batch_size=batch_size, progress=progress)
    ds = task.dataset(split)
    missing = [t for t in targets if f"label.{t}" not in ds.column_names]
    if missing:
        raise DataError(f"task {task.name} has no label column {missing[0]!r} to probe")
    n = len(ds) if max_episodes is None else min(len(ds), max_episodes)
    part = ds.select(range(n)).with_format("arrow")
    labels = np.stack([step_column(part, f"label.{t}") for t in targets], -1)  # [N, S, T]
    xs = [latents.layer(layer)[:n] for layer in layers]
    if steps == "last":
        xs, labels = [x[:, -1:] for x in xs], labels[:, -1:]
    return [x.reshape(-1, x.shape[-1]) for x in xs], labels.reshape(-1, len(targets))


def _is_class(y: np.ndarray) -> bool:
    return bool(np.allclose(y, np.round(y)))


def fit_state_probes(adapter: Adapter, task: Task, layers: list[str], targets: list[str], *,
                     max_episodes: int | None = 1000, batch_size: int = 32,
                     progress: bool = False) -> StateProbes:
    """Centroid probes for label columns `targets` at `layers` on the train latents of every
    step (latents from the extraction cache)."""
    X, Y = _train_rows(adapter, task, layers, targets, "train", "all", max_episodes,
                       batch_size, progress)
    means: list[dict[str, np.ndarray]] = [{} for _ in layers]
    classes: dict[str, np.ndarray] = {}
    for j, t in enumerate(targets):
        y = Y[:, j]
        if _is_class(y):
            values = np.unique(y)
            classes[t] = values
            for i, x in enumerate(X):
                means[i][t] = np.stack([x[y == v].mean(0) for v in values])
        else:
            yc = (y - y.mean()).astype(np.float64)
            for i, x in enumerate(X):
                means[i][t] = ((yc @ (x - x.mean(0))) / max(float(yc @ yc), 1e-12))[None]
    return StateProbes(list(layers), list(targets), means, classes)


def fit_readout_probes(adapter: Adapter, task: Task, layer: str, targets: list[str], *,
                       batch_size: int = 32, progress: bool = False
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Linear probes of `targets` on `layer`'s latents at the last step (logistic for class
    labels over their shared classes, ridge otherwise), penalty chosen on val: coef
    [T, K, D], intercept [T, K] (-inf for a class a target never showed), and the class values
    (None for regression)."""
    from probekit.probes import fit_linear_probes

    (xt,), yt = _train_rows(adapter, task, [layer], targets, "train", "last", None, batch_size,
                            progress)
    (xv,), yv = _train_rows(adapter, task, [layer], targets, "val", "last", None, batch_size,
                            progress)
    if _is_class(yt):
        values = np.unique(np.concatenate([yt.ravel(), yv.ravel()]))
        index = {v: i for i, v in enumerate(values.tolist())}
        encode = np.vectorize(index.__getitem__, otypes=[np.int64])
        probes = fit_linear_probes(xt[None], encode(yt), "logistic", X_val=xv[None],
                                   Y_val=encode(yv), n_classes=len(values),
                                   device=adapter.device)
        return probes.coef_[0], probes.intercept_[0], values
    probes = fit_linear_probes(xt[None], yt.astype(np.float64), "ridge", X_val=xv[None],
                               Y_val=yv.astype(np.float64), device=adapter.device)
    return probes.coef_[0], probes.intercept_[0], None


def random_bases(width: int, seed: int) -> torch.Tensor:
    """[D, D] a seeded random orthogonal matrix: its first k columns span a random k-subspace."""
    g = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(width, width, generator=g, dtype=torch.float64))
    return (q * torch.sign(torch.diagonal(r))).float()
