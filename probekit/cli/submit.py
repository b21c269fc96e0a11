"""`probekit submit RESULT.json…`: validate results and file them in a store or a Hub PR."""

from __future__ import annotations

import argparse
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
                   help="local store folder (default: $PROBEKIT_STORE, else the probekit cache)")
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
    results = store.read(store.expand(args.results), include_paths(args),
                         args.allow_unregistered)
    if local is None:
        hub.publish(results, args.repo, endpoint=args.endpoint, model_prs=args.model_pr,
                    dry_run=args.dry_run)
        return 0

    def echo(f: store.Filing) -> None:
        verb = {"new": "add", "same": "keep (same run)", "replace": "replace"}[f.action]
        print(f"{'would ' if args.dry_run else ''}{verb} {local.root / f.path}", flush=True)

    _, written = local.submit(results, replace=args.replace, dry_run=args.dry_run, echo=echo)
    if not args.dry_run:
        print(f"filed {len(written)} result(s) in {local.root}")
    return 0
