"""`--help` of every command: every option and argument has help, and every option with a
default shows it (issue 15)."""

from __future__ import annotations

import argparse

import pytest

from probekit.cli import build_parser, main, parsers, shows_default

SKIP = (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)


def commands() -> list[tuple[str, argparse.ArgumentParser]]:
    return [(p.prog, p) for p in parsers(build_parser())]


def test_there_are_commands_to_check():
    progs = {prog for prog, _ in commands()}
    for expected in ("probekit eval", "probekit models list", "probekit results list",
                     "probekit results show", "probekit submit", "probekit tasks show",
                     "probekit data export", "probekit spectrum train",
                     "probekit leaderboard build"):
        assert expected in progs, sorted(progs)


@pytest.mark.parametrize("prog, parser", commands(), ids=[c[0] for c in commands()])
def test_every_option_has_help_and_shows_its_default(prog, parser):
    text = " ".join(parser.format_help().split())  # argparse wraps lines
    for action in parser._actions:
        if isinstance(action, SKIP):
            continue
        name = action.option_strings[-1] if action.option_strings else action.dest
        assert action.help and action.help.strip(), f"{prog} {name} has no help"
        if action.option_strings and shows_default(action):
            shown = " ".join(parser._get_formatter()._expand_help(action).split())
            if "default" not in action.help:  # added by probekit.cli.HelpFormatter
                assert shown.endswith(f"(default: {action.default})"), f"{prog} {name}: {shown}"
            assert "default" in shown and shown in text, f"{prog} {name}: {shown!r}"

def test_eval_help_names_the_defaults_a_newcomer_needs(capsys):
    assert main(["eval", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    for needle in ("(default: boxes)", "(default: results)", "--seed SEED seed of everything",
                   "(default: 0)", "--limit N", "--revision REV", "-q, --quiet",
                   "--max-pairs N", "(default: 200)"):
        assert needle in text, needle


def test_flags_and_unset_options_show_no_default():
    parser = argparse.ArgumentParser()
    flag = parser.add_argument("--x", action="store_true", help="a flag")
    unset = parser.add_argument("--y", default=None, help="optional")
    zero = parser.add_argument("--z", type=int, default=0, help="a number")
    assert not shows_default(flag) and not shows_default(unset) and shows_default(zero)
