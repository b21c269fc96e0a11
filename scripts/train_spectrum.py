"""Train the shipped spectrum references (probekit/checkpoints/spectrum/) and, optionally,
evaluate them and draw the spectrum figure.

    python scripts/train_spectrum.py [--tasks boxes,gridworld-5x5,othello-4] [--jobs 2]
    python scripts/train_spectrum.py --skip-training --tasks boxes --results results/spectrum
    python scripts/train_spectrum.py --seeds 3 --results results/spectrum --figure docs/spectrum.png

One model per (task, a, seed): the same small causal transformer (d=64, 2 blocks, horizon 1),
1500 steps on 4000 episodes of the task's world drawn with the seed. Seed 0 is the shipped
reference; seeds 1 … N-1 go to --runs (not shipped, a few MB each) for the figure's intervals.
Reproducible: same arguments, same weights (on the same torch build). Finished models are kept;
delete one to retrain it. A model whose result for its current revision is in --results is not
evaluated again; results of its other revisions there are removed.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
from pathlib import Path

TASKS = ("boxes", "gridworld-5x5", "othello-4")
ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0)
SETTINGS = dict(steps=1500, episodes=4000, batch_size=32, lr=3e-3, d_model=64, n_layers=2,
                horizon=1)


def name(task: str, alpha: float) -> str:
    return f"spectrum-{task}-a{alpha:g}"


def folder(task: str, alpha: float, seed: int, runs: Path) -> Path:
    """Where the model of (task, a, seed) lives: seed 0 ships with the package."""
    from probekit.spectrum.checkpoint import SHIPPED

    return SHIPPED / name(task, alpha) if seed == 0 else runs / f"{name(task, alpha)}-s{seed}"


def train(task: str, alpha: float, seed: int, out: Path) -> str:
    import torch

    from probekit.spectrum import SpectrumTrainer

    torch.set_num_threads(1)  # one run per core
    run = SpectrumTrainer(alpha, progress=False, seed=seed, **SETTINGS).fit(task)
    run.save(out)
    return f"{out.name}: {run.meta_.train_seconds:.0f}s, {run.meta_.final}, {run.collapse_}"


def evaluate(model: Path, results: Path, causal: bool) -> str:
    """Evaluate one model into `results`, unless its result for this very revision is there;
    results of other revisions of the same model (a retrained reference) are removed first,
    so the figure never averages a stale run in."""
    import shutil

    import torch

    import probekit
    from probekit.adapters import load_model
    from probekit.results import model_dirname
    from probekit.spectrum import checkpoint

    torch.set_num_threads(1)
    _, meta = checkpoint.load(model)
    shipped = model.parent == checkpoint.SHIPPED  # by name, as users evaluate it
    ident = load_model(model.name if shipped else str(model), device="cpu").identity
    home = results / model_dirname(ident.id)
    if (home / ident.revision / f"{meta.task}.json").is_file():
        return f"{ident.id}@{ident.revision}: kept (already evaluated)"
    for stale in home.glob("*/"):
        if stale.name != ident.revision:
            shutil.rmtree(stale)
    report = probekit.evaluate(model.name if shipped else str(model), [meta.task],
                               device="cpu", causal=causal, progress=False)
    report.save(results)
    return str(report)


def main() -> None:
    from probekit.spectrum.checkpoint import is_checkpoint

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", default=",".join(TASKS), help="comma-separated tasks")
    ap.add_argument("--jobs", type=int, default=2, help="runs at a time (one core each)")
    ap.add_argument("--seeds", type=int, default=1, help="seeds 0 … N-1 per (task, a)")
    ap.add_argument("--runs", type=Path, default=Path("runs/spectrum"),
                    help="where the models of seeds 1 … N-1 go")
    ap.add_argument("--skip-training", action="store_true")
    ap.add_argument("--results", type=Path, default=None,
                    help="evaluate the references of --tasks into this results folder")
    ap.add_argument("--no-causal", action="store_true",
                    help="decodability only (for tasks whose interventions cannot run yet)")
    ap.add_argument("--figure", type=Path, default=None,
                    help="spectrum figure PNG to write from everything in --results")
    args = ap.parse_args()
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    runs = [(t, a, s) for s in range(args.seeds) for t in tasks for a in ALPHAS]
    folders = [folder(t, a, s, args.runs) for t, a, s in runs]
    with cf.ProcessPoolExecutor(args.jobs) as pool:
        if not args.skip_training:
            todo = [pool.submit(train, t, a, s, out)
                    for (t, a, s), out in zip(runs, folders) if not is_checkpoint(out)]
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
