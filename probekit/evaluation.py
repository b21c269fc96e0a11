"""`evaluate`: one call from a model and task names to `probekit.result/2` records.

In the scikit-learn meta-estimator style, each axis is an object configured by the caller and
run here: `decodability=DecodabilityProbe(...)`, `causal=CausalProbe(...)`,
`prediction=PredictionProbe(...)` (or True/False for the defaults / none), so every option of
every axis is reachable from one call.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from probekit import distributed, preflight, record
from probekit.adapters import Adapter, load_model
from probekit.errors import UserError
from probekit.extraction import extract, precision
from probekit.progress import honours_progress
from probekit.report import Report
from probekit.tasks import Task


@honours_progress
def evaluate(model: str | Path | Adapter, tasks: Sequence[str] = ("boxes",), *,
             layers: Sequence[str] | None = None, device: str = "auto",
             batch_size: int | str = 32, autocast: str | None = None, seed: int = 0,
             include: Iterable[str | Path] = (), random_init: bool = True,
             trust_remote_code: bool = False, truncate: bool = False,
             revision: str | None = None, decodability: Any = None,
             causal: Any = True, prediction: Any = True, progress: bool = True,
             limit: int | None = None) -> Report:
    """Probe `model` on each task on every axis: decodability (probes by depth, control task,
    random-init twin, MDL), on tasks with counterfactual pairs causality (featurized
    interchange interventions), and on tasks with violation pairs prediction (violation of
    expectation, next-step legality).

    `model` is a checkpoint folder, a shipped checkpoint name, a Hub id or an `Adapter`.
    `decodability` is a `probekit.decodability.DecodabilityProbe` (default settings when None);
    `causal` a `probekit.causal.CausalProbe`, True (default settings) or False (skip);
    `prediction` a `probekit.prediction.PredictionProbe`, True or False, the same way.
    `batch_size` "auto" fills the free GPU memory; `autocast` ("bf16", "fp16") runs extraction
    under torch.autocast. Under torch.distributed every rank extracts its share of the shards
    and only rank 0 goes on to fit probes (the others return an empty Report). `limit` keeps
    the first `limit` episodes of each split, for a quick look: each task runs as
    `<task>-limit<N>` with a fingerprint of its own (`Task.limited`), so its results are never
    taken, or filed, for the full task's.
    `progress=False` silences every progress bar and line (`probekit.progress`).
    """
    from probekit.causal import CausalProbe
    from probekit.decodability import DecodabilityProbe
    from probekit.prediction import PredictionProbe

    if decodability is None:
        decodability = DecodabilityProbe(batch_size=batch_size, autocast=autocast, seed=seed,
                                         progress=progress)
    elif not isinstance(decodability, DecodabilityProbe):
        raise UserError("decodability must be a probekit.decodability.DecodabilityProbe or None, "
                        f"got {type(decodability).__name__}")
    if causal is True:
        causal = CausalProbe(batch_size=32 if batch_size == "auto" else batch_size, seed=seed,
                             progress=progress)
    elif causal is not False and not isinstance(causal, CausalProbe):
        raise UserError("causal must be a probekit.causal.CausalProbe, True or False, got "
                        f"{type(causal).__name__}")
    if causal is not False:
        causal.validate()
    if prediction is True:
        prediction = PredictionProbe(batch_size=32 if batch_size == "auto" else batch_size,
                                     seed=seed, progress=progress)
    elif prediction is not False and not isinstance(prediction, PredictionProbe):
        raise UserError("prediction must be a probekit.prediction.PredictionProbe, True or "
                        f"False, got {type(prediction).__name__}")
    if prediction is not False:
        prediction.validate()
    plan = preflight.check_eval(model, tasks, layers=layers, include=include,
                                batch_size=batch_size, seed=seed, limit=limit,
                                revision=revision)  # before any work
    loaded = plan.tasks
    adapter = load_model(model, device=device, trust_remote_code=trust_remote_code,
                         truncate=truncate, revision=revision)
    layer_names = preflight.check_model(plan, adapter)
    twin = adapter.random_init(seed) if random_init else None
    if distributed.world_size() > 1:  # every rank extracts its shards; rank 0 goes on alone
        for task in loaded:
            for a, split in [(a, s) for a in (adapter, twin) if a is not None
                             for s in ("train", "val", "test")]:
                extract(a, task, split, layer_names, batch_size=batch_size, autocast=autocast,
                        progress=progress)
        if not distributed.is_main():
            return Report([])
    results = [evaluate_task(adapter, twin, task, layer_names, decodability=decodability,
                             causal=causal or None, prediction=prediction or None,
                             autocast=autocast, seed=seed)
               for task in loaded]
    return Report(results)


def evaluate_task(adapter: Adapter, twin: Adapter | None, task: Task, layers: list[str], *,
                  decodability: Any, causal: Any = None, prediction: Any = None,
                  autocast: str | None = None, seed: int = 0) -> dict[str, Any]:
    """One `probekit.result/2` record for (adapter, task)."""
    t0 = time.perf_counter()
    found = decodability.run(adapter, task, layers, twin=twin)
    t_dec = time.perf_counter() - t0
    causal_result, causal_ran = None, False
    if causal is not None and task.spec.counterfactual is not None:
        causal_result = causal.run(adapter, task, layers)
        causal_ran = True
    t_causal = time.perf_counter() - t0 - t_dec
    causality = causal_result.scores() if causal_result is not None else None
    reason = None
    if causal is None:
        reason = "causal probes were not run (causal=False, --no-causal)"
    elif task.spec.counterfactual is None:
        reason = f"task {task.name} has no counterfactual pairs"
    elif causality is None:
        reason = causal_result.reason()
    t1 = time.perf_counter()
    found_p = prediction.run(adapter, task, twin=twin) if prediction is not None else None
    t_pred = time.perf_counter() - t1
    predicted = found_p.scores() if found_p is not None else None
    p_reason = "prediction probes were not run (prediction=False, --no-prediction)" \
        if found_p is None else found_p.reason()
    result = {
        "schema": record.SCHEMA,
        "run_id": "",
        "model": {**adapter.identity.as_dict(), "dtype": precision(adapter, autocast)},
        "task": {"name": task.name, "version": task.version, "fingerprint": task.fingerprint,
                 "n_train": found.n_episodes["train"], "n_val": found.n_episodes["val"],
                 "n_test": found.n_episodes["test"],
                 **({"skipped_targets": list(found.skipped)} if found.skipped else {})},
        "probe": {"decodability": decodability.config(),
                  "causality": causal.config() if causal_ran else None,
                  "prediction": prediction.config() if found_p is not None else None,
                  "seed": seed},
        "scores": record.summary(found.scores(), causality, causal_ran, reason, predicted,
                                 p_reason),
        "per_layer": found.rows(),
        "per_cell": causal_result.rows() if causal_result is not None else [],
        "per_offset": found_p.rows() if found_p is not None else [],
        "causal": _causal_meta(causal_result),
        "prediction": found_p.meta() if found_p is not None else None,
        "env": environment(str(adapter.device)),
        "timings": {"extract_s": round(found.timings["extract_s"], 3),
                    "probe_s": round(found.timings["probe_s"], 3),
                    "causal_s": round(t_causal, 3), "prediction_s": round(t_pred, 3),
                    "total_s": round(time.perf_counter() - t0, 3)},
    }
    result["run_id"] = record.run_id(result)
    return result


def _causal_meta(found: Any) -> dict[str, Any] | None:
    """How the causal axis was measured: the readout, the pairs, the run-time checks and the
    attributions' integration."""
    if found is None:
        return None
    test = found.test
    attribution = None if found.attribution is None else {
        k: v for k, v in found.attribution.items() if k != "share"}
    return {"readout": found.readout, "pairs_drawn": test.drawn,
            "dropped": test.why_dropped(), "ceiling": found.ceiling(),
            "checks": found.checks, "attribution": attribution,
            "das": {f"{c[0]} {c[1]} {c[2]}": {k: v for k, v in d.items() if k != "basis"}
                    for c, d in found.das.items()} or None}


def environment(device: str) -> dict[str, str]:
    def version(pkg: str) -> str | None:
        try:
            return metadata.version(pkg)
        except metadata.PackageNotFoundError:
            return None

    env = {p: version(p) for p in ("probekit", "torch", "transformers", "captum")}
    env["device"] = device
    env["date"] = dt.datetime.now(dt.UTC).date().isoformat()
    return env
