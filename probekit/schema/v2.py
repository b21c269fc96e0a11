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
- `prediction`, when given, is what `probekit.record.prediction_block` makes of its own counts
  (rates, exact intervals, legality, twin, per-kind VoE), for the headline surprise and the one
  under `also`; its `random_init` has the same pairs; `per_offset` holds, for each of its
  surprises, one row per offset with at most `pairs` pairs and every pair at offset 0, the twin's
  columns null exactly when it has no twin; without a prediction block, `prediction_reason`
  says why and `per_offset` is empty;
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
                and r["depth"] == record.POOLED and r["metric"] == "accuracy"]  # class targets
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
    _check_prediction(result, where)
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


COUNTS = ("wins", "ties", "wins_step", "ties_step", "pairs", "auroc", "legal_hits",
          "legal_steps")


def _same(a: Any, b: Any) -> bool:
    """Equal, numbers within TOLERANCE, recursively."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) \
            and not isinstance(a, bool) and not isinstance(b, bool):
        return abs(a - b) <= TOLERANCE
    return a == b


def _check_prediction(result: dict[str, Any], where: str) -> None:
    scores = result["scores"]
    p = scores.get("prediction")
    rows = result.get("per_offset") or []
    if p is None:
        if rows:
            raise ResultError(f"{where}: per_offset has rows but scores.prediction is null")
        if not scores.get("prediction_reason"):
            raise ResultError(f"{where}: scores.prediction is null without a "
                              "prediction_reason; say why the axis was not measured")
        return
    if scores.get("prediction_reason") is not None:
        raise ResultError(f"{where}: scores.prediction is given, so prediction_reason must be "
                          "null")
    if p["pairs"] + sum(p["dropped"].values()) > p["drawn"]:
        raise ResultError(f"{where}: scores.prediction has {p['pairs']} pairs and "
                          f"{sum(p['dropped'].values())} dropped, more than the {p['drawn']} its "
                          "split holds (drawn)")
    blocks = {p["surprise"]: p}
    for kind, block in (p.get("also") or {}).items():
        if block["surprise"] != kind or kind in blocks:
            raise ResultError(f"{where}: scores.prediction.also.{kind} is a "
                              f"{block['surprise']!r} block beside a {p['surprise']!r} headline;"
                              " also holds the model's other surprise, under its own name")
        blocks[kind] = block
    keys = set(record.prediction_block("token", _counts(p), None))
    for kind, block in blocks.items():
        at = "scores.prediction" + ("" if block is p else f".also.{kind}")
        twin = block["random_init"]
        if twin is not None and twin["pairs"] != block["pairs"]:
            raise ResultError(f"{where}: {at}.random_init has {twin['pairs']} pairs, the model "
                              f"{block['pairs']}; the twin reads the same pairs")
        if sum(v["pairs"] for v in block["by_kind"].values()) != block["pairs"]:
            raise ResultError(f"{where}: {at}.by_kind counts "
                              f"{sum(v['pairs'] for v in block['by_kind'].values())} pairs, the "
                              f"block {block['pairs']}")
        want = record.prediction_block(
            kind, _counts(block), None if twin is None else _counts(twin),
            legal_reason=block["legal_reason"], by_kind=block["by_kind"])
        for key in keys:
            if not _same(block[key], want[key]):
                raise ResultError(f"{where}: {at}.{key} is {block[key]!r} but its counts give "
                                  f"{want[key]!r} (probekit.record.prediction_block)")
        mine = [r for r in rows if r["surprise"] == kind]
        offsets = [r["offset"] for r in mine]
        if len(set(offsets)) != len(offsets):
            raise ResultError(f"{where}: per_offset has two {kind} rows at one offset")
        zero = [r for r in mine if r["offset"] == 0]
        if not zero or zero[0]["pairs"] != block["pairs"]:
            raise ResultError(f"{where}: per_offset must hold every one of the {block['pairs']} "
                              f"pairs of {at} at offset 0 (the violating step)")
        for r in mine:
            if r["pairs"] > block["pairs"]:
                raise ResultError(f"{where}: per_offset {kind} row at offset {r['offset']} has "
                                  f"{r['pairs']} pairs, more than {at} ({block['pairs']})")
            if (r["random_init_possible"] is None) != (twin is None) or \
                    (r["random_init_impossible"] is None) != (twin is None):
                raise ResultError(f"{where}: per_offset {kind} row at offset {r['offset']} must "
                                  "give the twin's surprise exactly when the block has a "
                                  "random_init")
    extra = sorted({r["surprise"] for r in rows} - set(blocks))
    if extra:
        raise ResultError(f"{where}: per_offset has {extra[0]} rows but scores.prediction has "
                          f"no {extra[0]} block")
    if result["probe"].get("prediction") is None:
        raise ResultError(f"{where}: scores.prediction is given but probe.prediction (the "
                          "settings that made it) is missing")


def _counts(measure: dict[str, Any]) -> dict[str, Any]:
    return {k: measure[k] for k in COUNTS}
