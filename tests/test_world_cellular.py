"""Cellular automata: rows match a naive cell-by-cell reference, the text is the rows, and the
future, density and question look at the right rows."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings, strategies as st

from probekit.worlds.cellular import Cellular

knobs = st.fixed_dictionaries({
    "rule": st.integers(0, 255), "width": st.integers(3, 20), "steps": st.integers(1, 20),
    "horizon": st.integers(1, 4), "p_alive": st.floats(0, 1),
    "density_bins": st.integers(2, 6)})


def naive(first: list[int], rule: int, rows: int) -> list[list[int]]:
    out = [first]
    w = len(first)
    for _ in range(rows - 1):
        prev = out[-1]
        out.append([(rule >> (4 * prev[(i - 1) % w] + 2 * prev[i] + prev[(i + 1) % w])) & 1
                    for i in range(w)])
    return out


@settings(max_examples=50, deadline=None)
@given(knobs, st.integers(0, 2**32 - 1))
def test_rows_match_a_naive_reference(params, seed):
    world = Cellular(**params)
    ep = world.episode(np.random.default_rng(seed))
    T, w, k = params["steps"], params["width"], params["horizon"]
    rows = [[int(c) for c in ep.text[lo:hi].split()[:-1]] for lo, hi in ep.step_spans]
    assert all(len(r) == w for r in rows) and len(rows) == T
    ref = naive(rows[0], params["rule"], T + k)
    assert rows == ref[:T] == ep.state.tolist() == ep.obs.astype(int).tolist()
    for i in range(w):
        assert ep.labels[f"cell.c{i}"].tolist() == [r[i] for r in ref[:T]]
        assert ep.labels[f"future.c{i}"].tolist() == [r[i] for r in ref[k:T + k]]
    fraction = np.array([sum(r) / w for r in ref[:T]])
    np.testing.assert_allclose(ep.labels["fraction"], fraction)
    bins = params["density_bins"]
    assert ep.labels["density"].tolist() == [min(int(f * bins), bins - 1) for f in fraction]
    words = ep.text.split()
    assert words[-6:-1] == ["cell", words[-5], "in", str(k), "?"]
    assert ep.query_answer == words[-1] == str(ref[T - 1 + k][int(words[-5])])


@settings(max_examples=30, deadline=None)
@given(knobs, st.integers(0, 2**32 - 1))
def test_counterfactual_flips_one_cell_and_reruns_the_rule(params, seed):
    world = Cellular(**params)
    rng = np.random.default_rng(seed)
    base = world.episode(rng)
    pair = world.counterfactual(base, rng, {"variable": "cell", "step": "random",
                                            "readout": "query"})
    if pair is None:
        return
    t, j = pair.step, int(pair.variable.removeprefix("cell.c"))
    flipped = base.state[t].copy()
    flipped[j] ^= 1
    ref = naive(flipped.tolist(), params["rule"], params["steps"] - t + params["horizon"])
    assert pair.source.state[t:].tolist() == ref[:params["steps"] - t]
    assert pair.counterfactual_label == ref[-1][int(pair.readout_target.removeprefix(
        "future.c"))] != pair.base_label
