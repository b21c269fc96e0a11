"""The results store: `results/<org>__<model>/<revision>/<task>.json` under one folder.

The local store is the embedded default; a Hub dataset repo holds the same layout. Results are
filed only after every one of them validated, so a bad file never leaves a store half-updated.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from probekit import results as layout
from probekit import schema
from probekit.errors import ResultError, UserError
from probekit.tasks import cache_root

RESULTS = "results"


def default_root() -> Path:
    """`PROBEKIT_STORE`, else `store/` in the probekit cache."""
    return Path(os.environ.get("PROBEKIT_STORE") or cache_root() / "store")


def path_in_store(result: dict[str, Any]) -> PurePosixPath:
    """`results/<org>__<model>/<revision>/<task>.json`, the same locally and on the Hub."""
    return PurePosixPath(RESULTS, *layout.relative_path(result).parts)


def encode(result: dict[str, Any]) -> bytes:
    """The bytes of a stored result (what `probekit.io.write_json` writes)."""
    return (json.dumps(result, indent=2, allow_nan=False) + "\n").encode()


def expand(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Result files named on a command line: files as given, folders searched for `*.json`."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.rglob("*.json")
                           if not any(part.startswith(".") for part in f.relative_to(p).parts))
            if not found:
                raise UserError(f"folder {str(p)!r} holds no *.json result files")
            out += found
        elif p.is_file():
            out.append(p)
        else:
            raise UserError(f"result file {str(p)!r} does not exist")
    return out


def read(paths: Sequence[str | os.PathLike], include: Iterable[str | os.PathLike] = (),
         allow_unregistered: bool = False) -> list[dict[str, Any]]:
    """Load and validate every file (schema, identity, consistency, registered task), failing on
    the first bad one before anything is written anywhere."""
    include = list(include)
    loaded = []
    for path in paths:
        result = schema.load(path)
        schema.check_task(result, include, allow_unregistered, where=str(path))
        loaded.append(result)
    _check_batch(loaded, [str(p) for p in paths])
    return loaded


def _check_batch(results: list[dict[str, Any]], names: list[str]) -> None:
    """Within one submission: one result per store path, one fingerprint per task version."""
    seen: dict[PurePosixPath, str] = {}
    for result, name in zip(results, names):
        path = path_in_store(result)
        if path in seen:
            raise ResultError(f"{name} and {seen[path]} both file as {path}; submit one result "
                              "per model, revision and task")
        seen[path] = name
    check_fingerprints(results)


def check_fingerprints(results: Iterable[dict[str, Any]]) -> None:
    """One task version means one fingerprint: results made from different data are never
    ranked together."""
    known: dict[tuple[str, int], str] = {}
    for r in results:
        key, fp = (r["task"]["name"], r["task"]["version"]), r["task"]["fingerprint"]
        if known.setdefault(key, fp) != fp:
            raise ResultError(f"task {key[0]} v{key[1]} has results with fingerprints "
                              f"{known[key]!r} and {fp!r}; results on different data are never "
                              "ranked together: bump the task version when its data changes")


@dataclass(frozen=True)
class Filing:
    """One result and what filing it does: `new` file, `same` run already there, or `replace`."""

    result: dict[str, Any]
    path: PurePosixPath
    action: Literal["new", "same", "replace"]


class Store:
    """A local results store rooted at a folder."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"Store({str(self.root)!r})"

    def files(self) -> list[Path]:
        """Every result file in the store, in path order."""
        base = self.root / RESULTS
        if not base.is_dir():
            return []
        return sorted(p for p in base.rglob("*.json") if not p.name.startswith("."))

    def results(self) -> list[dict[str, Any]]:
        """Every stored result, validated (the store may hold tasks not registered here)."""
        return [schema.load(p) for p in self.files()]

    def plan(self, results: Sequence[dict[str, Any]], replace: bool = False) -> list[Filing]:
        """What `add` would do; refuses a different run over a stored one unless `replace`,
        and a task fingerprint that differs from the store's for the same task version."""
        stored = {path_in_store(r): r for r in self.results()}
        incoming = {path_in_store(r): r for r in results}
        check_fingerprints({**stored, **incoming}.values())
        filings = []
        for path, result in incoming.items():
            old = stored.get(path)
            if old is None:
                action = "new"
            elif old["run_id"] == result["run_id"]:
                action = "same"
            elif replace:
                action = "replace"
            else:
                raise ResultError(f"{self.root / path} already holds run {old['run_id']} of this "
                                  f"model and task; run {result['run_id']} differs (seeds, probe "
                                  "or package versions): pass --replace to file it instead")
            filings.append(Filing(result, path, action))
        return filings

    def add(self, filings: Iterable[Filing]) -> list[Path]:
        """Write the planned results (atomically, one file each); returns the paths written."""
        written = []
        for f in filings:
            if f.action != "same":
                written.append(layout.save(f.result, self.root / RESULTS))
        return written
