"""Consistent `probekit.result/1` records for tests, derived from tests/data/result_example.json."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

from probekit.causal.verdict import verdict, world_model_score
from probekit.results import run_id

EXAMPLE = Path(__file__).parent / "data" / "result_example.json"


def example() -> dict[str, Any]:
    return json.loads(EXAMPLE.read_text())


def _norm(row: dict[str, Any], column: str) -> float:
    return (row[column] - row["chance"]) / (1 - row["chance"])


def _mean(rows: list[dict[str, Any]], layer: str, column: str) -> float:
    values = [_norm(r, column) for r in rows if r["layer"] == layer]
    return math.fsum(values) / len(values)


def summarise(result: dict[str, Any]) -> dict[str, Any]:
    """Recompute decodability from per_layer (layer chosen on val) and the run_id, in place."""
    rows = result["per_layer"]
    layers = list(dict.fromkeys(r["layer"] for r in rows))
    best = max(layers, key=lambda layer: _mean(rows, layer, "val"))
    d = result["scores"]["decodability"]
    d["layer"], d["value"], d["control"] = best, _mean(rows, best, "test"), _mean(rows, best,
                                                                                   "control")
    d["selectivity"] = d["value"] - d["control"]
    d["ci95"] = [round(d["value"] - 0.02, 4), round(d["value"] + 0.02, 4)]
    if rows[0]["random_init"] is not None:
        d["random_init"] = max(_mean(rows, layer, "random_init") for layer in layers)
    result["run_id"] = run_id(result)
    return result


def make(model: str = "probekit/spectrum-ntp", revision: str = "a41c2e9f07b3",
         family: str | None = "ntp", alpha: float | None = 0.0, quality: float = 1.0,
         iia: float | None = 0.58, seed: int = 0) -> dict[str, Any]:
    """A consistent result for `model`: the example's normalised scores times `quality`."""
    r = example()
    r["model"].update(id=model, revision=revision,
                      sha256=hashlib.sha256(f"{model}@{revision}".encode()).hexdigest(),
                      spectrum={"family": family, "alpha": alpha})
    for row in r["per_layer"]:
        for column in ("train", "val", "test"):
            row[column] = round(row["chance"] + (1 - row["chance"]) * _norm(row, column)
                                * quality, 4)
    r["probe"]["seed"] = seed
    summarise(r)
    s = r["scores"]
    if iia is None:
        s["causality"], s["world_model_score"], s["verdict"] = None, None, None
        del r["per_layer_causal"]
    else:
        d, c = s["decodability"], s["causality"]
        c.update(iia=iia, ci95=[max(0.0, iia - 0.04), min(1.0, iia + 0.04)], layer=d["layer"])
        r["per_layer_causal"] = [{**r["per_layer_causal"][1], "position": "step",
                                  **{k: c[k] for k in ("layer", "pairs", "iia", "ci95",
                                                       "baseline_iia")}}]
        s["world_model_score"] = world_model_score(d["value"], d["random_init"], iia,
                                                   c["baseline_iia"])
        s["verdict"] = verdict(d["value"], d["random_init"], iia, c["ci95"], c["baseline_iia"])
    r["run_id"] = run_id(r)
    return r
