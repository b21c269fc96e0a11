"""`probekit eval MODEL --tasks …`: evaluate a checkpoint and write results."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate a model on tasks and write results JSON",
                       description="Probe a model on each task: decodability (linear probes by "
                                   "layer and depth, a control task, the random-init twin, MDL) "
                                   "and causality (interchange interventions, steering, "
                                   "attributions); write one result JSON per task with its "
                                   "figures, and print the summary. Progress goes to stderr.")
    p.add_argument("model", help="checkpoint folder, shipped checkpoint name (probekit models "
                   "list) or Hub id (org/name)")
    p.add_argument("--tasks", default="boxes", metavar="LIST",
                   help="comma-separated task names (probekit tasks list)")
    p.add_argument("--out", default="results", type=Path, metavar="DIR",
                   help="results folder: <org>__<model>/<revision>/<task>.json with its figures")
    p.add_argument("--limit", type=positive_int, default=None, metavar="N",
                   help="only the first N episodes of each split, for a quick look: the task "
                        "runs as <task>-limit<N>, with a fingerprint and a result file of its "
                        "own, never submitted (default: every episode)")
    p.add_argument("--layers", default=None, metavar="LIST",
                   help="comma-separated layer names (default: every layer)")
    p.add_argument("--revision", default=None, metavar="REV",
                   help="branch, tag or commit of a Hub model (default: main)")
    p.add_argument("--device", default="auto", help="auto (a GPU when there is one), cpu, "
                   "cuda, cuda:1 …")
    p.add_argument("--batch-size", type=batch_size, default=32, metavar="N|auto",
                   help="episodes per forward pass, or auto: as many as fit in free GPU memory "
                        "(32 on the CPU)")
    p.add_argument("--autocast", choices=("bf16", "fp16"), default=None,
                   help="extract under torch.autocast in this dtype (faster on recent GPUs; "
                        "recorded in the result's model dtype and cached apart) (default: off, "
                        "the weights' own dtype)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of everything drawn: pair subsamples, bootstraps, the random-init "
                        "twin, the MDL order")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="no progress bars or phase lines (the results table is still printed)")
    p.add_argument("--no-random-init", action="store_true",
                   help="skip the random-init baseline (not recommended)")
    p.add_argument("--no-causal", action="store_true",
                   help="decodability only: skip interventions, steering and attributions")
    p.add_argument("--no-prediction", action="store_true",
                   help="skip the prediction axis (violation of expectation, legality)")
    p.add_argument("--include-path", action="append", default=[], metavar="DIR",
                   help="another folder of task YAML files (repeatable)")
    p.add_argument("--recursive", action="store_true",
                   help="also read the subfolders of each --include-path")
    p.add_argument("--trust-remote-code", action="store_true",
                   help="allow a Hub model to run its own code (off by default)")
    p.add_argument("--truncate", action="store_true",
                   help="cut episodes longer than the model's context instead of failing")
    d = p.add_argument_group("decodability probes (linear, per layer and target)")
    d.add_argument("--max-iter", type=positive_int, default=300, metavar="N",
                   help="most iterations of each logistic probe's solver (L-BFGS); a probe "
                        "that stops here unconverged is named in a warning")
    d.add_argument("--tol", type=positive_float, default=1e-4, metavar="X",
                   help="convergence tolerance of the logistic probes (the gradient's "
                        "largest entry)")
    c = p.add_argument_group("causal probes (interchange interventions)")
    c.add_argument("--max-pairs", type=positive_int, default=200, metavar="N",
                   help="counterfactual pairs drawn from each of the selection (val) and test "
                        "splits")
    c.add_argument("--featurizers", default="full,probe,random", metavar="LIST",
                   help="what part of a latent is swapped: full, probe (the probes' subspace), "
                        "random (a random subspace of the same rank: the control), das "
                        "(a learned subspace; slower)")
    c.add_argument("--positions", default="diff,read,last,query", metavar="LIST",
                   help="where: diff (tokens that differ), read (the probes' read positions "
                        "from the intervened step on), last (the last step), query")
    c.add_argument("--readout", default="auto", choices=("auto", "token", "legal", "probe"),
                   help="what the patched run is judged by: auto picks token (the answer), "
                        "legal (next-step legality) or probe (a probe on the last layer)")
    c.add_argument("--no-steering", action="store_true", help="skip probe-direction steering")
    c.add_argument("--no-attribution", action="store_true",
                   help="skip integrated-gradients attributions")
    p.set_defaults(func=cmd_eval)


def causal_probe(args: argparse.Namespace):
    """The CausalProbe the options describe (None with --no-causal), validated."""
    from probekit.causal import CausalProbe

    if args.no_causal:
        return None
    split = lambda text: [x.strip() for x in text.split(",")]  # noqa: E731
    probe = CausalProbe(readout=args.readout, featurizers=split(args.featurizers),
                        positions=split(args.positions), max_pairs=args.max_pairs,
                        steering=not args.no_steering, attribution=not args.no_attribution,
                        batch_size=32 if args.batch_size == "auto" else args.batch_size,
                        seed=args.seed, progress=not args.quiet)
    probe.validate()
    return probe


def decodability_probe(args: argparse.Namespace):
    """The DecodabilityProbe the options describe (what evaluate builds by default, with
    --max-iter and --tol)."""
    from probekit.decodability import DecodabilityProbe

    return DecodabilityProbe(max_iter=args.max_iter, tol=args.tol, batch_size=args.batch_size,
                             autocast=args.autocast, seed=args.seed, progress=not args.quiet)


def positive_float(text: str) -> float:
    """A number > 0 (`--tol`)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def positive_int(text: str) -> int:
    """A whole number >= 1 (`--limit`, `--max-pairs`)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: {text!r} (give a whole number)"
                                         ) from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def batch_size(text: str) -> int | str:
    """`auto` or an integer (checked to be positive once parsed)."""
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: {text!r} (give a number of "
                                         "episodes, or auto)") from None


def cmd_eval(args: argparse.Namespace) -> int:
    """Evaluate; under `torchrun` every rank extracts its shards and rank 0 writes results."""
    import sys

    from probekit import distributed, preflight
    from probekit.adapters import load_model
    from probekit.evaluation import evaluate
    from probekit.progress import silenced
    from probekit.tasks import with_subfolders

    include = with_subfolders(args.include_path) if args.recursive else args.include_path
    plan = preflight.check_eval(args.model, args.tasks, layers=args.layers, include=include,
                                out=args.out, batch_size=args.batch_size, seed=args.seed,
                                limit=args.limit, revision=args.revision)
    causal = causal_probe(args)
    with distributed.group(args.device) as device, silenced(args.quiet):
        adapter = load_model(args.model, device=device, trust_remote_code=args.trust_remote_code,
                             truncate=args.truncate, revision=args.revision)
        layers = preflight.check_model(plan, adapter)  # before any latents are extracted
        limited = [t for t in plan.tasks if t.limit is not None]
        if limited and distributed.is_main():  # said once everything is checked
            print(f"probekit: note: --limit {args.limit}: "
                  + ", ".join(f"{t.name} (fingerprint {t.fingerprint})" for t in limited)
                  + f", the first {args.limit} episodes of each split: a quick look, filed "
                    "apart from the full task and never submitted", file=sys.stderr)
        report = evaluate(adapter, plan.task_names, layers=layers, device=device,
                          batch_size=args.batch_size, autocast=args.autocast, seed=args.seed,
                          include=include, random_init=not args.no_random_init,
                          decodability=decodability_probe(args),
                          causal=causal if causal is not None else False,
                          prediction=not args.no_prediction,
                          trust_remote_code=args.trust_remote_code, truncate=args.truncate,
                          limit=args.limit, progress=not args.quiet)
        if not distributed.is_main():
            return 0
    paths = report.save(args.out)
    print(report)
    for p in paths:
        print(f"wrote {p}")
    return 0
