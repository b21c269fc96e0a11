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

from probekit.worlds.base import Counterfactual, Episode, Knob, Target, World, build_text

MAX_BALLS = 8
MAX_GRID = 32
WORDS = ("ball", "at", "hidden", ".")


@functools.lru_cache(maxsize=None)
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
    version = "1"
    description = ("Balls move in the unit box, bounce elastically off the walls and, when "
                   "enabled, off each other; each step reports every ball's grid cell (or that it "
                   "is hidden behind the occluding band).")
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
        cells = np.minimum((P * g).astype(np.int64), g - 1).tolist()
        hidden = (np.abs(P[:, :, 0] - 0.5) < p["occluder"] / 2)
        steps = []
        for s in range(T):
            words: list[str] = []
            for i in range(k):
                if hidden[s, i]:
                    words += ["ball", str(i), "hidden"]
                else:
                    words += ["ball", str(i), "at", str(cells[s][i][0]), str(cells[s][i][1])]
            steps.append(words + ["."])
        text, spans, tokens, token_steps, _, _ = build_text(steps, _vocab())
        seen = P if noise is None else P + noise
        obs = np.concatenate([np.where(hidden[:, :, None], 0.0, seen), ~hidden[:, :, None]],
                             axis=2).reshape(T, 3 * k).astype(np.float32)
        state = np.concatenate([P, V], axis=2).reshape(T, 4 * k)
        # collide[t] = a bounce during steps t+1 … t+h.
        window = np.cumsum(np.concatenate([np.zeros((1, k)), events]), axis=0)
        collide = (window[np.arange(T) + h + 1] - window[np.arange(T) + 1]) > 0
        labels = {}
        for f, arr in (("x", P[:, :, 0]), ("y", P[:, :, 1]), ("vx", V[:, :, 0]),
                       ("vy", V[:, :, 1])):
            for i in range(k):
                labels[f"{f}.ball{i}"] = arr[:, i]
        for i in range(k):
            labels[f"collide.ball{i}"] = collide[:, i].astype(np.int64)
        surface = [" ".join(s) for s in steps]
        return Episode(text, spans, tokens, token_steps, obs, state, surface, labels)

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

    def counterfactual(self, base: Episode, rng: np.random.Generator,
                       settings: dict[str, Any]) -> Counterfactual | None:
        """Give one ball a new velocity (drawn like the starting ones) just before step t moves
        it and re-simulate from there; the readout is that ball's x at the last step. The
        observation noise is the base's, so observations before t are identical."""
        p = self.params
        T, k = p["length"], p["n_balls"]
        if T < 2:
            return None
        t = T - 1 if settings["step"] == "last" else int(rng.integers(1, T))
        ball = int(rng.integers(k))
        pos, vel, events = base._trajectory
        start_vel = vel[t - 1].copy()
        start_vel[ball] = self._velocities(1, rng)[0]
        P, V, E = simulate(pos[t - 1], start_vel, len(pos) - t, p["radius"], p["collisions"])
        source = self._render(np.concatenate([pos[:t], P]), np.concatenate([vel[:t], V]),
                              np.concatenate([events[:t], E]), base._noise)
        readout = f"x.ball{ball}"
        return Counterfactual(source=source, step=t, variable=f"velocity.ball{ball}",
                              readout_target=readout,
                              base_label=float(base.labels[readout][-1]),
                              counterfactual_label=float(source.labels[readout][-1]))
