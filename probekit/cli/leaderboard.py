"""`probekit leaderboard build`: the leaderboard table and static page from a results store."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("leaderboard", help="build the leaderboard from a results store",
                       description="Leaderboard commands.")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    b = actions.add_parser(
        "build", help="write leaderboard.parquet and a self-contained index.html",
        description="Read every result in the store (results/<org>__<model>/<revision>/"
                    "<task>.json) into one row per model; write leaderboard.parquet and an "
                    "index.html that works offline (a static Hub Space serves it as is). Only "
                    "probekit.result/2 results are ranked; superseded probekit.result/1 results "
                    "are listed apart, unranked. Both files are written, or neither.")
    b.add_argument("--store", type=Path, default=None, metavar="DIR",
                   help="store folder (default: $PROBEKIT_STORE, else store/ in the probekit "
                        "cache, ~/.cache/probekit/store; the folder used is printed)")
    b.add_argument("--out", type=Path, default=Path("site"), metavar="DIR",
                   help="output folder (default: site)")
    b.set_defaults(func=cmd_build)


def cmd_build(args: argparse.Namespace) -> int:
    from probekit import leaderboard, store
    from probekit.cli.submit import store_origin

    root = args.store or store.default_root()
    if args.store is None:
        print(f"reading {store_origin()}, {root} (pass --store DIR to read another)",
              flush=True)
    for path in leaderboard.build(root, args.out):
        print(f"wrote {path}")
    return 0
