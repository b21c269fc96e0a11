"""Counterfactual pairs, placebos and violation pairs of every built-in task: aligned with their
base, diffs recorded as they are, placebos that keep the readout, possible edits that the
world's own rules accept and impossible ones that they refuse, and a strict spec field."""

from __future__ import annotations

import math

import numpy as np
import pytest
import yaml
from hypothesis import given, settings, strategies as st

from probekit.errors import SpecError, UserError
from probekit.tasks import BUILTIN_TASKS, TaskSpec, load_task
from probekit.worlds import WORLDS
from probekit.worlds.base import Episode
from probekit.worlds.othello import PASS

TASKS = sorted(p.stem for p in BUILTIN_TASKS.glob("*.yaml"))
WORLD_OF = {t: yaml.safe_load((BUILTIN_TASKS / f"{t}.yaml").read_text())["world"]
            for t in TASKS}
N = 40  # examples per split checked in the loops below


def examples(name: str, n: int = N):
    """(task, world, split, index, base, pair, violation) for the first n examples of every
    split of task `name`."""
    task = load_task(name)
    for split in task.splits:
        world = task.spec.world_for(split)
        for i in range(n):
            yield (task, world, split, i, *task.generate(split, i, violation=True))


def words_per_step(ep: Episode) -> list[int]:
    return [len(ep.text[lo:hi].split(" ")) for lo, hi in ep.step_spans]


def check_aligned(base: Episode, other: Episode) -> None:
    """Independent of `probekit.worlds.base.aligned`: the same steps, world tokens per step
    (from `token_steps`) and words per step (from the text and its spans)."""
    assert other.n_steps == base.n_steps
    assert len(other.tokens) == len(base.tokens)
    assert other.token_steps == base.token_steps
    assert words_per_step(other) == words_per_step(base)
    assert len(other.text.split(" ")) == len(base.text.split(" "))


def check_diff(base: Episode, other: Episode, steps: list[int], tokens: list[int]) -> None:
    text = [(base.text[slice(*a)], other.text[slice(*b)])
            for a, b in zip(base.step_spans, other.step_spans)]
    want_steps = [s for s, (a, b) in enumerate(text) if a != b]
    n = len(base.tokens) - (1 if base.query_answer else 0)  # the answer word is the readout
    want_tokens = [i for i in range(n) if base.tokens[i] != other.tokens[i]]
    assert steps == want_steps and tokens == want_tokens
    # Every differing token lies in a differing step (or in the question, which names the
    # same object and axis in base and other).
    last = base.token_steps[-1]
    step_of = np.searchsorted(base.token_steps, np.arange(last + 1))
    assert all(i <= last and step_of[i] in steps for i in tokens)


def last_values(ep: Episode) -> dict[str, float]:
    return {k: v[-1] for k, v in ep.labels.items()}


@pytest.mark.parametrize("name", TASKS)
def test_pairs_and_placebos_are_aligned_and_diffs_are_recorded(name):
    made = placebos = 0
    for task, world, split, i, base, pair, _ in examples(name):
        if pair is None:
            continue
        made += 1
        check_aligned(base, pair.source)
        check_diff(base, pair.source, pair.diff_steps, pair.diff_tokens)
        assert pair.diff_tokens, f"{name}/{split}/{i}: base and source texts are identical"
        assert pair.changed == [k for k, v in last_values(base).items()
                                if v != pair.source.labels[k][-1]]
        assert pair.readout_target in pair.changed or WORLD_OF[name] == "bouncing_balls"
        placebo = pair.placebo
        if placebo is None:
            continue
        placebos += 1
        src = placebo.source
        check_aligned(base, src)
        check_diff(base, src, placebo.diff_steps, placebo.diff_tokens)
        assert placebo.diff_tokens and 0 <= placebo.step < base.n_steps
        assert not np.array_equal(src.state, base.state)  # it changes something …
        readout = pair.readout_target
        assert placebo.readout_target == readout  # … but not what the readout reads
        assert src.labels[readout][-1] == base.labels[readout][-1]
        assert placebo.base_label == placebo.counterfactual_label == pair.base_label
        assert readout not in placebo.changed
        if base.query_answer:
            assert src.query_answer == base.query_answer
        if WORLD_OF[name] == "othello":  # the next-move readout is unchanged too
            assert not [c for c in placebo.changed if c.startswith("legal.")]
    assert made >= 0.9 * N * len(load_task(name).splits)
    if WORLD_OF[name] == "groups" and name != "flipflop":
        assert placebos == 0  # in a group every one-element change changes the product
    else:
        assert placebos > 0


