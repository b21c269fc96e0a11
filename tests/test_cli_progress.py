"""Progress (issue 15): every phase shows what remains and ends with one summary line that stays;
logs (stderr not a terminal) get plain lines, never carriage returns; `--quiet` and
`evaluate(progress=False)` silence it all."""

from __future__ import annotations

import io
import time

import pytest

from probekit import progress
from probekit.progress import Phase, phase, silenced


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def test_log_gets_one_summary_line_and_no_carriage_return():
    out = io.StringIO()
    with Phase("extract", "m boxes/train", total=300, unit="ep", stream=out) as p:
        for _ in range(3):
            p.update(100)
        p.summary = "300 ep × 5 layers"
    text = out.getvalue()
    assert "\r" not in text
    (line,) = lines(text)
    assert line.startswith("[extract] m boxes/train: 300 ep × 5 layers in ") and \
        line.endswith("s"), line


def test_log_gets_periodic_lines_while_one_step_runs(monkeypatch):
    monkeypatch.setenv("PROBEKIT_PROGRESS_S", "0.3")
    out = io.StringIO()
    with Phase("probes", "boxes", total=120, unit="probes", stream=out) as p:
        p.update(40)
        time.sleep(1.2)  # one long step with no update: the clock still speaks
        p.update(80)
    got = lines(out.getvalue())
    running = [x for x in got if "so far" in x]
    assert running, got
    assert running[0].startswith("[probes] boxes: 40/120 probes (33%), ") and "left" in \
        running[0], running[0]
    assert got[-1].startswith("[probes] boxes: 120 probes in "), got
    assert "\r" not in out.getvalue()


def test_terminal_gets_a_bar_then_a_summary_that_stays():
    out = Terminal()
    with Phase("causal", "boxes test pairs", total=64, unit="pairs", stream=out) as p:
        for _ in range(4):
            p.update(16)
        p.summary = "64 pairs × 28 cells"
    text = out.getvalue()
    assert "\r" in text and "[causal] boxes test pairs" in text  # the bar ran
    last = text.replace("\r", "\n").splitlines()[-1]
    assert last.startswith("[causal] boxes test pairs: 64 pairs × 28 cells in "), repr(text)


def test_silenced_and_show_false_print_nothing():
    out = io.StringIO()
    with silenced():
        assert not progress.enabled()
        with Phase("data", "boxes/train", total=3, stream=out) as p:
            p.update(3)
        progress.note("extract", "m boxes/val", "cached")
    with Phase("data", "boxes/val", total=3, stream=out, show=False) as p:
        p.update(3)
    assert progress.enabled()
    assert out.getvalue() == ""


def test_a_failed_phase_leaves_no_summary():
    out = io.StringIO()
    with pytest.raises(RuntimeError):
        with Phase("probes", "boxes", total=10, stream=out) as p:
            p.update(5)
            raise RuntimeError("boom")
    assert out.getvalue() == ""
    out = io.StringIO()
    p = Phase("probes", "boxes", stream=out)
    with pytest.raises(RuntimeError):
        for i in p.wrap(range(3)):
            if i == 1:
                raise RuntimeError("boom")
    assert out.getvalue() == ""


def test_honours_progress_silences_what_it_runs(capsys):
    @progress.honours_progress
    def work(progress: bool = True) -> None:
        with phase("data", "x", total=1) as p:
            p.update()

    work(progress=False)
    assert capsys.readouterr().err == ""
    work()
    assert "[data] x: 1 it in " in capsys.readouterr().err
