"""The spectrum × scale study: train and evaluate every cell of the grid, resumably.

    python scripts/spectrum_study.py [--jobs 2] [--runs runs/study] [--results runs/study/results]

The grid, per world (boxes, gridworld-5x5, othello-4), three seeds each:

- a ∈ {0, 0.25, 0.5, 0.75, 1} (horizon 1, next-latent target) at four sizes (width x blocks,
  MLP twice the width): 8x2, 24x2 and 64x2 along width, and 24x4 along depth. The 64x2 cells
  are the shipped references (seed 0) and `scripts/train_spectrum.py --seeds 3` (seeds 1-2 in
  runs/spectrum): the same settings, so they are not trained again here;
- at a = 0.5 and every size, two variants: multi-token prediction (horizon 4: token heads for
  t+1 … t+4, latent target at t+4) and the future summary (horizon 4, the mean latent over
  t+1 … t+4).

Each group of runs is one `probekit spectrum sweep` (1500 steps, 4000 episodes, one core), so
a rerun of this script resumes: finished checkpoints are verified and kept, unfinished ones are
trained again, and `<runs>/<group>/sweep.csv` records every run's training time. Every model is
then evaluated (`probekit eval` on every axis, one core) into --results unless its result for
that very revision is there. Then:

    probekit submit runs/study/results --store study      # the committed store
    probekit spectrum report study/results --out docs/study   # the analysis
    probekit leaderboard build --store study --out docs/leaderboard
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from train_spectrum import evaluate, folder  # noqa: E402

WORLDS = ("boxes", "gridworld-5x5", "othello-4")
ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0)
SIZES = ("8x2", "24x2", "24x4", "64x2")
REFERENCE_SIZE = "64x2"  # trained by scripts/train_spectrum.py
VARIANTS = {"next": [], "h4": ["--horizon", "4"],
            "h4sum": ["--horizon", "4", "--target", "summary"]}
SEEDS = 3


def groups() -> list[tuple[str, str, str, str]]:
    """(world, variant, size, alphas) of every sweep to run, the longest first."""
    out = []
    for variant in ("h4", "h4sum"):
        out += [(w, variant, REFERENCE_SIZE, "0.5") for w in WORLDS]
    for size in ("24x4", "24x2", "8x2"):
        out += [(w, "next", size, ",".join(f"{a:g}" for a in ALPHAS)) for w in WORLDS]
        for variant in ("h4", "h4sum"):
            out += [(w, variant, size, "0.5") for w in WORLDS]
    return out


def sweep(world: str, variant: str, size: str, alphas: str, runs: Path, results: Path,
          device: str = "cpu") -> str:
    out = runs / f"{world}-{variant}-{size}"
    start = time.time()
    cmd = [sys.executable, "-m", "probekit", "spectrum", "sweep", "--task", world, "--sizes",
           size, "--alphas", alphas, "--seeds", str(SEEDS), "--out", str(out), "--threads", "1",
           "--device", device, "--quiet", *VARIANTS[variant]]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        return f"{out.name}: sweep failed: {done.stderr.strip()[-500:]}"
    models = sorted(p.parent for p in out.glob("*/spectrum.json"))
    kept, failed = 0, []
    for m in models:  # one model's failure is reported, and the others still run
        try:
            kept += "kept (already evaluated)" in evaluate(m, results, causal=True)
        except Exception as e:  # noqa: BLE001
            failed.append(f"{m.name}: {type(e).__name__}: {e}")
    return (f"{out.name}: {len(models)} models, {len(models) - kept - len(failed)} evaluated "
            f"now ({time.time() - start:.0f}s)" + "".join(f"\n  FAILED {f}" for f in failed))


def references(runs: Path, results: Path) -> list[str]:
    """Evaluate the 64x2 horizon-1 cells (shipped seed 0, seeds 1-2 from train_spectrum.py)."""
    lines = []
    for world in WORLDS:
        for a in ALPHAS:
            for seed in range(SEEDS):
                model = folder(world, a, seed, runs)
                if not (model / "spectrum.json").is_file():
                    sys.exit(f"{model} is missing: run python scripts/train_spectrum.py "
                             f"--tasks {world} --seeds {SEEDS} first")
                lines.append(evaluate(model, results, causal=True))
    return lines


def model_folders(runs: Path, references: Path) -> list[Path]:
    """Every model of the grid: the sweeps' checkpoints, then the 64x2 references."""
    folders = sorted(p.parent for p in runs.glob("*/*/spectrum.json"))
    return folders + [folder(w, a, s, references) for w in WORLDS for a in ALPHAS
                      for s in range(SEEDS)]


