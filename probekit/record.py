"""The `probekit.result/2` record: the one place that computes every normalised summary score.

`evaluate` builds each result with `build`; the schema module checks a result by calling the
same functions (`layer_mean`, `world_model_score`, `verdict`), never a second copy of them.

Decodability (per layer × target × depth rows of raw metrics) is summarised at the layer chosen
on validation by `layer_mean`: the normalised score (x − chance) / (1 − chance), averaged over
targets, at depth `LATE` (the last quarter of each episode's steps: tracking is what happens
late) for `value`, and over every step (`POOLED`) for `pooled`.

Verdict, from a cell that could have shown causality (never from one that could not):
- `causal`: the causal headline's gain interval lies above 0 and above the random-subspace
  control at the same cell (a paired bootstrap of the difference);
- `decodable-not-causal`: not causal, and decodability − max(0, random init) ≥ `DECODABLE`;
- `neither`: otherwise;
- `untested`: causal probes ran but no reachable cell could be scored.
World-model score = √(gain_d · gain_c), gain_d = max(0, (d − r) / (1 − r)) with
r = max(0, random init), gain_c = the causal headline's gain clipped to [0, 1]: each axis as the
share of the headroom above its own null, combined so that both must be high.
"""

from __future__ import annotations

import math
from typing import Any

SCHEMA = "probekit.result/2"
SCHEMAS = ("probekit.result/1", SCHEMA)
LATE, POOLED = "q4", "all"
DEPTHS = ("q1", "q2", "q3", "q4", "last", "all")
DECODABLE = 0.2
VERDICTS = ("causal", "decodable-not-causal", "neither", "untested")


def normalise(score: float, chance: float) -> float:
    return (score - chance) / (1 - chance)


def layer_mean(rows: list[dict[str, Any]], layer: str, column: str = "test",
               depth: str = LATE) -> float | None:
    """Mean over targets of the normalised `column` at `layer` and `depth` (None when a row
    there has no value)."""
    values = [r[column] for r in rows if r["layer"] == layer and r.get("depth", POOLED) == depth]
    chances = [r["chance"] for r in rows if r["layer"] == layer
               and r.get("depth", POOLED) == depth]
    if not values or any(v is None for v in values):
        return None
    return math.fsum(normalise(v, c) for v, c in zip(values, chances)) / len(values)


def gain_over(value: float, null: float) -> float:
    """The share of the headroom above `null` that `value` reaches, clipped at 0."""
    return max(0.0, (value - null) / (1.0 - null)) if null < 1.0 else 0.0


def decodable(decodability: dict[str, Any]) -> bool:
    null = max(0.0, decodability.get("random_init") or 0.0)
    return decodability["value"] - null >= DECODABLE


def is_causal(causality: dict[str, Any]) -> bool:
    lo = (causality.get("ci95") or [None])[0]
    if lo is None or not lo > 0:
        return False
    vs_random = causality.get("vs_random_ci95")
    return vs_random is None or vs_random[0] > 0


def verdict(decodability: dict[str, Any], causality: dict[str, Any] | None,
            causal_ran: bool) -> str | None:
    """The verdict (module docstring); None when causal probes did not run."""
    if not causal_ran:
        return None
    if causality is None:
        return "untested"
    if is_causal(causality):
        return "causal"
    return "decodable-not-causal" if decodable(decodability) else "neither"


def world_model_score(decodability: dict[str, Any], causality: dict[str, Any] | None
                      ) -> float | None:
    """√(gain_d · gain_c) (module docstring); None without a causal headline."""
    if causality is None or causality.get("gain") is None:
        return None
    gain_d = gain_over(decodability["value"], max(0.0, decodability.get("random_init") or 0.0))
    gain_c = min(1.0, max(0.0, causality["gain"]))
    return math.sqrt(gain_d * gain_c)


def summary(decodability: dict[str, Any], causality: dict[str, Any] | None,
            causal_ran: bool, causal_reason: str | None = None,
            prediction: dict[str, Any] | None = None, prediction_reason: str | None = None
            ) -> dict[str, Any]:
    """`scores` of a result: the three axes (each with the reason when null), the world-model
    score and the verdict."""
    if causality is None and causal_reason is None:
        causal_reason = "causal probes were not run" if not causal_ran else \
            "no reachable cell could be scored"
    return {"decodability": decodability, "causality": causality,
            "causality_reason": None if causality is not None else causal_reason,
            "prediction": prediction,
            "prediction_reason": None if prediction is not None else
            (prediction_reason or "the prediction axis is not measured by this probekit"),
            "world_model_score": world_model_score(decodability, causality),
            "verdict": verdict(decodability, causality, causal_ran)}


def run_id(result: dict[str, Any]) -> str:
    """Hash of model sha + task fingerprint + probe config + seeds + package versions."""
    from probekit.io import stable_hash

    env = result.get("env", {})
    return stable_hash({
        "model": result["model"]["sha256"],
        "task": result["task"]["fingerprint"],
        "probe": result["probe"],
        "packages": {k: env.get(k) for k in ("probekit", "torch", "transformers", "captum")},
    })
