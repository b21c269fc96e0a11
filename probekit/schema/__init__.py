"""Result JSON Schemas (`probekit.result/2`, result-2.json; the superseded /1, result-1.json)
and the checks a schema cannot express (`v2.check`, `v1.check`).

`validate` checks one result on its own: structure, finite numbers, the run identity (recomputed,
never trusted), rows against the summary (through `probekit.record`, the one place that
computes summary scores), and a store path that stays inside the store. `check_task` compares
its task with the locally registered one. /1 results still validate (by /1's rules) so that old
stores load; they are shown as superseded and never ranked beside /2.

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
from probekit.record import SCHEMA, SCHEMAS, run_id
from probekit.results import relative_path
from probekit.schema.sanity import check_ranges

FILES = {"probekit.result/1": "result-1.json", SCHEMA: "result-2.json"}


@functools.cache
def schema(version: str = SCHEMA) -> dict[str, Any]:
    """The JSON Schema of a result version, as shipped in the package."""
    return json.loads(Path(__file__).with_name(FILES[version]).read_text(encoding="utf-8"))


@functools.cache
def _validator(version: str):
    import jsonschema

    return jsonschema.Draft202012Validator(schema(version))


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
    if version not in SCHEMAS:
        raise ResultError(f"{where}: schema {version!r} is not supported; this probekit reads "
                          f"{', '.join(map(repr, SCHEMAS))}")
    _check_finite(result, where, "")
    error = _first_schema_error(result, version)
    if error is not None:
        raise ResultError(f"{where}: {error}")
    check_ranges(result, where)
    expected = run_id(result)
    if result["run_id"] != expected:
        raise ResultError(f"{where}: run_id {result['run_id']!r} does not match its content "
                          f"({expected!r}): the file was edited after the run")
    from probekit.schema import v1, v2

    (v2 if version == SCHEMA else v1).check(result, where)
    try:
        relative_path(result)
    except ResultError as e:
        raise ResultError(f"{where}: {e}") from None
    return result


def check_task(result: dict[str, Any], include: Iterable[str | os.PathLike] = (),
               allow_unregistered: bool = False, where: str = "result",
               loaded: dict[str, Any] | None = None) -> None:
    """Compare the result's task with the registered one: version, fingerprint and targets.

    A task that is not registered here cannot be checked, so its results are refused unless
    `allow_unregistered` (the store then still keeps one fingerprint per task version).
    `loaded`: tasks already loaded by name, shared across one batch of results (filled here)."""
    from probekit.tasks import load_task

    name, version = result["task"]["name"], result["task"]["version"]
    try:
        task = loaded[name] if loaded is not None and name in loaded else load_task(name, include)
        if loaded is not None:
            loaded[name] = task
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


@functools.cache
def _fast_validator(version: str) -> Any:
    """A compiled (Rust) validator of the same schema: about 100× faster on a valid result. It
    only answers "valid"; any result it rejects, or cannot read (an integer beyond 64 bits),
    goes through `jsonschema` for the verdict and the message."""
    import jsonschema_rs

    return jsonschema_rs.Draft202012Validator(schema(version))


def _first_schema_error(result: dict[str, Any], version: str) -> str | None:
    import jsonschema

    try:
        if _fast_validator(version).is_valid(result):
            return None
    except (ValueError, OverflowError):  # e.g. an integer beyond 64 bits: jsonschema decides
        pass
    error = jsonschema.exceptions.best_match(_validator(version).iter_errors(result))
    if error is None:
        return None
    at = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
    message = error.message if len(error.message) <= 160 else error.message[:157] + "..."
    return f"{at.lstrip('.') or 'top level'}: {message}"
