"""`probekit spectrum train|sweep|list|report|reproduce`: the built-in NTP → JEPA model family."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DEFAULT_ALPHAS = "0,0.25,0.5,0.75,0.9,1"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("spectrum", help="train, sweep, list and report the built-in model family "
                       "from next-token prediction (a=0) to JEPA (a=1)")
    ssub = p.add_subparsers(dest="spectrum_command", metavar="ACTION", required=True)
    train = ssub.add_parser("train", help="train one spectrum model on a task's world")
    train.add_argument("--alpha", type=float, required=True,
                       help="mixing coefficient a in [0, 1]: 0 next-token prediction, 1 JEPA")
    train.add_argument("--seed", type=int, default=0,
                       help="seed of the initial weights, the episodes drawn and their order")
    _training_args(train)
    train.set_defaults(func=cmd_train)
    sweep = ssub.add_parser("sweep", help="train one model per (a, size, seed) into "
                            "OUT/<task>-a<a>[-h<k>[sum]][-d<width>x<blocks>]-s<seed>/ (-h<k>: "
                            "--horizon k, sum: --target summary); a rerun resumes: finished runs "
                            "are verified and kept, unfinished ones retrained; OUT/sweep.csv "
                            "lists every run with its training time")
    sweep.add_argument("--alphas", default=DEFAULT_ALPHAS, help="comma-separated values of a")
    sweep.add_argument("--seeds", type=int, default=3, help="seeds 0 … N-1 per value of a")
    sweep.add_argument("--sizes", default=None, metavar="WxB,…",
                       help="model sizes as width x blocks, e.g. 32x1,64x2,128x4 (default: "
                       "--d-model x --layers, and folder names without the size); each "
                       "block's MLP is twice the width unless --d-ff is given")
    _training_args(sweep)
    sweep.set_defaults(func=cmd_sweep)
    ls = ssub.add_parser("list", help="list the shipped spectrum checkpoints (probekit eval NAME)")
    ls.set_defaults(func=cmd_list)
    rep = ssub.add_parser("report", help="plot decodability, selectivity and IIA against a from "
                          "a folder of results")
    rep.add_argument("results", type=Path, help="results folder (probekit eval --out)")
    rep.add_argument("--out", type=Path, default=None,
                     help="PNG to write (default: RESULTS/spectrum.png); .csv and .md beside it")
    rep.set_defaults(func=cmd_report)
    again = ssub.add_parser("reproduce", help="train a checkpoint again from its recorded "
                            "settings and check its weights (and, with --result, its scores) "
                            "come out identical; exit 1 if not")
    again.add_argument("folder", type=Path, help="spectrum checkpoint folder (spectrum.json)")
    again.add_argument("--result", type=Path, default=None,
                       help="a stored result of this checkpoint (probekit eval's JSON) to "
                            "evaluate again and compare exactly (default: weights only)")
    again.add_argument("--threads", type=int, default=None,
                       help="torch CPU threads (default: torch's choice)")
    again.add_argument("--include-path", action="append", default=[], metavar="DIR",
                       help="another folder of task YAML files (repeatable)")
    again.add_argument("--quiet", action="store_true", help="no progress bar")
    again.set_defaults(func=cmd_reproduce)


def _training_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", required=True, help="task whose world to train on")
    p.add_argument("--out", type=Path, required=True, help="checkpoint folder (sweep: parent)")
    p.add_argument("--horizon", type=int, default=1,
                   help="prediction horizon k: token heads t+1 … t+k, latent target at t+k")
    p.add_argument("--target", default="next", choices=("next", "summary"),
                   help="latent target: the EMA latent at t+k, or the mean over t+1 … t+k")
    p.add_argument("--vicreg", type=float, default=0.0,
                   help="weight of the VICReg variance/covariance anti-collapse term")
    p.add_argument("--inputs", default="tokens", choices=("tokens", "obs", "frames"),
                   help="world tokens, continuous observations (a=1 only: no token head), or "
                        "a frames task's video (a patch encoder; a<1 predicts the next "
                        "step's pixels)")
    p.add_argument("--steps", type=int, default=1500, help="optimiser steps")
    p.add_argument("--batch-size", type=int, default=32, help="episodes per step")
    p.add_argument("--lr", type=float, default=3e-3, help="AdamW learning rate")
    p.add_argument("--episodes", type=int, default=4000, help="training episodes drawn")
    p.add_argument("--d-model", type=int, default=64, help="width of the backbone")
    p.add_argument("--layers", type=int, default=2, help="transformer blocks")
    p.add_argument("--d-ff", type=int, default=None,
                   help="hidden width of each block's MLP (default: 2 × --d-model)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: torch's choice)")
    p.add_argument("--device", default="cpu",
                   help="where to train: cpu, cuda, cuda:N or auto (default: cpu, reproducible "
                        "bit for bit; on a GPU a rerun agrees to float tolerance only)")
    p.add_argument("--include-path", action="append", default=[], metavar="DIR",
                   help="another folder of task YAML files (repeatable)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _trainer(args: argparse.Namespace, alpha: float, seed: int):
    from probekit.spectrum import SpectrumTrainer

    return SpectrumTrainer(alpha, horizon=args.horizon, target=args.target, vicreg=args.vicreg,
                           inputs=args.inputs, d_model=args.d_model, n_layers=args.layers,
                           d_ff=args.d_ff or 2 * args.d_model,
                           steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                           episodes=args.episodes, seed=seed, device=args.device,
                           progress=not args.quiet)


def _fit(args: argparse.Namespace, alpha: float, seed: int, out: Path) -> None:
    import torch

    from probekit.tasks import load_task

    if args.threads:
        torch.set_num_threads(args.threads)
    trainer = _trainer(args, alpha, seed)
    trainer.objective()  # a bad alpha or target fails before the task loads
    trainer.fit(load_task(args.task, args.include_path)).save(out)
    m, c = trainer.meta_, trainer.collapse_
    losses = ", ".join(f"{k} {v:.4f}" for k, v in m.final.items() if k != "total")
    print(f"{out}: {m.family} a={m.alpha:g} seed {seed}, {m.steps} steps in "
          f"{m.train_seconds:.0f}s; {losses}; {c}")
    if c.collapsed:
        print(f"warning: {out.name} collapsed: its latents span {c.effective_rank:.1f} of "
              f"{c.dim} dimensions; raise --vicreg or the EMA momentum")


def cmd_train(args: argparse.Namespace) -> int:
    _fit(args, args.alpha, args.seed, args.out)
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from probekit.adapters.base import resolve_device
    from probekit.errors import UserError
    from probekit.spectrum import Objective

    try:
        alphas = [float(a) for a in args.alphas.split(",") if a.strip()]
    except ValueError:
        raise UserError(f"--alphas must be comma-separated numbers, got {args.alphas!r}") from None
    if not alphas or args.seeds < 1:
        raise UserError("give at least one value of a (--alphas) and one seed (--seeds)")
    sizes = _sizes(args.sizes) if args.sizes else [(args.d_model, args.layers)]
    for a in alphas:
        Objective(a)  # every value checked before the first run
    args.device = resolve_device(args.device).type  # an absent device, before the first run
    runs = []
    for d_model, layers in sizes:
        args.d_model, args.layers = d_model, layers
        for a in alphas:
            for seed in range(args.seeds):
                out = args.out / f"{args.task}-a{a:g}{_variant(args)}" \
                    f"{f'-d{d_model}x{layers}' if args.sizes else ''}-s{seed}"
                status = _resume(args, a, seed, out)
                if status is None:
                    _fit(args, a, seed, out)
                    status = "trained"
                else:
                    print(f"{out}: {status}")
                runs.append(_run_row(out, status))
    _write_sweep(args.out / "sweep.csv", runs)
    hours = {d: sum(r["train_seconds"] for r in runs if r["device"] == d) / 3600
             for d in sorted({r["device"] for r in runs})}
    print(f"{len(runs)} runs ({sum(r['status'] == 'trained' for r in runs)} trained now); "
          + ", ".join(f"{h:.2f} {d.upper() if d != 'cpu' else 'CPU'} hours" for d, h in
                      hours.items())
          + f" of training in all (the recorded train_seconds); wrote {args.out / 'sweep.csv'}")
    return 0


def _variant(args: argparse.Namespace) -> str:
    """The folder-name tag of a non-default objective: "-h4" (horizon 4), "-h4sum" (the mean
    latent over t+1 … t+4), so that variants of one (task, a, size, seed) never share a name."""
    if args.horizon == 1 and args.target == "next":
        return ""
    return f"-h{args.horizon}{'sum' if args.target == 'summary' else ''}"


def _sizes(text: str) -> list[tuple[int, int]]:
    from probekit.errors import UserError

    out = []
    for item in text.split(","):
        try:
            width, blocks = (int(v) for v in item.strip().lower().split("x"))
        except ValueError:
            raise UserError(f"--sizes takes width x blocks, e.g. 32x1,64x2; got {item!r}") \
                from None
        if width < 1 or blocks < 1:
            raise UserError(f"--sizes: width and blocks must be at least 1, got {item!r}")
        out.append((width, blocks))
    return out


def _resume(args: argparse.Namespace, alpha: float, seed: int, out: Path) -> str | None:
    """None: train `out`. Else why it is kept: a whole checkpoint of this very run (loaded, so
    its files agree, and its recorded settings match the sweep's); a folder holding another
    run, or a damaged one, is an error rather than something to overwrite."""
    from probekit.errors import ModelError, UserError
    from probekit.spectrum import checkpoint
    from probekit.tasks import load_task

    if not (out / checkpoint.META).is_file():
        if out.exists() and any(out.iterdir()):
            print(f"{out}: unfinished (no {checkpoint.META}); training it again")
        return None
    try:
        model, meta = checkpoint.load(out)
    except ModelError as e:
        raise ModelError(f"{out} is a damaged checkpoint ({e}); delete it to retrain it") \
            from None
    want = {"alpha": float(alpha), "seed": seed, "steps": args.steps, "horizon": args.horizon,
            "target": args.target, "episodes": args.episodes, "device": args.device,
            "batch_size": args.batch_size, "lr": float(args.lr),
            "task_fingerprint": load_task(args.task, args.include_path).fingerprint}
    have = {k: getattr(meta, k) for k in want}
    have_size = (model.config.d_model, model.config.n_layers, model.config.d_ff,
                 model.config.inputs)
    want_size = (args.d_model, args.layers, args.d_ff or 2 * args.d_model, args.inputs)
    bad = [f"{k} {have[k]!r} (asked {want[k]!r})" for k in want if have[k] != want[k]] + \
        ([f"size/inputs {have_size} (asked {want_size})"] if have_size != want_size else [])
    if bad:
        raise UserError(f"{out} holds another run: {', '.join(bad)}; use another --out or "
                        "delete it")
    return "kept (already trained, verified)"


def run_facts(folder: Path) -> dict:
    """One row of facts about the spectrum run in `folder` (loaded, so checked): task, a,
    family, horizon, target, width, blocks, parameters, seed, steps, training seconds and the
    device they ran on, collapsed (sweep.csv's columns; scripts/spectrum_study.py's training
    table)."""
    from probekit.adapters.base import n_params
    from probekit.spectrum import checkpoint

    model, meta = checkpoint.load(folder)
    return {"folder": folder.name, "task": meta.task, "alpha": meta.alpha,
            "family": meta.family, "horizon": meta.horizon, "target": meta.target,
            "d_model": model.config.d_model, "blocks": model.config.n_layers,
            "params": n_params(model), "seed": meta.seed, "steps": meta.steps,
            "train_seconds": meta.train_seconds, "device": meta.device,
            "collapsed": bool(meta.collapse["collapsed"])}


def _run_row(out: Path, status: str) -> dict:
    return {**run_facts(out), "status": status.split(" ")[0]}


def _write_sweep(path: Path, runs: list[dict]) -> None:
    import polars as pl

    from probekit.io import atomic_path

    with atomic_path(path) as tmp:
        pl.DataFrame(runs).write_csv(tmp)


def cmd_reproduce(args: argparse.Namespace) -> int:
    from probekit import store
    from probekit.errors import UserError
    from probekit.spectrum import checkpoint, reproduce

    if not checkpoint.is_checkpoint(args.folder):
        raise UserError(f"{args.folder} is not a spectrum checkpoint (no {checkpoint.META}); "
                        "give a folder written by probekit spectrum train or sweep")
    _, meta = checkpoint.load(args.folder)
    if args.result is not None:  # read and validated before the training, not after
        task = store.load(args.result)["task"]["name"]
        if task != meta.task:
            raise UserError(f"--result {args.result} is on task {task}, but {args.folder} "
                            f"was trained on {meta.task}")
    meta, diffs = reproduce.retrain(args.folder, args.include_path, progress=not args.quiet,
                                    threads=args.threads)
    what = f"{args.folder}: {meta.family} a={meta.alpha:g} seed {meta.seed}, {meta.steps} steps"
    if diffs:
        print(f"{what}: the rerun's weights differ from the checkpoint's "
              f"({len(diffs)} tensors): " + "; ".join(diffs[:5]), file=sys.stderr)
        return 1
    print(f"{what}: weights reproduced bit for bit")
    if args.result is None:
        return 0
    diffs = reproduce.rescore(args.folder, args.result, args.include_path)
    if diffs:
        print(f"{args.result}: the scores differ: " + "; ".join(diffs), file=sys.stderr)
        return 1
    print(f"{args.result}: evaluated again, scores identical ({', '.join(reproduce.COMPARED)})")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from probekit.spectrum import checkpoint

    table = Table(title="shipped spectrum checkpoints — probekit eval NAME")
    table.add_column("name", no_wrap=True)
    for column in ("task", "family", "a", "inputs", "steps", "probe (twin)", "eff. rank"):
        table.add_column(column)
    for name in checkpoint.shipped():
        model, m = checkpoint.load(checkpoint.SHIPPED / name)
        c = m.collapse
        table.add_row(name, m.task, m.family, f"{m.alpha:g}", model.config.inputs, str(m.steps),
                      f"{c['probe']:.2f} ({c['random_init_probe']:.2f})",
                      f"{c['effective_rank']:.0f}/{c['dim']}" + (" collapsed" if c["collapsed"]
                                                                 else ""))
    Console(width=None if sys.stdout.isatty() else 120).print(table)  # pipes get whole rows
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from probekit.spectrum.report import report

    summary, paths = report(args.results, args.out or args.results / "spectrum.png")
    print(paths[-1].read_text(encoding="utf-8"), end="")  # the table (+ the fits), as written
    if summary["size"].n_unique() < 2:
        print("one model size: nothing separates a from size (train more with --d-model, "
              "--layers)")
    for p in paths:
        print(f"wrote {p}")
    return 0
