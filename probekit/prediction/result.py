"""What a `PredictionProbe` run found: per-pair surprise of the model and its random-init twin.

`PredictionResult.scores()` is `scores.prediction` of `probekit.result/2` (the headline surprise
with its twin, and the model's other surprise where it has two), built by
`probekit.record.prediction_block` from counts, so the schema can check every rate and interval
against them. `rows()` is `per_offset`: the mean surprise curve around the violation, one row
per (surprise, offset from the violating step), model and twin side by side.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from probekit import record


@dataclass
class Measured:
    """One model's surprise on the pairs: `possible`, `impossible` [N, S]; legality hits over
    scored steps (None without legality); the run's own check values."""

    possible: np.ndarray
    impossible: np.ndarray
    first: np.ndarray | None = None  # per pair: 1 scorable, 0 differs at position 0 only, -1 not
    legal_hits: int | None = None
    legal_steps: int | None = None
    max_prefix_diff: float = 0.0
    repeat_max_diff: float = 0.0

    def at_step(self, step: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rows = np.arange(len(step))
        return self.possible[rows, step], self.impossible[rows, step]

    def from_step(self, step: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean surprise over the steps from the violating one on (ranks a pair as the sum)."""
        S = self.possible.shape[1]
        on = np.arange(S)[None, :] >= step[:, None]
        count = on.sum(1)
        return ((self.possible * on).sum(1) / count, (self.impossible * on).sum(1) / count)

    def counts(self, step: np.ndarray) -> dict[str, Any]:
        """The counts `record.prediction_measure` turns into rates and intervals."""
        p_on, i_on = self.from_step(step)
        p_at, i_at = self.at_step(step)
        return {"wins": int((i_on > p_on).sum()), "ties": int((i_on == p_on).sum()),
                "wins_step": int((i_at > p_at).sum()), "ties_step": int((i_at == p_at).sum()),
                "pairs": len(step), "auroc": auroc(p_on, i_on),
                "legal_hits": self.legal_hits, "legal_steps": self.legal_steps}


def auroc(negative: np.ndarray, positive: np.ndarray) -> float:
    """P(a positive outranks a negative), ties half (the Mann–Whitney U over n₊·n₋)."""
    from scipy.stats import rankdata

    both = np.concatenate([negative, positive])
    ranks = rankdata(both)
    n_neg, n_pos = len(negative), len(positive)
    u = ranks[n_neg:].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))


@dataclass
class PredictionResult:
    """Surprise of the model (and twin) per surprise kind on the drawn pairs (or nothing, with
    the reason)."""

    task: str
    config: dict[str, Any]
    split: str = "test"
    kinds: list[str] = field(default_factory=list)
    measured: dict[str, dict[str, Measured]] = field(default_factory=dict)
    step: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))
    violation: list[str] = field(default_factory=list)
    drawn: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    legal_reason: str | None = None
    checks: dict[str, Any] = field(default_factory=dict)
    why: str | None = None

    @classmethod
    def empty(cls, task: str, config: dict[str, Any], why: str) -> PredictionResult:
        return cls(task=task, config=config, why=why)

    def reason(self) -> str | None:
        """Why `scores()` is None (None when it is not)."""
        return self.why

    @property
    def headline(self) -> str | None:
        return self.kinds[0] if self.kinds else None

    def _block(self, kind: str) -> dict[str, Any]:
        runs = self.measured[kind]
        twin = runs.get("random_init")
        by_kind = {}
        for v in sorted(set(self.violation)):
            mask = np.asarray([k == v for k in self.violation])
            sub = Measured(runs["model"].possible[mask], runs["model"].impossible[mask])
            p_on, i_on = sub.from_step(self.step[mask])
            by_kind[v] = {"pairs": int(mask.sum()), "wins": int((i_on > p_on).sum()),
                          "ties": int((i_on == p_on).sum())}
        return record.prediction_block(
            kind, runs["model"].counts(self.step),
            twin.counts(self.step) if twin is not None else None,
            legal_reason=self.legal_reason if kind == "token" else
            "legality is read from next-token predictions, not from latents",
            by_kind=by_kind)

    def scores(self) -> dict[str, Any] | None:
        """`scores.prediction`: the headline surprise's block (VoE from the violating step on
        and at it, AUROC, legality, the random-init twin), the other surprise's under `also`;
        None where nothing was measured (see `reason()`)."""
        if self.why is not None or not self.kinds:
            return None
        block = self._block(self.headline)
        block["split"], block["drawn"], block["dropped"] = self.split, self.drawn, self.dropped
        block["also"] = {k: self._block(k) for k in self.kinds[1:]} or None
        return block

    def rows(self) -> list[dict[str, Any]]:
        """`per_offset`: per surprise and offset from the violating step (−(S−1) … S−1), the
        pairs that have a step there and the mean surprise of each episode, model and twin."""
        if self.why is not None:
            return []
        out = []
        for kind in self.kinds:
            runs = self.measured[kind]
            S = runs["model"].possible.shape[1]
            for offset in range(-(S - 1), S):
                at = self.step + offset
                have = (at >= 0) & (at < S)
                if not have.any():
                    continue
                rows, cols = np.flatnonzero(have), at[have]
                row = {"surprise": kind, "offset": offset, "pairs": int(have.sum())}
                for name in ("model", "random_init"):
                    m = runs.get(name)
                    prefix = "" if name == "model" else "random_init_"
                    for side in ("possible", "impossible"):
                        row[f"{prefix}{side}"] = None if m is None else \
                            float(getattr(m, side)[rows, cols].mean())
                out.append(row)
        return out

    def meta(self) -> dict[str, Any] | None:
        """How the axis was measured: the pairs, the violation kinds, the checks."""
        if self.why is not None:
            return None
        return {"split": self.split, "pairs_drawn": self.drawn,
                "violation_kinds": dict(Counter(self.violation)), "checks": self.checks}
