"""Consistency checks of `probekit.result/2` that a JSON Schema cannot express.

The summary must follow from the rows, through `probekit.record` (the one place that computes
summary scores; nothing is derived a second way here), within `TOLERANCE`:
- `per_layer` is a full grid: each (layer, target, depth) once, every layer with the same
  (target, depth) pairs, depths from `record.DEPTHS`;
- `decodability.layer` is one of the layers; `value`, `pooled` and `control` are
  `record.layer_mean` of test (late), test (pooled) and control (late) there; `selectivity` is
  value − control; `random_init` is null exactly when the rows have none, else the late mean of
  some layer (the twin chooses its own layer);
- `mdl.bits` is the sum of the pooled rows' `mdl_bits` at the layer (when given);
- `causality`, when given, is one of its own `per_cell` rows (layer, positions, scope,
  featurizer, pairs, iia, gain), reachable, with a featurizer of the headline's kind;
- `world_model_score` and `verdict` are what `probekit.record` computes from the blocks;
- every interval has lo ≤ hi.
"""

from __future__ import annotations

import math
from typing import Any

from probekit import record
from probekit.errors import ResultError

TOLERANCE = 1e-6


def _close(a: float | None, b: float | None) -> bool:
    return (a is None) == (b is None) and (a is None or abs(a - b) <= TOLERANCE)


def check(result: dict[str, Any], where: str) -> None:
    rows = result["per_layer"]
    grid: dict[str, set[tuple[str, str]]] = {}
    for row in rows:
        cells = grid.setdefault(row["layer"], set())
        key = (row["target"], row["depth"])
        if key in cells:
            raise ResultError(f"{where}: per_layer has two rows for layer {row['layer']!r}, "
                              f"target {row['target']!r}, depth {row['depth']!r}")
        cells.add(key)
    first = next(iter(grid.values()))
    for layer, cells in grid.items():
        if cells != first:
            odd = sorted(cells ^ first)[0]
            raise ResultError(f"{where}: per_layer is not a full layer x target x depth grid: "
                              f"{odd} is in some layers but not in layer {layer!r}")
    depths = {d for _, d in first}
    if not {record.LATE, record.POOLED} <= depths:
        raise ResultError(f"{where}: per_layer needs depths {record.LATE!r} and "
                          f"{record.POOLED!r} (the late and pooled scores)")

    scores = result["scores"]
    d = scores["decodability"]
    if d["layer"] not in grid:
        raise ResultError(f"{where}: decodability.layer {d['layer']!r} has no per_layer rows; "
                          f"layers: {', '.join(grid)}")
    wanted = {"value": record.layer_mean(rows, d["layer"], "test", record.LATE),
              "pooled": record.layer_mean(rows, d["layer"], "test", record.POOLED),
              "control": record.layer_mean(rows, d["layer"], "control", record.LATE)}
    for key, want in wanted.items():
        if not _close(d[key], want):
            raise ResultError(f"{where}: decodability.{key} is {d[key]!r} but per_layer gives "
                              f"{want!r} at layer {d['layer']!r} (probekit.record.layer_mean)")
    if abs(d["selectivity"] - (d["value"] - d["control"])) > TOLERANCE:
        raise ResultError(f"{where}: decodability.selectivity is {d['selectivity']!r} but value - "
                          f"control is {d['value'] - d['control']!r}")
    twins = [row["random_init"] for row in rows if row["depth"] == record.LATE]
    if all(t is None for t in twins):
        if d["random_init"] is not None:
            raise ResultError(f"{where}: decodability.random_init is set but no per_layer row "
                              "has a random_init score")
    elif any(t is None for t in twins) or d["random_init"] is None:
        raise ResultError(f"{where}: random_init must be given in every late per_layer row and "
                          "in decodability, or in none")
    elif all(not _close(d["random_init"], record.layer_mean(rows, layer, "random_init"))
             for layer in grid):
        raise ResultError(f"{where}: decodability.random_init {d['random_init']!r} is not the "
                          "late normalised mean random_init of any layer in per_layer")
    mdl = d.get("mdl")
    if mdl is not None:
        bits = [r["mdl_bits"] for r in rows if r["layer"] == d["layer"]
                and r["depth"] == record.POOLED]
        if any(b is None for b in bits) or abs(math.fsum(bits) - mdl["bits"]) > 1e-3:
            raise ResultError(f"{where}: decodability.mdl.bits {mdl['bits']!r} is not the sum of "
                              f"the per_layer mdl_bits at layer {d['layer']!r}")

    causality = scores.get("causality")
    for name, block, key in (("decodability", d, "ci95"), ("causality", causality, "ci95"),
                             ("causality", causality, "iia_ci95")):
        if block is not None and block.get(key) is not None and block[key][0] > block[key][1]:
            raise ResultError(f"{where}: {name}.{key} {block[key]} has lo > hi")
    for i, row in enumerate(result["per_cell"]):
        for key in ("ci95", "gain_ci95"):
            if row.get(key) is not None and row[key][0] > row[key][1]:
                raise ResultError(f"{where}: per_cell[{i}].{key} {row[key]} has lo > hi")
    if causality is not None:
        _check_headline(result, causality, where)
    ran = bool(result["per_cell"]) or causality is not None
    expected = {"world_model_score": record.world_model_score(d, causality),
                "verdict": record.verdict(d, causality, ran)}
    if not _close(scores["world_model_score"], expected["world_model_score"]):
        raise ResultError(f"{where}: world_model_score is {scores['world_model_score']!r} but "
                          f"its blocks give {expected['world_model_score']!r} (probekit.record)")
    if scores["verdict"] != expected["verdict"]:
        raise ResultError(f"{where}: verdict is {scores['verdict']!r} but its blocks give "
                          f"{expected['verdict']!r} (probekit.record)")


def _check_headline(result: dict[str, Any], c: dict[str, Any], where: str) -> None:
    keys = ("layer", "positions", "scope", "featurizer")
    match = [r for r in result["per_cell"] if all(r[k] == c[k] for k in keys)]
    if not match or not any(r["reachable"] and r["pairs"] == c["pairs"]
                            and _close(r["iia"], c["iia"]) and _close(r["gain"], c["gain"])
                            for r in match):
        raise ResultError(f"{where}: causality ({c['featurizer']} at {c['layer']} "
                          f"{c['positions']} {c['scope']}: gain {c['gain']!r} on {c['pairs']} "
                          "pairs) is not one of its reachable per_cell rows")
