"""The full causal step on the quickstart, and DAS for one cell.

`CausalProbe()` with its defaults (every reachable cell × diff/read/last/query × layer/onward ×
full/probe/random, 200 pairs on the selection and the test split, ceiling and Captum checks,
steering, attributions) on the shipped `boxes-gpt2-tiny`, one torch thread; then DAS trained for
one cell (block.1 × last, ranks 1–8 chosen on validation pairs). With `--baseline DIR` the same
step of another probekit checkout (for instance the commit before the causal axis was rebuilt,
`git worktree add /tmp/old c06585b`) runs in a subprocess on the same machine, and the ratio is
printed (the goal: at most 3× that step).

    python benchmarks/causal.py [--baseline /tmp/old] [--quick]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

BASELINE = """
import time, torch
torch.set_num_threads(1)
from probekit.adapters import load_model
from probekit.tasks import load_task
from probekit.causal import CausalProbe
a, t = load_model("boxes-gpt2-tiny", device="cpu"), load_task("boxes")
CausalProbe(max_pairs=4, steering=False, attribution=False).run(a, t, ["block.0"])
t0 = time.perf_counter()
CausalProbe(max_pairs={pairs}).run(a, t, None)
print(time.perf_counter() - t0)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default=None, help="another probekit checkout to compare")
    parser.add_argument("--quick", action="store_true", help="50 pairs instead of 200")
    args = parser.parse_args()
    pairs = 50 if args.quick else 200

    import torch

    torch.set_num_threads(1)
    from probekit.adapters import load_model
    from probekit.causal import CausalProbe
    from probekit.tasks import load_task

    a, task = load_model("boxes-gpt2-tiny", device="cpu"), load_task("boxes")
    CausalProbe(max_pairs=4, positions=["diff"], featurizers=["full"], steering=False,
                attribution=False).run(a, task, ["block.0"])  # data and latents cached
    t0 = time.perf_counter()
    result = CausalProbe(max_pairs=pairs).run(a, task)
    step = time.perf_counter() - t0
    cells = sum(1 for r in result.rows() if r["reachable"] and r["featurizer"] != "steer")
    print(f"causal step, {pairs} pairs, {cells} scored cell × featurizer rows: {step:.1f} s")
    t0 = time.perf_counter()
    das = CausalProbe(max_pairs=pairs, positions=["last"], scopes=["layer"],
                      featurizers=["das"], steering=False, attribution=False)
    out = das.run(a, task, ["block.1"])
    das_s = time.perf_counter() - t0
    info = next(iter(out.das.values()))
    print(f"DAS for one cell (block.1 × last): {das_s:.1f} s (goal ≤ 120 s); rank "
          f"{info['rank']}, {info['steps']} steps, val IIA {info['val_iia']:.3f}")
    if args.baseline:
        env = {**os.environ, "PYTHONPATH": args.baseline, "OMP_NUM_THREADS": "1"}
        proc = subprocess.run([sys.executable, "-c", BASELINE.format(pairs=pairs)],
                              capture_output=True, text=True, cwd=args.baseline, env=env)
        if proc.returncode:
            sys.exit(f"the baseline failed: {proc.stderr.strip().splitlines()[-1]}")
        old = float(proc.stdout.strip().splitlines()[-1])
        print(f"baseline causal step ({args.baseline}): {old:.1f} s; this one is "
              f"{step / old:.2f}× its time (goal ≤ 3×)")


if __name__ == "__main__":
    main()
