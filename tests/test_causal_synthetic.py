"""Models whose mechanism is known exactly (tests/synthetic.py): the causal axis must find the
state where it lives — at (block.0, last step), in a 4-dimensional subspace — with the probe and
DAS featurizers and not with a random subspace, score every other site near 0, and call a
lookup model (decodable state, never used) decodable-not-causal from a reachable cell."""

from __future__ import annotations

import pytest

from probekit import record
from probekit.causal import CausalProbe
from probekit.tasks import load_task
from tests.synthetic import OPS_TASK, adapter

SETTINGS = dict(featurizers=["full", "probe", "random", "das"], scopes=["layer"], max_pairs=48,
                strengths=(0.5,), attribution=False, das_ranks=(4, 8), das_steps=60,
                das_pairs=96)


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ops-task")
    (folder / "boxes-ops-tiny.yaml").write_text(OPS_TASK)
    return load_task("boxes-ops-tiny", [folder])


@pytest.fixture(scope="module")
def carried(task):
    return CausalProbe(**SETTINGS).run(adapter(carried=True), task)


@pytest.fixture(scope="module")
def lookup(task):
    settings = {**SETTINGS, "featurizers": ["full", "probe", "random"]}
    return CausalProbe(**settings).run(adapter(carried=False), task)


def cells(result):
    return {(r["layer"], r["positions"], r["featurizer"]): r for r in result.rows()
            if r["featurizer"] not in (None, "steer")}


def test_probe_and_das_find_the_state_and_a_random_subspace_does_not(carried):
    rows = cells(carried)
    for feat in ("probe", "das"):
        assert rows[("block.0", "last", feat)]["gain"] >= 0.9, feat
    assert rows[("block.0", "last", "random")]["gain"] <= 0.1
    head = carried.scores()
    assert head["gain"] >= 0.9 and head["layer"] == "block.0"
    assert head["positions"] in ("read", "last") and head["vs_random_ci95"][0] > 0
    assert record.is_causal(head)


def test_every_other_site_scores_near_zero(carried):
    for (layer, positions, feat), row in cells(carried).items():
        if (layer, positions) in (("block.0", "last"), ("block.0", "read")):
            continue  # where the state lives (read holds the last step too)
        if (layer, positions, feat) == ("embed", "diff", "full"):
            assert row["gain"] == 1.0  # the input itself: the ceiling
            continue
        assert row["reachable"] and row["gain"] <= 0.1, (layer, positions, feat, row["gain"])


def test_steering_along_the_probe_direction_moves_the_answer(carried):
    steer = [r for r in carried.rows() if r["featurizer"] == "steer" and r["layer"] == "block.0"]
    assert steer and steer[0]["gain"] >= 0.9 and steer[0]["baseline"] <= 0.2


def test_a_lookup_model_is_decodable_not_causal_from_a_reachable_cell(lookup):
    head = lookup.scores()
    assert head is not None  # a reachable cell at the read positions exists
    assert head["gain"] <= 0.1 and not record.is_causal(head)
    row = cells(lookup)[(head["layer"], head["positions"], head["featurizer"])]
    assert row["reachable"]
    # the answer flows through the op token instead: patching it moves the readout
    assert cells(lookup)[("block.0", "diff", "full")]["gain"] == 1.0
    decodable = {"value": 0.9, "random_init": 0.1}
    assert record.verdict(decodable, head, causal_ran=True) == "decodable-not-causal"
