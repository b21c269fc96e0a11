"""Group word problems: read a word of group elements, track their running product.

Parity, cyclic Z_m, S3, S5 and the flip-flop monoid, after Merrill et al. (2024, "The illusion
of state in state-space models"): S5 is the hard case for fixed-depth transformers and SSMs.
"""

from __future__ import annotations

import functools
import itertools
from typing import Any

import numpy as np

from probekit.worlds.base import Counterfactual, Episode, Knob, Target, World, build_text

GROUPS = ("parity", "cyclic", "s3", "s5", "flipflop")
QUERY = "="


@functools.cache
def multiplication(group: str, m: int) -> tuple[tuple[str, ...], np.ndarray]:
    """Element names and the table `t[a, b]` = a·b ("a, then b"); element 0 is the identity.

    Permutations are named in one-line notation (1-based); flip-flop elements are `ignore`
    (the identity), `write0` and `write1` (x·write_b = write_b, write_b·ignore = write_b)."""
    if group == "parity":
        names, table = ("0", "1"), np.array([[0, 1], [1, 0]])
    elif group == "cyclic":
        idx = np.arange(m)
        names, table = tuple(map(str, idx)), (idx[:, None] + idx[None, :]) % m
    elif group in ("s3", "s5"):
        perms = list(itertools.permutations(range(int(group[1]))))
        index = {p: i for i, p in enumerate(perms)}
        names = tuple("".join(str(v + 1) for v in p) for p in perms)
        table = np.array([[index[tuple(b[v] for v in a)] for b in perms] for a in perms])
    else:
        names, table = ("ignore", "write0", "write1"), np.array([[0, 1, 2], [1, 1, 2],
                                                                  [2, 1, 2]])
    table = table.astype(np.int64)
    table.setflags(write=False)
    return names, table


@functools.cache
def _images(names: tuple[str, ...]) -> np.ndarray:
    """[element, point] -> image of the point (0-based), from one-line names."""
    return np.array([[int(c) - 1 for c in name] for name in names], dtype=np.int64)


@functools.cache
def _vocab(names: tuple[str, ...]) -> dict[str, int]:
    return {w: i for i, w in enumerate(names + (QUERY,))}


