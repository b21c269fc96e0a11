"""Every catalogue task: the views agree, pairs are minimal, data is deterministic across
processes, and knobs out of range fail at load naming the knob and its valid range."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import given, settings, strategies as st

from probekit.errors import SpecError
from probekit.tasks import BUILTIN_TASKS, TaskSpec, load_task

CATALOGUE = {
    "bouncing_balls": ["balls-2", "balls-4-collide", "balls-3-occluded", "balls-2-frames"],
    "groups": ["parity", "cyclic-z5", "s3", "s5", "flipflop"],
    "gridworld": ["gridworld-5x5", "gridworld-8x8", "gridworld-5x5-frames"],
    "cellular": ["ca-rule30", "ca-rule90", "ca-rule110"],
    "othello": ["othello-4", "othello-6", "othello-4-frames"],
}
TASKS = [t for names in CATALOGUE.values() for t in names]
LENGTH_KNOB = {"bouncing_balls": "length", "groups": "length", "gridworld": "length",
               "cellular": "steps", "othello": "length"}
LOOK_AHEAD = ("future", "collide")


def test_catalogue_is_every_builtin_task_of_these_worlds():
    found = sorted(p.stem for p in BUILTIN_TASKS.glob("*.yaml")
                   if yaml.safe_load(p.read_text())["world"] in CATALOGUE)
    assert found == sorted(TASKS)


@pytest.mark.parametrize("name", TASKS)
def test_task_spec_has_a_longer_held_out_split(name):
    task = load_task(name)
    spec = task.spec
    knob = LENGTH_KNOB[spec.world]
    assert spec.license == "cc-by-4.0" and spec.description and spec.counterfactual
    assert spec.splits["test_long"].knobs[knob] > spec.knobs[knob]
    world = spec.world_for("test_long")
    assert world.episode(task.example_rng("test_long", 0)).n_steps > \
        spec.world_for("test").episode(task.example_rng("test", 0)).n_steps


@pytest.mark.parametrize("name", TASKS)
def test_views_agree(name):
    task = load_task(name)
    world = task.spec.world_for("train")
    vocab = world.vocabulary()
    targets = {t.name: t for t in world.targets()}
    assert len(set(vocab)) == len(vocab)
    for i in range(5):
        ep, _ = task.generate("train", i)
        T = ep.n_steps
        assert len(ep.token_steps) == len(ep.surface) == len(ep.obs) == len(ep.state) == T
        assert ep.obs.dtype == np.float32 and np.isfinite(ep.obs).all()
        assert [vocab[t] for t in ep.tokens] == ep.text.split(" ")
        for s, (lo, hi) in enumerate(ep.step_spans):
            assert ep.text[lo:hi] == ep.surface[s]
            end = len(ep.text[:hi].split(" ")) - 1  # index of the step's last word
            assert ep.token_steps[s] == end
        if ep.query_answer:
            q0, q1 = ep.query_span
            assert ep.text[q0:q1] == ep.query_answer and ep.text.endswith(ep.query_answer)
        assert set(ep.labels) == set(targets)
        for key, values in ep.labels.items():
            assert len(values) == T
            t = targets[key]
            if t.kind == "class":
                assert np.issubdtype(values.dtype, np.integer)
                assert ((values >= 0) & (values < t.n_classes)).all(), key
            else:
                assert np.issubdtype(values.dtype, np.floating)
        ep.row()  # serialisable as one dataset row


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(TASKS), st.sampled_from(["random", "last"]), st.integers(0, 10_000))
def test_counterfactual_is_minimal(name, step, index):
    task = load_task(name)
    world = task.spec.world_for("train")
    rng = task.example_rng("train", index)
    base = world.episode(rng)
    pair = world.counterfactual(base, rng, {**task.spec.counterfactual, "step": step})
    if pair is None:
        return
    src, t = pair.source, pair.step
    T = base.n_steps
    assert 0 <= t < T and src.n_steps == T
    if step == "last":
        assert t == T - 1
    # identical before t …
    np.testing.assert_array_equal(base.state[:t], src.state[:t])
    np.testing.assert_array_equal(base.obs[:t], src.obs[:t])
    assert base.surface[:t] == src.surface[:t]
    assert base.text[:base.step_spans[t][0]] == src.text[:src.step_spans[t][0]]
    for key in base.labels:  # targets that look `horizon` steps ahead may see step t sooner
        ahead = world.params["horizon"] if key.split(".")[0] in LOOK_AHEAD else 0
        before = max(t - ahead, 0)
        np.testing.assert_array_equal(base.labels[key][:before], src.labels[key][:before])
    # … and different at t
    assert not np.array_equal(base.state[t], src.state[t])
    if task.spec.world != "bouncing_balls":  # a small kick may stay in the same grid cell
        assert base.surface[t] != src.surface[t]
    readout = pair.readout_target
    assert readout in base.labels
    assert base.labels[readout][-1] == pair.base_label
    assert src.labels[readout][-1] == pair.counterfactual_label
    if task.spec.world != "bouncing_balls":
        assert pair.base_label != pair.counterfactual_label
    if base.query_answer:
        assert src.query_answer != base.query_answer
        assert base.query_answer in (str(pair.base_label), world.vocabulary()[pair.base_label])


def _rows(names: list[str]) -> str:
    """Episode, pair (with its placebo) and violation rows of a few examples, as JSON."""
    from probekit.tasks import load_task
    from probekit.worlds.rows import pair_row, violation_row

    out = {}
    for name in names:
        task = load_task(name)
        for split, index in (("train", 3), ("test_long", 1), ("val", 7)):
            ep, pair, vio = task.generate(split, index, violation=True)
            out[f"{name}/{split}/{index}"] = [
                task.fingerprint, ep.row(), None if pair is None else pair_row(index, pair),
                None if vio is None else violation_row(index, vio)]
    # NaN (undefined labels of impossible episodes) is written as NaN by json: still stable;
    # frames (uint8 arrays) as their shape and a digest of their bytes.
    return json.dumps(out, sort_keys=True, default=lambda a: [
        a.shape, a.dtype.str, hashlib.sha256(a.tobytes()).hexdigest()])


ALL_TASKS = sorted(p.stem for p in BUILTIN_TASKS.glob("*.yaml"))


def test_same_rows_across_processes():
    root = Path(__file__).resolve().parent
    code = (f"import sys; sys.path.insert(0, {str(root)!r}); "
            "from test_worlds_catalogue import _rows; "
            f"print(_rows({ALL_TASKS!r}))")
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True).stdout.strip()
    here = _rows(ALL_TASKS)
    assert '"has_placebo": true' in here and '"impossible.text"' in here
    assert other == here


def _spec(world: str, knobs: dict) -> dict:
    return {"name": "bad", "version": 1, "world": world, "knobs": knobs,
            "description": "d", "license": "cc-by-4.0", "targets": [],
            "splits": {s: {"size": 1, "seed": 0} for s in ("train", "val", "test")}}


@pytest.mark.parametrize("world, knobs, words", [
    ("bouncing_balls", {"n_balls": 0}, ["n_balls", "valid range [1, 8]"]),
    ("bouncing_balls", {"radius": 0.5}, ["radius", "valid range [0.01, 0.1]"]),
    ("groups", {"length": -3}, ["length", "valid range [1, 1024]"]),
    ("groups", {"group": "s7"}, ["group", "valid: parity, cyclic, s3, s5, flipflop"]),
    ("groups", {"group": "cyclic", "m": 1}, ["m", "valid range [2, 64]"]),
    ("cellular", {"rule": 256}, ["rule", "valid range [0, 255]"]),
    ("cellular", {"width": 2}, ["width", "valid range [3, 128]"]),
    ("gridworld", {"size": 1}, ["size", "valid range [2, 16]"]),
    ("gridworld", {"length": 0}, ["length", "valid range [2, 512]"]),
    ("othello", {"size": 8}, ["size", "valid: 4, 6"]),
    ("othello", {"size": 4, "length": 13}, ["length", "valid range [1, 12]"]),
])
def test_knob_out_of_range_fails_at_load(world, knobs, words):
    with pytest.raises(SpecError) as err:
        TaskSpec.parse(_spec(world, knobs))
    assert all(w in str(err.value) for w in words), str(err.value)


def test_split_knob_out_of_range_fails_at_load(tmp_path):
    raw = yaml.safe_load((BUILTIN_TASKS / "s5.yaml").read_text())
    raw["name"] = "s5-bad"
    raw["splits"]["test_long"]["knobs"]["length"] = 0
    (tmp_path / "s5-bad.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(SpecError, match=r"test_long\.knobs\.length: 0 is out of range; "
                                        r"valid range \[1, 1024\]"):
        load_task("s5-bad", [tmp_path])
