"""Bouncing balls: the balls stay in the box, walls keep speed, collisions keep kinetic energy,
and the text and observations report the state."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from probekit.worlds.bouncing_balls import BouncingBalls, simulate

knobs = st.fixed_dictionaries({
    "n_balls": st.integers(1, 5), "length": st.integers(1, 40),
    "radius": st.floats(0.01, 0.1), "speed": st.floats(0.01, 0.2),
    "collisions": st.booleans(), "occluder": st.sampled_from([0.0, 0.2, 0.5]),
    "grid": st.integers(2, 12), "horizon": st.integers(1, 4)})


def trajectory(ep, k: int) -> tuple[np.ndarray, np.ndarray]:
    s = ep.state.reshape(len(ep.state), k, 4)
    return s[:, :, :2], s[:, :, 2:]


@settings(max_examples=50, deadline=None)
@given(knobs, st.integers(0, 2**32 - 1))
def test_physics_invariants(params, seed):
    world = BouncingBalls(**params)
    ep = world.episode(np.random.default_rng(seed))
    k, r = params["n_balls"], params["radius"]
    pos, vel = trajectory(ep, k)
    assert ep.state.shape == (params["length"], 4 * k)
    assert ((pos >= r) & (pos <= 1 - r)).all()  # inside the box
    energy = (vel ** 2).sum(axis=(1, 2))
    np.testing.assert_allclose(energy, energy[0], rtol=1e-9)  # elastic: walls and collisions
    if not params["collisions"]:
        speed = np.linalg.norm(vel, axis=2)
        np.testing.assert_allclose(speed, speed[:1].repeat(len(speed), 0), rtol=1e-9)
        # between bounces a ball moves by its velocity
        moved = pos[1:] - pos[:-1]
        same = (vel[1:] == vel[:-1]).all(axis=2)
        np.testing.assert_allclose(moved[same], vel[1:][same], atol=1e-12)


@pytest.mark.parametrize("v1, v2", [((0.05, 0.0), (-0.05, 0.0)), ((0.04, 0.01), (-0.02, 0.03))])
def test_colliding_balls_keep_momentum_and_energy(v1, v2):
    pos = np.array([[0.4, 0.5], [0.58, 0.5]])
    vel = np.array([v1, v2])
    P, V, E = simulate(pos, vel, 1, 0.1, collisions=True)
    assert E.all()
    np.testing.assert_allclose(V[0].sum(axis=0), vel.sum(axis=0), atol=1e-15)
    np.testing.assert_allclose((V[0] ** 2).sum(), (vel ** 2).sum(), rtol=1e-12)
    # only the components along the line between the centres are exchanged
    n = (P[0, 1] - P[0, 0]) / np.linalg.norm(P[0, 1] - P[0, 0])
    np.testing.assert_allclose(V[0] @ n, vel[::-1] @ n, atol=1e-15)
    _, V2, E2 = simulate(pos, vel, 1, 0.1, collisions=False)
    np.testing.assert_array_equal(V2[0], vel)
    assert not E2.any()


@settings(max_examples=50, deadline=None)
@given(knobs, st.floats(0, 0.1), st.integers(0, 2**32 - 1))
def test_text_and_observations_report_the_state(params, noise, seed):
    world = BouncingBalls(**params, obs_noise=noise)
    ep = world.episode(np.random.default_rng(seed))
    k, g = params["n_balls"], params["grid"]
    pos, vel = trajectory(ep, k)
    hidden = np.abs(pos[:, :, 0] - 0.5) < params["occluder"] / 2
    obs = ep.obs.reshape(len(ep.obs), k, 3)
    np.testing.assert_array_equal(obs[:, :, 2], ~hidden)
    assert (obs[:, :, :2][hidden] == 0).all()
    err = np.abs(obs[:, :, :2] - pos.astype(np.float32))[~hidden]
    assert err.max(initial=0) <= (1e-6 if noise == 0 else 10 * noise + 1e-6)
    for s, (lo, hi) in enumerate(ep.step_spans):
        words = ep.text[lo:hi].split()
        assert words[-1] == "."
        i, balls = 0, {}
        while words[i] == "ball":  # five words a ball, hidden or not (steps stay aligned)
            assert words[i + 2] == "at"
            if words[i + 3] == "hidden":
                assert words[i + 4] == "hidden"
                balls[int(words[i + 1])] = None
            else:
                balls[int(words[i + 1])] = (int(words[i + 3]), int(words[i + 4]))
            i += 5
        assert sorted(balls) == list(range(k))
        for b, cell in balls.items():
            want = None if hidden[s, b] else tuple(int(v) for v in
                                                   np.minimum(pos[s, b] * g, g - 1))
            assert cell == want
        for b in range(k):
            assert ep.labels[f"x.ball{b}"][s] == pos[s, b, 0]
            assert ep.labels[f"vy.ball{b}"][s] == vel[s, b, 1]


@settings(max_examples=50, deadline=None)
@given(knobs, st.integers(0, 2**32 - 1))
def test_collide_label_sees_the_next_bounce(params, seed):
    world = BouncingBalls(**params)
    ep = world.episode(np.random.default_rng(seed))
    k, h, T = params["n_balls"], params["horizon"], params["length"]
    _, vel = trajectory(ep, k)
    bounced = (vel[1:] != vel[:-1]).any(axis=2)  # [T-1, k]: a bounce during step s+1
    for t in range(T - h):
        for b in range(k):
            assert ep.labels[f"collide.ball{b}"][t] == int(bounced[t:t + h, b].any())


@settings(max_examples=30, deadline=None)
@given(knobs, st.integers(0, 2**32 - 1))
def test_counterfactual_kicks_one_ball_at_t(params, seed):
    world = BouncingBalls(**{**params, "length": max(params["length"], 2)})
    rng = np.random.default_rng(seed)
    base = world.episode(rng)
    pair = world.counterfactual(base, rng, {"variable": "velocity", "step": "random",
                                            "readout": "position"})
    if pair is None:  # no kick drawn showed in the text (a coarse grid, a short episode)
        return
    assert pair.source.surface != base.surface
    k, t = params["n_balls"], pair.step
    b = int(pair.variable.removeprefix("velocity.ball"))
    pos, vel = trajectory(base, k)
    spos, svel = trajectory(pair.source, k)
    np.testing.assert_array_equal(spos[:t], pos[:t])
    assert not np.array_equal(svel[t, b], vel[t, b])
    assert pair.readout_target == f"x.ball{b}"
    if not params["collisions"]:  # the other balls do not notice
        others = [i for i in range(k) if i != b]
        np.testing.assert_array_equal(spos[:, others], pos[:, others])
