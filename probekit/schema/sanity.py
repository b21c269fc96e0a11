"""Sanity checks on a result's values that a JSON Schema does not state: a date that is a real
day and not in the future, sizes that a run can have, and scores inside their ranges.

`check_ranges` is generic over the result dict (any schema version): it looks fields up by
name wherever they occur and skips those that are absent or not numbers, so it applies to
`probekit.result/1` and `/2` alike. Limits (named in every message):

- `env.date`: a calendar day `YYYY-MM-DD` (optionally followed by an ISO time), not before
  MIN_DATE and not after today (UTC) plus one day for time zones;
- sizes: episodes per split (`n_train`, `n_val`, `n_test`: 1 …
  `probekit.tasks.MAX_SPLIT_SIZE`), pair counts (`pairs`, `skipped`, `dropped`: 0 … the same),
  parameters (`n_params`: 1 … MAX_PARAMS), seeds (0 … 2**32 - 1);
- scores: shares in [0, 1] (UNIT_SCORES, `model.spectrum.alpha`, and an interval of IIA:
  `iia_ci95`, or the `ci95` of a block that holds `iia` and no `gain`); per-layer rows: chance
  in [0, 1), accuracy in [0, 1], R² at most 1; normalised scores at most 1, since chance is 0
  and perfect is 1: decodability summaries (`value`, `control`, `random_init`, `ci95`), causal
  gains (GAINS) and their intervals (`gain_ci95`, the `ci95` of a block that holds `gain`).
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

from probekit.errors import ResultError

MIN_DATE = dt.date(2020, 1, 1)  # no probekit result is older
MAX_PARAMS = 10 ** 13  # ten trillion parameters
MAX_SEED = 2 ** 32
UNIT_SCORES = ("iia", "baseline_iia", "baseline", "placebo", "source_accuracy", "auroc",
               "legal_top1", "world_model_score", "steering")
GAINS = ("gain", "random_control", "full_upper_bound", "val_gain")  # normalised: at most 1
COUNTS = ("pairs", "skipped", "dropped")
SPLIT_SIZES = ("n_train", "n_val", "n_test")
TOLERANCE = 1e-9


def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def check_ranges(result: dict[str, Any], where: str = "result") -> None:
    """Refuse (ResultError) a date that is malformed or in the future, an impossible size or a
    score outside its range; fields that are absent are skipped."""
    from probekit.tasks import MAX_SPLIT_SIZE

    if not isinstance(result, dict):
        return
    _check_date(result, where)
    task = result.get("task") if isinstance(result.get("task"), dict) else {}
    for key in SPLIT_SIZES:
        _count(task.get(key), f"task.{key}", 1, MAX_SPLIT_SIZE, where, "MAX_SPLIT_SIZE")
    model = result.get("model") if isinstance(result.get("model"), dict) else {}
    _count(model.get("n_params"), "model.n_params", 1, MAX_PARAMS, where, "MAX_PARAMS")
    spectrum = model.get("spectrum") if isinstance(model.get("spectrum"), dict) else {}
    _within(spectrum.get("alpha"), "model.spectrum.alpha", 0.0, 1.0, where)
    probe = result.get("probe") if isinstance(result.get("probe"), dict) else {}
    _count(probe.get("seed"), "probe.seed", 0, MAX_SEED - 1, where, "2**32 - 1")
    for at, key, value, parent in _walk(result):
        if key in UNIT_SCORES:
            _within(value, at, 0.0, 1.0, where)
        elif key in COUNTS:
            _count(value, at, 0, MAX_SPLIT_SIZE, where, "MAX_SPLIT_SIZE")
        elif key in GAINS:
            _within(value, at, None, 1.0, where, normalised=True)
        elif isinstance(value, list) and isinstance(parent, dict) and (
                key == "iia_ci95" or (key == "ci95" and "iia" in parent and "gain" not in parent
                                      and "iia_ci95" not in parent)):
            for i, v in enumerate(value):  # an interval of IIA: a share
                _within(v, f"{at}[{i}]", 0.0, 1.0, where)
        elif isinstance(value, list) and isinstance(parent, dict) and (
                key == "gain_ci95" or (key == "ci95" and "gain" in parent)):
            for i, v in enumerate(value):  # an interval of a gain: normalised
                _within(v, f"{at}[{i}]", None, 1.0, where, normalised=True)
    scores = result.get("scores") if isinstance(result.get("scores"), dict) else {}
    d = scores.get("decodability") if isinstance(scores.get("decodability"), dict) else {}
    for key in ("value", "control", "random_init"):
        _within(d.get(key), f"scores.decodability.{key}", None, 1.0, where, normalised=True)
    if isinstance(d.get("ci95"), list):
        for i, v in enumerate(d["ci95"]):
            _within(v, f"scores.decodability.ci95[{i}]", None, 1.0, where, normalised=True)
    rows = result.get("per_layer")
    for i, row in enumerate(rows if isinstance(rows, list) else []):
        if isinstance(row, dict):
            _check_row(row, f"per_layer[{i}]", where)


def _check_date(result: dict[str, Any], where: str) -> None:
    env = result.get("env")
    date = env.get("date") if isinstance(env, dict) else None
    if date is None:
        return
    try:
        if not isinstance(date, str) or len(date) < 10:
            raise ValueError
        day = dt.date.fromisoformat(date[:10])
        if len(date) > 10:
            dt.datetime.fromisoformat(date)
    except ValueError:
        raise ResultError(f"{where}: env.date {date!r} is not a date; write the day of the run "
                          "as YYYY-MM-DD") from None
    today = dt.datetime.now(dt.UTC).date()
    if day > today + dt.timedelta(days=1):
        raise ResultError(f"{where}: env.date {date[:10]} is in the future (today is "
                          f"{today.isoformat()} UTC); write the day of the run")
    if day < MIN_DATE:
        raise ResultError(f"{where}: env.date {date[:10]} is before {MIN_DATE.isoformat()} "
                          "(MIN_DATE), older than any probekit result; write the day of the run")


def _count(value: Any, at: str, lo: int, hi: int, where: str, limit: str) -> None:
    if value is None or not _number(value):
        return
    if value != int(value) or not lo <= value <= hi:
        raise ResultError(f"{where}: {at} is {value!r}; it must be a whole number in "
                          f"[{lo:,}, {hi:,}] ({limit})")


def _within(value: Any, at: str, lo: float | None, hi: float, where: str,
            normalised: bool = False) -> None:
    if not _number(value):
        return
    if (lo is not None and value < lo - TOLERANCE) or value > hi + TOLERANCE:
        if normalised:
            why = "a normalised score is at most 1 (chance 0, perfect 1)"
        else:
            why = f"it is a share in [{lo:g}, {hi:g}]"
        raise ResultError(f"{where}: {at} is {value!r}; {why}")


def _check_row(row: dict[str, Any], at: str, where: str) -> None:
    chance = row.get("chance")
    if _number(chance) and not 0 <= chance < 1:
        raise ResultError(f"{where}: {at}.chance is {chance!r}; chance is in [0, 1)")
    metric = row.get("metric")
    for key in ("train", "val", "test", "control", "random_init"):
        value = row.get(key)
        if not _number(value):
            continue
        if metric == "accuracy" and not -TOLERANCE <= value <= 1 + TOLERANCE:
            raise ResultError(f"{where}: {at}.{key} is {value!r}; an accuracy is in [0, 1]")
        if metric == "r2" and value > 1 + TOLERANCE:
            raise ResultError(f"{where}: {at}.{key} is {value!r}; R² is at most 1")


def _walk(obj: Any, at: str = "", parent: Any = None):
    """(path, key, value, parent) of every dict entry, depth first, without recursion."""
    stack = [(obj, at)]
    while stack:
        item, here = stack.pop()
        if isinstance(item, dict):
            for k, v in item.items():
                path = f"{here}.{k}" if here else str(k)
                yield path, k, v, item
                stack.append((v, path))
        elif isinstance(item, list):
            for i, v in enumerate(item):
                stack.append((v, f"{here}[{i}]"))
