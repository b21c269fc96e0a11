"""`probekit.result/2` (and the superseded /1): the shipped JSON Schemas, the validator, the
consistency rules (through `probekit.record`) and the task checks."""

from __future__ import annotations

import json
import math

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from probekit import schema
from probekit.errors import ResultError
from probekit.record import run_id
from tests.result_factory import EXAMPLE, EXAMPLE_V1, example, example_v1, make, summarise


@pytest.mark.parametrize("version", ["probekit.result/1", "probekit.result/2"])
def test_schema_files_are_valid_draft_2020_12_schemas_shipped_in_the_package(version):
    jsonschema.Draft202012Validator.check_schema(schema.schema(version))
    assert schema.schema(version)["properties"]["schema"] == {"const": version}


def test_superseded_v1_results_still_validate_by_their_own_rules():
    v1 = schema.load(EXAMPLE_V1)
    assert v1["schema"] == "probekit.result/1"
    forged = example_v1()
    forged["scores"]["verdict"] = "causal" if v1["scores"]["verdict"] != "causal" else "neither"
    forged["run_id"] = run_id(forged)
    with pytest.raises(ResultError, match="verdict is"):
        schema.validate(forged)


def test_example_round_trips_unchanged():
    text = EXAMPLE.read_text()
    loaded = schema.load(EXAMPLE)
    schema.check_task(loaded)
    again = schema.loads(json.dumps(loaded, indent=2) + "\n")
    assert again == loaded == json.loads(text)
    assert loaded["run_id"] == run_id(loaded)


def test_causality_may_be_null_with_its_reason_and_spectrum_unknown():
    r = make(gain=None, family=None, alpha=None)
    schema.validate(r)
    assert r["scores"]["causality_reason"] and r["scores"]["verdict"] is None
    del r["scores"]["causality_reason"]
    with pytest.raises(ResultError, match="causality_reason"):
        schema.validate(r)


def test_model_width_and_depth_are_optional():
    """Results filed before the model's shape was recorded still validate; a shape validates."""
    r = make(gain=0.2)
    for key in ("width", "depth"):
        r["model"].pop(key, None)
    schema.validate(r)
    r["model"].update(width=64, depth=2)
    schema.validate(r)
    r["model"].update(width=None, depth=None)
    schema.validate(r)


def _edit(change, resummarise=False, rehash=True):
    r = example()
    change(r)
    if resummarise:
        summarise(r)
    elif rehash and "sha256" in r["model"]:
        r["run_id"] = run_id(r)
    return r


def _set(path: str, value):
    def change(r):
        *head, last = path.split(".")
        node = r
        for key in head:
            node = node[int(key)] if key.isdigit() else node[key]
        node[int(last) if last.isdigit() else last] = value
    return change


def _delete(path: str):
    def change(r):
        *head, last = path.split(".")
        node = r
        for key in head:
            node = node[key]
        del node[last]
    return change


def _chosen_row(r):
    layer = r["scores"]["decodability"]["layer"]
    return next(row for row in r["per_layer"] if row["layer"] == layer and row["depth"] == "q4")


def _headline_row(r):
    c = r["scores"]["causality"]
    return next(row for row in r["per_cell"] if all(row[k] == c[k] for k in
                                                    ("layer", "positions", "scope", "featurizer")))


def _shift_chosen_test(r):
    _chosen_row(r)["test"] += 0.01