def parse_moves(world, ep: Episode) -> list[int]:
    squares = list(world.squares)
    return [PASS if w == "pass" else squares.index(w) for w in ep.surface]


def parse_rows(ep: Episode) -> np.ndarray:
    return np.array([[int(c) for c in s.split()[:-1]] for s in ep.surface], dtype=np.int8)


def rule_break(world_name: str, world, ep: Episode) -> int | None:
    """The first step of `ep` that the world's own rules refuse (None: every step legal)."""
    if world_name == "boxes":
        return world.rule_break(ep._ops)
    if world_name == "othello":
        moves = parse_moves(world, ep)
        for t in range(len(moves)):
            if world.play(moves[:t + 1]) is None:
                return t
        return None
    if world_name == "gridworld":
        return world.rule_break(ep)
    if world_name == "cellular":
        return world.rule_break(parse_rows(ep))
    if world_name == "bouncing_balls":
        return world.rule_break(ep._trajectory[0][:world.params["length"]])
    raise AssertionError(world_name)


@pytest.mark.parametrize("name", TASKS)
def test_violations_break_the_rules_at_their_step_and_possible_twins_do_not(name):
    task = load_task(name)
    world_name = WORLD_OF[name]
    if task.spec.violations is None:
        assert WORLDS.get(world_name).no_violations  # groups: a reason, and no pairs
        with pytest.raises(UserError, match="has no violation pairs.*every word is possible"):
            task.violations("test")
        return
    made, kinds = 0, set()
    for task, world, split, i, base, _, vio in examples(name):
        assert rule_break(world_name, world, base) is None
        if vio is None:
            continue
        made += 1
        kinds.add(vio.kind)
        t = vio.step
        assert vio.kind in task.spec.violations["kinds"]
        possible, impossible = vio.possible, vio.impossible
        for ep, steps, tokens in ((possible, vio.possible_diff_steps, vio.possible_diff_tokens),
                                  (impossible, vio.impossible_diff_steps,
                                   vio.impossible_diff_tokens)):
            check_aligned(base, ep)
            check_diff(base, ep, steps, tokens)
            assert ep.text[:ep.step_spans[t][0]] == base.text[:base.step_spans[t][0]]
        assert rule_break(world_name, world, possible) is None, f"{name}/{split}/{i}"
        assert rule_break(world_name, world, impossible) == t, f"{name}/{split}/{i}"
        assert vio.impossible_diff_steps and vio.impossible_diff_steps[0] >= t
        if world_name == "cellular":  # nothing else is possible after the rows before t
            assert possible is base and not vio.possible_diff_tokens
        else:
            # A kicked ball may stay in its grid cell for a step or more; other edits show at t.
            first = vio.possible_diff_steps[0]
            assert first == t or (world_name == "bouncing_balls" and first > t)
        if world_name in ("boxes", "othello"):  # one word each, at the same step
            assert len(vio.possible_diff_tokens) == len(vio.impossible_diff_tokens) == 1
            assert vio.possible_diff_steps == vio.impossible_diff_steps == [t]
        # Labels: the base's before t, undefined from t on.
        for key, values in impossible.labels.items():
            np.testing.assert_array_equal(values[:t], base.labels[key][:t])
            undefined = np.isnan(values[t:]) if values.dtype.kind == "f" else values[t:] == -1
            assert undefined.all(), key
        np.testing.assert_array_equal(impossible.state[:t], base.state[:t])
    splits = len(task.splits)
    assert made >= 0.9 * N * splits
    assert kinds == set(task.spec.violations["kinds"])


def test_balls_observations_show_the_violation():
    """`obs` hold the rendered positions (no noise in balls-2): a jump moves farther than any
    speed allows; a ball through the wall has its centre beyond it."""
    task = load_task("balls-2")
    world = task.spec.world_for("test")
    seen = set()
    for i in range(60):
        base, _, vio = task.generate("test", i, violation=True)
        if vio is None:
            continue
        b, t = int(vio.variable.removeprefix("position.ball")), vio.step
        pos = vio.impossible.obs.reshape(base.n_steps, -1, 3)[:, b, :2].astype(float)
        if vio.kind == "jump":
            assert np.linalg.norm(pos[t] - pos[t - 1]) > world.max_speed()
        else:
            r = world.params["radius"]
            assert ((pos[t] < r) | (pos[t] > 1 - r)).any()
        seen.add(vio.kind)
    assert seen == {"jump", "wall"}


