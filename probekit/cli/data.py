"""`probekit data export|cards|push`: a task's data as Parquet with its dataset card, on disk or
on the Hub."""

from __future__ import annotations

import argparse
import sys

from probekit.cli.tasks import add_include, include_paths


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="export, document and publish task data")
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    ex = dsub.add_parser("export", help="write a task's splits as Parquet plus its dataset card")
    ex.add_argument("task", help="a registered task (probekit tasks list)")
    ex.add_argument("--out", required=True, metavar="DIR",
                    help="a new or empty folder (written atomically)")
    ex.add_argument("-q", "--quiet", action="store_true",
                    help="no progress bar or phase lines")
    ex.add_argument("--limit", type=int, default=None, metavar="N",
                    help="only the first N episodes of each split (a task of its own, named "
                         "<task>-limit<N>, as with `eval --limit`)")
    add_include(ex)
    ex.set_defaults(func=cmd_export)

    cards = dsub.add_parser("cards", help="write (or check) the dataset card of every task")
    cards.add_argument("--out", default="datacards", metavar="DIR",
                       help="folder of <task>.md cards (default: datacards)")
    cards.add_argument("--task", action="append", default=None, metavar="NAME",
                       help="only this task (repeatable; default: every registered task)")
    cards.add_argument("--check", action="store_true",
                       help="write nothing; exit 1 if a card is missing, stale or orphaned")
    add_include(cards)
    cards.set_defaults(func=cmd_cards)

    push = dsub.add_parser("push", help="upload a task's export to a Hub dataset repo in one "
                                        "commit")
    push.add_argument("task", help="a registered task (probekit tasks list)")
    push.add_argument("--repo", required=True, metavar="ORG/NAME", help="Hub dataset repo id")
    push.add_argument("--endpoint", default=None, metavar="URL",
                      help="Hub endpoint (default: huggingface_hub's, i.e. HF_ENDPOINT)")
    push.add_argument("--private", action="store_true", help="create the repo private")
    push.add_argument("--create-pr", action="store_true",
                      help="open a pull request instead of committing to main")
    add_include(push)
    push.set_defaults(func=cmd_push)


def cmd_export(args: argparse.Namespace) -> int:
    from probekit.data import check_export_folder, export
    from probekit.progress import silenced
    from probekit.tasks import load_task

    check_export_folder(args.out)  # the folder first, then the task and its size bounds
    task = load_task(args.task, include_paths(args)).limited(args.limit)
    task.check_size()
    with silenced(args.quiet):
        out = export(task, args.out)
    print(f"exported {task.name} v{task.version} ({task.fingerprint}) to {out}")
    return 0


def cmd_cards(args: argparse.Namespace) -> int:
    from probekit.data import stale_cards, write_cards
    from probekit.io import check_output_dir
    from probekit.tasks import load_task

    include = include_paths(args)
    if not args.check:
        check_output_dir(args.out, "--out")
    if args.task:
        for name in args.task:  # unknown names fail before anything is written
            load_task(name, include).check_size()
    if args.check:
        problems = stale_cards(args.out, args.task, include)
        for line in problems:
            print(line, file=sys.stderr)
        return 1 if problems else 0
    for path in write_cards(args.out, args.task, include):
        print(f"wrote {path}")
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    from probekit.data import push
    from probekit.hub import check_repo_id
    from probekit.tasks import load_task

    check_repo_id(args.repo)
    task = load_task(args.task, include_paths(args))
    task.check_size()
    info = push(task, args.repo, endpoint=args.endpoint, private=args.private,
                create_pr=args.create_pr)
    where = info.pr_url if args.create_pr else info.commit_url
    print(f"pushed {task.name} v{task.version} ({task.fingerprint}) to {args.repo}: {where}")
    return 0
