"""Targets and variables that some worlds produce and a naive pipeline trips over: a square
that never changes on a small Othello board, an intervened action with no label column, and an
encoder whose attention looks both ways."""

from __future__ import annotations

import warnings

import pytest

import probekit
from probekit.errors import ProbekitWarning, ResultError
from probekit.schema import check_task, validate
from probekit.worlds.gridworld import Gridworld
from probekit.worlds.othello import Othello
from tests.conftest import save_tiny_gpt2
from tests.micro import write_task

OTHELLO = """\
name: othello-micro
version: 1
world: othello
description: Tiny 4x4 Othello; the four centre squares are never empty, so some targets are
  constant on train.
license: cc-by-4.0
knobs: {size: 4, length: 3}
splits:
  train: {size: 40, seed: 1}
  val: {size: 16, seed: 2}
  test: {size: 16, seed: 3}
targets:
  - {name: legal, kind: class}
control: {feature: step_text_and_index, seed: 0}
"""

GRID = """\
name: grid-micro
version: 1
world: gridworld
description: Tiny gridworld whose counterfactual changes an action (an input, not a state).
license: cc-by-4.0
knobs: {size: 5, length: 6}
splits:
  train: {size: 40, seed: 1}
  val: {size: 16, seed: 2}
  test: {size: 32, seed: 3}
targets:
  - {name: x, kind: class}
control: {feature: step_text_and_index, seed: 0}
counterfactual: {variable: action, step: random, readout: query}
"""


def test_constant_targets_are_skipped_with_a_warning(tmp_path):
    model = save_tiny_gpt2(tmp_path / "m", Othello(size=4, length=3).vocabulary())
    folder = write_task(tmp_path / "tasks", OTHELLO)
    with pytest.warns(ProbekitWarning, match=r"skipping \d+ target\(s\) with a single class"):
        (r,) = probekit.evaluate(model, ["othello-micro"], include=[folder], device="cpu",
                                 progress=False).results
    skipped = r["task"]["skipped_targets"]
    assert skipped and all(name.startswith("legal.") for name in skipped)
    probed = {row["target"] for row in r["per_layer"]}
    assert probed and not probed & set(skipped)
    validate(r)
    check_task(r, include=[folder])  # submit accepts it: the skipped targets are the task's
    r["task"]["skipped_targets"] = ["legal.z9"]
    with pytest.raises(ResultError, match="per_layer targets differ"):
        check_task(r, include=[folder])


def test_interventions_on_an_action_are_patched_but_not_steered(tmp_path):
    model = save_tiny_gpt2(tmp_path / "m", Gridworld(size=5, length=6).vocabulary())
    folder = write_task(tmp_path / "tasks", GRID)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        (r,) = probekit.evaluate(model, ["grid-micro"], include=[folder], device="cpu",
                                 progress=False).results
    # the patches ran: the ceiling (every differing input at the input layer) reproduced the
    # source run on every drawn pair, though this untrained model gets few of them right
    ceiling = r["causal"]["ceiling"]
    assert ceiling["pairs"] == r["causal"]["pairs_drawn"] >= 8
    assert ceiling["iia"] == pytest.approx(ceiling["source_accuracy"])
    # an action is an input, not a state: nothing to steer along, so no steering rows
    assert r["probe"]["causality"]["steering"] and all(
        c.get("strength") is None for c in r["per_cell"])
    if r["scores"]["causality"] is None:  # every pair dropped for wrong answers: said so
        assert "no pair can be scored" in r["scores"]["causality_reason"]
        assert "base_wrong" in r["scores"]["causality_reason"]
    validate(r)


def test_cached_patching_refuses_encoders(tmp_path):
    from transformers import BertConfig, BertLMHeadModel

    from probekit.adapters import load_model
    from probekit.causal.cached import CachedRunner
    from probekit.tokenizer import word_tokenizer
    from probekit.worlds.boxes import Boxes

    tok = word_tokenizer(Boxes().vocabulary())
    config = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, pad_token_id=0)
    BertLMHeadModel(config).save_pretrained(tmp_path / "bert")  # is_decoder off: two-way
    tok.save_pretrained(tmp_path / "bert")
    assert not CachedRunner.supports(load_model(tmp_path / "bert", device="cpu"))
    gpt2 = save_tiny_gpt2(tmp_path / "gpt2", Boxes().vocabulary())
    assert CachedRunner.supports(load_model(gpt2, device="cpu"))
