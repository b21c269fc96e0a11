"""One exception hierarchy: every message says what is wrong and what would be valid."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class ProbekitError(Exception):
    """Base of every error probekit raises on purpose; the CLI prints it as one line."""

    exit_code = 1


class UserError(ProbekitError):
    """Bad input from the user (a name, a path, a spec, a flag): CLI exit code 2."""

    exit_code = 2


class UnknownNameError(UserError, KeyError):
    """A name that is not registered; the message lists the closest registered names."""

    def __init__(self, kind: str, name: str, known: Iterable[str]):
        known = sorted(known)
        self.kind, self.name, self.known = kind, name, known
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        if close:
            hint = "did you mean " + ", ".join(repr(c) for c in close) + "?"
        elif known:
            shown = ", ".join(known[:12]) + (", …" if len(known) > 12 else "")
            hint = f"known {kind}s: {shown}"
        else:
            hint = f"no {kind}s are registered"
        super().__init__(f"unknown {kind} {name!r}: {hint}")

    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0]


class SpecError(UserError):
    """A task spec that fails validation; the message names the field."""


class ModelError(UserError):
    """A model that cannot be loaded or used as asked (path, weights, tokenizer, layers)."""


class DataError(UserError):
    """Data that cannot be probed (a single-class target, non-finite latents, episodes longer than
    the model reads): the inputs are well formed but this model and task do not fit together, so
    the remedy is a different input (CLI exit code 2)."""


class TooLongError(DataError):
    """Episodes longer than the model reads (its context or position table)."""


class ResultError(UserError):
    """A results file that is malformed or inconsistent."""


class StorageError(ProbekitError):
    """A file that could not be written (disk full, no permission; nothing partial is left
    behind) or a cached file that can no longer be read. A runtime failure: CLI exit code 1."""


class NetworkError(ProbekitError):
    """The network failed (the Hub unreachable, offline mode without a cached copy): a runtime
    failure, CLI exit code 1, reported at once and never retried."""


class ProbekitWarning(UserWarning):
    """Something the user should know that does not stop the run (e.g. a target skipped)."""


class CheckError(ProbekitError):
    """A measurement whose own check failed (e.g. a causal ceiling that does not reproduce the
    source run): a bug in probekit or an adapter, never a finding. CLI exit code 1."""
