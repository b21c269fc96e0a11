"""Counter: the smallest useful world, a number modulo `modulus` moved up or down each step."""

from __future__ import annotations

import numpy as np

from probekit.worlds import Episode, Knob, Target, World
from probekit.worlds.base import build_text

WORDS = ("up", "down", ".")


class Counter(World):
    """State: the counter's value after each step (it starts at 0)."""

    name = "counter"
    version = "1"
    description = "A counter modulo a small number goes up or down by one at every step."
    knobs = (
        Knob("modulus", int, 5, "values the counter takes", min=2, max=50),
        Knob("length", int, 6, "steps per episode", min=1, max=256),
    )

    def vocabulary(self) -> list[str]:
        return list(WORDS)

    def targets(self) -> list[Target]:
        return [Target("value", "class", self.params["modulus"])]

    def episode(self, rng: np.random.Generator) -> Episode:
        m, n = self.params["modulus"], self.params["length"]
        moves = rng.integers(2, size=n)  # 0 = up, 1 = down
        values = np.cumsum(np.where(moves == 0, 1, -1)) % m
        steps = [[WORDS[k], "."] for k in moves]
        text, spans, tokens, token_steps, qspan, answer = build_text(
            steps, {w: i for i, w in enumerate(WORDS)})
        obs = np.eye(2, dtype=np.float32)[moves]
        return Episode(text, spans, tokens, token_steps, obs, values[:, None],
                       [" ".join(s) for s in steps], {"value": values}, qspan, answer)
