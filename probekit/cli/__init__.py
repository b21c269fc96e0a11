"""The `probekit` command. Every module in this package that defines `register(subparsers)`
adds its own subcommand, so a new command is a new file."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

from probekit import __version__
from probekit.errors import ProbekitError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="probekit",
        description="Probe world models: decodability and causality of latent world state.")
    parser.add_argument("--version", action="version", version=f"probekit {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "register"):
            module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 2 bad input, 1 runtime failure)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse prints its own one-line error
        return int(e.code or 0)
    try:
        return int(args.func(args) or 0)
    except ProbekitError as e:
        if args.debug:
            raise
        print(f"probekit: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("probekit: interrupted; finished work is cached and will be reused",
              file=sys.stderr)
        return 130


def entry() -> None:
    sys.exit(main())
