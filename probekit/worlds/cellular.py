"""Elementary cellular automata on a ring: each step shows one row; the future is the state.

Rule numbers follow Wolfram: the new value of a cell is bit (4·left + 2·self + right) of the
rule. Rule 30 is chaotic, 90 additive (Sierpinski), 110 Turing-complete.
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

MAX_WIDTH = 128
MAX_HORIZON = 16
WORDS = ("0", "1", ".", "cell", "in", "?")
BITS = ("0", "1")


def rule_table(rule: int) -> np.ndarray:
    """The 8-entry lookup table of `rule`, indexed by 4·left + 2·self + right."""
    return ((rule >> np.arange(8)) & 1).astype(np.int8)


def evolve(row: np.ndarray, rule: int, steps: int) -> np.ndarray:
    """`row` ([..., W] of 0/1) and the `steps` rows after it: [steps + 1, ..., W]."""
    table = rule_table(rule)
    w = row.shape[-1]
    left, right = np.arange(-1, w - 1) % w, np.arange(1, w + 1) % w
    out = np.empty((steps + 1,) + row.shape, dtype=np.int8)
    out[0] = row
    for s in range(steps):
        x = out[s]
        out[s + 1] = table[(x[..., left] << 2) | (x << 1) | x[..., right]]
    return out


@functools.cache
def _vocab() -> dict[str, int]:
    words = list(WORDS) + [str(i) for i in range(2, MAX_WIDTH)]
    return {w: i for i, w in enumerate(words)}


class Cellular(World):
    """Rows of an elementary cellular automaton; probes read cells now and `horizon` steps on."""

    name = "cellular"
    version = "2"
    description = ("An elementary cellular automaton on a ring, one row of 0/1 cells per step "
                   "from a random first row; the closing question asks for one cell `horizon` "
                   "steps after the last row.")
    knobs = (
        Knob("rule", int, 110, "Wolfram rule number", min=0, max=255),
        Knob("width", int, 16, "cells in the ring", min=3, max=MAX_WIDTH),
        Knob("steps", int, 16, "rows per episode (steps), the random first row included",
             min=1, max=512),
        Knob("horizon", int, 1, "how many steps ahead the `future` targets and the question look",
             min=1, max=MAX_HORIZON),
        Knob("p_alive", float, 0.5, "chance that a cell of the first row is 1", min=0.0, max=1.0),
        Knob("density_bins", int, 4, "classes of the binned `density` target", min=2, max=16),
    )
    counterfactual_knobs = (
        Knob("variable", str, "cell", "what the intervention changes: one cell is flipped",
             choices=("cell",)),
        Knob("step", str, "random", "which step: a uniformly drawn one, or the last",
             choices=("random", "last")),
        Knob("readout", str, "query", "what must follow: the answer to the closing question",
             choices=("query",)),
    )
    violation_knobs = (
        Knob("kinds", tuple, ("flip",), "which rule the impossible edit breaks: `flip` (one "
             "cell of a row takes the value the rule forbids)", choices=("flip",)),
        Knob("step", str, "random", "which step: a uniformly drawn one after the first row, or "
             "the last", choices=("random", "last")),
    )

    def vocabulary(self) -> list[str]:
        return list(_vocab())

    def targets(self) -> list[Target]:
        w = self.params["width"]
        return ([Target(f"cell.c{i}", "class", 2) for i in range(w)]
                + [Target(f"future.c{i}", "class", 2) for i in range(w)]
                + [Target("density", "class", self.params["density_bins"]),
                   Target("fraction", "regress")])

    def _render(self, rows: np.ndarray, query_cell: int) -> Episode:
        """`rows` holds the episode's rows and the `horizon` rows after them."""
        T, k, bins = self.params["steps"], self.params["horizon"], self.params["density_bins"]
        state = rows[:T]
        steps = [[*map(BITS.__getitem__, row), "."] for row in state.tolist()]
        answer = str(int(rows[T - 1 + k, query_cell]))
        text, spans, tokens, token_steps, qspan, answer = build_text(
            steps, _vocab(), query=["cell", str(query_cell), "in", str(k), "?"], answer=answer)
        fraction = state.mean(axis=1)
        labels: dict[str, np.ndarray] = {}
        for i in range(state.shape[1]):
            labels[f"cell.c{i}"] = state[:, i]
        for i in range(state.shape[1]):
            labels[f"future.c{i}"] = rows[k:T + k, i]
        labels["density"] = np.minimum((fraction * bins).astype(np.int64), bins - 1)
        labels["fraction"] = fraction
        surface = [" ".join(s) for s in steps]
        return Episode(text, spans, tokens, token_steps, state.astype(np.float32), state,
                       surface, labels, qspan, answer)

    def episode(self, rng: np.random.Generator) -> Episode:
        p = self.params
        first = (rng.random(p["width"]) < p["p_alive"]).astype(np.int8)
        rows = evolve(first, p["rule"], p["steps"] - 1 + p["horizon"])
        query_cell = int(rng.integers(p["width"]))
        ep = self._render(rows, query_cell)
        ep._rows, ep._query_cell = rows, query_cell  # for counterfactuals; not part of the row
        return ep

    def _flipped(self, base: Episode, t: int, j: int) -> Episode:
        """`base` with cell j of row t flipped and the rule run again from there."""
        p = self.params
        rows = base._rows
        row = rows[t].copy()
        row[j] ^= 1
        new_rows = np.concatenate([rows[:t], evolve(row, p["rule"], len(rows) - 1 - t)])
        ep = self._render(new_rows, base._query_cell)
        ep._rows, ep._query_cell = new_rows, base._query_cell
        return ep

    def counterfactual(self, base: Episode, rng: np.random.Generator,
                       settings: dict[str, Any]) -> Counterfactual | None:
        """Flip one cell of the row at step t and re-run the rule from there; the flipped cell
        is drawn among those whose flip changes the closing question's answer.

        `step: random` draws t among the steps where some flip changes the answer."""
        p = self.params
        rows, q = base._rows, base._query_cell
        T, w, k = p["steps"], p["width"], p["horizon"]
        steps = [T - 1] if settings["step"] == "last" else list(range(T))
        order = rng.permutation(len(steps)) if len(steps) > 1 else [0]
        base_answer = int(rows[T - 1 + k, q])
        flips = np.eye(w, dtype=np.int8)
        for i in order:
            t = steps[int(i)]
            # Every single-cell flip of row t at once: [W candidates, W cells].
            futures = evolve(rows[t][None, :] ^ flips, p["rule"], T - 1 + k - t)
            options = np.flatnonzero(futures[-1, :, q] != base_answer)
            if len(options) == 0:
                continue
            j = int(options[rng.integers(len(options))])
            new_rows = np.concatenate([rows[:t], futures[:, j]])
            source = self._render(new_rows, q)
            return Counterfactual(source=source, step=t, variable=f"cell.c{j}",
                                  readout_target=f"future.c{q}", base_label=base_answer,
                                  counterfactual_label=1 - base_answer)
        return None

    def placebo(self, base: Episode, pair: Counterfactual, rng: np.random.Generator,
                settings: dict[str, Any]) -> Counterfactual | None:
        """Flip a cell outside the queried cell's light cone: a flip at row t reaches at most
        one cell further each row, so a cell more than T-1+horizon-t cells from the queried
        one (around the ring) cannot change the answer. First at the pair's step, else at a
        step drawn among those that have such a cell (late rows only: on a ring of W cells,
        rows with T-1+horizon-t < W/2)."""
        p = self.params
        T, w, k = p["steps"], p["width"], p["horizon"]
        q = base._query_cell
        ring = np.abs(np.arange(w) - q)
        ring = np.minimum(ring, w - ring)  # distance around the ring to the queried cell
        others = [t for t in range(T) if t != pair.step]
        for t in [pair.step] + [others[i] for i in rng.permutation(len(others))]:
            options = np.flatnonzero(ring > T - 1 + k - t)
            if len(options):
                j = int(options[rng.integers(len(options))])
                return Counterfactual(source=self._flipped(base, t, j), step=t,
                                      variable=f"cell.c{j}", readout_target=pair.readout_target,
                                      base_label=pair.base_label,
                                      counterfactual_label=pair.base_label)
        return None

    def rule_break(self, rows: np.ndarray) -> int | None:
        """The first row (after the first) that the rule does not make from the row before,
        or None."""
        made = evolve(rows[:-1], self.params["rule"], 1)[1]
        bad = np.flatnonzero((made != rows[1:]).any(axis=1))
        return int(bad[0]) + 1 if len(bad) else None

    def violation(self, base: Episode, rng: np.random.Generator,
                  settings: dict[str, Any]) -> Violation | None:
        """Flip one cell of row t (t >= 1, drawn at random) against the rule and run the rule
        again from the flipped row. In a deterministic automaton no other row is possible
        after the rows before it, so the possible twin is the base itself (unedited: its
        diff is empty); only the first row is free, and it has no rows before it to break."""
        T = self.params["steps"]
        if T < 2:
            return None
        t = T - 1 if settings["step"] == "last" else int(rng.integers(1, T))
        j = int(rng.integers(self.params["width"]))
        impossible = undefined_from(self._flipped(base, t, j), t, base)
        return Violation(possible=base, impossible=impossible, step=t, kind="flip",
                         variable=f"cell.c{j}")
