"""Online-code description length of class labels given latents (Voita & Titov 2020).

The training episodes are put in a seeded random order and cut into blocks at FRACTIONS of
them (fractions holding fewer than MIN_EPISODES episodes are dropped). The first block is sent
with the uniform code; each later block with the probabilities of a probe fitted on every block
before it. A representation that makes the labels easy to learn from few examples codes them
in few bits: compression = uniform codelength / online codelength.

Every probe has the one fixed penalty MDL_PENALTY (unless asked otherwise): on standardised
features, ½·penalty·‖W‖² added to the summed log-loss is the MAP fit under a N(0, 1/penalty)
prior on each weight, so the code approximates a Bayesian prequential code, the same for every
model. Penalties chosen on validation accuracy do not serve: accuracy ties on an easy target
keep the strongest penalty, whose probabilities stay near uniform.

Probabilities are mixed with the uniform distribution at weight EPSILON, so a label a probe
gave (numerically) zero probability — a class its prefix never showed — costs a bounded
log2(K/EPSILON) bits rather than infinity. A target with a single class in a prefix is coded
with that class's one-hot prediction (what a probe would give) mixed the same way.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

FRACTIONS = (0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.0625, 0.125, 0.25, 0.5, 1.0)
MIN_EPISODES = 2
EPSILON = 1e-3
MDL_PENALTY = 1.0


def block_ends(n_episodes: int) -> list[int]:
    """Episode counts at which the blocks end (the last is every episode)."""
    ends = sorted({int(round(f * n_episodes)) for f in FRACTIONS})
    return [e for e in ends if e >= MIN_EPISODES] or [n_episodes]


def uniform_bits(y: np.ndarray, n_classes: np.ndarray) -> np.ndarray:
    """[targets] bits of the observed labels of y [rows, targets] under the uniform code."""
    return (y >= 0).sum(0) * np.log2(n_classes)


def online_bits(X: np.ndarray, y: np.ndarray, n_steps: int, n_classes: np.ndarray,
                order: np.ndarray, fit: Callable[..., object]) -> np.ndarray:
    """[layers, targets] online codelength in bits of class labels y [N·S, targets] given latents
    X [layers, N·S, D] (episode-major rows, S = n_steps per episode). `order` is the episode
    order; `fit(X, y, cols, init)` fits probes for the label columns `cols` (each with two classes
    or more in y), warm-started from `init` (the previous prefix's probes of the same columns, or
    None), and returns them (`predict_proba` [layers, rows, targets, classes]) without
    convergence warnings: any probe gives a valid code, it need not converge."""
    rows = (order[:, None] * n_steps + np.arange(n_steps)).reshape(-1)
    X, y = X[:, rows], y[rows]  # episodes in coding order: every prefix is a slice
    y = y.astype(np.int64)
    L, T = X.shape[0], y.shape[1]
    ends = block_ends(len(order))
    bits = np.zeros((L, T))
    first = ends[0] * n_steps
    bits += uniform_bits(y[:first], n_classes)[None]
    previous, previous_varied = None, None
    for start, stop in zip(ends[:-1], ends[1:]):
        prefix, block = slice(0, start * n_steps), slice(start * n_steps, stop * n_steps)
        yp, yb = y[prefix], y[block]
        observed = yb >= 0
        index = np.maximum(yb, 0)
        p = np.zeros((L, len(yb), T))
        varied = [j for j in range(T) if len(np.unique(yp[yp[:, j] >= 0, j])) > 1]
        if varied:
            probes = fit(X[:, prefix], yp[:, varied], varied,
                         previous if varied == previous_varied else None)
            previous, previous_varied = probes, varied
            proba = probes.predict_proba(X[:, block])
            p[:, :, varied] = np.take_along_axis(proba, index[None, :, varied, None], 3)[..., 0]
        for j in set(range(T)) - set(varied):
            seen = yp[yp[:, j] >= 0, j]
            p[:, :, j] = (yb[:, j] == seen[0])[None] if len(seen) else 1 / n_classes[j]
        p = (1 - EPSILON) * p + EPSILON / n_classes
        bits += -(np.log2(p) * observed).sum(1)
    return bits
