"""Consistent `probekit.result/2` records for tests, derived from tests/data/result_example.json
(a real `probekit eval boxes-gpt2-tiny --tasks boxes` result); /1 records from
tests/data/result_example_v1.json for the superseded schema."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from probekit import record

EXAMPLE = Path(__file__).parent / "data" / "result_example.json"
EXAMPLE_V1 = Path(__file__).parent / "data" / "result_example_v1.json"


def example() -> dict[str, Any]:
    return json.loads(EXAMPLE.read_text())


def example_v1() -> dict[str, Any]:
    return json.loads(EXAMPLE_V1.read_text())


def summarise(result: dict[str, Any]) -> dict[str, Any]:
    """Recompute the decodability block from per_layer (layer chosen on the late validation
    score), the summary scores and the run_id, in place — through `probekit.record`."""
    rows = result["per_layer"]
    layers = list(dict.fromkeys(r["layer"] for r in rows))
    best = max(layers, key=lambda layer: record.layer_mean(rows, layer, "val"))
    d = result["scores"]["decodability"]
    d["layer"] = best
    d["value"] = record.layer_mean(rows, best, "test")
    d["pooled"] = record.layer_mean(rows, best, "test", record.POOLED)
    d["control"] = record.layer_mean(rows, best, "control")
    d["selectivity"] = d["value"] - d["control"]
    d["ci95"] = [round(d["value"] - 0.02, 4), round(d["value"] + 0.02, 4)]
    twins = [record.layer_mean(rows, layer, "random_init") for layer in layers]
    d["random_init"] = None if None in twins else max(twins)
    if d.get("mdl") is not None:
        d["mdl"]["bits"] = sum(r["mdl_bits"] for r in rows
                               if r["layer"] == best and r["depth"] == record.POOLED)
        d["mdl"]["compression"] = d["mdl"]["uniform_bits"] / d["mdl"]["bits"]
    s = result["scores"]
    ran = bool(result["per_cell"]) or s["causality"] is not None
    s["world_model_score"] = record.world_model_score(d, s["causality"])
    s["verdict"] = record.verdict(d, s["causality"], ran)
    result["run_id"] = record.run_id(result)
    return result


def make(model: str = "probekit/spectrum-ntp", revision: str = "a41c2e9f07b3",
         family: str | None = "ntp", alpha: float | None = 0.0, quality: float = 1.0,
         gain: float | None = 0.58, seed: int = 0, prediction: bool = True) -> dict[str, Any]:
    """A consistent result for `model`: the example's normalised decodability times `quality`,
    a causal headline of `gain` (None: causal probes not run) and the example's prediction
    axis (`prediction=False`: prediction probes not run)."""
    r = example()
    r["model"].update(id=model, revision=revision,
                      sha256=hashlib.sha256(f"{model}@{revision}".encode()).hexdigest(),
                      spectrum={"family": family, "alpha": alpha})
    for row in r["per_layer"]:
        for column in ("train", "val", "test"):
            if row[column] is not None:
                norm = record.normalise(row[column], row["chance"])
                row[column] = round(row["chance"] + (1 - row["chance"]) * norm * quality, 4)
    r["probe"]["seed"] = seed
    s = r["scores"]
    if gain is None:
        s["causality"], r["per_cell"], r["probe"]["causality"], r["causal"] = None, [], None, None
        s["causality_reason"] = "causal probes were not run (causal=False, --no-causal)"
    else:
        c = s["causality"]
        c.update(gain=gain, ci95=[round(gain - 0.05, 4), round(gain + 0.05, 4)],
                 vs_random_ci95=[round(gain - 0.1, 4), round(gain + 0.1, 4)])
        for row in r["per_cell"]:
            if all(row[k] == c[k] for k in ("layer", "positions", "scope", "featurizer")):
                row.update(gain=gain, gain_ci95=c["ci95"])
    if not prediction:
        s["prediction"], r["per_offset"], r["probe"]["prediction"], r["prediction"] = \
            None, [], None, None
        s["prediction_reason"] = \
            "prediction probes were not run (prediction=False, --no-prediction)"
    return summarise(r)
