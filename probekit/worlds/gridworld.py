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

MAX_SIZE = 16
FACINGS = ("north", "east", "south", "west")  # y grows southwards, x eastwards
DX, DY = (0, 1, 0, -1), (-1, 0, 1, 0)
ACTIONS = ("forward", "left", "right")
FORWARD, LEFT, RIGHT = 0, 1, 2
WORDS = ("start", *ACTIONS, "bump", "ok", "wall", "open", ".", "x", "y", "?", *FACINGS)
OBS_DIM = 14  # start/forward/left/right, bump, wall left/ahead/right, start x, y, facing


@functools.cache
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
    version = "2"
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
    violation_knobs = (
        Knob("kinds", tuple, ("through_wall", "phantom_bump"), "which rules the impossible "
             "step breaks: `through_wall` (a forward step passes through the wall ahead), "
             "`phantom_bump` (a forward step bumps where nothing is ahead)",
             choices=("through_wall", "phantom_bump")),
        Knob("step", str, "random", "which step: a uniformly drawn one among those that admit "
             "the edit, or the last", choices=("random", "last")),
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
                query_axis: str, path: tuple[list, list, list, list] | None = None) -> Episode:
        """The episode of `actions` from `start`; `path` (positions, facings and bumps after
        each action) replaces the walk, for impossible episodes."""
        n = self.params["size"]
        x0, y0, h0 = start
        xs, ys, hs, bumps = path or self.walk(walls, x0, y0, h0, actions)
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

    def _alternative(self, base: Episode, steps: list[int], rng: np.random.Generator,
                     change: bool | None) -> tuple[Episode, int, int] | None:
        """The first (step, action), steps in the order given (each step's other actions
        shuffled), whose walk changes (`change` True) or keeps (False) the answer to the
        closing question, or any (None): the source episode, its step and its answer."""
        walls, actions, axis = base._walls, base._actions, base._query_axis
        base_final = int(base.state[-1, 0 if axis == "x" else 1])
        for t in steps:
            x, y, h = (int(v) for v in base.state[t - 1, :3])
            options = [a for a in range(len(ACTIONS)) if a != actions[t - 1]]
            for a in (options[j] for j in rng.permutation(len(options)).tolist()):
                new = actions[:t - 1] + [a] + actions[t:]
                xs, ys, _, _ = self.walk(walls, x, y, h, new[t - 1:])
                final = xs[-1] if axis == "x" else ys[-1]
                if change is None or (final != base_final) == change:
                    start = tuple(int(v) for v in base.state[0, :3])
                    source = self._render(walls, start, new, axis)
                    source._walls, source._actions = walls, new
                    return source, t, final
        return None

    def counterfactual(self, base: Episode, rng: np.random.Generator,
                       settings: dict[str, Any]) -> Counterfactual | None:
        """Take another action at step t and keep every later action; the walk after t is
        re-simulated. The action is drawn among those that change the answer to the closing
        question; `step: random` draws t among the steps where such an action exists."""
        T = len(base._actions) + 1
        steps = [T - 1] if settings["step"] == "last" else list(range(1, T))
        found = self._alternative(base, [steps[i] for i in rng.permutation(len(steps))], rng,
                                  change=True)
        if found is None:
            return None
        source, t, final = found
        axis = base._query_axis
        return Counterfactual(source=source, step=t, variable="action", readout_target=axis,
                              base_label=int(base.labels[axis][-1]), counterfactual_label=final)

    def placebo(self, base: Episode, pair: Counterfactual, rng: np.random.Generator,
                settings: dict[str, Any]) -> Counterfactual | None:
        """Take another action, and keep every later one, such that the re-simulated walk ends
        with the queried coordinate unchanged (the state changes: a turn changes the facing, a
        forward step the position or the bump): first at the pair's own step (the action the
        pair did not take, when it keeps the answer), else at a step drawn at random."""
        T = len(base._actions) + 1
        others = [t for t in range(1, T) if t != pair.step]
        steps = [pair.step] + [others[i] for i in rng.permutation(len(others))]
        found = self._alternative(base, steps, rng, change=False)
        if found is None:
            return None
        source, t, _ = found
        return Counterfactual(source=source, step=t, variable="action",
                              readout_target=pair.readout_target, base_label=pair.base_label,
                              counterfactual_label=pair.base_label)

    def rule_break(self, walls: np.ndarray, episode: Episode) -> int | None:
        """The first step whose report the maze contradicts, or None: replays the text's
        start, actions and bumps and compares each step's report with the walk's."""
        steps = [w.split() for w in episode.surface]
        x, y, h = int(steps[0][1]), int(steps[0][2]), FACINGS.index(steps[0][3])
        for t, words in enumerate(steps[1:], start=1):
            a = ACTIONS.index(words[0])
            xs, ys, hs, bumps = self.walk(walls, x, y, h, [a])
            if ("bump" if bumps[0] else "ok") != words[1]:
                return t
            x, y, h = xs[0], ys[0], hs[0]
            view = [walls[y, x, (h + d) % 4] for d in (-1, 0, 1)]
            if ["wall" if v else "open" for v in view] != words[2:5]:
                return t
        return None

    def violation(self, base: Episode, rng: np.random.Generator,
                  settings: dict[str, Any]) -> Violation | None:
        """At step t, the impossible episode reports a forward step that breaks the maze:
        `through_wall`, the agent faces an inner wall and walks through it (`forward ok`, then
        the walls around the cell beyond); `phantom_bump`, nothing is ahead and it bumps
        (`forward bump`, staying put). Its later actions are the base's, walked by the rules
        from where the impossible step left it. The possible twin takes another action at t
        (the base's later actions kept, the walk re-simulated), as a counterfactual does. The
        kind is drawn among the declared ones this episode admits, then the step."""
        walls, actions, axis = base._walls, base._actions, base._query_axis
        n, T = self.params["size"], len(actions) + 1
        steps = [T - 1] if settings["step"] == "last" else list(range(1, T))
        kinds = list(settings["kinds"])
        for kind in (kinds[i] for i in rng.permutation(len(kinds)).tolist()):
            for t in (steps[i] for i in rng.permutation(len(steps)).tolist()):
                x, y, h = (int(v) for v in base.state[t - 1, :3])
                nx, ny = x + DX[h], y + DY[h]
                wall = bool(walls[y, x, h])
                if kind == "through_wall" and wall and 0 <= nx < n and 0 <= ny < n:
                    px, py, bump = nx, ny, False
                elif kind == "phantom_bump" and not wall:
                    px, py, bump = x, y, True
                else:
                    continue
                start = tuple(int(v) for v in base.state[0, :3])
                before = self.walk(walls, *start, actions[:t - 1])
                after = self.walk(walls, px, py, h, actions[t:])
                path = tuple(a + [v] + b for a, v, b in zip(before, (px, py, h, bump), after))
                new = actions[:t - 1] + [FORWARD] + actions[t:]
                impossible = self._render(walls, start, new, axis, path)
                impossible._walls, impossible._actions = walls, new
                possible, _, _ = self._alternative(base, [t], rng, change=None)
                return Violation(possible=possible,
                                 impossible=undefined_from(impossible, t, base), step=t,
                                 kind=kind, variable="action")
        return None
