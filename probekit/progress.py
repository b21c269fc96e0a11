"""Progress of every phase of a run, on stderr: data generation, extraction, probe fitting,
causal cells, DAS, attributions.

Each phase is a `Phase`: in a terminal, a tqdm bar that says what remains while it runs; when
it ends, one summary line that stays (`[extract] boxes-gpt2-tiny boxes/train: 2,000 ep × 5
layers in 8.1s`). When stderr is not a terminal (a log file, a pipe, CI), there is no bar and no
carriage return: a plain line every `INTERVAL_S` seconds while a long phase runs, then the same
summary line. `silenced()` turns all of it off for the code it wraps (`probekit eval --quiet`,
`probekit.evaluate(progress=False)`); a phase created with `show=False` is silent too.

    with phase("extract", "boxes/train", total=2000, unit="ep") as p:
        for batch in batches:
            ...
            p.update(len(batch))
        p.summary = "2,000 ep × 5 layers"   # optional: what the final line says was done
"""

from __future__ import annotations

import contextvars
import functools
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TextIO, TypeVar

T = TypeVar("T")

#: Seconds between plain progress lines when stderr is not a terminal (PROBEKIT_PROGRESS_S
#: overrides it).
INTERVAL_S = 30.0

_ENABLED: contextvars.ContextVar[bool] = contextvars.ContextVar("probekit_progress",
                                                                default=True)


def enabled() -> bool:
    """Whether progress is shown here (False inside `silenced()`)."""
    return _ENABLED.get()


@contextmanager
def silenced(quiet: bool = True) -> Iterator[None]:
    """No progress output from the code inside (when `quiet`; a no-op otherwise)."""
    token = _ENABLED.set(False) if quiet else None
    try:
        yield
    finally:
        if token is not None:
            _ENABLED.reset(token)


def honours_progress(fn: Callable[..., T]) -> Callable[..., T]:
    """Decorate a function with a `progress` keyword: with `progress=False`, everything it runs
    is `silenced()`, phases it does not reach by argument (data generation) included."""

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> T:
        with silenced(kwargs.get("progress", True) is False):
            return fn(*args, **kwargs)

    return run


def interval() -> float:
    try:
        return max(0.0, float(os.environ.get("PROBEKIT_PROGRESS_S", INTERVAL_S)))
    except ValueError:
        return INTERVAL_S


def seconds(s: float) -> str:
    """`0.4s`, `12.3s`, `2m05s`, `1h02m`."""
    if s < 60:
        return f"{s:.1f}s"
    if s < 3600:
        return f"{int(s // 60)}m{int(s % 60):02d}s"
    return f"{int(s // 3600)}h{int(s % 3600 // 60):02d}m"


def count(n: float, unit: str = "") -> str:
    text = f"{int(n):,}" if float(n).is_integer() else f"{n:,.1f}"
    return f"{text} {unit}".rstrip()


class Phase:
    """One phase of a run (see the module docstring). `kind` is the phase's short name
    (`data`, `extract`, `probes`, `causal`, `das`, `attribution`), `what` says on what; `total`
    is the amount of work in `unit`s (None when unknown). `summary`, when set before the phase
    ends, replaces the default account of what was done in the final line."""

    def __init__(self, kind: str, what: str, total: float | None = None, unit: str = "it", *,
                 show: bool = True, stream: TextIO | None = None):
        self.kind, self.what, self.total, self.unit = kind, what, total, unit
        self.show = show and enabled()
        self.stream = stream if stream is not None else sys.stderr
        self.done = 0.0
        self.summary: str | None = None
        self.t0 = self._last = time.monotonic()
        self._bar: Any = None
        self._closed = False
        self._stop = threading.Event()
        self._lock = threading.Lock()  # the clock's lines never follow the summary
        if self.show and _isatty(self.stream):
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, desc=f"[{kind}] {what}", unit=unit, leave=False,
                             file=self.stream, dynamic_ncols=True)
        if self.show:  # the clock keeps running while one long step computes
            threading.Thread(target=self._beat, daemon=True,
                             name=f"probekit-progress-{kind}").start()

    def _beat(self) -> None:
        """Refresh the bar's clock every second (terminal), or print the running line every
        `interval()` seconds that passed without one (log)."""
        while not self._stop.wait(1.0 if self._bar is not None else 0.25):
            with self._lock:
                if self._closed:
                    return
                if self._bar is not None:
                    self._bar.refresh()
                    continue
                now = time.monotonic()
                if now - self._last >= interval():
                    self._last = now
                    self._line(self._running(now))

    # --- progress ------------------------------------------------------------------------

    def update(self, n: float = 1) -> None:
        self.done += n
        if self._bar is not None:
            with self._lock:
                if not self._closed:
                    self._bar.update(n)

    def set_total(self, total: float | None) -> None:
        self.total = total
        if self._bar is not None:
            self._bar.total = total
            self._bar.refresh()

    def _running(self, now: float) -> str:
        """`120/360 probes (33%), 45.0s so far, about 1m30s left`."""
        took = now - self.t0
        if not self.total:
            return f"{count(self.done, self.unit)} so far, {seconds(took)}"
        share = self.done / self.total
        text = (f"{count(self.done)}/{count(self.total, self.unit)} ({share:.0%}), "
                f"{seconds(took)} so far")
        if 0 < share < 1:
            text += f", about {seconds(took * (1 - share) / share)} left"
        return text

    def wrap(self, items: Any) -> Iterator[Any]:
        """Iterate over `items` inside the phase, which ends with them (no update: the caller
        counts the work)."""
        ok = False
        try:
            yield from items
            ok = True
        finally:
            self.close(failed=not ok)

    # --- the end -------------------------------------------------------------------------

    def close(self, failed: bool = False) -> None:
        """End the phase: clear the bar and print the summary line (nothing on failure: the
        error says what happened)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._stop.set()
        if self._bar is not None:
            self._bar.close()
        if self.show and not failed:
            took = seconds(time.monotonic() - self.t0)
            done = self.summary if self.summary is not None else count(self.done, self.unit)
            self._line(f"{done} in {took}")

    def _line(self, text: str) -> None:
        line = f"[{self.kind}] {self.what}: {text}"
        if self._bar is not None or _bars_open():
            from tqdm.auto import tqdm

            tqdm.write(line, file=self.stream)  # above any bar still running
        else:
            print(line, file=self.stream, flush=True)

    def __enter__(self) -> Phase:
        return self

    def __exit__(self, kind: Any, *_: Any) -> None:
        self.close(failed=kind is not None)


def phase(kind: str, what: str, total: float | None = None, unit: str = "it", *,
          show: bool = True) -> Phase:
    """A `Phase` on stderr (see its docstring); use it as a context manager."""
    return Phase(kind, what, total, unit, show=show)


def note(kind: str, what: str, text: str, *, show: bool = True) -> None:
    """One line for a phase that had nothing to do (e.g. latents already cached)."""
    if show and enabled():
        Phase(kind, what, show=False)._line(text)  # never opens a bar


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _bars_open() -> bool:
    from tqdm import tqdm

    return bool(getattr(tqdm, "_instances", None))
