"""Gridworld: an agent walks its task's fixed maze by compass moves, seeing only its bumps.

Every episode of a task walks the same maze (random spanning tree of the grid, with `loops` of
the other walls removed, drawn once from the `layout` seed), so its walls can be learned; each
episode draws a start cell, then each step heads north / east / south / west through an opening
of the agent's cell drawn at random, or with chance `p_bump` into one of its walls. The text
tells the start, then each move and whether it bumped. That is all the agent sees, and many
cells share any few steps of it, so its position after the start is only known by integrating
every move and bump since: the last few steps do not give it away (a next-token model learns
the maze and the integration because the next move depends on the walls where it stands).
Position and the walls around the agent are the hidden state; the closing question asks for one
coordinate of the final cell.
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
MOVES = ("north", "east", "south", "west")  # y grows southwards, x eastwards
DX, DY = (0, 1, 0, -1), (-1, 0, 1, 0)
WORDS = ("start", *MOVES, "bump", "ok", "x", "y", "?")
OBS_DIM = 8  # start, north/east/south/west, bump, start x, start y
Path = tuple[list[int], list[int], list[bool]]  # positions x, y and bumps after each move


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


@functools.cache
def layout(n: int, loops: float, seed: int) -> np.ndarray:
    """The maze every episode of a task walks: `maze` drawn from its own seed (read-only)."""
    walls = maze(n, loops, np.random.default_rng(seed))
    walls.flags.writeable = False
    return walls


def walk(walls: np.ndarray, x: int, y: int, moves: list[int]) -> Path:
    """Positions and bumps after each move from (x, y): a move into a wall bumps and stays."""
    xs, ys, bumps = [], [], []
    for d in moves:
        bump = bool(walls[y, x, d])
        if not bump:
            x, y = x + DX[d], y + DY[d]
        xs.append(x), ys.append(y), bumps.append(bump)
    return xs, ys, bumps


class Gridworld(World):
    """Position tracking by path integration in a fixed maze seen only through bumps."""

    name = "gridworld"
    version = "3"
    description = ("An agent walks a fixed maze (the same in every episode, drawn from the "
                   "`layout` seed), each step heading north, east, south or west through an "
                   "opening of its cell drawn at random, or with chance `p_bump` into one of its "
                   "walls; each step reports the move and whether it bumped, nothing else, so "
                   "where it stands is known only by integrating every step since the start. "
                   "The closing question asks for one coordinate of the final cell.")
    knobs = (
        Knob("size", int, 5, "cells per side of the square maze", min=2, max=MAX_SIZE),
        Knob("length", int, 16, "steps per episode, the start step included", min=2, max=512),
        Knob("loops", float, 0.1, "chance that a wall off the spanning tree is removed",
             min=0.0, max=1.0),
        Knob("layout", int, 0, "seed of the maze that every episode walks", min=0,
             max=2**32 - 1),
        Knob("p_bump", float, 0.02, "chance that a move heads into a wall of the agent's cell "
             "(one drawn at random) where it has one; otherwise it heads through an opening",
             min=0.0, max=1.0),
    )
    counterfactual_knobs = (
        Knob("variable", str, "action", "what the intervention changes: one move",
             choices=("action",)),
        Knob("step", str, "random", "which step: a uniformly drawn one, or the last",
             choices=("random", "last")),
        Knob("readout", str, "query", "what must follow: the answer to the closing question",
             choices=("query",)),
    )
    violation_knobs = (
        Knob("kinds", tuple, ("through_wall", "phantom_bump"), "which rules the impossible "
             "step breaks: `through_wall` (a move into an inner wall goes through it), "
             "`phantom_bump` (a move bumps where nothing is in the way)",
             choices=("through_wall", "phantom_bump")),
        Knob("step", str, "random", "which step: a uniformly drawn one among those that admit "
             "the edit, or the last", choices=("random", "last")),
    )

    def vocabulary(self) -> list[str]:
        return list(_vocab())

    def targets(self) -> list[Target]:
        n = self.params["size"]
        return ([Target("x", "class", n), Target("y", "class", n), Target("cell", "class", n * n)]
                + [Target(f"wall.{d}", "class", 2) for d in MOVES])

    def walls(self) -> np.ndarray:
        """The task's maze as [y, x, direction] booleans (read-only)."""
        p = self.params
        return layout(p["size"], p["loops"], p["layout"])

    def _render(self, start: tuple[int, int], moves: list[int], axis: str,
                path: Path | None = None) -> Episode:
        """The episode of `moves` from `start`; `path` (positions and bumps after each move)
        replaces the walk, for impossible episodes."""
        n, walls = self.params["size"], self.walls()
        x0, y0 = start
        xs, ys, bumps = path or walk(walls, x0, y0, moves)
        x, y = np.array([x0, *xs]), np.array([y0, *ys])
        steps = [["start", str(x0), str(y0)]]
        steps += [[MOVES[d], "bump" if b else "ok"] for d, b in zip(moves, bumps)]
        final = x[-1] if axis == "x" else y[-1]
        text, spans, tokens, token_steps, qspan, answer = build_text(
            steps, _vocab(), query=[axis, "?"], answer=str(final))
        T = len(x)
        around = walls[y, x].astype(np.int64)  # [T, 4]
        obs = np.zeros((T, OBS_DIM), dtype=np.float32)
        obs[0, 0] = 1
        obs[np.arange(1, T), 1 + np.array(moves, dtype=np.int64)] = 1
        obs[1:, 5] = bumps
        obs[0, 6:8] = x0 / (n - 1), y0 / (n - 1)
        state = np.concatenate([np.stack([x, y], axis=1), around], axis=1)
        labels = {"x": x, "y": y, "cell": y * n + x}
        for d, name in enumerate(MOVES):
            labels[f"wall.{name}"] = around[:, d]
        surface = [" ".join(s) for s in steps]
        ep = Episode(text, spans, tokens, token_steps, obs, state, surface, labels, qspan,
                     answer)
        ep._moves, ep._axis = moves, axis  # not in the row
        return ep

    def episode(self, rng: np.random.Generator) -> Episode:
        p, walls = self.params, self.walls()
        x0, y0 = (int(v) for v in rng.integers(p["size"], size=2))
        x, y = x0, y0
        u = rng.random((p["length"] - 1, 2))
        moves = []
        for bump, pick in u.tolist():
            sides = np.flatnonzero(walls[y, x] == (bump < p["p_bump"]))
            if not len(sides):  # no wall here: head through an opening
                sides = np.flatnonzero(~walls[y, x])
            d = int(sides[int(pick * len(sides))])
            if not walls[y, x, d]:
                x, y = x + DX[d], y + DY[d]
            moves.append(d)
        return self._render((x0, y0), moves, "xy"[int(rng.integers(2))])

    @staticmethod
    def _start(base: Episode) -> tuple[int, int]:
        return int(base.state[0, 0]), int(base.state[0, 1])

    def _alternative(self, base: Episode, steps: list[int], rng: np.random.Generator,
                     change: bool) -> tuple[Episode, int, int] | None:
        """The first (step, move), steps in the order given (each step's other moves shuffled),
        whose re-walk from that step on ends with the queried coordinate changed (`change`), or
        unchanged while the walk itself changes (not `change`): the source episode, its step
        and its answer. Moves whose re-walk reports every later bump as the base does (so that
        the move word at that step is all the text changes) are tried first, over all steps."""
        moves, axis = base._moves, base._axis
        k = 0 if axis == "x" else 1
        later = [[bool(b) for b in base.obs[t:, 5]] for t in range(base.n_steps)]
        for strict in (True, False):
            for t in steps:
                x, y = (int(v) for v in base.state[t - 1, :2])
                options = [d for d in range(4) if d != moves[t - 1]]
                for d in (options[j] for j in rng.permutation(len(options)).tolist()):
                    new = moves[:t - 1] + [d] + moves[t:]
                    xs, ys, bumps = walk(self.walls(), x, y, new[t - 1:])
                    if strict and bumps != later[t]:
                        continue
                    final = (xs, ys)[k][-1]
                    changed = final != int(base.state[-1, k])
                    same_walk = (xs, ys) == tuple(base.state[t:, :2].T.tolist())
                    if changed if change else not changed and not same_walk:
                        return self._render(self._start(base), new, axis), t, final
        return None

    def counterfactual(self, base: Episode, rng: np.random.Generator,
                       settings: dict[str, Any]) -> Counterfactual | None:
        """Take another move at step t and keep every later move; the walk after t is
        re-simulated. The move is drawn among those that change the answer to the closing
        question, preferring (over every step) those whose re-walk bumps exactly where the
        base's does, so that the move at t is the only word that differs; `step: random` draws
        t among the steps where such a move exists."""
        T = base.n_steps
        steps = [T - 1] if settings["step"] == "last" else list(range(1, T))
        found = self._alternative(base, [steps[i] for i in rng.permutation(len(steps))], rng,
                                  change=True)
        if found is None:
            return None
        source, t, final = found
        axis = base._axis
        return Counterfactual(source=source, step=t, variable="action", readout_target=axis,
                              base_label=int(base.labels[axis][-1]), counterfactual_label=final)

    def placebo(self, base: Episode, pair: Counterfactual, rng: np.random.Generator,
                settings: dict[str, Any]) -> Counterfactual | None:
        """Take another move, and keep every later one, such that the re-simulated walk differs
        but ends with the queried coordinate unchanged (bumping where the base's does first, as
        for the pair): first at the pair's own step, else at a step drawn at random."""
        others = [t for t in range(1, base.n_steps) if t != pair.step]
        steps = [pair.step] + [others[i] for i in rng.permutation(len(others))]
        found = self._alternative(base, steps, rng, change=False)
        if found is None:
            return None
        source, t, _ = found
        return Counterfactual(source=source, step=t, variable="action",
                              readout_target=pair.readout_target, base_label=pair.base_label,
                              counterfactual_label=pair.base_label)

    def rule_break(self, episode: Episode) -> int | None:
        """The first step whose report the maze contradicts, or None: replays the text's start
        and moves and compares each reported bump with the walk's."""
        steps = [w.split() for w in episode.surface]
        x, y = int(steps[0][1]), int(steps[0][2])
        for t, words in enumerate(steps[1:], start=1):
            xs, ys, bumps = walk(self.walls(), x, y, [MOVES.index(words[0])])
            if ("bump" if bumps[0] else "ok") != words[1]:
                return t
            x, y = xs[0], ys[0]
        return None

    def violation(self, base: Episode, rng: np.random.Generator,
                  settings: dict[str, Any]) -> Violation | None:
        """At step t both edits take a direction other than the base's move and report the same
        outcome, `ok` for `through_wall`, `bump` for `phantom_bump`: the impossible episode
        heads where the maze says otherwise (`through_wall`: into an inner wall of the agent's
        cell, and it is in the cell beyond; `phantom_bump`: through an opening, and it stays
        put), the possible one where the maze agrees (through an opening; into a wall). So both
        change the same words of step t and differ only in whether the maze allows what they
        report. Later moves are the base's, walked by the rules from where step t left the
        agent. The kind is drawn among the declared ones this episode admits, then the step."""
        moves, walls = base._moves, self.walls()
        n, T = self.params["size"], base.n_steps
        steps = [T - 1] if settings["step"] == "last" else list(range(1, T))
        kinds = list(settings["kinds"])
        start = self._start(base)
        for kind in (kinds[i] for i in rng.permutation(len(kinds)).tolist()):
            through = kind == "through_wall"
            for t in (steps[i] for i in rng.permutation(len(steps)).tolist()):
                x, y = (int(v) for v in base.state[t - 1, :2])
                others = [d for d in range(4) if d != moves[t - 1]]
                refused = [d for d in others if walls[y, x, d] == through
                           and (not through or (0 <= x + DX[d] < n and 0 <= y + DY[d] < n))]
                allowed = [d for d in others if walls[y, x, d] != through]
                if not refused or not allowed:
                    continue
                d, e = (c[int(rng.integers(len(c)))] for c in (refused, allowed))
                px, py = (x + DX[d], y + DY[d]) if through else (x, y)
                before = walk(walls, *start, moves[:t - 1])
                after = walk(walls, px, py, moves[t:])
                path = tuple(a + [v] + b for a, v, b in zip(before, (px, py, not through),
                                                               after))
                impossible = self._render(start, moves[:t - 1] + [d] + moves[t:], base._axis,
                                          path)  # type: ignore[arg-type]
                possible = self._render(start, moves[:t - 1] + [e] + moves[t:], base._axis)
                return Violation(possible=possible,
                                 impossible=undefined_from(impossible, t, base), step=t,
                                 kind=kind, variable="action")
        return None