@settings(max_examples=40, deadline=None)
@given(st.sampled_from([t for t in TASKS if WORLD_OF[t] != "groups"]),
       st.sampled_from(["random", "last"]), st.integers(0, 10_000))
def test_violation_at_the_last_step(name, step, index):
    task = load_task(name)
    world = task.spec.world_for("train")
    rng = task.example_rng("train", index)
    base = world.episode(rng)
    vio = world.violation(base, np.random.default_rng(index),
                          {**task.spec.violations, "step": step})
    if vio is None:
        return
    if step == "last":
        assert vio.step == base.n_steps - 1
    assert rule_break(WORLD_OF[name], world, vio.impossible) == vio.step


def test_cellular_placebo_is_outside_the_light_cone():
    task = load_task("ca-rule30")
    p = task.spec.knobs
    for base, pair in (task.generate("train", i) for i in range(60)):
        if pair is None or pair.placebo is None:
            continue
        q = int(pair.readout_target.removeprefix("future.c"))
        j = int(pair.placebo.variable.removeprefix("cell.c"))
        w = p["width"]
        assert min(abs(j - q), w - abs(j - q)) > p["steps"] - 1 + p["horizon"] - pair.placebo.step


# --- the spec field -------------------------------------------------------------------------

def raw(name: str) -> dict:
    return yaml.safe_load((BUILTIN_TASKS / f"{name}.yaml").read_text())


@pytest.mark.parametrize("violations, words", [
    ({"kinds": ["jump"], "when": "random"}, ["violations: unknown knob 'when'", "kinds, step"]),
    ({"kinds": ["teleport"]}, ["violations.kinds", "'teleport'", "valid: jump, wall"]),
    ({"kinds": "jump"}, ["violations.kinds: expected tuple"]),
    ({"kinds": []}, ["violations.kinds", "valid: jump, wall"]),
    ({"step": "first"}, ["violations.step", "valid: random, last"]),
    (["jump"], ["violations: expected dict"]),
])
def test_bad_violations_field_fails_with_one_clear_line(violations, words):
    spec = {**raw("balls-2"), "violations": violations}
    with pytest.raises(SpecError) as err:
        TaskSpec.parse(spec)
    message = str(err.value)
    assert "\n" not in message and all(w in message for w in words), message


def test_a_world_without_violations_refuses_the_field_and_says_why():
    with pytest.raises(SpecError, match=r"violations: world 'groups' makes no violation pairs "
                                        r"\(every word is possible.*remove the field"):
        TaskSpec.parse({**raw("s3"), "violations": {"kinds": ["flip"]}})


def test_violations_are_fingerprinted():
    base = TaskSpec.parse(raw("balls-2"))
    jump_only = TaskSpec.parse({**raw("balls-2"), "violations": {"kinds": ["jump"]}})
    none = TaskSpec.parse({k: v for k, v in raw("balls-2").items() if k != "violations"})
    assert base.violations == {"kinds": ("jump", "wall"), "step": "random"}
    assert jump_only.violations == {"kinds": ("jump",), "step": "random"}
    canon = [base.canonical(), jump_only.canonical(), none.canonical()]
    assert canon[0] != canon[1] and "violations" not in canon[2]
    from probekit.tasks import Task

    assert len({Task(s).fingerprint for s in (base, jump_only, none)}) == 3


def test_declaring_violations_leaves_episodes_and_pairs_alone_for_a_fingerprint():
    """Placebos and violations draw from their own streams: with the fingerprint fixed, the
    episode and pair of an example do not depend on whether violations are generated."""
    task = load_task("othello-4")
    for i in range(5):
        ep, pair = task.generate("val", i)
        ep2, pair2, _ = task.generate("val", i, violation=True)
        assert ep.row() == ep2.row() and pair.source.row() == pair2.source.row()
        assert (pair.placebo is None) == (pair2.placebo is None)


def test_placebo_coverage_per_task_is_what_the_cards_report():
    """A guard on the share of pairs with a placebo (50 train examples per task): boxes,
    gridworld, cellular, bouncing balls and the flip-flop nearly always have one, Othello in a
    fifth or so of pairs, the groups never."""
    floors = {"othello": 0.1, "groups": 0.9}
    for name in TASKS:
        task = load_task(name)
        pairs = [p for p in (task.generate("train", i)[1] for i in range(50)) if p]
        share = sum(p.placebo is not None for p in pairs) / len(pairs)
        if WORLD_OF[name] == "groups" and name != "flipflop":
            assert share == 0, name
        else:
            assert share >= floors.get(WORLD_OF[name], 0.85), (name, share)
        assert not math.isnan(share)
