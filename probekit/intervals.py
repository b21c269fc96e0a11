"""Every 95% interval probekit reports, computed here and nowhere else.

- `clopper_pearson`: the exact binomial interval of a share (IIA, rates of prediction tests);
- `resample_weights` + `percentile_interval`: a bootstrap — resample whole units (episodes,
  pairs) with replacement as multinomial counts, compute the statistic of every resample as
  a weighted sum (so several statistics can share one draw: a *paired* bootstrap), and take the
  2.5 and 97.5 percentiles of those that are defined;
- `t_interval`: Student's t interval of a mean over a few independent runs (seeds).

It depends on numpy and scipy only, so the record, the probes and the reports can all use it.
"""

from __future__ import annotations

import math

import numpy as np

N_BOOT = 1000  # resamples of a bootstrap


def clopper_pearson(k: float, n: int, level: float = 0.95) -> tuple[float, float]:
    """Exact binomial interval of k successes in n trials (NaN, NaN when n is 0)."""
    from scipy.stats import beta

    if n == 0:
        return float("nan"), float("nan")
    a = 1 - level
    lo = 0.0 if k == 0 else float(beta.ppf(a / 2, k, n - k + 1))
    hi = 1.0 if k == n else float(beta.ppf(1 - a / 2, k + 1, n - k))
    return lo, hi


def resample_weights(n: int, seed: int, n_boot: int = N_BOOT) -> np.ndarray:
    """[n_boot, n] float64 counts: how often each of `n` units is drawn in each resample
    (n draws with replacement), from `seed`."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n, np.full(n, 1 / n), size=n_boot).astype(np.float64)


def percentile_interval(values: np.ndarray, min_defined: int = 1
                        ) -> tuple[float, float] | None:
    """The 2.5 / 97.5 percentiles of the finite resample statistics `values` (NaN marks a
    resample where the statistic is undefined); None when fewer than `min_defined` (at least
    one) are finite."""
    ok = values[np.isfinite(values)]
    if len(ok) < max(1, min_defined):
        return None
    lo, hi = np.percentile(ok, [2.5, 97.5])
    return float(lo), float(hi)


def t_interval(mean: float, sd: float, n: int) -> tuple[float, float]:
    """Student's t 95% interval of a mean of `n` ≥ 2 independent values with sample standard
    deviation `sd`."""
    from scipy.stats import t

    half = float(t.ppf(0.975, n - 1)) * sd / math.sqrt(n)
    return mean - half, mean + half


def ols(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Ordinary least squares of y [n] on the columns of X [n, p] (include a column of ones
    for an intercept): the coefficients [p], their 95% t intervals [p, 2] (from the classical
    standard errors, n − p degrees of freedom) and R². Needs n > p and X of full column rank."""
    from scipy.stats import t

    n, p = X.shape
    if n <= p or np.linalg.matrix_rank(X) < p:
        raise ValueError(f"ols needs more rows than columns and independent columns "
                         f"(n {n}, p {p}, rank {np.linalg.matrix_rank(X)})")
    coef, *_ = np.linalg.lstsq(X, y, rcond=None)
    resid = y - X @ coef
    sigma2 = float(resid @ resid) / (n - p)
    se = np.sqrt(np.diag(np.linalg.inv(X.T @ X)) * sigma2)
    half = float(t.ppf(0.975, n - p)) * se
    total = float(((y - y.mean()) ** 2).sum())
    r2 = 1 - float(resid @ resid) / total if total > 0 else float("nan")
    return coef, np.stack([coef - half, coef + half], 1), r2
