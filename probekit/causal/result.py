"""What a `CausalProbe` run found: outcomes per split, per-cell rows and the headline.

`CausalResult.rows()` is the per-cell table (`per_cell` of `probekit.result/2`): one row per
layer × positions × scope × featurizer on the test pairs, untestable cells included (with the
reason), then the steering rows. `CausalResult.scores()` is `scores.causality`: the best
reachable cell with featurizer `probe` or `das` at the decodability read positions (`read`,
`last`), chosen on the selection split by gain and reported on the test split, with the
`full` upper bound and the `random` control at the same cell, the ceiling check and why pairs
were dropped; None (with `reason()`) when no cell can be tested.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from probekit.causal.scores import gain, paired_difference_interval, paired_gain_interval
from probekit.intervals import clopper_pearson

HEADLINE_FEATURIZERS = ("probe", "das")
HEADLINE_POSITIONS = ("read", "last")
MIN_PAIRS = 10  # a cell scored on fewer pairs (selection or test) is not a headline candidate

Cell = tuple[str, str, str]  # layer, positions, scope


@dataclass
class Outcomes:
    """Everything measured on one split's pairs: per-pair flags and classes, the predicted
    class of every run (-1: not run), the ceiling check and steering."""

    split: str
    n: int
    drawn: int
    dropped: Counter
    scored: np.ndarray
    readable: np.ndarray
    base_ok: np.ndarray
    source_ok: np.ndarray
    placebo_ok: np.ndarray
    has_unrelated: np.ndarray
    base_class: np.ndarray
    cf_class: np.ndarray
    cells: dict[tuple, dict[str, np.ndarray]] = field(default_factory=dict)
    ceiling: dict[str, np.ndarray] = field(default_factory=dict)
    steer: dict[tuple, dict[str, np.ndarray]] = field(default_factory=dict)

    @classmethod
    def concat(cls, pairs: Any, parts: list[dict[str, Any]]) -> Outcomes:
        sizes = [len(p["scored"]) for p in parts]
        offsets = np.cumsum([0] + sizes[:-1])
        n = int(sum(sizes))

        def cat(key: str) -> np.ndarray:
            return np.concatenate([p[key] for p in parts])

        def merge(name: str) -> dict[tuple, dict[str, np.ndarray]]:
            keys = list(dict.fromkeys(k for p in parts for k in p[name]))
            out = {}
            for key in keys:
                fields = {f for p in parts if key in p[name] for f in p[name][key]}
                out[key] = {f: np.concatenate([
                    p[name][key][f] if key in p[name] else
                    np.full(size, -1 if f == "pred" else False)
                    for p, size in zip(parts, sizes)]) for f in fields}
            return out

        ceiling = {k: np.concatenate([p["ceiling"][k] + (o if k == "rows" else 0)
                                      for p, o in zip(parts, offsets)])
                   for k in ("rows", "diff", "hit")}
        return cls(pairs.split, n, pairs.drawn, Counter(pairs.dropped), cat("scored"),
                   cat("readable"), cat("base_ok"), cat("source_ok"), cat("placebo_ok"),
                   cat("has_unrelated"), cat("base_class"), cat("cf_class"), merge("cells"),
                   ceiling, merge("steer"))

    def why_dropped(self) -> dict[str, int]:
        """How many drawn pairs were not scored, by reason."""
        out = dict(self.dropped)
        unreadable = int((~self.readable).sum())
        base_wrong = int((self.readable & ~self.base_ok).sum())
        source_wrong = int((self.readable & self.base_ok & ~self.source_ok).sum())
        scored_wrong = int((self.readable & ~self.scored).sum())
        if unreadable:
            out["unreadable"] = unreadable
        if scored_wrong:  # only when pairs are filtered for correctness
            if base_wrong:
                out["base_wrong"] = base_wrong
            if source_wrong:
                out["source_wrong"] = source_wrong
        return out

    def source_accuracy(self) -> float | None:
        """The model's accuracy on the source episodes of the readable pairs."""
        return float(self.source_ok[self.readable].mean()) if self.readable.any() else None

    def stats(self, cell: Cell, featurizer: str) -> dict[str, Any] | None:
        """IIA, baseline, placebo and gain of one cell × featurizer (None: nothing ran)."""
        run = self.cells.get((cell, featurizer, "source"))
        if run is None:
            return None
        valid = run["pred"] >= 0
        if not valid.any():
            return None
        arrays = self.arrays(cell, featurizer, valid)
        hit, bhit, has_b, ceiling = arrays
        k, n = int(hit.sum()), len(hit)
        lo, hi = clopper_pearson(k, n)
        placebo, placebo_pairs = None, 0
        pl = self.cells.get((cell, featurizer, "placebo"))
        if pl is not None:
            vp = pl["pred"] >= 0
            placebo_pairs = int(vp.sum())
            if placebo_pairs:
                placebo = float((pl["pred"][vp] != self.base_class[vp]).mean())
        g = gain(hit, bhit, has_b, ceiling)
        return {"pairs": n, "iia": k / n, "ci95": [lo, hi],
                "baseline": float(bhit[has_b].mean()) if has_b.any() else None,
                "placebo": placebo, "placebo_pairs": placebo_pairs,
                "source_accuracy": float(ceiling.mean()), "gain": g,
                "gain_ci95": paired_gain_interval(*arrays) if g is not None else None,
                "moved": self.moved(cell, featurizer)}

    def arrays(self, cell: Cell, featurizer: str, valid: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per valid pair: hit, baseline hit, has a baseline, source right (the ceiling)."""
        run = self.cells[(cell, featurizer, "source")]
        cf = self.cf_class[valid]
        hit = (run["pred"][valid] == cf).astype(float)
        un = self.cells.get((cell, featurizer, "unrelated"))
        if un is None:
            has_b = np.zeros(len(cf), dtype=bool)
            bhit = np.zeros(len(cf))
        else:
            has_b = un["pred"][valid] >= 0
            bhit = (un["pred"][valid] == cf).astype(float)
        return hit, bhit, has_b, self.source_ok[valid].astype(float)

    def pairs(self, cell: Cell, featurizer: str) -> int:
        """How many pairs one cell × featurizer scored (its source patch ran on them)."""
        run = self.cells.get((cell, featurizer, "source"))
        return 0 if run is None else int((run["pred"] >= 0).sum())

    def moved(self, cell: Cell, featurizer: str) -> bool:
        """Whether any source or unrelated patch of this cell moved the readout at all."""
        return any(bool(self.cells[(cell, featurizer, v)]["moved"].any())
                   for v in ("source", "unrelated") if (cell, featurizer, v) in self.cells)


@dataclass
class CausalResult:
    task: str
    readout: dict[str, Any]
    layers: list[str]
    input_layer: str
    outcomes: dict[str, Outcomes]
    split: str
    selection_split: str
    cells: list[Cell]
    untestable: list[dict[str, Any]]
    das: dict[Cell, Any]
    attribution: dict[str, Any] | None
    seed: int
    config: dict[str, Any]
    checks: dict[str, Any] = field(default_factory=dict)
    reach: dict[Cell, bool] = field(default_factory=dict)

    @property
    def test(self) -> Outcomes:
        return self.outcomes[self.split]

    def reachable(self, cell: Cell) -> bool:
        """Whether anything done at the cell moved the readout of any pair: a large random
        perturbation, or any of its interchanges (a path is proven by any movement)."""
        if self.reach.get(cell, False):
            return True
        feats = {k[1] for k in self.test.cells if k[0] == cell}
        return any(self.test.moved(cell, f) for f in feats)

    def rows(self) -> list[dict[str, Any]]:
        """The per-cell table on the test pairs, untestable cells and steering included."""
        o = self.test
        featurizers = list(dict.fromkeys(k[1] for k in o.cells))
        val = self.outcomes[self.selection_split]
        out = []
        for cell in self.cells:
            layer, positions, scope = cell
            reachable = self.reachable(cell)
            for feat in featurizers:
                s = o.stats(cell, feat)
                if s is None:
                    continue
                row = {"layer": layer, "positions": positions, "scope": scope,
                       "featurizer": feat, "readout": self.readout["readout"],
                       "reachable": reachable,
                       "reason": None if reachable else "no path to the readout: neither a "
                                 "random perturbation nor any patch there moved it",
                       "pairs": s["pairs"], "dropped": o.drawn - s["pairs"],
                       "source_accuracy": s["source_accuracy"], "iia": s["iia"],
                       "ci95": s["ci95"], "baseline": s["baseline"], "placebo": s["placebo"],
                       "gain": s["gain"] if reachable else None,
                       "gain_ci95": s["gain_ci95"] if reachable else None,
                       "placebo_pairs": s["placebo_pairs"], "strength": None,
                       "rank": self._rank(cell, feat)}
                v = val.stats(cell, feat)
                row["val_gain"] = v["gain"] if v is not None and reachable else None
                if self.attribution and feat == "full" and scope == "layer":
                    row["attribution"] = self.attribution["share"].get(layer, {}).get(positions)
                out.append(row)
        for u in self.untestable:
            out.append({**u, "featurizer": None, "readout": self.readout["readout"],
                        "pairs": 0, "dropped": o.drawn, "source_accuracy": None, "iia": None,
                        "ci95": None, "baseline": None, "placebo": None, "gain": None,
                        "gain_ci95": None, "strength": None, "rank": None, "val_gain": None})
        out += self.steering_rows()
        return out

    def _rank(self, cell: Cell, featurizer: str) -> float | None:
        if featurizer == "das" and cell in self.das:
            return float(self.das[cell]["rank"])
        return None

    def steering_rows(self) -> list[dict[str, Any]]:
        """Share of pairs whose readout follows the probe-direction edit, per layer and
        strength, against a random direction of the same size."""
        o = self.test
        out = []
        for (layer, strength, kind), run in o.steer.items():
            if kind != "probe":
                continue
            ctrl = o.steer[(layer, strength, "random")]["pred"]
            valid = run["pred"] >= 0
            if not valid.any():
                continue
            cf = o.cf_class[valid]
            hit = (run["pred"][valid] == cf).astype(float)
            bhit = (ctrl[valid] == cf).astype(float)
            has_b = np.ones(len(cf), dtype=bool)
            ceiling = o.source_ok[valid].astype(float)
            k, n = int(hit.sum()), len(hit)
            g = gain(hit, bhit, has_b, ceiling)
            out.append({"layer": layer, "positions": "read", "scope": "onward",
                        "featurizer": "steer", "readout": self.readout["readout"],
                        "reachable": True, "reason": None, "pairs": n, "dropped": o.drawn - n,
                        "source_accuracy": float(ceiling.mean()), "iia": k / n,
                        "ci95": list(clopper_pearson(k, n)), "baseline": float(bhit.mean()),
                        "placebo": None, "gain": g,
                        "gain_ci95": paired_gain_interval(hit, bhit, has_b, ceiling)
                        if g is not None else None, "strength": strength, "rank": None,
                        "val_gain": None})
        return out

    def headline(self) -> tuple[Cell, str] | None:
        """The cell × featurizer chosen on the selection split: the best gain among reachable
        `probe`/`das` cells at the read positions, below the input layer."""
        val = self.outcomes[self.selection_split]
        best, choice = -np.inf, None
        for cell in self.cells:
            layer, positions, scope = cell
            if layer == self.input_layer or positions not in HEADLINE_POSITIONS:
                continue
            if not self.reachable(cell):
                continue
            for feat in HEADLINE_FEATURIZERS:
                s = val.stats(cell, feat)
                if s is None or s["gain"] is None or s["pairs"] < MIN_PAIRS:
                    continue
                if self.test.pairs(cell, feat) < MIN_PAIRS:  # and enough to report it on
                    continue
                if s["gain"] > best:
                    best, choice = s["gain"], (cell, feat)
        return choice

    def reason(self) -> str | None:
        """Why there is no headline (None when there is one)."""
        if self.headline() is not None:
            return None
        if not self.test.scored.any():
            dropped = ", ".join(f"{k} {v}" for k, v in self.test.why_dropped().items())
            return (f"no pair can be scored: all {self.test.drawn} test pairs were dropped "
                    f"({dropped or 'none drawn'}); the model must read both episodes of a pair "
                    "right (CausalProbe(filter_correct=False) scores them all)")
        if not any(self.reachable(c) for c in self.cells):
            return "no reachable cell: no patch at the chosen layers can move the readout"
        return ("no reachable probe or DAS cell at the read positions (read, last) below the "
                f"input layer with at least {MIN_PAIRS} scored pairs on the selection and test "
                "splits")

    def ceiling(self) -> dict[str, Any]:
        """The ceiling check on the test pairs: patching every differing input position at the
        input layer reproduced the source run (it stops the run otherwise)."""
        c = self.test.ceiling
        n = len(c["rows"])
        rows = c["rows"].astype(int)
        return {"layer": self.input_layer, "positions": "diff (all)", "pairs": n,
                "iia": float(c["hit"].mean()) if n else None,
                "source_accuracy": float(self.test.source_ok[rows].mean()) if n else None,
                "max_abs_diff": float(c["diff"].max()) if n else None}

    def scores(self) -> dict[str, Any] | None:
        """`scores.causality` of `probekit.result/2` (None when nothing can be tested)."""
        choice = self.headline()
        if choice is None:
            return None
        cell, feat = choice
        o = self.test
        s = o.stats(cell, feat)
        if s is None or s["gain"] is None:
            return None
        layer, positions, scope = cell
        rnd = o.stats(cell, "random")
        full = o.stats(cell, "full")
        vs_random = None
        if rnd is not None and rnd["gain"] is not None:
            run_a = o.cells[(cell, feat, "source")]["pred"] >= 0
            run_b = o.cells[(cell, "random", "source")]["pred"] >= 0
            both = run_a & run_b
            vs_random = paired_difference_interval(o.arrays(cell, feat, both),
                                                   o.arrays(cell, "random", both), self.seed)
        return {"gain": s["gain"], "ci95": s["gain_ci95"], "iia": s["iia"],
                "iia_ci95": s["ci95"], "layer": layer, "positions": positions, "scope": scope,
                "featurizer": feat, "readout": self.readout["readout"], "pairs": s["pairs"],
                "dropped": o.why_dropped(), "source_accuracy": o.source_accuracy(),
                "baseline": s["baseline"], "placebo": s["placebo"],
                "random_control": None if rnd is None else rnd["gain"],
                "vs_random_ci95": None if vs_random is None else list(vs_random),
                "full_upper_bound": None if full is None else full["gain"],
                "ceiling": self.ceiling()}
