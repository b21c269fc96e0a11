"""`CausalProbe`: interchange interventions, probe steering and attributions of one model on one
task's counterfactual pairs, scored per readout × layer × site.

For each aligned pair and layer, the base run gets at each site (the intervened step, each later
step, the query) the source's activations (the intervention) or an unrelated episode's
activations at the same site (the baseline), and at the intervened step a latent edited along
the probe directions of the intervened variable (steering). All readouts read every run.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from probekit.adapters.base import Adapter
from probekit.causal.attribution import site_attributions
from probekit.causal.interventions import (METHODS, CachedPatcher, CaptumPatcher, Patcher,
                                           agrees, layer_activations, make_patcher)
from probekit.causal.pairs import PairBatch, PairSet, site_names, site_positions, take
from probekit.causal.readouts import (FittedProbes, ProbeReadout, Readout, TokenReadout,
                                      fit_probes)
from probekit.causal.scores import Outcomes, bootstrap_ci, layer_rows
from probekit.causal.steering import steer
from probekit.causal.verdict import verdict, world_model_score
from probekit.errors import UnknownNameError, UserError
from probekit.tasks import Task

READOUTS = ("token", "probe")


@dataclass
class CausalResult:
    """Outcomes per readout; `main` is the readout of the headline (token where there is one)."""

    outcomes: dict[str, Outcomes]
    main: str
    examined: int  # pairs drawn, aligned or not
    seed: int = 0

    def rows(self) -> list[dict[str, Any]]:
        """The per-layer causal table (`per_layer_causal`), every readout."""
        return [r for o in self.outcomes.values() for r in layer_rows(o, self.seed)]

    def block(self, layer: str, site: str = "step") -> dict[str, Any] | None:
        """`scores.causality` of `probekit.result/1`: the main readout at `layer` and `site`
        (None when no pair can be scored there); `skipped` counts every drawn pair not scored."""
        o = self.outcomes[self.main]
        if layer not in o.layers:
            return None
        i, g = o.layers.index(layer), o.sites.index(site)
        keep = o.valid[i, :, g]
        if not keep.any():
            return None
        hits = o.patched[i, keep, g].argmax(-1) == o.cf_class[keep]
        lo, hi = bootstrap_ci(hits, seed=self.seed)
        baseline = o.unrelated[i, keep, g].argmax(-1) == o.cf_class[keep]
        used = int(keep.sum())
        return {"iia": float(hits.mean()), "ci95": [lo, hi], "layer": layer, "pairs": used,
                "skipped": self.examined - used, "baseline_iia": float(baseline.mean())}


    def scores(self, layer: str, decodability: float, random_init: float | None
               ) -> dict[str, Any]:
        """`causality`, `world_model_score` and `verdict` of `probekit.result/1`, with the
        headline at the decodability layer `layer` (all None when nothing can be scored)."""
        block = self.block(layer)
        if block is None:
            return {"causality": None, "world_model_score": None, "verdict": None}
        return {"causality": block,
                "world_model_score": world_model_score(decodability, random_init, block["iia"],
                                                       block["baseline_iia"]),
                "verdict": verdict(decodability, random_init, block["iia"], block["ci95"],
                                   block["baseline_iia"])}


class CausalProbe:
    """Causal probes of a model on a task, on a seeded subsample of at most `max_pairs` pairs of
    `split`. `readouts`: "auto" (token where the model has a head and the task a query, then
    probe) or a list of names; `method`: the patching path ("auto", "captum", "cached");
    `attribution_pairs` pairs get integrated-gradients attributions of the main readout with
    `n_steps` steps; steering probes are fit on at most `steering_episodes` train episodes."""

    def __init__(self, *, readouts: str | list[str] = "auto", split: str = "test",
                 max_pairs: int = 200, batch_size: int = 32, method: str = "auto",
                 steering: bool = True, steering_episodes: int = 500, attribution: bool = True,
                 attribution_pairs: int = 32, n_steps: int = 8,
                 perturbations_per_eval: int | None = None, seed: int = 0,
                 progress: bool = False):
        self.readouts, self.split, self.max_pairs = readouts, split, max_pairs
        self.batch_size, self.method = batch_size, method
        self.steering, self.steering_episodes = steering, steering_episodes
        self.attribution, self.attribution_pairs = attribution, attribution_pairs
        self.n_steps, self.perturbations_per_eval = n_steps, perturbations_per_eval
        self.seed, self.progress = seed, progress

    def run(self, adapter: Adapter, task: Task, layers: list[str] | None = None) -> CausalResult:
        """Intervene at `layers` (all by default) and score every readout."""
        from tqdm.auto import tqdm

        if self.batch_size < 1:
            raise UserError(f"batch_size must be at least 1, got {self.batch_size}")
        if self.method not in METHODS:
            raise UnknownNameError("patching method", self.method, METHODS)
        for name in [] if self.readouts == "auto" else self._names():
            if name not in READOUTS:
                raise UnknownNameError("readout", name, READOUTS)
        layers = adapter.check_layers(layers)
        pairs = PairSet.build(adapter, task, self.split, max_pairs=self.max_pairs,
                              seed=self.seed, batch_size=self.batch_size)
        batches = list(pairs.batches(adapter, self.batch_size))
        readouts = self._readouts(adapter, task, pairs, batches)
        probes = None
        variables = sorted({p["variable"] for p in pairs.pairs})
        columns = task.dataset(self.split).column_names
        # Steering edits a state variable's probe direction; an intervened input (an action)
        # has no label column to probe, so those tasks are patched but not steered.
        if self.steering and all(f"label.{v}" in columns for v in variables):
            probes = fit_probes(adapter, task, layers, variables, batch_size=self.batch_size,
                                max_episodes=self.steering_episodes, progress=self.progress)
        patcher = make_patcher(adapter, readouts, self.method, self.perturbations_per_eval)
        S = batches[0].base.positions.shape[1]
        parts: list[list[dict[str, np.ndarray]]] = []
        attributed = 0
        for pb in tqdm(batches, desc=f"causal {task.name}", disable=not self.progress,
                       leave=False):
            acts = {k: layer_activations(adapter, layers, getattr(pb, k))
                    for k in ("base", "source", "unrelated")}
            labels = [r.labels(pb) for r in readouts]
            which = torch.stack([w for w, _, _ in labels], 1)
            if isinstance(patcher, CachedPatcher) and not parts:
                patcher = self._checked(patcher, layers[len(layers) // 2], pb, acts, which)
            n_attr = min(len(pb.step), self.attribution_pairs - attributed) \
                if self.attribution else 0
            parts.append(self._batch(patcher, layers, pb, acts, labels, probes, S, n_attr))
            attributed += n_attr
        outcomes = {}
        for i, r in enumerate(readouts):
            cat = {k: np.concatenate([p[i][k] for p in parts], axis=0 if k in (
                "base", "source", "base_class", "cf_class") else 1) for k in parts[0][i]}
            outcomes[r.name] = Outcomes(r.name, list(layers), site_names(S), **cat)
        return CausalResult(outcomes, readouts[0].name, len(pairs) + pairs.skipped, self.seed)

    def _readouts(self, adapter: Adapter, task: Task, pairs: PairSet,
                  batches: list[PairBatch]) -> list[Readout]:
        """The readouts asked for, the main one first."""
        if self.readouts == "auto":
            has_query = all(bool((pb.base.query_positions >= 0).all()) for pb in batches)
            names = ["token", "probe"] if adapter.has_token_head and has_query else ["probe"]
        else:
            names = self._names()
        out: list[Readout] = []
        if "token" in names:
            answers = torch.cat([getattr(pb, k).answer_ids for pb in batches
                                 for k in ("base", "source", "unrelated")])
            out.append(TokenReadout(adapter, answers[answers >= 0].tolist()))
        if "probe" in names:
            heads = sorted({p["readout_target"] for p in pairs.pairs})
            out.append(ProbeReadout.fit(adapter, task, adapter.layers()[-1], heads,
                                        batch_size=self.batch_size, progress=self.progress))
        return out

    def _names(self) -> list[str]:
        return [self.readouts] if isinstance(self.readouts, str) else list(self.readouts)

    def _checked(self, fast: Patcher, layer: str, pb: PairBatch,
                 acts: dict[str, dict[str, torch.Tensor]], which: torch.Tensor) -> Patcher:
        """The fast patcher if it agrees with Captum on two pairs of this batch, else Captum."""
        reference = CaptumPatcher(fast.adapter, fast.readouts, self.perturbations_per_eval)
        n = min(2, len(pb.step))
        few = take(pb.base, slice(0, n))
        values = acts["source"][layer][:n]
        groups = _groups(site_positions(few, pb.step[:n]), values.shape[1])
        try:
            ok = agrees(fast, reference, layer, few, groups, values, which[:n])
        except (RuntimeError, TypeError, ValueError, AttributeError, IndexError) as e:
            warnings.warn(f"the cached patching path failed ({type(e).__name__}: {e}); "
                          "using Captum", stacklevel=2)
            ok = False
        return fast if ok else reference

    def _batch(self, patcher: Patcher, layers: list[str], pb: PairBatch,
               acts: dict[str, dict[str, torch.Tensor]],
               labels: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
               probes: FittedProbes | None, S: int, n_attr: int) -> list[dict[str, np.ndarray]]:
        """Per readout: every layer's patched, baseline and steered logits for one batch."""
        adapter, readouts = patcher.adapter, patcher.readouts
        B, T = len(pb.step), next(iter(pb.base.inputs.values())).shape[1]
        which = torch.stack([w for w, _, _ in labels], 1)
        sites = site_positions(pb.base, pb.step)
        other = site_positions(pb.unrelated, pb.step)
        both = (sites >= 0) & (other >= 0)
        read = patcher.read_positions(pb.base).cpu()
        groups = [_groups(sites, T), _groups(torch.where(both, sites, -1), T)]
        if probes is not None:
            groups.append(_groups(sites[:, :1], T))
        copies = len(groups)
        groups = torch.cat(groups)
        rows = torch.arange(B).repeat(copies)
        order = adapter.layers()
        depth = [len(order) if r.layer is None else order.index(r.layer) for r in readouts]
        base_clean = patcher.clean(pb.base, which)
        source_clean = patcher.clean(pb.source, which)
        per_layer: list[dict[str, list[torch.Tensor]]] = [
            {k: [] for k in ("patched", "unrelated", "valid", "steered", "edited")}
            for _ in readouts]
        attr, total = [], []
        for layer in layers:
            li = order.index(layer)
            own, src, unrel = (acts[k][layer] for k in ("base", "source", "unrelated"))
            from_unrelated = own.clone()
            b, g = both.nonzero(as_tuple=True)
            from_unrelated[b, sites[b, g]] = unrel[b, other[b, g]]
            values = [src, from_unrelated]
            if probes is not None:
                edit, edited = self._edit(probes, layers.index(layer), own, sites[:, 0], pb)
                steered_in = own.clone()
                steered_in[torch.arange(B), sites[:, 0]] = edit
                values.append(steered_in)
            out = patcher.patch(layer, pb.base, groups, torch.cat(values), which, rows)
            for i, res in enumerate(out):
                res = _pad(res.detach().cpu(), S + 1)
                _, base_cls, cf_cls = labels[i]
                readable = (read[:, i] >= 0) & (base_cls >= 0) & (cf_cls >= 0)
                if li < depth[i]:
                    trivial = torch.zeros_like(both)
                elif li == depth[i]:  # the probe would read the patched vector itself
                    trivial = sites == read[:, i:i + 1]
                else:  # above the readout layer: the patch cannot reach the readout
                    trivial = torch.ones_like(both)
                d = per_layer[i]
                d["patched"].append(res[:B])
                d["unrelated"].append(res[B:2 * B])
                d["valid"].append(both & readable[:, None] & ~trivial)
                if probes is not None:
                    d["steered"].append(res[2 * B:, 0])
                    d["edited"].append(edited)
            a = torch.full((B, S + 1), float("nan"))
            t = torch.full((B,), float("nan"))
            if n_attr and li <= depth[0]:
                _, base_cls, cf_cls = labels[0]
                part = slice(0, n_attr)
                a[part], t[part] = site_attributions(
                    adapter, readouts[0], layer, take(pb.base, part), take(pb.source, part),
                    sites[part], which[part, 0], cf_cls[part], base_cls[part],
                    n_steps=self.n_steps, internal_batch_size=self.batch_size * self.n_steps)
            attr.append(a)
            total.append(t)
        result = []
        for i, d in enumerate(per_layer):
            _, base_cls, cf_cls = labels[i]
            part = {"base": base_clean[i].cpu().numpy(), "source": source_clean[i].cpu().numpy(),
                    "base_class": base_cls.numpy(), "cf_class": cf_cls.numpy()}
            part.update({k: torch.stack(v).numpy() for k, v in d.items() if v})
            if i == 0:
                part.update(attribution=torch.stack(attr).numpy(),
                            attribution_total=torch.stack(total).numpy())
            result.append(part)
        return result

    def _edit(self, probes: FittedProbes, index: int, own: torch.Tensor,
              positions: torch.Tensor, pb: PairBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Latents at the intervened step edited toward the source's value of the intervened
        variable at that step, and [B] whether the probe decodes the edit."""
        h = own[torch.arange(len(pb.step), device=own.device), positions.to(own.device)]
        var = torch.as_tensor([probes.targets.index(p["variable"]) for p in pb.pairs])
        lookup = {v: i for i, v in enumerate(probes.classes.tolist())}

        def classes(episodes: list[dict[str, Any]]) -> torch.Tensor:
            return torch.as_tensor([lookup.get(e[f"label.{p['variable']}"][int(s)], -1)
                                    for e, p, s in zip(episodes, pb.pairs, pb.step)])

        current, target = classes(pb.bases), classes(pb.sources)
        known = (current >= 0) & (target >= 0) & (current != target)
        coef = torch.as_tensor(probes.coef[index], dtype=h.dtype, device=h.device)[var]
        intercept = torch.as_tensor(np.maximum(probes.intercept[index], -1e4), dtype=h.dtype,
                                    device=h.device)[var]
        edited, ok = steer(h, coef, intercept, current.clamp_min(0).to(h.device),
                           target.clamp_min(0).to(h.device))
        return edited, ok.cpu() & known


def _groups(sites: torch.Tensor, length: int) -> torch.Tensor:
    """[B, T] patch groups: position sites[b, g] is in group g (-1 elsewhere)."""
    groups = torch.full((len(sites), length), -1, dtype=torch.long)
    b, g = (sites >= 0).nonzero(as_tuple=True)
    groups[b, sites[b, g]] = g
    return groups


def _pad(x: torch.Tensor, n: int) -> torch.Tensor:
    """[R, G, K] → [R, n, K]: columns for sites no run of the batch has (masked by `valid`)."""
    if x.shape[1] >= n:
        return x[:, :n]
    return torch.cat([x, x[:, :1].expand(-1, n - x.shape[1], -1)], 1)
