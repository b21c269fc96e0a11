"""Wall time of `probekit eval`, phase by phase: the quickstart cold and warm, and othello-6.

Each run is a fresh `python -m probekit eval …` process (imports, model loading and the report
included, as a user sees them). Three cache states:

- cold: an empty `PROBEKIT_CACHE` (data generated, latents extracted, probes fitted);
- warm latents: data and latents cached, the probe cache emptied (every probe fitted again);
- warm: data, latents and fitted probes cached (`probekit.decodability.cache`).

The phase lines probekit prints ("[probes] … in 12.3s") are collected; what they do not cover
(imports, loading the model and the data, the report and its figures) is printed as
"outside the phases". First, the floor under any run: a fresh process that only imports
probekit, torch and transformers' model class (the best of three). The machine is shared: the
load average is printed beside each run, and the run's CPU seconds (user + system over every
thread), which other work slows far less than the wall time.

    python benchmarks/eval.py                      # the quickstart: cold, warm latents, warm
    python benchmarks/eval.py --models othello     # othello6-gpt2 on othello-6 (many minutes)
    python benchmarks/eval.py --states warm        # only some cache states
    python benchmarks/eval.py --cache DIR          # keep the cache in DIR (and reuse it)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PHASE = re.compile(r"^\[(\w+)\] (.*) in (?:(\d+)m)?([\d.]+)s$")
STATES = ("cold", "warm-latents", "warm")
MODELS = {"quickstart": ("boxes-gpt2-tiny", "boxes"), "othello": ("othello6-gpt2", "othello-6")}


def seconds(minutes: str | None, secs: str) -> float:
    return 60 * int(minutes or 0) + float(secs)


def run(model: str, task: str, cache: Path, out: Path
        ) -> tuple[float, float, list[tuple[str, float]]]:
    """Wall seconds of one eval, its CPU seconds (user + system, every thread), and its phase
    lines (name + what, seconds)."""
    env = {**os.environ, "PROBEKIT_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "probekit", "eval", model, "--tasks", task,
                           "--out", str(out)], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if done.returncode:
        sys.exit(f"probekit eval {model} failed:\n{done.stderr[-2000:]}")
    phases = []
    for line in done.stderr.splitlines():
        m = PHASE.match(line.strip())
        if m:
            phases.append((f"{m.group(1)} {m.group(2)[:70]}", seconds(m.group(3), m.group(4))))
    return wall, cpu, phases


def import_floor(model: str, repeat: int = 3) -> float:
    """Seconds a fresh process takes to import probekit (its thread settings), torch and the
    model's transformers class, and nothing else (the best of `repeat`): no evaluation of that
    model can be faster."""
    from probekit.adapters import CHECKPOINTS

    config = json.loads((CHECKPOINTS / model / "config.json").read_text())
    code = ("import probekit, torch, transformers; "
            f"getattr(transformers, {config['architectures'][0]!r})")
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        best = min(best, time.perf_counter() - start)
    return best


def report(label: str, wall: float, cpu: float, phases: list[tuple[str, float]]) -> None:
    load = os.getloadavg()[0]
    print(f"\n{label}: {wall:.1f} s wall, {cpu:.1f} CPU s (load average {load:.1f} on "
          f"{os.cpu_count()} CPUs)")
    by_kind: dict[str, float] = {}
    for name, s in phases:
        by_kind[name.split()[0]] = by_kind.get(name.split()[0], 0.0) + s
        print(f"  {s:7.1f} s  {name}")
    inside = sum(by_kind.values())
    print("  " + ", ".join(f"{k} {v:.1f} s" for k, v in by_kind.items())
          + f"; outside the phases (imports, loading, the report) {wall - inside:.1f} s")


def bench(model: str, task: str, states: list[str], keep: Path | None) -> None:
    with tempfile.TemporaryDirectory() as folder:
        cache = keep or Path(folder) / "cache"
        out = Path(folder) / "results"
        if "cold" in states:
            shutil.rmtree(cache, ignore_errors=True)
        elif not (cache / "latents").exists():  # warm states need the latents: a cold run first
            run(model, task, cache, out)
        for state in STATES:
            if state not in states:
                continue
            if state == "warm-latents":
                shutil.rmtree(cache / "probes", ignore_errors=True)
            wall, cpu, phases = run(model, task, cache, out)
            report(f"{model} on {task}, {state}", wall, cpu, phases)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--states", default=",".join(STATES),
                        help=f"comma-separated cache states among {', '.join(STATES)}")
    parser.add_argument("--models", default="quickstart",
                        help=f"comma-separated, among {', '.join(MODELS)} (othello: many "
                             "minutes)")
    parser.add_argument("--cache", type=Path, default=None,
                        help="a cache folder to use and keep (default: a temporary one)")
    args = parser.parse_args()
    states = [s.strip() for s in args.states.split(",")]
    models = [m.strip() for m in args.models.split(",")]
    for given, valid, what in ((states, STATES, "cache state"), (models, MODELS, "model")):
        unknown = [g for g in given if g not in valid]
        if unknown:
            sys.exit(f"unknown {what} {unknown[0]!r}; choose among {', '.join(valid)}")
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs; each run a fresh process")
    for name in models:
        model, task = MODELS[name]
        print(f"\n{model}: importing probekit, torch and its transformers class alone takes "
              f"{import_floor(model):.1f} s (best of 3 fresh processes)")
        bench(model, task, states, args.cache)


if __name__ == "__main__":
    main()
