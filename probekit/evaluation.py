"""`evaluate`: one call from a model and task names to `probekit.result/1` records."""

from __future__ import annotations

import datetime as dt
import time
import warnings
from collections.abc import Iterable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from probekit import distributed
from probekit.adapters import Adapter, load_model
from probekit.decodability import (METRIC, SPLITS, choose_layer, bootstrap_ci, chance_levels,
                                   control_labels, fit_scores, informative, normalise,
                                   probe_data)
from probekit.errors import DataError, ProbekitWarning, UserError
from probekit.extraction import CPU_BATCH, extract, precision
from probekit.report import Report
from probekit.results import SCHEMA, run_id
from probekit.tasks import Task, load_task


def evaluate(model: str | Path | Adapter, tasks: Sequence[str] = ("boxes",), *,
             layers: Sequence[str] | None = None, device: str = "auto",
             batch_size: int | str = 32, autocast: str | None = None, seed: int = 0,
             include: Iterable[str | Path] = (), random_init: bool = True,
             trust_remote_code: bool = False, truncate: bool = False, causal: bool = True,
             progress: bool = True) -> Report:
    """Probe `model` on each task: decodability (probes + control + random-init twin) per layer,
    and causal probes (interventions, steering, attributions) on tasks with counterfactual pairs.

    `model` is a checkpoint folder, a shipped checkpoint name, a Hub id or an `Adapter`.
    `batch_size` "auto" fills the free GPU memory; `autocast` ("bf16", "fp16") runs extraction
    under torch.autocast. Under torch.distributed every rank extracts its share of the shards
    and only rank 0 goes on to fit probes (the others return an empty Report).
    """
    if not tasks:
        raise UserError("no task given; name at least one (see `probekit tasks list`)")
    if batch_size != "auto" and (not isinstance(batch_size, int) or batch_size < 1):
        raise UserError(f"batch_size must be at least 1 or 'auto', got {batch_size!r}")
    if not 0 <= seed < 2 ** 32:
        raise UserError(f"seed must be in [0, 2**32), got {seed}")
    loaded = [load_task(name, include) for name in tasks]  # fail on a bad name before any work
    adapter = load_model(model, device=device, trust_remote_code=trust_remote_code,
                         truncate=truncate)
    layer_names = adapter.check_layers(list(layers) if layers else None)
    twin = adapter.random_init(seed) if random_init else None
    if distributed.world_size() > 1:  # every rank extracts its shards; rank 0 goes on alone
        for task in loaded:
            for a, split in [(a, s) for a in (adapter, twin) if a is not None for s in SPLITS]:
                extract(a, task, split, layer_names, batch_size=batch_size, autocast=autocast,
                        progress=progress)
        if not distributed.is_main():
            return Report([])
    results = [evaluate_task(adapter, twin, task, layer_names, batch_size=batch_size, seed=seed,
                             autocast=autocast, causal=causal, progress=progress)
               for task in loaded]
    return Report(results)


