"""Train the shipped spectrum references (probekit/checkpoints/spectrum/) and, optionally,
evaluate them and draw the spectrum figure.

    python scripts/train_spectrum.py [--tasks boxes,gridworld-5x5,othello-4] [--jobs 2]
    python scripts/train_spectrum.py --skip-training --tasks boxes --results results/spectrum
    python scripts/train_spectrum.py --skip-training --tasks gridworld-5x5 --no-causal \\
        --results results/spectrum --figure docs/spectrum.png

One model per (task, a): the same small causal transformer (d=64, 2 blocks, horizon 1), 1500
steps on 4000 episodes of the task's world drawn with seed 0. Reproducible: same arguments,
same weights (on the same torch build). Finished references are kept; delete one to retrain it.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
from pathlib import Path

TASKS = ("boxes", "gridworld-5x5", "othello-4")
ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0)
SETTINGS = dict(steps=1500, episodes=4000, batch_size=32, lr=3e-3, d_model=64, n_layers=2,
                horizon=1, seed=0)


def name(task: str, alpha: float) -> str:
    return f"spectrum-{task}-a{alpha:g}"


def train(task: str, alpha: float, out: Path) -> str:
    import torch

    from probekit.spectrum import SpectrumTrainer

    torch.set_num_threads(1)  # one run per core
    run = SpectrumTrainer(alpha, progress=False, **SETTINGS).fit(task)
    run.save(out)
    return f"{out.name}: {run.meta_.train_seconds:.0f}s, {run.meta_.final}, {run.collapse_}"


def evaluate(folder: Path, results: Path, causal: bool) -> str:
    import torch

    import probekit
    from probekit.spectrum import checkpoint

    torch.set_num_threads(1)
    _, meta = checkpoint.load(folder)
    report = probekit.evaluate(folder.name, [meta.task], device="cpu", causal=causal,
                               progress=False)
    report.save(results)
    return str(report)


def main() -> None:
    from probekit.spectrum.checkpoint import SHIPPED, is_checkpoint

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", default=",".join(TASKS), help="comma-separated tasks")
    ap.add_argument("--jobs", type=int, default=2, help="runs at a time (one core each)")
    ap.add_argument("--skip-training", action="store_true")
    ap.add_argument("--results", type=Path, default=None,
                    help="evaluate the references of --tasks into this results folder")
    ap.add_argument("--no-causal", action="store_true",
                    help="decodability only (for tasks whose interventions cannot run yet)")
    ap.add_argument("--figure", type=Path, default=None,
                    help="spectrum figure PNG to write from everything in --results")
    args = ap.parse_args()
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    folders = [SHIPPED / name(t, a) for t in tasks for a in ALPHAS]
    with cf.ProcessPoolExecutor(args.jobs) as pool:
        if not args.skip_training:
            todo = {pool.submit(train, t, a, SHIPPED / name(t, a)): name(t, a)
                    for t in tasks for a in ALPHAS if not is_checkpoint(SHIPPED / name(t, a))}
            for done in cf.as_completed(todo):
                print(done.result(), flush=True)
        if args.results:
            for done in cf.as_completed([pool.submit(evaluate, f, args.results,
                                                     not args.no_causal) for f in folders]):
                print(done.result(), flush=True)
    if args.figure:
        from probekit.spectrum.report import markdown, report

        summary, paths = report(args.results, args.figure)
        print(markdown(summary))
        print("wrote", *paths)


if __name__ == "__main__":
    main()