INVALID = {
    "wrong schema version": (_set("schema", "probekit.result/3"),
                             "schema 'probekit.result/3' is not supported"),
    "missing model field": (_delete("model.sha256"),
                            "model: 'sha256' is a required property"),
    "missing scores": (_delete("scores"), "'scores' is a required property"),
    "unknown field": (_set("task.split", "test"), "task: Additional properties"),
    "NaN score": (_set("scores.decodability.value", math.nan),
                  "scores.decodability.value is nan"),
    "infinite per-layer score": (_set("per_layer.3.val", math.inf),
                                 "per_layer[3].val is inf"),
    "accuracy above 1": (_set("per_layer.0.train", 1.2), "per_layer[0].train: 1.2 is greater"),
    "bad verdict": (_set("scores.verdict", "maybe"), "scores.verdict: 'maybe' is not one of"),
    "edited after the run": (_set("probe.seed", 5), "does not match its content"),
    "value off per_layer": (_set("scores.decodability.value", 0.5),
                            "decodability.value is 0.5 but per_layer gives"),
    "per_layer off value": (_shift_chosen_test, "decodability.value is"),
    "control off per_layer": (_set("scores.decodability.control", 0.2),
                              "decodability.control is 0.2"),
    "selectivity not value - control": (_set("scores.decodability.selectivity", 0.7),
                                        "decodability.selectivity is 0.7 but value - control"),
    "chosen layer without rows": (_set("scores.decodability.layer", "block.9"),
                                  "decodability.layer 'block.9' has no per_layer rows"),
    "pooled off per_layer": (_set("scores.decodability.pooled", 0.5),
                             "decodability.pooled is 0.5 but per_layer gives"),
    "random_init of no layer": (_set("scores.decodability.random_init", 0.9),
                                "is not the late normalised mean random_init of any layer"),
    "random_init missing in rows": (_set("per_layer.3.random_init", None),
                                    "random_init must be given in every late per_layer row"),
    "duplicate per_layer row": (lambda r: r["per_layer"].append(dict(r["per_layer"][0])),
                                "two rows for layer 'embed'"),
    "ragged per_layer grid": (lambda r: r["per_layer"].pop(),
                              "('count.box3', 'all') is in some layers but not in layer "
                              "'block.3'"),
    "mdl bits off per_layer": (_set("scores.decodability.mdl.bits", 1.0),
                               "mdl.bits 1.0 is not the sum"),
    "interval upside down": (_set("scores.decodability.ci95", [0.8, 0.6]), "has lo > hi"),
    "gain interval upside down": (_set("scores.causality.ci95", [0.3, 0.1]), "has lo > hi"),
    "forged verdict": (_set("scores.verdict", "causal"), "verdict is 'causal' but its blocks"),
    "forged world model score": (_set("scores.world_model_score", 0.5),
                                 "world_model_score is 0.5 but its blocks"),
    "headline not one of its cells": (_set("scores.causality.gain", 0.9),
                                      "is not one of its reachable per_cell rows"),
    "headline at an untestable featurizer": (_set("scores.causality.featurizer", "full"),
                                             "scores.causality.featurizer: 'full' is not one"),
    "headline cell edited": (lambda r: _headline_row(r).update(iia=0.5),
                             "is not one of its reachable per_cell rows"),
    "verdict without causal probes": (lambda r: r.update(per_cell=[]) or
                                      r["scores"].update(causality=None, world_model_score=None),
                                      "verdict is 'decodable-not-causal' but its blocks give None"),
    "IIA above 1": (_set("per_cell.0.iia", 1.5), "per_cell[0].iia: 1.5 is greater"),
    "width of zero": (_set("model.width", 0), "model.width: 0 is less than the minimum of 1"),
    "depth not an integer": (_set("model.depth", 2.5), "model.depth: 2.5 is not of type"),
    "model escaping the store": (_set("model.id", "../../x"), "cannot be used as a file name"),
}


@pytest.mark.parametrize("case", INVALID, ids=list(INVALID))
def test_invalid_results_are_rejected_with_a_clear_message(case):
    change, message = INVALID[case]
    rehash = case != "edited after the run"
    r = _edit(change, rehash=rehash)
    with pytest.raises(ResultError, match="^r.json: ") as e:
        schema.validate(r, where="r.json")
    assert message in str(e.value)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("case", INVALID, ids=list(INVALID))
def test_the_fast_validator_agrees_with_jsonschema(case):
    """The compiled validator only short-cuts a valid result; on every edited result it must
    reach jsonschema's verdict (else an invalid result would pass unseen)."""
    r = _edit(INVALID[case][0], rehash=True)
    if r["schema"] not in schema.FILES:
        pytest.skip("an unknown schema version is refused before any schema check")
    try:
        schema._check_finite(r, "r", "")
    except ResultError:
        pytest.skip("non-finite numbers are refused before any schema check")
    reference = jsonschema.Draft202012Validator(schema.schema(r["schema"]))
    assert schema._fast_validator(r["schema"]).is_valid(r) == reference.is_valid(r)
    assert schema._fast_validator(r["schema"]).is_valid(example())


