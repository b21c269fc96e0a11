"""Rerun a spectrum checkpoint from what it records, and check that the run comes out the same.

`retrain` reads the folder's `spectrum.json` (objective, seed, steps, data) and `config.json`
(the architecture), trains the same run again and compares every weight bit for bit. `rescore`
evaluates the checkpoint again with the default settings (what `probekit eval` and the study
use) and compares a stored result's identity, spec, scores and tables exactly. Both return the
differences found (empty: the run reproduces).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from probekit.errors import UserError
from probekit.spectrum import checkpoint

# What a reproduced result must match exactly: everything but when, where and how fast it ran.
COMPARED = ("run_id", "model", "task", "probe", "scores", "per_layer", "per_cell", "per_offset",
            "causal", "prediction")


def retrain(folder: str | Path, include: Iterable[str | Path] = (), progress: bool = False,
            threads: int | None = None) -> tuple[checkpoint.SpectrumMeta, list[str]]:
    """Train `folder`'s run again from its records; the recorded meta and the weights that
    differ ("name: max |Δ| …"). Refused before training when the task has changed since."""
    from probekit.spectrum.train import SpectrumTrainer
    from probekit.tasks import load_task

    model, meta = checkpoint.load(folder)
    task = load_task(meta.task, include)
    if task.fingerprint != meta.task_fingerprint:
        raise UserError(f"{folder} was trained on task {meta.task} with fingerprint "
                        f"{meta.task_fingerprint}; the task registered here is now "
                        f"{task.fingerprint}, so its data differ and the run cannot be "
                        "reproduced (check out the probekit version that trained it)")
    if meta.device != "cpu" and not _available(meta.device):
        raise UserError(f"{folder} was trained on {meta.device}, and this machine has none; "
                        f"reproduce it where {meta.device} is available")
    c = model.config
    trainer = SpectrumTrainer(meta.alpha, horizon=meta.horizon, target=meta.target,
                              vicreg=meta.vicreg, ema=(meta.ema[0], meta.ema[1]),
                              inputs=c.inputs, d_model=c.d_model, n_layers=c.n_layers,
                              n_heads=c.n_heads, d_ff=c.d_ff, steps=meta.steps,
                              batch_size=meta.batch_size, lr=meta.lr,
                              weight_decay=meta.weight_decay, episodes=meta.episodes,
                              seed=meta.seed, device=meta.device, progress=progress)
    if threads:
        torch.set_num_threads(threads)
    again = trainer.fit(task).model_
    return meta, _weight_differences(model.state_dict(), again.state_dict())


def _available(device: str) -> bool:
    from probekit.adapters.base import resolve_device

    try:
        resolve_device(device)
    except UserError:
        return False
    return True


def _weight_differences(have: dict[str, torch.Tensor], again: dict[str, torch.Tensor]
                        ) -> list[str]:
    out = [f"{k}: only in {'the checkpoint' if k in have else 'the rerun'}"
           for k in sorted(set(have) ^ set(again))]
    for k in sorted(set(have) & set(again)):
        a, b = have[k], again[k]
        if a.shape != b.shape:
            out.append(f"{k}: shape {tuple(a.shape)} vs {tuple(b.shape)}")
        elif not torch.equal(a, b):
            out.append(f"{k}: max |Δ| {(a.float() - b.float()).abs().max().item():.3g}")
    return out


def rescore(folder: str | Path, result: str | Path, include: Iterable[str | Path] = ()
            ) -> list[str]:
    """Evaluate `folder` again on the task of the stored `result` with the default settings
    (what `probekit eval` and the study use; a result made with other settings shows as
    "probe differs") and list every compared field that differs."""
    import probekit
    from probekit import store

    stored = store.load(result)  # size and nesting bounded, validated
    report = probekit.evaluate(checkpoint.model_name(folder), [stored["task"]["name"]],
                               device="cpu", progress=False, include=list(include))
    fresh = json.loads(json.dumps(report.results[0]))
    return [f"{k} differs" + _first_difference(stored.get(k), fresh.get(k))
            for k in COMPARED if stored.get(k) != fresh.get(k)]


def _first_difference(a: Any, b: Any, where: str = "") -> str:
    """Where two JSON values first differ, e.g. ": at .decodability.value: 0.61 vs 0.62"."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            if a.get(k) != b.get(k):
                return _first_difference(a.get(k), b.get(k), f"{where}.{k}")
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            if x != y:
                return _first_difference(x, y, f"{where}[{i}]")
    return f": at {where or 'the top'}: {str(a)[:60]} vs {str(b)[:60]}"
