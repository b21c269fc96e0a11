"""Gridworld: an agent walks a random maze it cannot see, feeling walls around it.

Each episode draws a maze (random spanning tree of the grid, with `loops` of the other walls
removed), a start cell and a direction; the agent then turns or steps forward at random. The
text tells the start, each action, whether a forward step bumped into a wall, and which of
left / ahead / right are walls. Position, facing and the absolute walls around the agent are
the hidden state.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from probekit.worlds.base import Counterfactual, Episode, Knob, Target, World, build_text

MAX_SIZE = 16
FACINGS = ("north", "east", "south", "west")  # y grows southwards, x eastwards
DX, DY = (0, 1, 0, -1), (-1, 0, 1, 0)
ACTIONS = ("forward", "left", "right")
FORWARD, LEFT, RIGHT = 0, 1, 2
WORDS = ("start", *ACTIONS, "bump", "ok", "wall", "open", ".", "x", "y", "?", *FACINGS)
OBS_DIM = 14  # start/forward/left/right, bump, wall left/ahead/right, start x, y, facing


@functools.lru_cache(maxsize=None)
def _vocab() -> dict[str, int]:
    return {w: i for i, w in enumerate(WORDS + tuple(str(i) for i in range(MAX_SIZE)))}


def maze(n: int, loops: float, rng: np.random.Generator) -> np.ndarray:
    """Walls as [y, x, direction] booleans: a random spanning tree of the n×n grid (Kruskal on a
    shuffled edge list), then each remaining inner wall removed with chance `loops`."""
    walls = np.ones((n, n, 4), dtype=bool)
    # Inner edges: (y, x) to its east neighbour, then (y, x) to its south neighbour.
    edges = [(y, x, 1) for y in range(n) for x in range(n - 1)]
    edges += [(y, x, 2) for y in range(n - 1) for x in range(n)]
    parent = list(range(n * n))

    def root(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    keep = rng.random(len(edges)) >= loops
    for e in rng.permutation(len(edges)).tolist():
        y, x, d = edges[e]
        y2, x2 = y + DY[d], x + DX[d]
        a, b = root(y * n + x), root(y2 * n + x2)
        if a != b or not keep[e]:
            parent[a] = b
            walls[y, x, d] = walls[y2, x2, (d + 2) % 4] = False
    return walls


class Gridworld(World):
    """Position tracking by dead reckoning in an unseen maze."""

    name = "gridworld"
    version = "1"
    description = ("An agent turns and steps forward at random in an unseen maze; each step "
                   "reports the action, whether it bumped into a wall and the walls to its left, "
                   "ahead and right. The closing question asks for one coordinate.")
    knobs = (
        Knob("size", int, 5, "cells per side of the square maze", min=2, max=MAX_SIZE),
        Knob("length", int, 16, "steps per episode, the start step included", min=2, max=512),
        Knob("p_forward", float, 0.5, "chance that an action is a forward step (else a turn)",
             min=0.0, max=1.0),
        Knob("loops", float, 0.1, "chance that a wall off the spanning tree is removed",
             min=0.0, max=1.0),
    )
    counterfactual_knobs = (
        Knob("variable", str, "action", "what the intervention changes: one action",
             choices=("action",)),
        Knob("step", str, "random", "which step: a uniformly drawn one, or the last",
             choices=("random", "last")),
        Knob("readout", str, "query", "what must follow: the answer to the closing question",
             choices=("query",)),
    )

    def vocabulary(self) -> list[str]:
        return list(_vocab())

    def targets(self) -> list[Target]:
        n = self.params["size"]
        return ([Target("x", "class", n), Target("y", "class", n), Target("cell", "class", n * n),
                 Target("facing", "class", 4)]
                + [Target(f"wall.{h}", "class", 2) for h in FACINGS])

    @staticmethod
    def walk(walls: np.ndarray, x: int, y: int, facing: int, actions: list[int]
             ) -> tuple[list[int], list[int], list[int], list[bool]]:
        """Positions, facing directions and bumps after each action, from (x, y, facing)."""
        xs, ys, hs, bumps = [], [], [], []
        for a in actions:
            bump = False
            if a == FORWARD:
                bump = bool(walls[y, x, facing])
                if not bump:
                    x, y = x + DX[facing], y + DY[facing]
            else:
                facing = (facing + (1 if a == RIGHT else -1)) % 4
            xs.append(x), ys.append(y), hs.append(facing), bumps.append(bump)
        return xs, ys, hs, bumps

    def _render(self, walls: np.ndarray, start: tuple[int, int, int], actions: list[int],
                query_axis: str) -> Episode:
        n = self.params["size"]
        x0, y0, h0 = start
        xs, ys, hs, bumps = self.walk(walls, x0, y0, h0, actions)
        xs, ys, hs, bumps = [x0] + xs, [y0] + ys, [h0] + hs, [False] + bumps
        x, y, h = np.array(xs), np.array(ys), np.array(hs)
        around = walls[y, x].astype(np.int64)  # [T, 4] absolute
        rel = np.arange(-1, 2)  # left, ahead, right
        view = around[np.arange(len(x))[:, None], (h[:, None] + rel) % 4]  # [T, 3]
        seen = [["wall" if v else "open" for v in row] for row in view.tolist()]
        steps = [["start", str(x0), str(y0), FACINGS[h0], *seen[0], "."]]
        steps += [[ACTIONS[a], "bump" if b else "ok", *v, "."]
                  for a, b, v in zip(actions, bumps[1:], seen[1:])]
        final = x[-1] if query_axis == "x" else y[-1]
        text, spans, tokens, token_steps, qspan, answer = build_text(
            steps, _vocab(), query=[query_axis, "?"], answer=str(final))
        T = len(x)
        obs = np.zeros((T, OBS_DIM), dtype=np.float32)
        obs[0, 0] = 1
        obs[np.arange(1, T), 1 + np.array(actions, dtype=np.int64)] = 1
        obs[:, 4] = bumps
        obs[:, 5:8] = view
        obs[0, 8:10] = x0 / (n - 1), y0 / (n - 1)
        obs[0, 10 + h0] = 1
        state = np.concatenate([np.stack([x, y, h], axis=1), around], axis=1)
        labels = {"x": x, "y": y, "cell": y * n + x, "facing": h}
        for d, name in enumerate(FACINGS):
            labels[f"wall.{name}"] = around[:, d]
        surface = [" ".join(s) for s in steps]
        return Episode(text, spans, tokens, token_steps, obs, state, surface, labels, qspan,
                       answer)

    def episode(self, rng: np.random.Generator) -> Episode:
        p = self.params
        n = p["size"]
        walls = maze(n, p["loops"], rng)
        x0, y0, h0 = (int(v) for v in rng.integers((n, n, 4)))
        u = rng.random(p["length"] - 1)
        turn = (1 - p["p_forward"]) / 2
        actions = np.where(u < p["p_forward"], FORWARD,
                           np.where(u < p["p_forward"] + turn, LEFT, RIGHT)).tolist()
        query_axis = "xy"[int(rng.integers(2))]
        ep = self._render(walls, (x0, y0, h0), actions, query_axis)
        ep._walls, ep._actions, ep._query_axis = walls, actions, query_axis  # not in the row
        return ep

    def counterfactual(self, base: Episode, rng: np.random.Generator,
                       settings: dict[str, Any]) -> Counterfactual | None:
        """Take another action at step t and keep every later action; the walk after t is
        re-simulated. The action is drawn among those that change the answer to the closing
        question; `step: random` draws t among the steps where such an action exists."""
        walls, actions, axis = base._walls, base._actions, base._query_axis
        T = len(actions) + 1
        col = 0 if axis == "x" else 1
        base_final = int(base.state[-1, col])
        steps = [T - 1] if settings["step"] == "last" else list(range(1, T))
        for i in rng.permutation(len(steps)).tolist():
            t = steps[i]
            x, y, h = (int(v) for v in base.state[t - 1, :3])
            options = [a for a in range(len(ACTIONS)) if a != actions[t - 1]]
            for a in (options[j] for j in rng.permutation(len(options)).tolist()):
                new = actions[:t - 1] + [a] + actions[t:]
                xs, ys, _, _ = self.walk(walls, x, y, h, new[t - 1:])
                final = xs[-1] if axis == "x" else ys[-1]
                if final != base_final:
                    start = tuple(int(v) for v in base.state[0, :3])
                    source = self._render(walls, start, new, axis)
                    return Counterfactual(source=source, step=t, variable="action",
                                          readout_target=axis, base_label=base_final,
                                          counterfactual_label=final)
        return None
