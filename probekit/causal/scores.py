"""Scores of interchange interventions on one cell (layer × positions × scope × featurizer).

On the pairs scored (the model answers both base and source right, the cell's positions exist):
- IIA: the share whose patched readout takes the counterfactual class, with an exact binomial
  (Clopper–Pearson) 95% interval — never a bootstrap that collapses to [0, 0] at IIA 0;
- baseline: the same patch from an unrelated episode: the share landing on the counterfactual
  class by chance;
- placebo: patching from a source that changes only what the readout does not depend on: the
  share whose readout leaves the base answer (a specific site stays near 0);
- gain: (IIA − baseline) / (source accuracy − baseline), the share of the headroom above the
  baseline the patch reaches, with a paired bootstrap interval over pairs (IIA and baseline
  resampled together).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from probekit.intervals import N_BOOT, percentile_interval, resample_weights


def gain(hit: np.ndarray, base_hit: np.ndarray, has_base: np.ndarray,
         ceiling: np.ndarray) -> float | None:
    """(mean hit − mean baseline hit) / (mean ceiling − mean baseline hit) over one set of
    pairs (baseline over those with an unrelated partner); None where undefined."""
    if not has_base.any() or not len(hit):
        return None
    b = float(base_hit[has_base].mean())
    top = float(ceiling.mean())
    if top - b <= 1e-12:
        return None
    return (float(hit.mean()) - b) / (top - b)


def _gains(W: np.ndarray, hit: np.ndarray, base_hit: np.ndarray, has_base: np.ndarray,
           ceiling: np.ndarray) -> np.ndarray:
    """`gain` of every resample (rows of W); NaN where undefined."""
    with np.errstate(divide="ignore", invalid="ignore"):
        n = W.sum(1)
        b = (W @ (base_hit * has_base)) / (W @ has_base.astype(float))
        top = W @ ceiling / n
        g = (W @ hit / n - b) / (top - b)
        return np.where(top - b > 1e-12, g, np.nan)


@lru_cache(maxsize=8)
def _resamples(n: int, seed: int, n_boot: int) -> np.ndarray:
    """`resample_weights`, drawn once per (n, seed, n_boot): every cell of a run is resampled
    over the same pairs with the same seed, and the draw costs more than the statistic."""
    W = resample_weights(n, seed, n_boot)
    W.setflags(write=False)
    return W


def paired_gain_interval(hit: np.ndarray, base_hit: np.ndarray, has_base: np.ndarray,
                         ceiling: np.ndarray, seed: int = 0, n_boot: int = N_BOOT
                         ) -> tuple[float, float] | None:
    """Paired bootstrap interval of `gain`: IIA, baseline and ceiling resampled together;
    None when fewer than half the resamples define it."""
    if len(hit) == 0:
        return None
    W = _resamples(len(hit), seed, n_boot)
    values = _gains(W, hit, base_hit, has_base, ceiling)
    return percentile_interval(values, min_defined=len(values) // 2)


def paired_difference_interval(a: tuple, b: tuple, seed: int = 0, n_boot: int = N_BOOT
                               ) -> tuple[float, float] | None:
    """Paired bootstrap interval of gain(a) − gain(b), two featurizers on the same pairs (each
    a tuple hit, base_hit, has_base, ceiling)."""
    if len(a[0]) == 0:
        return None
    W = _resamples(len(a[0]), seed, n_boot)
    values = _gains(W, *a) - _gains(W, *b)
    return percentile_interval(values, min_defined=len(values) // 2)
