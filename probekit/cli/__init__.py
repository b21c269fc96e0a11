"""The `probekit` command. Every module in this package that defines `register(subparsers)`
adds its own subcommand, so a new command is a new file."""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
import warnings
from collections.abc import Sequence
from typing import NoReturn

from probekit import __version__
from probekit.errors import ProbekitError, UserError


class Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one-line UserErrors (exit 2) instead of usage + exit."""

    def error(self, message: str) -> NoReturn:
        message = message.replace("\r", "\\r").replace("\n", "\\n")  # one line, always
        raise UserError(f"{message} (see `{self.prog} --help`)")


class HelpFormatter(argparse.HelpFormatter):
    """Every option's help ends with its default, unless the help already names it (flags and
    options without a default say nothing)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if "default" in text or not action.option_strings or not shows_default(action):
            return text
        return text + " (default: %(default)s)"


def shows_default(action: argparse.Action) -> bool:
    """Whether an option has a default worth printing: not a flag, not None, not empty."""
    d = action.default
    return not (d is None or d is False or d is True or d is argparse.SUPPRESS or d == []
                or action.nargs == 0)


def parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """`parser` and every subcommand's parser below it."""
    out = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):  # aliases once
                out += parsers(sub)
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="probekit",
        description="Probe world models: decodability and causality of latent world state. "
                    "Start with `probekit eval boxes-gpt2-tiny --tasks boxes --limit 200`, then "
                    "`probekit results list`.")
    parser.add_argument("--version", action="version", version=f"probekit {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "register"):
            module.register(sub)
    for p in parsers(parser):
        p.formatter_class = HelpFormatter
    return parser


def one_line_warning(message: Warning | str, category: type[Warning], *_: object,
                     **__: object) -> str:
    """Warnings as `probekit: warning: …` lines, without the source line under them."""
    return f"probekit: warning: {message}\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code: 0 ok, 2 bad input (UserError), 1 runtime failure.

    Every failure prints one line on stderr; `--debug` raises instead, with the traceback. An
    exception probekit did not anticipate is a runtime failure too (one line naming its type)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    warnings.formatwarning = one_line_warning
    debug = "--debug" in argv  # known before parsing, so usage errors honour it too
    try:
        args = build_parser().parse_args(argv)
        return int(args.func(args) or 0)
    except SystemExit as e:  # --help and --version
        return int(e.code or 0)
    except BrokenPipeError:  # `probekit results list | head`: the reader has what it wanted
        sys.stdout = open(os.devnull, "w")
        return 0
    except KeyboardInterrupt:
        print("probekit: interrupted; nothing half-written was kept (whatever was finished "
              "and cached is reused by the next run)", file=sys.stderr)
        return 130
    except ProbekitError as e:
        if debug:
            raise
        fail(str(e))
        return e.exit_code
    except OSError as e:  # the environment failed: a file, the disk, the network
        if debug:
            raise
        fail(f"{type(e).__name__}: {e}")
        return 1
    except Exception as e:
        if debug:
            raise
        fail(f"unexpected {type(e).__name__}: {e} (rerun with --debug for the traceback, and "
             "please report it)")
        return 1


def fail(message: str) -> None:
    """Print `message` as the one error line."""
    print("probekit: error: " + " ".join(message.split()), file=sys.stderr)


def entry() -> None:
    sys.exit(main())
