"""The boxes world: state invariants, text ↔ state, counterfactual minimality, determinism."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
from hypothesis import given, settings, strategies as st

from probekit.worlds.boxes import Boxes

knobs = st.fixed_dictionaries({
    "n_boxes": st.integers(2, 10), "n_objects": st.integers(1, 8), "n_ops": st.integers(1, 30),
    "p_remove": st.floats(0, 1), "style": st.sampled_from(["ops", "sentences", "paraphrased"]),
    "object_offset": st.integers(0, 16)})


VERBS = {  # words that only the templates of one action use
    "put": {"put", "place", "goes"}, "move": {"move", "moves", "and"},
    "remove": {"remove", "leaves"}}


def replay(world: Boxes, text: str) -> np.ndarray:
    """Parse the text back into states in any style, checking every operation is legal."""
    out = world.params["n_boxes"]
    names = list(world.objects)
    loc = {o: out for o in names}
    states = []
    for step in text.split(" . ")[:world.params["n_ops"]]:
        w = step.strip(" .").split()
        if world.params["style"] == "ops":
            (token,) = w
            obj, dst = token.split(">")
            if dst == "out":
                assert loc[obj] != out  # only an object in a box can be taken out
                loc[obj] = out
            else:
                assert int(dst) != loc[obj]
                loc[obj] = int(dst)
        else:
            (obj,) = [x for x in w if x in names]
            boxes = [int(x) for x in w if x.isdigit()]
            words = set(w)
            if loc[obj] == out:
                assert words & VERBS["put"] and len(boxes) == 1
                loc[obj] = boxes[0]
            elif len(boxes) == 2:
                assert words & VERBS["move"] and boxes[0] == loc[obj] != boxes[1]
                loc[obj] = boxes[1]
            else:
                assert not words & (VERBS["put"] | VERBS["move"]) and boxes == [loc[obj]]
                loc[obj] = out
        states.append([loc[o] for o in names])
    return np.array(states)


@settings(max_examples=60, deadline=None)
@given(knobs, st.integers(0, 2**32 - 1))
def test_state_follows_the_text(params, seed):
    world = Boxes(**params)
    ep = world.episode(np.random.default_rng(seed))
    assert ep.n_steps == params["n_ops"]
    np.testing.assert_array_equal(replay(world, ep.text), ep.state)
    # each object is in exactly one place, and box counts add up
    assert ((ep.state >= 0) & (ep.state <= params["n_boxes"])).all()
    counts = sum(ep.labels[f"count.box{j}"] for j in range(params["n_boxes"]))
    np.testing.assert_array_equal(counts, (ep.state < params["n_boxes"]).sum(axis=1))
    for s, (lo, hi) in enumerate(ep.step_spans):
        assert ep.text[lo:hi] == ep.surface[s]
        assert world.vocabulary()[ep.tokens[ep.token_steps[s]]] == "."
        assert all(w in world.vocabulary() for w in ep.surface[s].split())
    q0, q1 = ep.query_span
    assert ep.text[q0:q1] == ep.query_answer


@settings(max_examples=60, deadline=None)
@given(knobs, st.integers(0, 2**32 - 1))
def test_counterfactual_differs_in_one_operation(params, seed):
    world = Boxes(**params)
    rng = np.random.default_rng(seed)
    base = world.episode(rng)
    pair = world.counterfactual(base, rng, {})
    if pair is None:
        return
    src = pair.source
    diff = [i for i, (a, b) in enumerate(zip(base.surface, src.surface)) if a != b]
    assert diff == [pair.step]
    token_diff = [i for i, (a, b) in enumerate(zip(base.tokens, src.tokens)) if a != b]
    assert len(base.tokens) == len(src.tokens) and len(token_diff) == 2  # the box and the answer
    j = int(pair.variable.removeprefix("location.obj"))
    assert base.state[-1, j] == pair.base_label != pair.counterfactual_label
    assert src.state[-1, j] == pair.counterfactual_label
    assert src.query_answer == str(pair.counterfactual_label)
    np.testing.assert_array_equal(base.state[:pair.step], src.state[:pair.step])


def test_same_seed_same_episode_across_processes(tiny_task_dir):
    code = ("import json,sys; from probekit.tasks import load_task; "
            f"t=load_task('boxes-tiny', [{str(tiny_task_dir)!r}]); e,_=t.generate('train', 7); "
            "print(json.dumps([t.fingerprint, e.text]))")
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True).stdout for _ in range(2)]
    assert runs[0] == runs[1]
    fp, text = json.loads(runs[0])
    from probekit.tasks import load_task

    task = load_task("boxes-tiny", [tiny_task_dir])
    assert fp == task.fingerprint and task.dataset("train")[7]["text"] == text


def test_held_out_splits_of_boxes_text():
    """Paraphrased text and unseen objects keep the label columns of train; each changes only
    what it says it changes."""
    from probekit.tasks import load_task
    from probekit.worlds.boxes import TEMPLATES

    task = load_task("boxes-text")
    eps = {s: [task.generate(s, i)[0] for i in range(40)]
           for s in ("train", "test_paraphrased", "test_unseen_objects")}
    assert all(set(e.labels) == set(eps["train"][0].labels) for s in eps for e in eps[s])
    seen = {w for e in eps["train"] for w in e.text.split()}
    unseen = {w for e in eps["test_unseen_objects"] for w in e.text.split()} - seen
    assert unseen and unseen <= set(task.spec.world_for("test_unseen_objects").objects)
    first = {t.split()[0] for t in (ts[0] for ts in TEMPLATES.values())}
    starts = {s.split()[0] for e in eps["test_paraphrased"] for s in e.surface}
    assert starts - first  # other templates than the canonical ones
    assert {s.split()[0] for e in eps["train"] for s in e.surface} <= first
