"""The verdict on a (model, task) and its world-model score, from the two axes.

decodable: decodability − max(0, random_init) ≥ DECODABLE (normalised scale, chance 0);
causal:    iia − baseline_iia ≥ CAUSAL and the IIA interval's lower end above baseline_iia.
Verdict: `causal` when causal, else `decodable-not-causal` when decodable, else `neither`.
world_model_score = sqrt(gain_d · gain_c), gain_d = max(0, (d − r) / (1 − r)) with
r = max(0, random_init), gain_c = max(0, (iia − b) / (1 − b)): each axis as the share of its
headroom above its own null, combined by a geometric mean so that both must be high.
"""

from __future__ import annotations

import math

DECODABLE = 0.2
CAUSAL = 0.2


def gain(value: float, null: float) -> float:
    """The share of the headroom above `null` that `value` reaches, clipped at 0."""
    return max(0.0, (value - null) / (1.0 - null)) if null < 1.0 else 0.0


def verdict(decodability: float, random_init: float | None, iia: float,
            iia_ci95: tuple[float, float], baseline_iia: float) -> str:
    null = max(0.0, random_init or 0.0)
    if iia - baseline_iia >= CAUSAL and iia_ci95[0] > baseline_iia:
        return "causal"
    if decodability - null >= DECODABLE:
        return "decodable-not-causal"
    return "neither"


def world_model_score(decodability: float, random_init: float | None, iia: float,
                      baseline_iia: float) -> float:
    return math.sqrt(gain(decodability, max(0.0, random_init or 0.0)) * gain(iia, baseline_iia))
