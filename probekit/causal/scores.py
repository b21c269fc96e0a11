"""Scores of interchange interventions: IIA, normalised effect, steering, attribution share.

IIA is the share of pairs whose patched readout takes the counterfactual class, with a
bootstrap 95% interval over pairs. The effect is Σ(patched − base) / Σ(source − base) of the
margin logit[counterfactual] − logit[base]: the share of the source run's change that the patch
carries (1: all of it, 0: none), a ratio of sums so that pairs with tiny margins cannot blow it
up. The baseline patches an unrelated episode's activations into the same sites.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

N_BOOT = 1000


@dataclass
class Outcomes:
    """Readout logits of one readout over layers × pairs × sites, and what they are judged by.

    `valid` [L, N, G] marks the cells that are scored (site present, labels readable, the patch
    not simply the readout's own input). Steering ([L, N, K] logits after an edit, `edited`
    where the probe decodes the edited state) and attribution ([L, N, G] share numerators and
    [L, N] totals) are optional.
    """

    readout: str
    layers: list[str]
    sites: list[str]
    base: np.ndarray  # [N, K] clean base run
    source: np.ndarray  # [N, K] clean source run
    base_class: np.ndarray  # [N]
    cf_class: np.ndarray  # [N]
    patched: np.ndarray  # [L, N, G, K]
    unrelated: np.ndarray  # [L, N, G, K]
    valid: np.ndarray  # [L, N, G] bool
    steered: np.ndarray | None = None  # [L, N, K]
    edited: np.ndarray | None = None  # [L, N] bool
    attribution: np.ndarray | None = None  # [L, N, G]
    attribution_total: np.ndarray | None = None  # [L, N]

    def margin(self, logits: np.ndarray) -> np.ndarray:
        """logit[counterfactual] − logit[base] of logits [N, ..., K] (pairs first)."""
        def pick(classes: np.ndarray) -> np.ndarray:
            index = classes.reshape((-1,) + (1,) * (logits.ndim - 1))
            index = np.broadcast_to(index, logits.shape[:-1] + (1,))
            return np.take_along_axis(logits, index, -1)[..., 0]

        return pick(self.cf_class) - pick(self.base_class)


def iia(logits: np.ndarray, cf_class: np.ndarray) -> float:
    """Share of rows of `logits` [n, K] whose argmax is the counterfactual class."""
    return float(np.mean(logits.argmax(-1) == cf_class)) if len(cf_class) else float("nan")


def bootstrap_ci(hits: np.ndarray, n_boot: int = N_BOOT, seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of the mean of `hits`, resampling pairs."""
    n = len(hits)
    if n == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    W = rng.multinomial(n, np.full(n, 1 / n), size=n_boot)
    lo, hi = np.percentile(W @ hits.astype(np.float64) / n, [2.5, 97.5])
    return float(lo), float(hi)


def ratio(num: np.ndarray, den: np.ndarray) -> float | None:
    """Σnum / Σden, or None when the denominator is (numerically) zero."""
    d = float(np.sum(den))
    if len(den) == 0 or abs(d) <= 1e-6 * len(den):
        return None
    return float(np.sum(num) / d)


def layer_rows(o: Outcomes, seed: int = 0) -> list[dict[str, Any]]:
    """One row per layer × site with at least one scored pair: the per-layer causal table."""
    out = []
    m_base, m_source = o.margin(o.base), o.margin(o.source)
    for i, layer in enumerate(o.layers):
        m_patched = o.margin(o.patched[i])  # [N, G]
        for g, site in enumerate(o.sites):
            keep = o.valid[i, :, g]
            if not keep.any():
                continue
            hits = o.patched[i, keep, g].argmax(-1) == o.cf_class[keep]
            lo, hi = bootstrap_ci(hits, seed=seed)
            row = {
                "layer": layer, "position": site, "readout": o.readout, "pairs": int(keep.sum()),
                "iia": float(hits.mean()), "ci95": [lo, hi],
                "effect": ratio(m_patched[keep, g] - m_base[keep], m_source[keep] - m_base[keep]),
                "baseline_iia": iia(o.unrelated[i, keep, g], o.cf_class[keep]),
                "steering": None, "attribution": None,
            }
            if o.steered is not None and g == 0:
                ok = keep & o.edited[i]
                row["steering"] = iia(o.steered[i, ok], o.cf_class[ok]) if ok.any() else None
            if o.attribution is not None:  # only the attributed subsample is finite
                done = keep & np.isfinite(o.attribution_total[i])
                row["attribution"] = ratio(o.attribution[i, done, g],
                                           o.attribution_total[i, done]) if done.any() else None
            out.append(row)
    return out