class Groups(World):
    """State tracking: the state after each step is the product of the elements read so far."""

    name = "groups"
    version = "2"
    description = ("A word of group elements (parity bits, Z_m residues, S3/S5 permutations or "
                   "flip-flop writes) is read one element per step; the state is the running "
                   "product and the closing question asks for the final product.")
    knobs = (
        Knob("group", str, "s3", "which group or monoid", choices=GROUPS),
        Knob("m", int, 5, "order of the cyclic group (group: cyclic only)", min=2, max=64),
        Knob("length", int, 16, "elements per word (steps)", min=1, max=1024),
    )
    counterfactual_knobs = (
        Knob("variable", str, "element", "what the intervention changes: one element of the word",
             choices=("element",)),
        Knob("step", str, "random", "which step: a uniformly drawn one, or the last",
             choices=("random", "last")),
        Knob("readout", str, "query", "what must follow: the answer to the closing question",
             choices=("query",)),
    )
    no_violations = ("every word is possible: any element may follow any other, so a word "
                     "problem has no impossible sequence to surprise a model with")

    @property
    def table(self) -> np.ndarray:
        return multiplication(self.params["group"], self.params["m"])[1]

    @property
    def names(self) -> tuple[str, ...]:
        return multiplication(self.params["group"], self.params["m"])[0]

    @property
    def degree(self) -> int:
        """Points the permutations act on (0 for the groups that are not permutation groups)."""
        g = self.params["group"]
        return int(g[1]) if g in ("s3", "s5") else 0

    def vocabulary(self) -> list[str]:
        return list(self.names) + [QUERY]

    def targets(self) -> list[Target]:
        n = len(self.names)
        images = [Target(f"image.p{k + 1}", "class", self.degree) for k in range(self.degree)]
        return [Target("element", "class", n)] + images

    def products(self, word: np.ndarray) -> np.ndarray:
        """The running product of `word` (element indices): state[t] = word[0]·…·word[t]."""
        table = self.table
        out = np.empty(len(word), dtype=np.int64)
        acc = 0
        for t, g in enumerate(word.tolist()):
            acc = table[acc, g]
            out[t] = acc
        return out

    def _render(self, word: np.ndarray) -> Episode:
        names, n = self.names, len(self.names)
        state = self.products(word)
        steps = [[names[g]] for g in word.tolist()]
        answer = names[int(state[-1])]
        text, spans, tokens, token_steps, qspan, answer = build_text(
            steps, _vocab(names), query=[QUERY], answer=answer)
        obs = np.zeros((len(word), n), dtype=np.float32)
        obs[np.arange(len(word)), word] = 1
        labels = {"element": state}
        if self.degree:
            images = _images(names)[state]
            for k in range(self.degree):
                labels[f"image.p{k + 1}"] = images[:, k]
        return Episode(text, spans, tokens, token_steps, obs, state[:, None],
                       [s[0] for s in steps], labels, qspan, answer)

    def episode(self, rng: np.random.Generator) -> Episode:
        word = rng.integers(len(self.names), size=self.params["length"])
        ep = self._render(word)
        ep._word = word  # kept for counterfactuals made right after; not part of the row
        return ep

    def _finals(self, base: Episode) -> tuple[np.ndarray, np.ndarray]:
        """[T, n] the final product if step t read element g instead, and [T, n] the running
        product at step t itself then."""
        word = base._word
        n, T = len(self.names), len(word)
        table = self.table
        prefix = np.concatenate([[0], base.state[:-1, 0]])  # product before step t
        suffix = np.zeros(T, dtype=np.int64)  # product after step t
        for t in range(T - 2, -1, -1):
            suffix[t] = table[word[t + 1], suffix[t + 1]]
        at = table[prefix[:, None], np.arange(n)[None, :]]
        return table[at, suffix[:, None]], at

    def _replaced(self, base: Episode, t: int, g: int) -> Episode:
        word = base._word.copy()
        word[t] = g
        ep = self._render(word)
        ep._word = word
        return ep

    def counterfactual(self, base: Episode, rng: np.random.Generator,
                       settings: dict[str, Any]) -> Counterfactual | None:
        """Replace the element read at one step by another that changes the final product;
        every other step of the word is unchanged, so the texts differ in that one word.

        `step: random` draws among the steps where some replacement changes the product (every
        step in a group; for the flip-flop, the last write and the steps after it)."""
        T = len(base._word)
        finals, _ = self._finals(base)
        base_final = int(base.state[-1, 0])
        changes = finals != base_final
        steps = [T - 1] if settings["step"] == "last" else np.flatnonzero(changes.any(axis=1))
        if len(steps) == 0:
            return None
        t = int(steps[rng.integers(len(steps))])
        options = np.flatnonzero(changes[t])
        if len(options) == 0:
            return None
        new = int(options[rng.integers(len(options))])
        return Counterfactual(source=self._replaced(base, t, new), step=t, variable="element",
                              readout_target="element", base_label=base_final,
                              counterfactual_label=int(finals[t, new]))

    def placebo(self, base: Episode, pair: Counterfactual, rng: np.random.Generator,
                settings: dict[str, Any]) -> Counterfactual | None:
        """Replace one element by another that changes the running product at that step but
        not the final one. In a group none exists (parity, cyclic, s3, s5): products cancel,
        so changing any one element changes the final product. In the flip-flop monoid any
        step before the last write has one (the write overrides it); drawn at random."""
        finals, at = self._finals(base)
        base_final = int(base.state[-1, 0])
        ok = (finals == base_final) & (at != base.state[:, :1])
        steps = np.flatnonzero(ok.any(axis=1))
        if len(steps) == 0:
            return None
        t = int(steps[rng.integers(len(steps))])
        options = np.flatnonzero(ok[t])
        g = int(options[rng.integers(len(options))])
        return Counterfactual(source=self._replaced(base, t, g), step=t, variable="element",
                              readout_target=pair.readout_target, base_label=pair.base_label,
                              counterfactual_label=pair.base_label)
