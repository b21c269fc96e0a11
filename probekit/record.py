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

Prediction (`prediction_block`, from counts a `probekit.prediction.PredictionProbe` makes):
VoE accuracy = (wins + ties / 2) / pairs, where a win is a violation pair whose impossible
episode is the more surprising one (a tie, as a model that ignores the state gives, counts half,
so that chance is 0.5 as it is for AUROC), from the violating step on (`voe`) and at it
(`voe_step`); next-step legality = legal top-1 steps / scored steps (`legal_top1`); each with
its Clopper–Pearson interval (exact without ties; a tie's half success enters the beta
quantiles as is), AUROC as measured, and the same for the random-init twin. Chance is 0.5
for VoE and AUROC; legality's chance depends on the board, so none of them is normalised.
The world-model score and the verdict do not use the prediction axis, by decision: they say
whether a decodable state is *used* (decodability × causality, both as headroom above their own
nulls), which prediction cannot show — a model can expect its world from surface statistics
without tracking a state, and a state tracker can lack any head to be surprised with (a JEPA
checkpoint without its predictor) or a task any violation (group word problems), where the
score would be undefined. Prediction stands beside them as the third column, never folded in,
so scores stay comparable with results that lack it.
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


SURPRISE_UNITS = {"token": "nats", "latent": "L1/d"}  # surprise kinds, headline order


def rate(k: float, n: int) -> tuple[float, list[float]]:
    """k / n with its Clopper–Pearson 95% interval (exact for a whole k)."""
    from probekit.intervals import clopper_pearson

    return k / n, list(clopper_pearson(k, n))


def prediction_measure(counts: dict[str, Any]) -> dict[str, Any]:
    """VoE (from the violating step on, and at it), AUROC and legality with their intervals,
    from `counts`: wins, ties, wins_step, ties_step, pairs, auroc, legal_hits, legal_steps."""
    n = counts["pairs"]
    voe, ci = rate(counts["wins"] + counts["ties"] / 2, n)
    voe_step, ci_step = rate(counts["wins_step"] + counts["ties_step"] / 2, n)
    hits, steps = counts.get("legal_hits"), counts.get("legal_steps")
    legal, legal_ci = rate(hits, steps) if hits is not None and steps else (None, None)
    return {"voe": voe, "ci95": ci, "voe_step": voe_step, "voe_step_ci95": ci_step,
            "auroc": counts["auroc"], "pairs": n, "wins": counts["wins"],
            "ties": counts["ties"], "wins_step": counts["wins_step"],
            "ties_step": counts["ties_step"], "legal_top1": legal, "legal_ci95": legal_ci,
            "legal_hits": hits if legal is not None else None,
            "legal_steps": steps if legal is not None else None}


def prediction_block(kind: str, model: dict[str, Any], twin: dict[str, Any] | None, *,
                     legal_reason: str | None = None,
                     by_kind: dict[str, dict[str, int]] | None = None) -> dict[str, Any]:
    """One surprise's block of `scores.prediction`: the model's measures, why legality is null
    (when it is), the twin's measures (`random_init`) and VoE per violation kind."""
    block = {"surprise": kind, "unit": SURPRISE_UNITS[kind], **prediction_measure(model)}
    if block["legal_top1"] is None and legal_reason is None:
        legal_reason = "no step of the pairs has a legal next step"
    block["legal_reason"] = None if block["legal_top1"] is not None else legal_reason
    block["random_init"] = prediction_measure(twin) if twin is not None else None
    block["by_kind"] = {k: {"pairs": v["pairs"], "wins": v["wins"], "ties": v["ties"],
                            "voe": (v["wins"] + v["ties"] / 2) / v["pairs"]}
                        for k, v in (by_kind or {}).items()}
    return block


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
            (prediction_reason or "prediction probes were not run"),
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
