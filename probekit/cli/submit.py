"""`probekit submit RESULT.json…`: validate results and file them in a store or a Hub PR."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from probekit.cli.tasks import add_include, include_paths


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "submit", help="validate results and file them in a leaderboard store (or a Hub PR)",
        description="Validate every result, then file all of them: in a local store "
                    "(results/<org>__<model>/<revision>/<task>.json), or with --repo as one "
                    "pull request on a Hub dataset repo with the same layout. Nothing is "
                    "written unless every file is valid.")
    p.add_argument("results", nargs="+", metavar="RESULT",
                   help="result JSON files, or folders searched for *.json")
    p.add_argument("--store", type=Path, default=None, metavar="DIR",
                   help="local store folder (default: $PROBEKIT_STORE, else store/ in the "
                        "probekit cache, ~/.cache/probekit/store; the folder used is printed)")
    p.add_argument("--repo", default=None, metavar="ORG/NAME",
                   help="publish to this Hub dataset repo as a pull request instead")
    p.add_argument("--model-pr", action="store_true",
                   help="with --repo: also open an .eval_results/ pull request on each model repo")
    p.add_argument("--endpoint", default=None, metavar="URL",
                   help="Hub endpoint (default: $HF_ENDPOINT, else huggingface.co)")
    p.add_argument("--dry-run", action="store_true",
                   help="print what would be written or committed, and change nothing")
    p.add_argument("--replace", action="store_true",
                   help="file a run over a different stored run of the same model and task")
    p.add_argument("--allow-unregistered", action="store_true",
                   help="accept results for tasks not registered here (fingerprint unchecked)")
    add_include(p)
    p.set_defaults(func=cmd_submit)


def store_origin() -> str:
    """Where the default store comes from, in words."""
    if os.environ.get("PROBEKIT_STORE"):
        return "the store set by PROBEKIT_STORE"
    return "the default store in the probekit cache"


def without_limited(given: list[str], paths: list[Path], include: list,
                    dry_run: bool = False) -> list[Path]:
    """`paths` less the results of limited runs (`eval --limit`), which are never filed: one
    named on the command line is refused; those found in a folder are skipped, each with a
    line, and a folder that holds nothing else is refused."""
    from probekit.cli.results import limited
    from probekit.errors import ResultError, UserError
    from probekit.store import load

    named = {Path(p).resolve() for p in given if Path(p).is_file()}
    keep = []
    for path in paths:
        n = limited(load(path), include)
        if n is None:
            keep.append(path)
        elif path.resolve() in named:
            raise ResultError(f"{path}: a limited run (eval --limit {n}: {n} episodes per "
                              "split) is a quick look and is never filed; evaluate without "
                              "--limit to submit")
        else:
            print(f"{'would skip' if dry_run else 'skip'} {path}: a limited run (eval --limit "
                  f"{n}), never filed", flush=True)
    if not keep:
        raise UserError(f"nothing to file: {', '.join(given)} holds only limited runs (eval "
                        "--limit); evaluate without --limit to submit")
    return keep


def cmd_submit(args: argparse.Namespace) -> int:
    from probekit import hub, store
    from probekit.errors import UserError

    if args.repo is None and (args.model_pr or args.endpoint):
        raise UserError("--model-pr and --endpoint publish to the Hub; add --repo ORG/NAME")
    if args.repo is not None and args.store is not None:
        raise UserError("--store and --repo are alternatives: file locally or open a Hub PR")
    local = None
    if args.repo is None:  # a store that cannot be one fails before any result is read
        local = store.Store(args.store or store.default_root()).check(write=not args.dry_run)
    paths = without_limited(args.results, store.expand(args.results), include_paths(args),
                            args.dry_run)
    results = store.read(paths, include_paths(args), args.allow_unregistered)
    if local is None:
        hub.publish(results, args.repo, endpoint=args.endpoint, model_prs=args.model_pr,
                    dry_run=args.dry_run)
        return 0

    if args.store is None:  # say where before anything is filed
        print(f"{'would file' if args.dry_run else 'filing'} into {store_origin()}, "
              f"{local.root} (pass --store DIR to file elsewhere)", flush=True)

    def echo(f: store.Filing) -> None:
        verb = {"new": "add", "same": "keep (same run)", "replace": "replace"}[f.action]
        print(f"{'would ' if args.dry_run else ''}{verb} {local.root / f.path}", flush=True)

    _, written = local.submit(results, replace=args.replace, dry_run=args.dry_run, echo=echo)
    if not args.dry_run:
        print(f"filed {len(written)} result(s) in {local.root}")
    return 0