def test_an_integer_beyond_64_bits_is_judged_by_jsonschema():
    """The compiled validator cannot read it (ValueError); jsonschema judges instead, so the
    result is accepted or refused in one line, never an unexpected error (found by test_fuzz)."""
    for where in ("task.n_train", "per_cell.0.n"):
        r = _edit(_set(where, 10 ** 30))
        with pytest.raises(ValueError):
            schema._fast_validator(r["schema"]).is_valid(r)
        try:
            schema.validate(r, where="r.json")
        except ResultError as e:
            assert str(e).startswith("r.json: ") and "\n" not in str(e)


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
def test_non_json_numbers_are_refused_when_parsing(token):
    text = EXAMPLE.read_text().replace('"world_model_score": ', f'"world_model_score": {token}, '
                                       '"_": ', 1)
    assert text != EXAMPLE.read_text()
    with pytest.raises(ResultError, match=f"not valid JSON .*{token}.*write null"):
        schema.loads(text, "r.json")


def test_task_fingerprint_version_and_targets_are_checked_against_the_registry():
    bad_fp = _edit(_set("task.fingerprint", "0123456789abcdef"))
    with pytest.raises(ResultError, match="does not match boxes v3 here"):
        schema.check_task(bad_fp)
    bad_version = _edit(_set("task.version", 4))
    with pytest.raises(ResultError, match="version 3 here but the result is for version 4"):
        schema.check_task(bad_version)
    renamed = _edit(lambda r: [row.update(target=row["target"].replace("obj0", "pear"))
                               for row in r["per_layer"]])
    with pytest.raises(ResultError, match="per_layer targets differ from task 'boxes'"):
        schema.check_task(renamed)


def test_unregistered_tasks_are_refused_unless_allowed():
    r = _edit(_set("task.name", "maze-unregistered"))
    with pytest.raises(ResultError, match="not registered here.*--allow-unregistered"):
        schema.check_task(r)
    schema.check_task(r, allow_unregistered=True)


def test_a_task_from_an_include_path_is_checked(tiny_task_dir):
    r = _edit(lambda r: r["task"].update(name="boxes-tiny", version=1))
    with pytest.raises(ResultError, match="does not match boxes-tiny v1"):
        schema.check_task(r, include=[tiny_task_dir])


@settings(max_examples=25, deadline=None)
@given(quality=st.floats(0.05, 1.0), gain=st.none() | st.floats(-0.3, 0.9),
       alpha=st.none() | st.floats(0.0, 1.0))
def test_consistent_results_validate(quality, gain, alpha):
    schema.validate(make(quality=quality, gain=gain, alpha=alpha))


@settings(max_examples=25, deadline=None)
@given(row=st.integers(0, 7), delta=st.floats(1e-4, 0.01) | st.floats(-0.05, -1e-4))
def test_any_change_to_a_chosen_layer_score_is_caught(row, delta):
    r = example()
    layer = r["scores"]["decodability"]["layer"]
    rows = [x for x in r["per_layer"] if x["layer"] == layer and x["depth"] == "q4"]
    rows[row]["test"] += delta  # late chosen-layer accuracies are below 0.99: a valid rate
    r["run_id"] = run_id(r)
    with pytest.raises(ResultError, match="decodability.value is"):
        schema.validate(r)


def test_mdl_bits_sum_over_class_targets_only():
    """A task mixing regression and class targets (balls-2: positions, velocities, collide):
    MDL is a code length of class labels, so regression rows carry no bits and the sum is over
    the class rows; a class row without its bits is still an error. (A real result of the
    shipped spectrum-balls-2-a0, which an earlier validator refused.)"""
    with open("tests/data/result_mixed_targets.json", encoding="utf-8") as f:
        result = json.load(f)
    rows = [r for r in result["per_layer"] if r["layer"] == result["scores"]["decodability"][
        "layer"] and r["depth"] == "all"]
    assert {r["metric"] for r in rows} == {"accuracy", "r2"}
    assert all(r["mdl_bits"] is None for r in rows if r["metric"] == "r2")
    schema.validate(result)
    next(r for r in rows if r["metric"] == "accuracy")["mdl_bits"] = None
    with pytest.raises(ResultError, match="is not the sum of the per_layer mdl_bits"):
        schema.validate(result)
