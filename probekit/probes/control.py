"""Control tasks (Hewitt & Liang 2019): each type of a surface feature gets a fixed random label
drawn from the real target's label distribution; a probe that also learns these is memorising,
not reading the world. Selectivity = task score − control score."""

from __future__ import annotations

import hashlib

import numpy as np

from probekit.errors import DataError


def surface_keys(surface: list[list[str]], feature: str) -> np.ndarray:
    """One key per (episode, step), flattened episode-major: the step's text, or text + index."""
    if feature == "step_text":
        keys = [s for ep in surface for s in ep]
    elif feature == "step_text_and_index":
        keys = [f"{i}:{s}" for ep in surface for i, s in enumerate(ep)]
    else:
        raise ValueError(f"unknown control feature {feature!r}")
    return np.asarray(keys, dtype=object)


class ControlTask:
    """Fit on the training labels of one target; then `labels(keys)` maps every key type to its
    fixed random label (the same in every split and every process)."""

    def __init__(self, seed: int = 0):
        self.seed = seed

    def fit(self, keys: np.ndarray, y: np.ndarray, target: str) -> ControlTask:
        y = np.asarray(y)
        if len(y) == 0:
            raise DataError(f"control task for {target}: no training labels")
        self.target_ = target
        self.values_ = np.sort(y)
        n_types = len(set(keys.tolist()))
        if n_types < 100:
            import warnings

            from probekit.errors import ProbekitWarning

            # No target name in the message: the same split warns once, not once per target.
            warnings.warn(f"the control feature has only {n_types} types; Hewitt & Liang "
                          "recommend hundreds (a small control is as learnable as the task)",
                          ProbekitWarning, stacklevel=2)
        return self

    def labels(self, keys: np.ndarray) -> np.ndarray:
        """The label of each key."""
        uniq, inverse = np.unique(keys.astype(str), return_inverse=True)
        return self.type_labels(uniq)[inverse]

    def type_labels(self, types: np.ndarray) -> np.ndarray:
        """The label of each distinct key type (`labels` for keys already made unique, so that
        many targets can share one pass over the keys)."""
        u = np.array([self._quantile(k) for k in types])
        return self.values_[np.minimum((u * len(self.values_)).astype(np.int64),
                                       len(self.values_) - 1)]

    def _quantile(self, key: str) -> float:
        digest = hashlib.sha256(f"{self.seed}\x00{self.target_}\x00{key}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64
