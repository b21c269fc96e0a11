"""Bouncing balls: K balls in the unit box with elastic walls and, optionally, elastic
ball-ball collisions, an occluding band and noisy observations.

Time is discrete: each step a ball moves by its velocity and is mirrored back into the box
when it crosses a wall (so the walls keep its speed); colliding balls of equal mass swap the
velocity components along the line between their centres (so collisions keep kinetic energy).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from probekit.worlds.base import (
    Counterfactual,
    Episode,
    Knob,
    Target,
    Violation,
    World,
    build_text,
    undefined_from,
)

MAX_BALLS = 8
MAX_GRID = 32
KICK_TRIES = 8  # velocities drawn for a kick before giving up on one that shows in the text
WORDS = ("ball", "at", "hidden", ".")


@functools.cache
def _vocab() -> dict[str, int]:
    return {w: i for i, w in enumerate(WORDS + tuple(str(i) for i in range(MAX_GRID)))}


def simulate(pos: np.ndarray, vel: np.ndarray, steps: int, radius: float, collisions: bool
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Positions, velocities ([steps, K, 2]) and bounce events ([steps, K]: the ball hit a wall
    or another ball during that step) for `steps` steps after the state (pos, vel)."""
    lo, hi, touch = radius, 1.0 - radius, (2 * radius) ** 2
    px, py = pos[:, 0].tolist(), pos[:, 1].tolist()
    vx, vy = vel[:, 0].tolist(), vel[:, 1].tolist()
    k = len(px)
    out_p, out_v, out_e = [], [], []
    for _ in range(steps):
        hit = [False] * k
        for i in range(k):
            x, y = px[i] + vx[i], py[i] + vy[i]
            if x < lo or x > hi:
                x = 2 * (lo if x < lo else hi) - x
                vx[i] = -vx[i]
                hit[i] = True
            if y < lo or y > hi:
                y = 2 * (lo if y < lo else hi) - y
                vy[i] = -vy[i]
                hit[i] = True
            px[i], py[i] = x, y
        if collisions:
            for i in range(k):
                for j in range(i + 1, k):
                    dx, dy = px[j] - px[i], py[j] - py[i]
                    d2 = dx * dx + dy * dy
                    closing = (vx[i] - vx[j]) * dx + (vy[i] - vy[j]) * dy
                    if 0 < d2 < touch and closing > 0:
                        f = closing / d2
                        vx[i], vy[i] = vx[i] - f * dx, vy[i] - f * dy
                        vx[j], vy[j] = vx[j] + f * dx, vy[j] + f * dy
                        hit[i] = hit[j] = True
        out_p.append((px[:], py[:]))
        out_v.append((vx[:], vy[:]))
        out_e.append(hit)
    shape = (steps, k, 2)
    return (np.array(out_p, dtype=np.float64).transpose(0, 2, 1).reshape(shape),
            np.array(out_v, dtype=np.float64).transpose(0, 2, 1).reshape(shape),
            np.array(out_e, dtype=bool).reshape(steps, k))