def record_shapes(folders: list[Path], results: list[Path]) -> int:
    """Results made before probekit recorded a model's shape (`model.width`, `model.depth`)
    gain it from their checkpoint; returns how many changed. The model block is replaced by the
    one a fresh evaluation writes (the checkpoint's identity), and only where that identity,
    less the shape, is the stored block itself (same id, revision, sha256, parameters): the
    very checkpoint that was evaluated. Nothing else changes; the run id does not cover the
    shape. Each result is validated before it is written."""
    import json

    from probekit import schema
    from probekit.adapters import load_model
    from probekit.io import write_json
    from probekit.spectrum import checkpoint

    identities = {}
    for f in folders:
        ident = load_model(checkpoint.model_name(f), device="cpu").identity.as_dict()
        identities[ident["id"]] = ident
    changed = 0
    for path in sorted(p for root in results for p in root.rglob("*.json")):
        r = json.loads(path.read_text(encoding="utf-8"))
        if r["model"].get("width") is not None and r["model"].get("depth") is not None:
            continue
        ident = identities.get(r["model"]["id"])
        if ident is None:
            sys.exit(f"{path}: no checkpoint of {r['model']['id']} among the grid's models")
        rest = {k: v for k, v in ident.items() if k not in ("width", "depth")}
        if rest != r["model"]:
            sys.exit(f"{path}: its model block {r['model']} is not the checkpoint's {rest}")
        r["model"] = ident
        schema.validate(r, where=str(path))
        write_json(path, r)
        changed += 1
    return changed


def training_table(runs: Path, references: Path) -> list[dict]:
    """One row per model of the grid: its cell and the training seconds its spectrum.json
    records (on one core)."""
    from probekit.cli.spectrum import run_facts

    rows = []
    for f in model_folders(runs, references):
        r = run_facts(f)
        rows.append({"model": r["folder"], **{k: r[k] for k in ("task", "alpha", "family",
                                                                 "horizon", "target")},
                     "size": f"{r['d_model']}x{r['blocks']}",
                     **{k: r[k] for k in ("params", "seed", "steps", "train_seconds")}})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=2, help="runs at a time (one core each)")
    ap.add_argument("--device", default="cpu",
                    help="where the sweeps train (probekit spectrum sweep --device): cpu, or "
                         "cuda for larger sizes; a sweep already trained on another device is "
                         "refused, so give such a run its own --runs")
    ap.add_argument("--runs", type=Path, default=Path("runs/study"))
    ap.add_argument("--references", type=Path, default=Path("runs/spectrum"),
                    help="seeds 1-2 of the 64x2 references (scripts/train_spectrum.py --runs)")
    ap.add_argument("--results", type=Path, default=Path("runs/study/results"))
    ap.add_argument("--store", type=Path, default=Path("study"),
                    help="the store every result is filed in at the end (probekit submit), with "
                         "training.csv: each model's cell and training seconds")
    ap.add_argument("--seed-results", type=Path, default=None,
                    help="a folder of results already made for these models (copied first)")
    args = ap.parse_args()
    os.environ["OMP_NUM_THREADS"] = "1"
    args.results.mkdir(parents=True, exist_ok=True)
    if args.seed_results:
        shutil.copytree(args.seed_results, args.results, dirs_exist_ok=True)
    todo = groups()
    with cf.ProcessPoolExecutor(args.jobs) as pool:
        futures = [pool.submit(sweep, *g, args.runs, args.results, args.device) for g in todo]
        futures.append(pool.submit(references, args.references, args.results))
        for i, f in enumerate(cf.as_completed(futures), 1):
            r = f.result()
            print(f"[{i}/{len(futures)}] " + (r if isinstance(r, str) else
                                               f"references: {len(r)} kept or evaluated"),
                  flush=True)
    shaped = record_shapes(model_folders(args.runs, args.references),
                           [args.results, args.store / "results"])
    if shaped:
        print(f"recorded the shape of {shaped} results made before probekit recorded it")
    subprocess.run([sys.executable, "-m", "probekit", "submit", str(args.results), "--store",
                    str(args.store)], check=True, stdout=subprocess.DEVNULL)
    import polars as pl

    table = pl.DataFrame(training_table(args.runs, args.references))
    table.write_csv(args.store / "training.csv")
    print(f"filed {table.height} models' results in {args.store}; {args.store}/training.csv: "
          f"{table['train_seconds'].sum() / 3600:.1f} CPU hours of training")


if __name__ == "__main__":
    main()
