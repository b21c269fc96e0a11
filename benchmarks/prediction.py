"""What the prediction axis adds to `probekit eval` on the quickstart.

Runs `probekit eval boxes-gpt2-tiny --tasks boxes` (every axis, default settings, one torch
thread) twice in fresh processes — with the prediction axis and with `--no-prediction` — each
from the same generated task data and an empty latents cache (so both extract as a first run
does), and prints the wall times, the result's own `timings.prediction_s` and the overhead
(the goal: at most 20 %). `--quick` uses the 300/100/100-episode variant of the task and
skips the causal axis (a smoke run; its ratio overstates the full run's, whose causal step is
long).

    python benchmarks/prediction.py [--quick] [--repeats N]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GOAL = 0.20


def run(args: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "probekit", *args], env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode:
        sys.exit(f"probekit {' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="a small boxes variant, no causal axis (a smoke run)")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each variant")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="probekit-bench-prediction-"))
    env = dict(os.environ, OMP_NUM_THREADS="1", PROBEKIT_CACHE=str(root / "cache"),
               HF_HOME=str(root / "hf"), HF_HUB_OFFLINE="1")
    task = ["--tasks", "boxes"]
    if args.quick:
        import yaml

        from probekit.tasks import load_task

        spec = yaml.safe_load(Path(load_task("boxes").path).read_text())
        spec.update(name="boxes-bench", splits={"train": {"size": 300, "seed": 1},
                                                "val": {"size": 100, "seed": 2},
                                                "test": {"size": 100, "seed": 3}})
        (root / "tasks").mkdir()
        (root / "tasks" / "boxes-bench.yaml").write_text(yaml.safe_dump(spec))
        task = ["--tasks", "boxes-bench", "--include-path", str(root / "tasks"), "--no-causal"]
    base = ["eval", "boxes-gpt2-tiny", *task, "--device", "cpu"]
    try:
        # generate the task data once (both variants read the same cached data)
        run(["eval", "boxes-gpt2-tiny", *task, "--device", "cpu", "--no-causal",
             "--no-prediction", "--no-random-init", "--layers", "embed",
             "--out", str(root / "warm")], env)
        times: dict[str, list[float]] = {"with": [], "without": []}
        step: list[float] = []
        for i in range(args.repeats):
            for variant in ("without", "with"):
                shutil.rmtree(root / "cache" / "latents", ignore_errors=True)
                out = root / f"out-{variant}-{i}"
                flags = [] if variant == "with" else ["--no-prediction"]
                times[variant].append(run([*base, *flags, "--out", str(out)], env))
                if variant == "with":
                    (path,) = out.rglob("*.json")
                    step.append(json.loads(path.read_text())["timings"]["prediction_s"])
        without, with_ = min(times["without"]), min(times["with"])
        print(f"probekit eval boxes-gpt2-tiny{' (quick)' if args.quick else ''}: "
              f"{without:.1f} s without prediction, {with_:.1f} s with "
              f"(the prediction step itself: {min(step):.1f} s, model and random-init twin)")
        overhead = (with_ - without) / without
        by_step = min(step) / without
        print(f"overhead: {overhead:+.1%} wall ({by_step:.1%} by the step's own timing); "
              f"goal at most {GOAL:.0%}: {'met' if max(overhead, by_step) <= GOAL else 'NOT met'}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
