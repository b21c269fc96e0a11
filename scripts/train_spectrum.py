"""Train the shipped spectrum references (probekit/checkpoints/spectrum/) and, optionally,
evaluate them and draw the spectrum figure.

    python scripts/train_spectrum.py [--tasks boxes,gridworld-5x5,othello-4] [--jobs 2]
    python scripts/train_spectrum.py --skip-training --tasks boxes --results results/spectrum
    python scripts/train_spectrum.py --seeds 3 --results results/spectrum --figure docs/spectrum.png
    python scripts/train_spectrum.py --side-by-side --jobs 1 --results results/side-by-side

One model per (task, a, seed): the same small causal transformer (d=64, 2 blocks, horizon 1),
1500 steps on 4000 episodes of the task's world drawn with the seed (on a task with frames it
reads the frames through a patch encoder, and a = 0 predicts the next step's pixels). Seed 0
is the shipped reference; seeds 1 … N-1 go to --runs (not shipped, a few MB each) for the
figure's intervals. --side-by-side trains SIDE_BY_SIDE instead (one world seen as text and as
video: bouncing balls as world tokens at a = 0, as frames at a = 0 and a = 1) and, with
--results, prints the README's side-by-side table from every balls-2 / balls-2-frames result
there (evaluate other models, such as a random V-JEPA 2, into it to add their rows).
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
SIDE_BY_SIDE = (("balls-2", 0.0), ("balls-2-frames", 0.0), ("balls-2-frames", 1.0))


def name(task: str, alpha: float) -> str:
    return f"spectrum-{task}-a{alpha:g}"


def folder(task: str, alpha: float, seed: int, runs: Path) -> Path:
    """Where the model of (task, a, seed) lives: seed 0 ships with the package."""
    from probekit.spectrum.checkpoint import SHIPPED

    return SHIPPED / name(task, alpha) if seed == 0 else runs / f"{name(task, alpha)}-s{seed}"


def train(task: str, alpha: float, seed: int, out: Path) -> str:
    import torch

    import probekit
    from probekit.spectrum import SpectrumTrainer

    torch.set_num_threads(1)  # one run per core
    inputs = "frames" if probekit.load_task(task).spec.frames is not None else "tokens"
    run = SpectrumTrainer(alpha, progress=False, seed=seed, inputs=inputs, **SETTINGS).fit(task)
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
    ident = load_model(checkpoint.model_name(model), device="cpu").identity
    home = results / model_dirname(ident.id)
    if (home / ident.revision / f"{meta.task}.json").is_file():
        return f"{ident.id}@{ident.revision}: kept (already evaluated)"
    for stale in home.glob("*/"):
        if stale.name != ident.revision:
            shutil.rmtree(stale)
    report = probekit.evaluate(checkpoint.model_name(model), [meta.task],
                               device="cpu", causal=causal, progress=False)
    report.save(results)
    return str(report)


def positions(result: dict, column: str, layer: str) -> float:
    """Mean late (q4) test R² of the balls' positions (targets x.* and y.*) at `layer`:
    `column` "test" for the model, "random_init" for its twin."""
    values = [row[column] for row in result["per_layer"] if row["layer"] == layer
              and row["depth"] == "q4" and row["target"].split(".")[0] in ("x", "y")]
    return sum(values) / len(values)


def side_by_side_table(results: Path) -> str:
    """The README's side-by-side table: every result in `results` on balls-2 or balls-2-frames,
    each axis with its interval beside the random-init twin's, plus the balls' positions alone
    (the model at its chosen layer; the twin at the layer whose late mean is its headline)."""
    import json

    from probekit.record import layer_mean

    def ci(block: dict, key: str = "ci95") -> str:
        lo, hi = block[key]
        return f"[{lo:.2f}, {hi:.2f}]"

    out = ["| model | task | decodability (late) | random init | positions R² (late) | random "
           "init | selectivity | causal gain | VoE | VoE random init | VoE jump / wall |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    for path in sorted(results.glob("*/*/balls-2*.json")):
        r = json.loads(path.read_text())
        s, task = r["scores"], r["task"]["name"]
        if task not in ("balls-2", "balls-2-frames"):
            continue
        d = s["decodability"]
        twin = next(layer for layer in dict.fromkeys(row["layer"] for row in r["per_layer"])
                    if abs(layer_mean(r["per_layer"], layer, "random_init") - d["random_init"])
                    < 1e-9)
        c, p = s["causality"], s["prediction"]
        causal = (f"{c['gain']:.2f} {ci(c)} (random {c['random_control']:.2f})" if c
                  else f"— ({s['causality_reason']})")
        kinds = "" if p is None else " / ".join(f"{p['by_kind'][k]['voe']:.2f}"
                                               for k in ("jump", "wall") if k in p["by_kind"])
        voe = ((f"{p['voe']:.2f} {ci(p)} ({p['surprise']})", f"{p['random_init']['voe']:.2f}")
               if p else (f"— ({s['prediction_reason']})", "—"))
        out.append(f"| {r['model']['id']} | {task} | {d['value']:.2f} {ci(d)} | "
                   f"{d['random_init']:.2f} | {positions(r, 'test', d['layer']):.2f} | "
                   f"{positions(r, 'random_init', twin):.2f} | {d['selectivity']:.2f} | {causal} | "
                   f"{voe[0]} | {voe[1]} | {kinds or '—'} |")
    return "\n".join(out)


def main() -> None:
    from probekit.spectrum.checkpoint import is_checkpoint

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", default=",".join(TASKS), help="comma-separated tasks")
    ap.add_argument("--jobs", type=int, default=2, help="runs at a time (one core each)")
    ap.add_argument("--seeds", type=int, default=1, help="seeds 0 … N-1 per (task, a)")
    ap.add_argument("--runs", type=Path, default=Path("runs/spectrum"),
                    help="where the models of seeds 1 … N-1 go")
    ap.add_argument("--side-by-side", action="store_true",
                    help="the (task, a) of SIDE_BY_SIDE instead of --tasks × every a")
    ap.add_argument("--skip-training", action="store_true")
    ap.add_argument("--results", type=Path, default=None,
                    help="evaluate the references of --tasks into this results folder")
    ap.add_argument("--no-causal", action="store_true",
                    help="decodability only (for tasks whose interventions cannot run yet)")
    ap.add_argument("--figure", type=Path, default=None,
                    help="spectrum figure PNG to write from everything in --results")
    args = ap.parse_args()
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    pairs = SIDE_BY_SIDE if args.side_by_side else [(t, a) for t in tasks for a in ALPHAS]
    runs = [(t, a, s) for s in range(args.seeds) for t, a in pairs]
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
    if args.side_by_side and args.results:
        print(side_by_side_table(args.results))
    if args.figure:
        from probekit.spectrum.report import markdown, report

        summary, paths = report(args.results, args.figure)
        print(markdown(summary))
        print("wrote", *paths)


if __name__ == "__main__":
    main()
