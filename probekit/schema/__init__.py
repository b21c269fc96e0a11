"""The `probekit.result/1` JSON Schema (result-1.json) and the checks a schema cannot express.

`validate` checks one result on its own: structure, finite numbers, the run identity (recomputed,
never trusted), per-layer rows against the summary, and a store path that stays inside the store.
`check_task` compares its task with the locally registered one.

Consistency rule (tolerance `TOLERANCE`, absolute). Let norm(x) = (x - chance) / (1 - chance) per
`per_layer` row, and mean_L(col) the mean over targets of norm(col) at layer L. Then:
- `per_layer` is a full grid: each (layer, target) once, every layer with the same targets;
- `decodability.layer` is one of the layers, `value` = mean_layer(test),
  `control` = mean_layer(control), `selectivity` = value - control;
- `random_init` is null exactly when every row's `random_init` is null; otherwise it equals
  mean_L(random_init) at some layer L (the twin chooses its own layer on val, not recorded);
- every `ci95` has lo <= hi;
- `causality`, when given, sits at the decodability layer and is one of its own
  `per_layer_causal` rows (position `step`: iia, ci95, pairs, baseline_iia);
- `world_model_score` and `verdict` are what `probekit.causal.verdict` computes from
  decodability and causality (a null baseline_iia counts as 0), and null without causality.
"""

from __future__ import annotations

import functools
import json
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from probekit.errors import ResultError, UnknownNameError
from probekit.results import SCHEMA, relative_path, run_id

SCHEMA_FILE = Path(__file__).with_name("result-1.json")
TOLERANCE = 1e-6


@functools.cache
def schema() -> dict[str, Any]:
    """The JSON Schema of `probekit.result/1`, as shipped in the package."""
    return json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))


@functools.cache
def _validator():
    import jsonschema

    return jsonschema.Draft202012Validator(schema())


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number JSON allows; write null for a missing score")


def loads(text: str, where: str = "result") -> dict[str, Any]:
    """Parse and validate one result from JSON text (NaN and Infinity are refused)."""
    try:
        obj = json.loads(text, parse_constant=_reject_constant)
    except ValueError as e:
        raise ResultError(f"{where}: not valid JSON ({e})") from None
    return validate(obj, where)


def load(path: str | os.PathLike) -> dict[str, Any]:
    """Read and validate the result file at `path`."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ResultError(f"{path}: cannot read ({type(e).__name__}: {e})") from None
    return loads(text, str(path))


def validate(result: Any, where: str = "result") -> dict[str, Any]:
    """Check `result` on its own (see the module docstring); returns it unchanged."""
    if not isinstance(result, dict):
        raise ResultError(f"{where}: expected a JSON object, got {type(result).__name__}")
    version = result.get("schema")
    if version != SCHEMA:
        raise ResultError(f"{where}: schema {version!r} is not supported; this probekit reads "
                          f"{SCHEMA!r}")
    _check_finite(result, where, "")
    error = _first_schema_error(result)
    if error is not None:
        raise ResultError(f"{where}: {error}")
    from probekit.schema.sanity import check_ranges; check_ranges(result, where)  # noqa: E702
    expected = run_id(result)
    if result["run_id"] != expected:
        raise ResultError(f"{where}: run_id {result['run_id']!r} does not match its content "
                          f"({expected!r}): the file was edited after the run")
    _check_consistency(result, where)
    try:
        relative_path(result)
    except ResultError as e:
        raise ResultError(f"{where}: {e}") from None
    return result


def check_task(result: dict[str, Any], include: Iterable[str | os.PathLike] = (),
               allow_unregistered: bool = False, where: str = "result") -> None:
    """Compare the result's task with the registered one: version, fingerprint and targets.

    A task that is not registered here cannot be checked, so its results are refused unless
    `allow_unregistered` (the store then still keeps one fingerprint per task version)."""
    from probekit.tasks import load_task

    name, version = result["task"]["name"], result["task"]["version"]
    try:
        task = load_task(name, include)
    except UnknownNameError:
        if allow_unregistered:
            return
        raise ResultError(f"{where}: task {name!r} is not registered here, so its fingerprint "
                          "cannot be checked; add its YAML folder with --include-path DIR, or "
                          "pass --allow-unregistered to accept it unchecked") from None
    if version != task.version:
        raise ResultError(f"{where}: task {name!r} is version {task.version} here but the result "
                          f"is for version {version}; evaluate again or use the matching spec")
    if result["task"]["fingerprint"] != task.fingerprint:
        raise ResultError(f"{where}: task fingerprint {result['task']['fingerprint']!r} does not "
                          f"match {name} v{version} here ({task.fingerprint!r}): the result was "
                          "made from different data")
    # Targets constant on train are skipped by evaluate and listed; they must be the task's.
    names = {t.name for t in task.targets}
    skipped = set(result["task"].get("skipped_targets", []))
    got = {row["target"] for row in result["per_layer"]} | (skipped - names)
    want = names - skipped
    if got != want:
        diff = sorted(got ^ want)
        raise ResultError(f"{where}: per_layer targets differ from task {name!r} (first "
                          f"difference: {diff[0]!r}); expected {', '.join(sorted(want))}")


def _check_finite(obj: Any, where: str, at: str) -> None:
    if isinstance(obj, float) and not math.isfinite(obj):
        raise ResultError(f"{where}: {at or 'value'} is {obj}; scores must be finite numbers "
                          "(write null for a missing score)")
    if isinstance(obj, dict):
        for k, v in obj.items():
            _check_finite(v, where, f"{at}.{k}" if at else str(k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            _check_finite(v, where, f"{at}[{i}]")


def _first_schema_error(result: dict[str, Any]) -> str | None:
    import jsonschema

    error = jsonschema.exceptions.best_match(_validator().iter_errors(result))
    if error is None:
        return None
    at = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
    message = error.message if len(error.message) <= 160 else error.message[:157] + "..."
    return f"{at.lstrip('.') or 'top level'}: {message}"


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
    from probekit.causal.verdict import verdict, world_model_score

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
                          f"decodability and causality give {score!r} (probekit.causal.verdict)")
    judged = verdict(d["value"], d["random_init"], c["iia"], c["ci95"], baseline)
    if scores.get("verdict") != judged:
        raise ResultError(f"{where}: verdict is {scores.get('verdict')!r} but decodability and "
                          f"causality give {judged!r} (probekit.causal.verdict)")
