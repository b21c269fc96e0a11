"""Consistency checks of `probekit.result/1` (superseded by /2; read so old results still
validate and are shown as superseded, never ranked beside /2).

/1's causal headline (IIA at the step's last token, at the decodability layer) was structural:
see the causal-axis notes in the README. Its verdict and world-model score are recomputed here
by /1's own rules, only to check that old files were not edited.
"""

from __future__ import annotations

import math
from typing import Any

from probekit.errors import ResultError

TOLERANCE = 1e-6
DECODABLE, CAUSAL = 0.2, 0.2


def _gain(value: float, null: float) -> float:
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
    return math.sqrt(_gain(decodability, max(0.0, random_init or 0.0))
                     * _gain(iia, baseline_iia))


def check(result: dict[str, Any], where: str) -> None:
    """Every /1 rule the JSON Schema cannot express."""
    _check_consistency(result, where)


def _layer_means(rows: list[dict[str, Any]], column: str) -> dict[str, float]:
    """Mean over targets of the normalised `column`, per layer (rows must be non-null there)."""
    sums: dict[str, list[float]] = {}
    for row in rows:
        norm = (row[column] - row["chance"]) / (1 - row["chance"])
        sums.setdefault(row["layer"], []).append(norm)
    return {layer: math.fsum(v) / len(v) for layer, v in sums.items()}


def _check_consistency(result: dict[str, Any], where: str) -> None:
    rows = result["per_layer"]
    grid: dict[str, set[str]] = {}
    for row in rows:
        targets = grid.setdefault(row["layer"], set())
        if row["target"] in targets:
            raise ResultError(f"{where}: per_layer has two rows for layer {row['layer']!r}, "
                              f"target {row['target']!r}")
        targets.add(row["target"])
    first = next(iter(grid.values()))
    for layer, targets in grid.items():
        if targets != first:
            odd = sorted(targets ^ first)[0]
            raise ResultError(f"{where}: per_layer is not a full layer x target grid: target "
                              f"{odd!r} is in some layers but not in layer {layer!r}")

    scores = result["scores"]
    d = scores["decodability"]
    if d["layer"] not in grid:
        raise ResultError(f"{where}: decodability.layer {d['layer']!r} has no per_layer rows; "
                          f"layers: {', '.join(grid)}")
    means = {"value": _layer_means(rows, "test"), "control": _layer_means(rows, "control")}
    for key, per_layer in means.items():
        want = per_layer[d["layer"]]
        if abs(d[key] - want) > TOLERANCE:
            raise ResultError(f"{where}: decodability.{key} is {d[key]!r} but per_layer gives "
                              f"{want!r} at layer {d['layer']!r} (normalised (x - chance) / "
                              "(1 - chance), mean over targets)")
    if abs(d["selectivity"] - (d["value"] - d["control"])) > TOLERANCE:
        raise ResultError(f"{where}: decodability.selectivity is {d['selectivity']!r} but value - "
                          f"control is {d['value'] - d['control']!r}")
    twins = [row["random_init"] for row in rows]
    if all(t is None for t in twins):
        if d["random_init"] is not None:
            raise ResultError(f"{where}: decodability.random_init is set but no per_layer row "
                              "has a random_init score")
    elif any(t is None for t in twins) or d["random_init"] is None:
        raise ResultError(f"{where}: random_init must be given in every per_layer row and in "
                          "decodability, or in none")
    elif all(abs(d["random_init"] - m) > TOLERANCE
             for m in _layer_means(rows, "random_init").values()):
        raise ResultError(f"{where}: decodability.random_init {d['random_init']!r} is not the "
                          "normalised mean random_init of any layer in per_layer")

    causality = scores.get("causality")
    for name, block in (("decodability", d), ("causality", causality)):
        if block is not None and block["ci95"][0] > block["ci95"][1]:
            raise ResultError(f"{where}: {name}.ci95 {block['ci95']} has lo > hi")
    if causality is None:
        for key in ("verdict", "world_model_score"):
            if scores.get(key) is not None:
                raise ResultError(f"{where}: {key} {scores[key]!r} needs a causality block; "
                                  "write null without causal probes")
        return
    _check_causality(result, causality, where)


def _close(a: float | None, b: float | None) -> bool:
    return (a is None) == (b is None) and (a is None or abs(a - b) <= TOLERANCE)


def _check_causality(result: dict[str, Any], c: dict[str, Any], where: str) -> None:
    """The causality block against its own rows, and the headline scores computed from it."""
    d, scores = result["scores"]["decodability"], result["scores"]
    if c["layer"] != d["layer"]:
        raise ResultError(f"{where}: causality.layer {c['layer']!r} must be the decodability "
                          f"layer {d['layer']!r}")
    rows = result.get("per_layer_causal")
    if not rows:
        raise ResultError(f"{where}: scores.causality needs its per_layer_causal rows")
    if not any(r["layer"] == c["layer"] and r["position"] == "step" and r["pairs"] == c["pairs"]
               and all(_close(r[k], c[k]) for k in ("iia", "baseline_iia"))
               and all(_close(x, y) for x, y in zip(r["ci95"], c["ci95"])) for r in rows):
        raise ResultError(f"{where}: causality (iia {c['iia']!r} on {c['pairs']} pairs at "
                          f"{c['layer']!r}) is not one of its per_layer_causal rows at position "
                          "'step'")
    baseline = c["baseline_iia"] or 0.0
    score = world_model_score(d["value"], d["random_init"], c["iia"], baseline)
    if not _close(scores.get("world_model_score"), score):
        raise ResultError(f"{where}: world_model_score is {scores.get('world_model_score')!r} but "
                          f"decodability and causality give {score!r} (probekit.result/1 rules)")
    judged = verdict(d["value"], d["random_init"], c["iia"], c["ci95"], baseline)
    if scores.get("verdict") != judged:
        raise ResultError(f"{where}: verdict is {scores.get('verdict')!r} but decodability and "
                          f"causality give {judged!r} (probekit.result/1 rules)")