class BouncingBalls(World):
    """Intuitive physics: the state is every ball's position and velocity."""

    name = "bouncing_balls"
    version = "3"
    description = ("Balls move in the unit box, bounce elastically off the walls and, when "
                   "enabled, off each other; each step reports every ball's grid cell (or, in "
                   "the same number of words, that it is hidden behind the occluding band).")
    knobs = (
        Knob("n_balls", int, 2, "number of balls", min=1, max=MAX_BALLS),
        Knob("length", int, 16, "steps per episode, the starting state included", min=1,
             max=512),
        Knob("radius", float, 0.05, "ball radius (the box is the unit square)", min=0.01,
             max=0.1),
        Knob("speed", float, 0.05, "largest initial speed per step (the smallest is half)",
             min=0.01, max=0.2),
        Knob("collisions", bool, False, "whether balls collide with each other"),
        Knob("occluder", float, 0.0, "width of the vertical band around x = 0.5 that hides "
             "the balls inside it", min=0.0, max=0.5),
        Knob("obs_noise", float, 0.0, "std of Gaussian noise added to observed positions",
             min=0.0, max=1.0),
        Knob("grid", int, 10, "cells per side when the text reports positions", min=2,
             max=MAX_GRID),
        Knob("horizon", int, 3, "steps ahead the `collide` target looks", min=1, max=16),
    )
    counterfactual_knobs = (
        Knob("variable", str, "velocity", "what the intervention changes: one ball's velocity",
             choices=("velocity",)),
        Knob("step", str, "random", "which step: a uniformly drawn one, or the last",
             choices=("random", "last")),
        Knob("readout", str, "position", "what must follow: that ball's x at the last step",
             choices=("position",)),
    )
    violation_knobs = (
        Knob("kinds", tuple, ("jump", "wall"), "which law the impossible edit breaks: `jump` "
             "(continuity: a ball moves farther in one step than any speed allows), `wall` "
             "(solidity: a ball goes on through the wall it should bounce off)",
             choices=("jump", "wall")),
        Knob("step", str, "random", "which step: a uniformly drawn one among those that admit "
             "the edit, or the last", choices=("random", "last")),
    )

    def vocabulary(self) -> list[str]:
        return list(_vocab())

    def targets(self) -> list[Target]:
        balls = [f"ball{i}" for i in range(self.params["n_balls"])]
        out = [Target(f"{f}.{b}", "regress") for f in ("x", "y", "vx", "vy") for b in balls]
        return out + [Target(f"collide.{b}", "class", 2) for b in balls]

    def _velocities(self, k: int, rng: np.random.Generator) -> np.ndarray:
        s = self.params["speed"]
        speed = rng.uniform(s / 2, s, k)
        angle = rng.uniform(0, 2 * np.pi, k)
        return np.stack([speed * np.cos(angle), speed * np.sin(angle)], axis=1)

    def _render(self, pos: np.ndarray, vel: np.ndarray, events: np.ndarray,
                noise: np.ndarray | None) -> Episode:
        """`pos`, `vel` and `events` cover the episode's steps and the `horizon` steps after."""
        p = self.params
        T, k, g, h = p["length"], p["n_balls"], p["grid"], p["horizon"]
        P, V = pos[:T], vel[:T]
        cells, hidden = self._view(P)
        names = [str(i) for i in range(max(k, g))]
        steps = []
        for s in range(T):
            words: list[str] = []
            for i in range(k):
                if hidden[s, i]:  # as many words as a visible ball: steps stay aligned
                    words += ["ball", names[i], "at", "hidden", "hidden"]
                else:
                    words += ["ball", names[i], "at", names[cells[s, i, 0]],
                              names[cells[s, i, 1]]]
            steps.append(words + ["."])
        text, spans, tokens, token_steps, _, _ = build_text(steps, _vocab())
        seen = P if noise is None else P + noise
        obs = np.concatenate([np.where(hidden[:, :, None], 0.0, seen), ~hidden[:, :, None]],
                             axis=2).reshape(T, 3 * k).astype(np.float32)
        state = np.concatenate([P, V], axis=2).reshape(T, 4 * k)
        # collide[t] = a bounce during steps t+1 … t+h.
        window = np.cumsum(np.concatenate([np.zeros((1, k)), events]), axis=0)
        collide = (window[np.arange(T) + h + 1] - window[np.arange(T) + 1]) > 0
        labels: dict[str, np.ndarray] = {}
        for f, arr in (("x", P[:, :, 0]), ("y", P[:, :, 1]), ("vx", V[:, :, 0]),
                       ("vy", V[:, :, 1])):
            for i in range(k):
                labels[f"{f}.ball{i}"] = arr[:, i]
        for i in range(k):
            labels[f"collide.ball{i}"] = collide[:, i].astype(np.int64)
        surface = [" ".join(s) for s in steps]
        ep = Episode(text, spans, tokens, token_steps, obs, state, surface, labels)
        ep._view = cells, hidden
        return ep

    def _view(self, P: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """What the text shows of positions P [T, K, 2]: each ball's grid cell [T, K, 2] (a
        position beyond a wall, in impossible episodes only, shows as the cell at that wall)
        and whether it is hidden [T, K]."""
        g = self.params["grid"]
        cells = np.clip(np.floor(P * g), 0, g - 1).astype(np.int64)
        return cells, np.abs(P[:, :, 0] - 0.5) < self.params["occluder"] / 2

    def _shows(self, base: Episode, P: np.ndarray, at: int | None = None) -> bool:
        """Whether the text of positions P differs from `base`'s (at step `at`, or at any)."""
        T = self.params["length"]
        rows = slice(0, T) if at is None else slice(at, at + 1)
        cells, hidden = self._view(P[rows])
        bc, bh = base._view[0][rows], base._view[1][rows]
        return bool((hidden != bh).any() or ((cells != bc).any(axis=2) & ~hidden).any())

    def episode(self, rng: np.random.Generator) -> Episode:
        p = self.params
        k, r = p["n_balls"], p["radius"]
        # Starting positions in distinct cells of a side×side grid; a cell is at least 2r wide
        # (side <= 3 and r <= 0.1), so no two balls overlap.
        side = int(np.ceil(np.sqrt(k)))
        cells = rng.choice(side * side, size=k, replace=False)
        corner = np.stack([cells % side, cells // side], axis=1) / side
        pos0 = corner + r + rng.random((k, 2)) * (1 / side - 2 * r)
        vel0 = self._velocities(k, rng)
        noise = (rng.normal(0, p["obs_noise"], (p["length"], k, 2)) if p["obs_noise"] > 0
                 else None)
        P, V, E = simulate(pos0, vel0, p["length"] - 1 + p["horizon"], r, p["collisions"])
        pos = np.concatenate([pos0[None], P])
        vel = np.concatenate([vel0[None], V])
        events = np.concatenate([np.zeros((1, k), dtype=bool), E])
        ep = self._render(pos, vel, events, noise)
        ep._trajectory, ep._noise = (pos, vel, events), noise  # not part of the row
        return ep

    def max_speed(self) -> float:
        """The largest distance a ball can move in one step: every starting speed is at most
        `speed`, a kick (counterfactuals, possible twins) gives one ball a speed of at most
        `speed` (adding at most speed² of energy), walls keep speeds and collisions keep the
        total kinetic energy, so no ball is ever faster than sqrt(n_balls + 1)·speed."""
        return float(np.sqrt(self.params["n_balls"] + 1) * self.params["speed"])

    def rule_break(self, positions: np.ndarray) -> int | None:
        """The first step whose positions ([T, K, 2]) break continuity (a ball moved farther
        than `max_speed`) or solidity (a ball's centre is closer to a wall than its radius),
        or None."""
        r = self.params["radius"]
        eps = 1e-9
        outside = ((positions < r - eps) | (positions > 1 - r + eps)).any(axis=(1, 2))
        step = np.linalg.norm(np.diff(positions, axis=0), axis=2).max(axis=1, initial=0)
        far = np.concatenate([[False], step > self.max_speed() + eps])
        bad = np.flatnonzero(outside | far)
        return int(bad[0]) if len(bad) else None

    def _trajectory_from(self, base: Episode, t: int, pos: np.ndarray, vel: np.ndarray
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`base`'s trajectory up to step t-1, then the simulation from the state (pos, vel)
        just before step t moves it."""
        p = self.params
        P0, V0, E0 = base._trajectory
        P, V, E = simulate(pos, vel, len(P0) - t, p["radius"], p["collisions"])
        return (np.concatenate([P0[:t], P]), np.concatenate([V0[:t], V]),
                np.concatenate([E0[:t], E]))

    def _episode(self, base: Episode, traj: tuple[np.ndarray, np.ndarray, np.ndarray]
                 ) -> Episode:
        """The episode of a trajectory, with the base's observation noise."""
        ep = self._render(*traj, base._noise)
        ep._trajectory, ep._noise = traj, base._noise
        return ep

    def _kick(self, base: Episode, t: int, ball: int, rng: np.random.Generator
              ) -> Episode | None:
        """`base` with `ball` given a new velocity (drawn like the starting ones) just before
        step t moves it, re-simulated; redrawn until some step's text differs from the base's
        (a small kick may stay in the same grid cells), None after KICK_TRIES draws."""
        pos, vel, _ = base._trajectory
        for _ in range(KICK_TRIES):
            start_vel = vel[t - 1].copy()
            start_vel[ball] = self._velocities(1, rng)[0]
            traj = self._trajectory_from(base, t, pos[t - 1], start_vel)
            if self._shows(base, traj[0]):
                return self._episode(base, traj)
        return None

    def counterfactual(self, base: Episode, rng: np.random.Generator,
                       settings: dict[str, Any]) -> Counterfactual | None:
        """Give one ball a new velocity (drawn like the starting ones) just before step t moves
        it and re-simulate from there, redrawn until the text shows it somewhere; the readout
        is that ball's x at the last step. The observation noise is the base's, so
        observations before t are identical."""
        p = self.params
        T, k = p["length"], p["n_balls"]
        if T < 2:
            return None
        t = T - 1 if settings["step"] == "last" else int(rng.integers(1, T))
        ball = int(rng.integers(k))
        source = self._kick(base, t, ball, rng)
        if source is None:
            return None
        readout = f"x.ball{ball}"
        return Counterfactual(source=source, step=t, variable=f"velocity.ball{ball}",
                              readout_target=readout,
                              base_label=float(base.labels[readout][-1]),
                              counterfactual_label=float(source.labels[readout][-1]))

    def placebo(self, base: Episode, pair: Counterfactual, rng: np.random.Generator,
                settings: dict[str, Any]) -> Counterfactual | None:
        """Kick another ball at the pair's step (balls tried in random order) such that the
        readout ball's x at the last step is exactly the base's (simulated: without
        collisions always, with collisions only if the kicked ball never changes the readout
        ball's path); the text must show the kick."""
        ball = int(pair.variable.removeprefix("velocity.ball"))
        others = [b for b in range(self.params["n_balls"]) if b != ball]
        readout = pair.readout_target
        for i in rng.permutation(len(others)).tolist():
            source = self._kick(base, pair.step, others[i], rng)
            if source is not None and source.labels[readout][-1] == base.labels[readout][-1]:
                return Counterfactual(source=source, step=pair.step,
                                      variable=f"velocity.ball{others[i]}",
                                      readout_target=readout, base_label=pair.base_label,
                                      counterfactual_label=pair.base_label)
        return None

    def violation(self, base: Episode, rng: np.random.Generator,
                  settings: dict[str, Any]) -> Violation | None:
        """One ball at step t: `jump`, it is displaced at t to a point farther from where it
        was than any speed allows (and the text shows it), then moves on from there with its
        velocity; `wall`, at a step where it bounces off a wall it goes on through instead and
        keeps its course beyond the box (the text, whose grid covers the box, shows it stuck
        in the cell at that wall; `obs` show it leaving), the other balls simulated without
        it. The possible twin kicks the same ball at t, as a counterfactual does, redrawn until
        its text at t differs from the impossible episode's (a pair differs at its step). The
        kind is drawn among the declared ones this episode admits, then the step and the ball."""
        p = self.params
        T, k, r = p["length"], p["n_balls"], p["radius"]
        if T < 2:
            return None
        pos, vel, _ = base._trajectory
        ahead = pos[:T - 1] + vel[:T - 1]  # [t-1] where each ball goes at t if nothing stops it
        crosses = ((ahead < r) | (ahead > 1 - r)).any(axis=2)  # [T-1, K]
        steps = [T - 1] if settings["step"] == "last" else list(range(1, T))
        kinds = list(settings["kinds"])
        for kind in (kinds[i] for i in rng.permutation(len(kinds)).tolist()):
            for t in (steps[i] for i in rng.permutation(len(steps)).tolist()):
                balls = [b for b in range(k) if kind == "jump" or crosses[t - 1, b]]
                if not balls:
                    continue
                ball = balls[int(rng.integers(len(balls)))]
                impossible = (self._jump(base, t, ball, rng) if kind == "jump"
                              else self._through(base, t, ball))
                possible = impossible and self._twin(base, impossible, t, ball, rng)
                if impossible is not None and possible is not None:
                    return Violation(possible=possible,
                                     impossible=undefined_from(impossible, t, base), step=t,
                                     kind=kind, variable=f"position.ball{ball}")
        return None

    def _twin(self, base: Episode, impossible: Episode, t: int, ball: int,
              rng: np.random.Generator) -> Episode | None:
        """The possible twin of `impossible`: `ball` kicked at step t (as `_kick` does),
        redrawn until the text at step t differs from the impossible episode's (a kick may
        land in the cell the edit shows), None after KICK_TRIES kicks."""
        for _ in range(KICK_TRIES):
            possible = self._kick(base, t, ball, rng)
            if possible is not None and self._shows(possible, impossible._trajectory[0], at=t):
                return possible
        return None

    def _jump(self, base: Episode, t: int, ball: int, rng: np.random.Generator
              ) -> Episode | None:
        """`ball` displaced at step t to a point drawn in the box farther than 1.5·max_speed
        from where it was at t-1, the text showing it; the simulation goes on from there."""
        p = self.params
        P0, V0, E0 = base._trajectory
        r = p["radius"]
        for _ in range(KICK_TRIES):
            to = rng.uniform(r, 1 - r, 2)
            if np.linalg.norm(to - P0[t - 1, ball]) <= 1.5 * self.max_speed():
                continue
            first = P0[t].copy()
            first[ball] = to
            P, V, E = simulate(first, V0[t], len(P0) - t - 1, r, p["collisions"])
            traj = (np.concatenate([P0[:t], first[None], P]), np.concatenate([V0[:t + 1], V]),
                    np.concatenate([E0[:t + 1], E]))
            if self._shows(base, traj[0], at=t):
                return self._episode(base, traj)
        return None

    def _through(self, base: Episode, t: int, ball: int) -> Episode | None:
        """`ball` keeps its velocity from step t on, through the wall and beyond the box; the
        other balls are simulated without it. None if the text never shows it (a bounce at
        the last step looks the same in the wall's cell)."""
        p = self.params
        P0, V0, E0 = base._trajectory
        n, k = len(P0) - t, p["n_balls"]
        pos, vel = np.empty((n, k, 2)), np.empty((n, k, 2))
        events = np.zeros((n, k), dtype=bool)
        others = [b for b in range(k) if b != ball]
        if others:
            P, V, E = simulate(P0[t - 1, others], V0[t - 1, others], n, p["radius"],
                               p["collisions"])
            pos[:, others], vel[:, others], events[:, others] = P, V, E
        pos[:, ball] = P0[t - 1, ball] + np.arange(1, n + 1)[:, None] * V0[t - 1, ball]
        vel[:, ball] = V0[t - 1, ball]
        traj = (np.concatenate([P0[:t], pos]), np.concatenate([V0[:t], vel]),
                np.concatenate([E0[:t], events]))
        return self._episode(base, traj) if self._shows(base, traj[0]) else None
