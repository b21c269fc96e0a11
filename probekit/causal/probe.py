"""`CausalProbe`: featurized interchange interventions of one model on one task's counterfactual
pairs, scored per cell (layer × positions × scope × featurizer) with their own checks.

For every pair (and split: the selection split chooses the headline, the test split reports
it) the base run gets, at a cell's positions, the featurized activations of the source (the
intervention), of an unrelated episode (the baseline) and of a placebo source (a change the
readout does not depend on). Pairs are scored only where the model answers base and source
right. Every run checks itself: interchanging every differing input position at the input
layer must reproduce the source run (the ceiling), and the hook path must agree with Captum on
the first batch; a failed check stops the run with a `CheckError`.

Cells that cannot reach the readout through the model are recorded as untestable, never scored
0: a token readout cannot be reached from the layer feeding the head (final norm and
unembedding act per position), a probe readout from its own layer or above; a cell whose
unrelated and source patches never move the readout at all has no path to it.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from probekit.adapters.base import Adapter
from probekit.causal.featurizers import (
    FEATURIZERS,
    StateProbes,
    fit_readout_probes,
    fit_state_probes,
    random_bases,
    state_variables,
)
from probekit.causal.interventions import (
    Add,
    Swap,
    captum_reference,
    gather_values,
    index_lists,
    run_edits,
)
from probekit.causal.pairs import POSITIONS, PairBatch, PairSet
from probekit.causal.readouts import LegalReadout, ProbeReadout, Readout, TokenReadout
from probekit.causal.result import CausalResult, Outcomes
from probekit.errors import CheckError, ProbekitWarning, UnknownNameError, UserError
from probekit.progress import phase
from probekit.tasks import Task

READOUTS = ("auto", "token", "legal", "probe")
METHODS = ("auto", "hook")  # auto: the cached fast path where it serves the model
SCOPES = ("layer", "onward")
VARIANTS = ("source", "unrelated", "placebo")
HEADLINE_POSITIONS = ("read", "last")
CEILING_TOL = 1e-3  # |patched − source| logits, relative to 1 + |source|
AGREE_TOL = 1e-3
MOVED_TOL = 1e-5


class CausalProbe:
    """Causal probes of a model on a task (see the module docstring).

    readout: "auto" (token where the model has a head and episodes end with a question, legal
    where the task has `legal.*` labels and the model a head, else probe) or one of them.
    featurizers: any of full, probe, random, das (DAS trains a rank-k rotation per headline
    candidate cell on train pairs; k and training length chosen on the selection split).
    positions: any of diff, read, last, query. scopes: layer (patch layer l only) and/or onward
    (l and every later layer up to the readout, at the same positions).
    method: "auto" uses the cached fast path for Hugging Face causal LMs (checked against the
    hook path on the first batch), "hook" always the hook path. max_pairs: pairs drawn per
    split (seeded). filter_correct: score only pairs the model answers
    right on base and source. steering: probe-direction steering (after Nanda et al. 2023) at
    `strengths` (multiples of the layer's mean latent norm), at the read positions from the
    intervened step on, at l and after. attribution: integrated gradients with enough steps to
    keep the completeness error under `completeness`.
    """

    def __init__(self, *, readout: str = "auto",
                 featurizers: Sequence[str] = ("full", "probe", "random"),
                 positions: Sequence[str] = POSITIONS, scopes: Sequence[str] = SCOPES,
                 split: str = "test", selection_split: str = "val", max_pairs: int = 200,
                 batch_size: int = 32, max_runs: int = 128, filter_correct: bool = True,
                 steering: bool = True, strengths: Sequence[float] = (0.5, 1, 2, 4, 8),
                 attribution: bool = True, attribution_pairs: int = 16,
                 completeness: float = 0.01, das_ranks: Sequence[int] = (1, 2, 4, 8),
                 das_steps: int = 150, das_pairs: int = 256, probe_episodes: int = 1000,
                 method: str = "auto", seed: int = 0, progress: bool = False):
        self.readout, self.featurizers, self.positions = readout, featurizers, positions
        self.scopes, self.split, self.selection_split = scopes, split, selection_split
        self.max_pairs, self.batch_size, self.max_runs = max_pairs, batch_size, max_runs
        self.filter_correct, self.steering, self.strengths = filter_correct, steering, strengths
        self.attribution, self.attribution_pairs = attribution, attribution_pairs
        self.completeness, self.das_ranks, self.das_steps = completeness, das_ranks, das_steps
        self.das_pairs, self.probe_episodes, self.method = das_pairs, probe_episodes, method
        self.seed, self.progress = seed, progress

    # --- configuration ----------------------------------------------------------------------

    def validate(self) -> None:
        """Refuse bad settings (UserError) before any work; `run` calls it first."""
        if self.readout not in READOUTS:
            raise UnknownNameError("readout", str(self.readout), READOUTS)
        if self.method not in METHODS:
            raise UnknownNameError("patching method", str(self.method), METHODS)
        for name, given, valid in (("featurizer", self.featurizers, FEATURIZERS),
                                   ("positions", self.positions, POSITIONS),
                                   ("scope", self.scopes, SCOPES)):
            if isinstance(given, str) or not given:
                raise UserError(f"{name}s must be a non-empty list, got {given!r}")
            for g in given:
                if g not in valid:
                    raise UnknownNameError(name, str(g), valid)
        for name in ("max_pairs", "batch_size", "max_runs", "attribution_pairs", "das_steps",
                     "das_pairs", "probe_episodes"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise UserError(f"{name} must be a positive integer, got {value!r}")
        if self.max_pairs < 2:
            raise UserError(f"max_pairs must be at least 2, got {self.max_pairs}")
        if not all(isinstance(s, (int, float)) and math.isfinite(s) and s > 0
                   for s in self.strengths) or not self.strengths:
            raise UserError(f"strengths must be positive numbers, got {self.strengths!r}")
        if not all(isinstance(k, int) and k >= 1 for k in self.das_ranks) or not self.das_ranks:
            raise UserError(f"das_ranks must be positive integers, got {self.das_ranks!r}")
        if not 0 < self.completeness < 1:
            raise UserError(f"completeness must be in (0, 1), got {self.completeness!r}")

    # --- the run ----------------------------------------------------------------------------

    def run(self, adapter: Adapter, task: Task, layers: list[str] | None = None
            ) -> CausalResult:
        """Intervene at `layers` (all by default) and score every cell."""
        self.validate()
        layers = adapter.check_layers(layers)
        order = adapter.layers()
        splits = list(dict.fromkeys([self.selection_split, self.split]))
        pairsets = {s: PairSet.build(adapter, task, s, max_pairs=self.max_pairs, seed=self.seed,
                                     batch_size=self.batch_size) for s in splits}
        readout = self._readout(adapter, task, pairsets)
        limit = self._limit(adapter, readout)
        probes = None
        if {"probe", "random"} & set(self.featurizers) or self.steering:
            variables = sorted({v for ps in pairsets.values() for p, b, s in
                                zip(ps.pairs, ps.bases, ps.sources)
                                for v in state_variables(p, b, s)})
            if variables:
                probes = fit_state_probes(adapter, task, order[:max(limit, 1)], variables,
                                          max_episodes=self.probe_episodes,
                                          batch_size=self.batch_size, progress=self.progress)
        engine = _Engine(self, adapter, readout, probes, order, limit)
        engine.task_name = task.name  # for progress lines
        cells = engine.cells(layers)
        das = {}
        if "das" in self.featurizers:
            from probekit.causal.das import train_das

            train = PairSet.build(adapter, task, "train", max_pairs=self.das_pairs,
                                  seed=self.seed, batch_size=self.batch_size)
            todo = [cell for cell in cells if engine.headline_candidate(cell)]
            with phase("das", task.name, total=len(todo), unit="cells",
                       show=self.progress) as bar:
                bar.summary = (f"{len(todo)} cells × ranks {list(self.das_ranks)}, "
                               f"{self.das_steps} steps")
                for cell in todo:
                    das[cell] = train_das(engine, cell, train, pairsets[self.selection_split],
                                          ranks=self.das_ranks, steps=self.das_steps,
                                          seed=self.seed)
                    bar.update()
        outcomes = {s: engine.evaluate(pairsets[s], cells, das, steering=s == self.split
                                       and self.steering, selection=s != self.split)
                    for s in splits}
        attribution = None
        if self.attribution:
            from probekit.causal.attribution import attribute

            layers_ig = [c[0] for c in cells if c[2] == "layer"]
            with phase("attribution", task.name, show=self.progress) as bar:
                attribution = attribute(engine, pairsets[self.split], outcomes[self.split],
                                        layers_ig, max_pairs=self.attribution_pairs,
                                        tolerance=self.completeness)
                bar.summary = ("no pair to attribute" if attribution is None else
                               f"{attribution.get('pairs', 0)} pairs × "
                               f"{len(set(layers_ig))} layers, "
                               f"{attribution.get('n_steps')} integration steps")
        return CausalResult(task=task.name, readout=readout.describe(), layers=layers,
                            input_layer=order[0], outcomes=outcomes, split=self.split,
                            selection_split=self.selection_split, cells=cells,
                            untestable=engine.untestable(layers), das=das,
                            attribution=attribution, seed=self.seed,
                            config=self.config(), checks=engine.checks, reach=engine.reach)

    def config(self) -> dict[str, Any]:
        """The settings that decide the numbers (recorded in the result's identity)."""
        return {"readout": self.readout, "featurizers": list(self.featurizers),
                "positions": list(self.positions), "scopes": list(self.scopes),
                "split": self.split, "selection_split": self.selection_split,
                "max_pairs": self.max_pairs, "filter_correct": self.filter_correct,
                "steering": list(self.strengths) if self.steering else None,
                "das": {"ranks": list(self.das_ranks), "steps": self.das_steps,
                        "pairs": self.das_pairs} if "das" in self.featurizers else None,
                "seed": self.seed}

    def _readout(self, adapter: Adapter, task: Task, pairsets: dict[str, PairSet]) -> Readout:
        name = self.readout
        all_pairs = [p for ps in pairsets.values() for p in ps.pairs]
        columns = task.dataset(self.split).column_names
        legal = sorted(c[len("label.legal."):] for c in columns if c.startswith("label.legal."))
        if name == "auto":
            has_query = all(b.get("query_span", [-1])[0] >= 0
                            for ps in pairsets.values() for b in ps.bases)
            name = ("token" if adapter.has_token_head and has_query else
                    "legal" if adapter.has_token_head and legal else "probe")
        if name == "token":
            ids = []
            for ps in pairsets.values():
                for pb in ps.batches(adapter, self.batch_size):
                    ids += pb.base.answer_ids.tolist() + pb.source.answer_ids.tolist()
            return TokenReadout(adapter, [i for i in ids if i >= 0])
        if name == "legal":
            if not legal:
                raise UserError(f"task {task.name} has no legal.* labels for the legal "
                                "readout; use readout='token' or 'probe'")
            return LegalReadout(adapter, task, legal)
        heads = sorted({p["readout_target"] for p in all_pairs})
        last = adapter.layers()[-1]
        coef, intercept, classes = fit_readout_probes(adapter, task, last, heads,
                                                      batch_size=self.batch_size,
                                                      progress=self.progress)
        return ProbeReadout(last, heads, np.zeros(0) if classes is None else classes, coef,
                            intercept, regress=classes is None)

    @staticmethod
    def _limit(adapter: Adapter, readout: Readout) -> int:
        """Layers with an index below this can reach the readout through the model."""
        order = adapter.layers()
        if readout.layer is not None:
            return order.index(readout.layer)
        if adapter.head_layer is not None:
            return order.index(adapter.head_layer)
        return len(order)


class _Engine:
    """The runs of one CausalProbe.run: clean captures, cells, featurized edits, outcomes."""

    def __init__(self, probe: CausalProbe, adapter: Adapter, readout: Readout,
                 probes: StateProbes | None, order: list[str], limit: int):
        self.probe, self.adapter, self.readout, self.probes = probe, adapter, readout, probes
        self.order, self.limit = order, limit
        self._bases: dict[tuple[str, tuple[str, ...]], torch.Tensor] = {}
        self._random: dict[str, torch.Tensor] = {}
        self.checks: dict[str, Any] = {}
        self.reach: dict[tuple[str, str, str], bool] = {}
        from probekit.causal.cached import CachedRunner

        self.cached = CachedRunner(adapter, readout, 4 * probe.max_runs) \
            if probe.method != "hook" and CachedRunner.supports(adapter) else None
        self._checked = False
        self.task_name = ""

    def patch(self, pb: PairBatch, clean: dict[str, Any], rows: torch.Tensor,
              swaps: dict[str, Swap | Add]) -> torch.Tensor:
        """[R, K] readout logits of patched runs: the cached fast path where it serves the
        model (checked against the hook path on its first call), else the hook path."""
        labels = clean["labels"]
        edits = {name: s.edit() for name, s in swaps.items()}
        if self.cached is None:
            with torch.no_grad():
                return run_edits(self.adapter, self.readout, pb.base, rows, labels, edits).cpu()
        with torch.no_grad():
            fast = self.cached.run(pb.base, clean["acts"]["base"], rows, labels, swaps).cpu()
            if not self._checked:
                self._checked = True
                slow = run_edits(self.adapter, self.readout, pb.base, rows, labels, edits).cpu()
                gap = float((fast - slow).abs().max()) if len(rows) else 0.0
                self.checks["cached"] = {"runs": len(rows), "max_abs_diff": gap}
                if gap > AGREE_TOL * (1 + float(slow.abs().max())):
                    warnings.warn(f"the cached patching path disagrees with the hook path by "
                                  f"{gap:.2e} on {self.adapter.identity.id}; using the hook path",
                                  ProbekitWarning, stacklevel=2)
                    self.cached = None
                    return slow
        return fast

    # cells ----------------------------------------------------------------------------------

    def cells(self, layers: list[str]) -> list[tuple[str, str, str]]:
        """(layer, positions, scope) of every reachable cell; onward only below the last
        patchable layer (there it is the same as layer)."""
        out = []
        for layer in layers:
            li = self.order.index(layer)
            if li >= self.limit:
                continue
            for pos in self.probe.positions:
                for scope in self.probe.scopes:
                    if scope == "onward" and li == self.limit - 1 and "layer" in self.probe.scopes:
                        continue
                    out.append((layer, pos, scope))
        return out

    def untestable(self, layers: list[str]) -> list[dict[str, Any]]:
        """Rows for the cells no patch can test, with the reason."""
        rows = []
        for layer in layers:
            li = self.order.index(layer)
            if li < self.limit:
                continue
            why = ("the readout probe's own layer or above" if self.readout.layer is not None
                   else "the layer feeding the token head: final norm and unembedding act per "
                        "position, so a patch reaches the readout only as its own input")
            for pos in self.probe.positions:
                for scope in self.probe.scopes:
                    rows.append({"layer": layer, "positions": pos, "scope": scope,
                                 "reachable": False, "reason": why})
        return rows

    def headline_candidate(self, cell: tuple[str, str, str]) -> bool:
        layer, pos, scope = cell
        return layer != self.order[0] and pos in HEADLINE_POSITIONS and scope == "layer"

    def edit_layers(self, layer: str, scope: str) -> list[str]:
        li = self.order.index(layer)
        return [layer] if scope == "layer" else self.order[li:self.limit]

    # featurizer bases -------------------------------------------------------------------------

    def basis(self, layer: str, variables: tuple[str, ...]) -> torch.Tensor | None:
        if self.probes is None or not variables:
            return None
        key = (layer, variables)
        if key not in self._bases:
            self._bases[key] = self.probes.basis(layer, variables)
        return self._bases[key]

    def random(self, layer: str, width: int) -> torch.Tensor:
        if layer not in self._random:
            self._random[layer] = random_bases(width, self.probe.seed + 7919 * (
                1 + self.order.index(layer)))
        return self._random[layer]

    # clean runs -----------------------------------------------------------------------------

    def clean(self, pb: PairBatch) -> dict[str, Any]:
        """Clean activations of every variant at every patchable layer, labels, clean logits
        and which pairs are scored."""
        a = self.adapter
        n = len(pb)
        both = _concat([pb.base, pb.source, pb.unrelated, pb.placebo])
        needed = self.order[:max(self.limit, 1)]
        acts = a.capture(both, needed)
        split = {v: {layer: t[i * n:(i + 1) * n] for layer, t in acts.items()}
                 for i, v in enumerate(("base", "source", "unrelated", "placebo"))}
        labels = self.readout.labels(pb)
        with torch.no_grad():
            clean_base = self.readout.logits(a, pb.base, labels)
            clean_source = self.readout.logits(a, pb.source, labels)
            clean_placebo = self.readout.logits(a, pb.placebo, labels)
        readable = labels.readable
        base_ok = clean_base.argmax(-1).cpu() == labels.base
        source_ok = clean_source.argmax(-1).cpu() == labels.cf
        placebo_ok = clean_placebo.argmax(-1).cpu() == labels.base
        scored = readable & ((base_ok & source_ok) if self.probe.filter_correct else True)
        return {"acts": split, "labels": labels, "base_logits": clean_base.cpu(),
                "source_logits": clean_source.cpu(), "readable": readable,
                "base_ok": base_ok, "source_ok": source_ok,
                "placebo_ok": placebo_ok & pb.has_placebo, "scored": scored}

    # evaluation -------------------------------------------------------------------------------

    def evaluate(self, pairs: PairSet, cells: list[tuple[str, str, str]],
                 das: dict[tuple[str, str, str], Any], steering: bool,
                 selection: bool = False) -> Outcomes:
        """Every cell × featurizer × variant (and steering) on every pair of `pairs`; on the
        selection split only what choosing the headline needs (the probe and DAS featurizers
        at the read positions below the input layer, source and unrelated patches)."""
        parts: list[dict[str, Any]] = []
        first = True
        featurizers, variants = self.probe.featurizers, VARIANTS
        if selection:
            cells = [c for c in cells if c[0] != self.order[0] and c[1] in HEADLINE_POSITIONS]
            featurizers = [f for f in featurizers if f in ("probe", "das")]
            variants = ("source", "unrelated")
        batches = list(pairs.batches(self.adapter, self.probe.batch_size))
        n_pairs = sum(len(pb) for pb in batches)
        bar = phase("causal", f"{self.task_name} {pairs.split} pairs".lstrip(), total=n_pairs,
                    unit="pairs", show=self.probe.progress)
        bar.summary = (f"{n_pairs} pairs × {len(cells)} cells × "
                       + ("/".join(featurizers) if featurizers else
                          "no headline featurizer (probe, das): clean runs only")
                       + (", steering" if steering and self.probes is not None else ""))
        for pb in bar.wrap(batches):
            clean = self.clean(pb)
            part = {"scored": clean["scored"].numpy(), "readable": clean["readable"].numpy(),
                    "base_ok": clean["base_ok"].numpy(), "source_ok": clean["source_ok"].numpy(),
                    "placebo_ok": clean["placebo_ok"].numpy(),
                    "has_unrelated": pb.has_unrelated.numpy(),
                    "base_class": clean["labels"].base.numpy(),
                    "cf_class": clean["labels"].cf.numpy(), "cells": {}, "steer": {}}
            part["ceiling"] = self._ceiling(pb, clean, pairs)
            if first:
                self.checks["captum"] = self._agreement(pb, clean, cells)
                self._reachability(pb, clean, cells)
                first = False
            for layer, scope in dict.fromkeys((c[0], c[2]) for c in cells):
                group = [c for c in cells if c[0] == layer and c[2] == scope]
                part["cells"].update(self._cells(pb, clean, group, das, featurizers,
                                                 variants))
            if steering and self.probes is not None:
                part["steer"] = self._steer(pb, clean, cells)
            parts.append(part)
            bar.update(len(pb))
        return Outcomes.concat(pairs, parts)

    def _runs(self, pb: PairBatch, clean: dict[str, Any], cell: tuple[str, str, str],
              featurizer: str, variant: str) -> tuple[torch.Tensor, torch.Tensor, Any] | None:
        """(rows, masks, basis) of one cell × featurizer × variant; None when no pair runs."""
        layer, pos, _ = cell
        labels = clean["labels"]
        mask = pb.positions(pos, labels.position, variant)
        ok = clean["scored"] & mask.any(1)
        if variant == "unrelated":
            ok &= pb.has_unrelated
        if variant == "placebo":
            ok &= clean["placebo_ok"]
        rows = ok.nonzero().flatten()
        if len(rows) == 0:
            return None
        return rows, mask[rows], featurizer

    def _cells(self, pb: PairBatch, clean: dict[str, Any], cells: list[tuple[str, str, str]],
               das: dict[tuple[str, str, str], Any], featurizers: Sequence[str],
               variants: Sequence[str]) -> dict[tuple, dict[str, np.ndarray]]:
        """Run every featurizer × variant of `cells` (one layer and scope) on one batch."""
        layer, _, scope = cells[0]
        edit_layers = self.edit_layers(layer, scope)
        specs = []  # (key, rows, masks, variant, featurizer, das basis)
        variables = [tuple(state_variables(p, b, s)) for p, b, s in
                     zip(pb.pairs, pb.bases, pb.sources)]
        for cell in cells:
            for feat in featurizers:
                if feat == "das" and cell not in das:
                    continue
                for variant in variants:
                    if variant == "placebo" and feat == "random":
                        continue  # the control needs no placebo of its own
                    got = self._runs(pb, clean, cell, feat, variant)
                    if got is None:
                        continue
                    rows, masks, _ = got
                    if feat in ("probe", "random"):
                        keep = torch.as_tensor([self.basis(layer, variables[r]) is not None
                                                for r in rows.tolist()], dtype=torch.bool)
                        rows, masks = rows[keep], masks[keep]
                        if len(rows) == 0:
                            continue
                    specs.append(((cell, feat, variant), rows, masks, variant, feat))
        out: dict[tuple, dict[str, np.ndarray]] = {}
        n = len(pb)
        if not specs:
            return out
        all_rows = torch.cat([s[1] for s in specs])
        all_masks = torch.cat([s[2] for s in specs])
        all_variant = sum(([s[3]] * len(s[1]) for s in specs), [])
        all_feat = sum(([s[4]] * len(s[1]) for s in specs), [])
        all_key = sum(([s[0]] * len(s[1]) for s in specs), [])
        pos = index_lists(all_masks)
        preds = torch.empty(len(all_rows), dtype=torch.long)
        moved = torch.empty(len(all_rows), dtype=torch.bool)
        margins = torch.empty(len(all_rows))
        # the cached path slices each run to the positions a patch can change, so it takes
        # larger groups of runs per forward than the hook path (per-call overhead dominates)
        step = self.probe.max_runs * (4 if self.cached is not None else 1)
        labels = clean["labels"]
        for lo in range(0, len(all_rows), step):
            sl = slice(lo, lo + step)
            rows, p = all_rows[sl], pos[sl]
            edits = {}
            for el in edit_layers:
                src = torch.empty(len(rows), p.shape[1], clean["acts"]["base"][el].shape[-1])
                for v in ("source", "unrelated", "placebo"):
                    sel = torch.as_tensor([x == v for x in all_variant[sl]])
                    if sel.any():
                        src[sel] = gather_values(clean["acts"][v][el], rows[sel], p[sel]).cpu()
                basis, full = self._feature_basis(el, rows, all_feat[sl], all_key[sl],
                                                  variables, das, src.shape[-1])
                edits[el] = Swap(p, src, basis, full)
            z = self.patch(pb, clean, rows, edits)
            preds[sl] = z.argmax(-1)
            moved[sl] = (z - clean["base_logits"][rows]).abs().amax(-1) > MOVED_TOL * (
                1 + clean["base_logits"][rows].abs().amax(-1))
            cf, bc = labels.cf[rows], labels.base[rows]
            ar = torch.arange(len(rows))
            margins[sl] = z[ar, cf.clamp_min(0)] - z[ar, bc.clamp_min(0)]
        lo = 0
        for key, rows, _, _, _ in specs:
            k = len(rows)
            pred = np.full(n, -1)
            mv = np.zeros(n, dtype=bool)
            pred[rows.numpy()] = preds[lo:lo + k].numpy()
            mv[rows.numpy()] = moved[lo:lo + k].numpy()
            out[key] = {"pred": pred, "moved": mv}
            lo += k
        return out

    def _feature_basis(self, layer: str, rows: torch.Tensor, feats: list[str], keys: list,
                       variables: list[tuple[str, ...]], das: dict, width: int
                       ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Per run: the featurizer's basis at `layer` ([R, D, k], zero-padded) and whether it
        swaps the whole vector."""
        full = torch.as_tensor([f == "full" for f in feats])
        if full.all():
            return None, None
        bases: list[torch.Tensor | None] = []
        for r, f, key in zip(rows.tolist(), feats, keys):
            if f == "full":
                bases.append(None)
            elif f == "probe":
                bases.append(self.basis(layer, variables[r]))
            elif f == "random":
                q = self.basis(layer, variables[r])
                bases.append(self.random(layer, width)[:, :q.shape[1]])
            else:  # das: the cell's learned basis
                bases.append(das[key[0]]["basis"])
        k = max(b.shape[1] for b in bases if b is not None)
        Q = torch.zeros(len(rows), width, k)
        for i, b in enumerate(bases):
            if b is not None:
                Q[i, :, :b.shape[1]] = b
        return Q, full

    # checks ---------------------------------------------------------------------------------

    def _reachability(self, pb: PairBatch, clean: dict[str, Any],
                      cells: list[tuple[str, str, str]]) -> None:
        """Whether a large random perturbation at each cell (three times the latents' norm)
        moves the readout of any scored pair of the first batch."""
        g = torch.Generator().manual_seed(self.probe.seed + 31)
        labels = clean["labels"]
        for cell in cells:
            if cell in self.reach:
                continue
            layer, positions, scope = cell
            mask = pb.positions(positions, labels.position)
            rows = (clean["scored"] & mask.any(1)).nonzero().flatten()
            if len(rows) == 0:
                continue
            p = index_lists(mask[rows])
            swaps = {}
            for el in self.edit_layers(layer, scope):
                own = gather_values(clean["acts"]["base"][el], rows, p).cpu()
                size = 3 * own.norm(dim=-1, keepdim=True).mean().clamp_min(1e-3)
                noise = torch.randn(own.shape, generator=g)
                swaps[el] = Swap(p, own + size * noise / noise.norm(dim=-1, keepdim=True))
            with torch.no_grad():
                z = run_edits(self.adapter, self.readout, pb.base, rows, labels,
                              {k: v.edit() for k, v in swaps.items()}).cpu()
            base = clean["base_logits"][rows]
            self.reach[cell] = bool(((z - base).abs().amax(-1)
                                     > MOVED_TOL * (1 + base.abs().amax(-1))).any())

    def _ceiling(self, pb: PairBatch, clean: dict[str, Any], pairs: PairSet) -> dict[str, Any]:
        """Interchange every differing input position at the input layer: the readout must be
        the source run's (every readable pair, scored or not)."""
        from probekit.causal.pairs import differ

        layer = self.order[0]
        labels = clean["labels"]
        mask = differ(pb.base, pb.source)
        rows = (clean["readable"] & mask.any(1)).nonzero().flatten()
        if len(rows) == 0:
            return {"rows": np.zeros(0, dtype=int), "diff": np.zeros(0), "hit": np.zeros(0)}
        p = index_lists(mask[rows])
        src = gather_values(clean["acts"]["source"][layer], rows, p).cpu()
        with torch.no_grad():
            z = run_edits(self.adapter, self.readout, pb.base, rows, labels,
                          {layer: Swap(p, src).edit()}).cpu()
        want = clean["source_logits"][rows]
        diff = (z - want).abs().amax(-1) / (1 + want.abs().amax(-1))
        bad = (diff > CEILING_TOL).nonzero().flatten()
        if len(bad):
            i = int(rows[bad[0]])
            raise CheckError(
                f"ceiling check failed on task pairs (split {pairs.split}, base episode "
                f"{int(pb.pairs[i]['base_index'])}): interchanging every input position where "
                f"base and source differ at {layer} did not reproduce the source run (logits "
                f"differ by {float(diff[bad[0]]):.2e}); the sites or pairs are wrong, or the "
                f"model's first layer is not its input embedding — name the embedding output as "
                "the adapter's first layer")
        return {"rows": rows.numpy(), "diff": diff.numpy(),
                "hit": (z.argmax(-1) == labels.cf[rows]).numpy()}

    def _agreement(self, pb: PairBatch, clean: dict[str, Any],
                   cells: list[tuple[str, str, str]]) -> dict[str, Any] | None:
        """Margins of a full-vector `diff` patch at a middle layer by the hook path and by
        Captum on up to four scored pairs; a disagreement stops the run."""
        layers = sorted({c[0] for c in cells if c[2] == "layer"}, key=self.order.index)
        if not layers:
            return None
        layer = layers[len(layers) // 2]
        labels = clean["labels"]
        mask = pb.positions("diff", labels.position)
        rows = (clean["scored"] & mask.any(1)).nonzero().flatten()[:4]
        if len(rows) == 0:
            return None
        p = index_lists(mask[rows])
        src = gather_values(clean["acts"]["source"][layer], rows, p).cpu()
        with torch.no_grad():
            z = run_edits(self.adapter, self.readout, pb.base, rows, labels,
                          {layer: Swap(p, src).edit()}).cpu()
        ar = torch.arange(len(rows))
        hook = z[ar, labels.cf[rows]] - z[ar, labels.base[rows]]
        ref = captum_reference(self.adapter, self.readout, pb.base, labels, layer, mask,
                               clean["acts"]["source"][layer], rows.tolist()).cpu()
        gap = float((hook - ref).abs().max())
        if gap > AGREE_TOL * (1 + float(ref.abs().max())):
            raise CheckError(f"the hook patching path and Captum disagree at {layer} by {gap:.2e} "
                             "on the same patch; probekit cannot trust its interventions on "
                             f"this model ({self.adapter.identity.id}) — please report it")
        return {"layer": layer, "pairs": len(rows), "max_abs_diff": gap}

    # steering -------------------------------------------------------------------------------

    def _steer(self, pb: PairBatch, clean: dict[str, Any],
               cells: list[tuple[str, str, str]]) -> dict[tuple, dict[str, np.ndarray]]:
        """Add the probe direction of the source value at the read positions from the
        intervened step on, at l and every later layer, for each strength; and a random
        direction of the same size (the control)."""
        labels = clean["labels"]
        mask = pb.positions("read", labels.position)
        variables = [list(state_variables(p, b, s)) for p, b, s in
                     zip(pb.pairs, pb.bases, pb.sources)]
        layers = sorted({c[0] for c in cells if c[0] != self.order[0]}, key=self.order.index)
        out = {}
        n = len(pb)
        g = torch.Generator().manual_seed(self.probe.seed + 17)
        for layer in layers:
            edit_layers = self.edit_layers(layer, "onward")
            dirs, scale = {}, {}
            ok = clean["scored"] & mask.any(1)
            for el in edit_layers:
                h = clean["acts"]["base"][el].cpu()
                d = torch.zeros(n, h.shape[-1])
                for i in range(n):
                    v = self.probes.direction(el, variables[i], pb.bases[i], pb.sources[i]) \
                        if ok[i] else None
                    if v is None:
                        ok[i] = False
                    else:
                        d[i] = v
                dirs[el] = d
                scale[el] = float(h[mask].norm(dim=-1).mean()) if mask.any() else 1.0
            rows = ok.nonzero().flatten()
            if len(rows) == 0:
                continue
            p = index_lists(mask[rows])
            width = dirs[edit_layers[0]].shape[-1]
            rand = torch.randn(len(rows), width, generator=g)
            rand = rand / rand.norm(dim=-1, keepdim=True)
            # every strength × direction in one patch call: the runs are independent, so one
            # call over the rows repeated gives each run's logits as its own call would
            runs = [(float(s), kind) for s in self.probe.strengths for kind in ("probe", "random")]
            adds = {el: Add(p.repeat(len(runs), 1), torch.cat([
                s * scale[el] * (dirs[el][rows] if kind == "probe" else rand)
                for s, kind in runs])) for el in edit_layers}
            z = self.patch(pb, clean, rows.repeat(len(runs)), adds).view(len(runs), len(rows), -1)
            for (strength, kind), zk in zip(runs, z):
                pred = np.full(n, -1)
                pred[rows.numpy()] = zk.argmax(-1).numpy()
                out[(layer, strength, kind)] = {"pred": pred}
        return out


def _concat(batches: list) -> Any:
    from probekit.adapters.base import Batch

    return Batch({k: torch.cat([b.inputs[k] for b in batches]) for k in batches[0].inputs},
                 torch.cat([b.positions for b in batches]),
                 torch.cat([b.query_positions for b in batches]),
                 torch.cat([b.answer_ids for b in batches]))

