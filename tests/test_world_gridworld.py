"""Gridworld: mazes are closed and connected, the agent never walks through a wall, and dead
reckoning on the text recovers its position and facing."""

from __future__ import annotations

from collections import deque

import numpy as np
from hypothesis import given, settings, strategies as st

from probekit.worlds.gridworld import DX, DY, FACINGS, Gridworld, maze

knobs = st.fixed_dictionaries({
    "size": st.integers(2, 9), "length": st.integers(2, 40),
    "p_forward": st.floats(0, 1), "loops": st.floats(0, 1)})


@settings(max_examples=50, deadline=None)
@given(st.integers(2, 12), st.floats(0, 1), st.integers(0, 2**32 - 1))
def test_maze_is_closed_symmetric_and_connected(n, loops, seed):
    walls = maze(n, loops, np.random.default_rng(seed))
    assert walls[0, :, 0].all() and walls[:, -1, 1].all() and walls[-1, :, 2].all() \
        and walls[:, 0, 3].all()
    for y in range(n):
        for x in range(n):
            for d in range(4):
                y2, x2 = y + DY[d], x + DX[d]
                if 0 <= y2 < n and 0 <= x2 < n:
                    assert walls[y, x, d] == walls[y2, x2, (d + 2) % 4]
    seen, todo = {(0, 0)}, deque([(0, 0)])
    while todo:
        y, x = todo.popleft()
        for d in range(4):
            nxt = (y + DY[d], x + DX[d])
            if not walls[y, x, d] and nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    assert len(seen) == n * n
    open_inner = (~walls).sum() // 2
    assert open_inner >= n * n - 1  # a spanning tree at least
    if loops == 0:
        assert open_inner == n * n - 1  # exactly a tree


@settings(max_examples=50, deadline=None)
@given(knobs, st.integers(0, 2**32 - 1))
def test_agent_never_enters_a_wall(params, seed):
    world = Gridworld(**params)
    ep = world.episode(np.random.default_rng(seed))
    x, y, f = ep.state[:, 0], ep.state[:, 1], ep.state[:, 2]
    walls = ep.state[:, 3:]
    n = params["size"]
    assert ((x >= 0) & (x < n) & (y >= 0) & (y < n)).all()
    for s in range(1, ep.n_steps):
        dx, dy = x[s] - x[s - 1], y[s] - y[s - 1]
        if dx or dy:
            assert abs(dx) + abs(dy) == 1 and f[s] == f[s - 1]
            d = [(DX[k], DY[k]) for k in range(4)].index((dx, dy))
            assert d == f[s] and walls[s - 1, d] == 0  # moved forward through an opening
            assert walls[s, (d + 2) % 4] == 0  # and the way back is open too


@settings(max_examples=50, deadline=None)
@given(knobs, st.integers(0, 2**32 - 1))
def test_dead_reckoning_on_the_text_recovers_the_state(params, seed):
    world = Gridworld(**params)
    ep = world.episode(np.random.default_rng(seed))
    steps = [ep.text[lo:hi].split() for lo, hi in ep.step_spans]
    assert steps[0][0] == "start"
    x, y, f = int(steps[0][1]), int(steps[0][2]), FACINGS.index(steps[0][3])
    for s, words in enumerate(steps):
        if s:
            action, outcome = words[0], words[1]
            if action == "forward":
                assert (outcome == "bump") == bool(ep.state[s - 1, 3 + f])
                if outcome == "ok":
                    x, y = x + DX[f], y + DY[f]
            else:
                assert outcome == "ok"
                f = (f + (1 if action == "right" else -1)) % 4
        assert list(ep.state[s, :3]) == [x, y, f]
        assert ep.labels["cell"][s] == y * params["size"] + x
        view = words[-4:-1]  # left, ahead, right
        for word, d in zip(view, ((f - 1) % 4, f, (f + 1) % 4)):
            assert (word == "wall") == bool(ep.state[s, 3 + d]) == \
                bool(ep.labels[f"wall.{FACINGS[d]}"][s])
    axis, answer = ep.text.split()[-3], ep.text.split()[-1]
    assert answer == ep.query_answer == str(x if axis == "x" else y)