def evaluate_task(adapter: Adapter, twin: Adapter | None, task: Task, layers: list[str], *,
                  batch_size: int | str = 32, seed: int = 0, autocast: str | None = None,
                  causal: bool = True, progress: bool = True) -> dict[str, Any]:
    """One `probekit.result/1` record for (adapter, task)."""
    t0 = time.perf_counter()
    targets = task.targets
    device = str(adapter.device)

    def latents_of(a: Adapter):
        return {s: probe_data(task, s, extract(a, task, s, layers, batch_size=batch_size,
                                               autocast=autocast, progress=progress), targets)
                for s in SPLITS}

    data = latents_of(adapter)
    twin_data = latents_of(twin) if twin is not None else None
    t_extract = time.perf_counter() - t0

    skipped = [t.name for t, _ in informative(targets, data["train"].Y, keep=False)]
    if skipped:  # a constant label says nothing about the model; probe the rest
        warnings.warn(f"{task.name}: skipping {len(skipped)} target(s) with a single class on "
                      f"train: {', '.join(skipped)}", ProbekitWarning, stacklevel=2)
        cols = [j for _, j in informative(targets, data["train"].Y)]
        if not cols:
            raise DataError(f"{task.name}: every target has a single class on train; nothing "
                            "to probe (enlarge the split or change the knobs)")
        targets = [targets[j] for j in cols]
        data = {s: d.select(cols) for s, d in data.items()}
        if twin_data is not None:
            twin_data = {s: d.select(cols) for s, d in twin_data.items()}
    Y = {s: data[s].Y for s in SPLITS}
    chance = chance_levels(task, targets, Y["train"])
    scores = fit_scores(data, Y, targets, device)
    control = fit_scores(data, control_labels(task, targets, data), targets, device)
    twin_scores = fit_scores(twin_data, Y, targets, device) if twin_data else None
    t_probe = time.perf_counter() - t0 - t_extract

    best = choose_layer(scores.val, chance)
    value = float(normalise(scores.test[best], chance).mean())
    ctl = float(normalise(control.test[best], chance).mean())
    lo, hi = bootstrap_ci(scores.test_pred[best], Y["test"], targets, chance,
                          data["test"].n_episodes, seed=seed)
    rand = None
    if twin_scores is not None:
        twin_best = choose_layer(twin_scores.val, chance)
        rand = float(normalise(twin_scores.test[twin_best], chance).mean())
    found = None
    if causal and task.spec.counterfactual is not None:
        from probekit.causal import CausalProbe

        found = CausalProbe(batch_size=CPU_BATCH if batch_size == "auto" else batch_size,
                            seed=seed, progress=progress).run(
            adapter, task, layers)

    per_layer = []
    for i, layer in enumerate(layers):
        for j, t in enumerate(targets):
            per_layer.append({
                "layer": layer, "target": t.name, "metric": METRIC[t.kind],
                "chance": float(chance[j]), "train": float(scores.train[i, j]),
                "val": float(scores.val[i, j]), "test": float(scores.test[i, j]),
                "control": float(control.test[i, j]),
                "random_init": None if twin_scores is None else float(twin_scores.test[i, j]),
            })
    result = {
        "schema": SCHEMA,
        "run_id": "",
        "model": {**adapter.identity.as_dict(), "dtype": precision(adapter, autocast)},
        "task": {"name": task.name, "version": task.version, "fingerprint": task.fingerprint,
                 "n_train": data["train"].n_episodes, "n_val": data["val"].n_episodes,
                 "n_test": data["test"].n_episodes,
                 **({"skipped_targets": skipped} if skipped else {})},
        "probe": {"kind": "+".join(sorted({("logistic" if t.kind == "class" else "ridge")
                                           for t in targets})),
                  "regularisation": "l2, strength chosen on val", "selection": "val",
                  "seed": seed},
        "scores": {
            "decodability": {"value": value, "ci95": [lo, hi], "layer": layers[best],
                             "control": ctl, "selectivity": value - ctl, "random_init": rand},
            **(found.scores(layers[best], value, rand) if found is not None else
               {"causality": None, "world_model_score": None, "verdict": None}),
        },
        "per_layer": per_layer,
        "env": environment(device),
        "timings": {"extract_s": round(t_extract, 3), "probe_s": round(t_probe, 3),
                    "total_s": round(time.perf_counter() - t0, 3)},
    }
    if found is not None:
        result["per_layer_causal"] = found.rows()
    result["run_id"] = run_id(result)
    return result


def environment(device: str) -> dict[str, str]:
    def version(pkg: str) -> str | None:
        try:
            return metadata.version(pkg)
        except metadata.PackageNotFoundError:
            return None

    env = {p: version(p) for p in ("probekit", "torch", "transformers", "captum")}
    env["device"] = device
    env["date"] = dt.datetime.now(dt.timezone.utc).date().isoformat()
    return env

