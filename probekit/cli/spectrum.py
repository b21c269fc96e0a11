"""`probekit spectrum train|sweep|list|report`: the built-in NTP → JEPA model family."""

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
    sweep = ssub.add_parser("sweep", help="train one model per (a, seed) into OUT/<task>-a<a>-s"
                            "<seed>/ (finished ones are kept)")
    sweep.add_argument("--alphas", default=DEFAULT_ALPHAS, help="comma-separated values of a")
    sweep.add_argument("--seeds", type=int, default=3, help="seeds 0 … N-1 per value of a")
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
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: torch's choice)")
    p.add_argument("--include-path", action="append", default=[], metavar="DIR",
                   help="another folder of task YAML files (repeatable)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _trainer(args: argparse.Namespace, alpha: float, seed: int):
    from probekit.spectrum import SpectrumTrainer

    return SpectrumTrainer(alpha, horizon=args.horizon, target=args.target, vicreg=args.vicreg,
                           inputs=args.inputs, d_model=args.d_model, n_layers=args.layers,
                           steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                           episodes=args.episodes, seed=seed, progress=not args.quiet)


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
    from probekit.errors import UserError
    from probekit.spectrum.checkpoint import is_checkpoint

    try:
        alphas = [float(a) for a in args.alphas.split(",") if a.strip()]
    except ValueError:
        raise UserError(f"--alphas must be comma-separated numbers, got {args.alphas!r}") from None
    if not alphas or args.seeds < 1:
        raise UserError("give at least one value of a (--alphas) and one seed (--seeds)")
    from probekit.spectrum import Objective

    for a in alphas:
        Objective(a)  # every value checked before the first run
    for a in alphas:
        for seed in range(args.seeds):
            out = args.out / f"{args.task}-a{a:g}-s{seed}"
            if is_checkpoint(out):
                print(f"{out}: kept (already trained)")
                continue
            _fit(args, a, seed, out)
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
    from probekit.spectrum.report import markdown, report

    summary, paths = report(args.results, args.out or args.results / "spectrum.png")
    print(markdown(summary), end="")
    for p in paths:
        print(f"wrote {p}")
    return 0
