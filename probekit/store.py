"""The results store: `results/<org>__<model>/<revision>/<task>.json` under one folder.

The local store is the embedded default; a Hub dataset repo holds the same layout. Results are
filed only after every one of them validated, so a bad file never leaves a store half-updated.

No filed result is ever lost: one writer at a time holds the store's lock (`<root>/.lock`,
`fcntl.flock`, released by the kernel if the holder dies; others wait up to
`LOCK_TIMEOUT_S`), every write is a compare-and-swap against what the plan saw (a new file is
linked into place only if nothing is there; a replaced file must still hold the bytes that
were planned over), and a batch that fails half-way is rolled back. Store paths map one-to-one
to (model id, revision, task) (`probekit.results`), and a stored file must sit at its own
path, so `--replace` can only ever replace the same model's result.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from probekit import results as layout
from probekit import schema
from probekit.errors import ResultError, StorageError, UserError
from probekit.io import (
    MAX_JSON_BYTES,
    atomic_path,
    blocking_file,
    decode_text,
    os_error_text,
    parse_json,
    read_bytes,
)
from probekit.tasks import cache_root

RESULTS = "results"
LOCK_FILE = ".lock"
LOCK_TIMEOUT_S = 60.0  # filing takes well under a second; a minute means a stuck writer
_POLL_S = 0.005


def default_root() -> Path:
    """`PROBEKIT_STORE`, else `store/` in the probekit cache."""
    return Path(os.environ.get("PROBEKIT_STORE") or cache_root() / "store")


def path_in_store(result: dict[str, Any]) -> PurePosixPath:
    """`results/<org>__<model>/<revision>/<task>.json`, the same locally and on the Hub."""
    return PurePosixPath(RESULTS, *layout.relative_path(result).parts)


def encode(result: dict[str, Any]) -> bytes:
    """The bytes of a stored result (what `probekit.io.write_json` writes)."""
    return (json.dumps(result, indent=2, allow_nan=False) + "\n").encode()


_VALIDATED: set[str] = set()  # sha256 of result files that passed validation in this process
_CACHE_SIZE = 65536


def load(path: str | os.PathLike) -> dict[str, Any]:
    """Read and validate one result file, its size checked before it is read
    (`probekit.io.MAX_JSON_BYTES`) and its nesting bounded (`MAX_JSON_DEPTH`)."""
    return load_bytes(read_bytes(path, MAX_JSON_BYTES, "MAX_JSON_BYTES", ResultError), str(path))


def load_bytes(data: bytes, where: str) -> dict[str, Any]:
    """Parse and validate the bytes of one result file. Validation depends on the bytes only,
    so bytes that passed once in this process (kept by their sha256) are only parsed again."""
    digest = hashlib.sha256(data).hexdigest()
    text = decode_text(data, where, ResultError)
    result = parse_json(text, where, ResultError)
    if digest not in _VALIDATED:
        schema.validate(result, where)
        if len(_VALIDATED) >= _CACHE_SIZE:
            _VALIDATED.clear()
        _VALIDATED.add(digest)
    return result


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
        elif p.exists():
            raise UserError(f"result file {str(p)!r} is not a regular file")
        else:
            raise UserError(f"result file {str(p)!r} does not exist")
    return out


def read(paths: Sequence[str | os.PathLike], include: Iterable[str | os.PathLike] = (),
         allow_unregistered: bool = False) -> list[dict[str, Any]]:
    """Load and validate every file (schema, identity, consistency, registered task), failing on
    the first bad one before anything is written anywhere."""
    include = list(include)
    loaded: list[dict[str, Any]] = []
    tasks: dict[str, Any] = {}
    for path in paths:
        result = load(path)
        schema.check_task(result, include, allow_unregistered, where=str(path), loaded=tasks)
        loaded.append(result)
    _check_batch(loaded, [str(p) for p in paths])
    return loaded


def _check_batch(results: list[dict[str, Any]], names: list[str]) -> None:
    """Within one submission: one result per store path, one fingerprint per task version."""
    seen: dict[PurePosixPath, str] = {}
    folded: dict[str, PurePosixPath] = {}
    for result, name in zip(results, names):
        path = path_in_store(result)
        if path in seen:
            raise ResultError(f"{name} and {seen[path]} both file as {path}; submit one result "
                              "per model, revision and task")
        other = folded.setdefault(str(path).casefold(), path)
        if other != path:
            raise ResultError(_case_clash(path, other))
        seen[path] = name
    check_fingerprints(results)


def _case_clash(path: PurePosixPath, other: PurePosixPath) -> str:
    return (f"{path} and {other} differ only in upper and lower case, so a case-insensitive "
            "file system (macOS, Windows) would keep one file for both; file the model under "
            "one spelling of its id")


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


def _digest(data: bytes | None) -> str | None:
    return None if data is None else hashlib.sha256(data).hexdigest()


def _read_bytes(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise StorageError(f"cannot read {str(path)!r}: {os_error_text(e, path)}") from None


@dataclass(frozen=True)
class Filing:
    """One result and what filing it does: `new` file, `same` run already there, or `replace`.
    `expected` is the sha256 of the file the plan saw at `path` (None: no file), which the
    write compares against."""

    result: dict[str, Any]
    path: PurePosixPath
    action: Literal["new", "same", "replace"]
    expected: str | None = None


# Locks held by this process: (store root, thread) → depth, so that `add` inside `submit`
# (or inside a caller's `with store.lock()`) does not wait for itself.
_held: dict[tuple[str, int], tuple[int, Any]] = {}
_held_guard = threading.Lock()


class Store:
    """A local results store rooted at a folder."""

    def __init__(self, root: str | os.PathLike, lock_timeout: float | None = None):
        self.root = Path(root)
        self.lock_timeout = lock_timeout  # None: LOCK_TIMEOUT_S

    def __repr__(self) -> str:
        return f"Store({str(self.root)!r})"

    # --- checks ---------------------------------------------------------------------------

    def check(self, write: bool = True) -> Store:
        """Refuse a root that cannot be a store before anything is planned or printed: a file
        (UserError, exit 2), or a folder this user cannot write (StorageError, exit 1)."""
        for path in (self.root, self.root / RESULTS):
            if path.exists() and not path.is_dir():
                raise UserError(f"store {str(self.root)!r}: {str(path)!r} is a file, not a "
                                "folder; pass --store DIR (or set PROBEKIT_STORE) to a folder")
        block = blocking_file(self.root)
        if block is not None:
            raise UserError(f"store {str(self.root)!r} cannot be created: {str(block)!r} is a "
                            "file, not a folder; pass --store DIR (or set PROBEKIT_STORE) to a "
                            "folder")
        if write:
            from probekit.io import check_writable

            check_writable(self.root, "to store")
        return self

    # --- reading --------------------------------------------------------------------------

    def files(self) -> list[Path]:
        """Every result file in the store, in path order."""
        base = self.root / RESULTS
        if not base.is_dir():
            return []
        return sorted(p for p in base.rglob("*.json")
                      if not any(part.startswith(".") for part in p.relative_to(base).parts))

    def _stored(self) -> dict[PurePosixPath, tuple[dict[str, Any], bytes]]:
        """Every stored result with its bytes, by store path; a file that is not at its own
        path (copied or moved by hand) is refused, so results are never mixed."""
        out = {}
        for file in self.files():
            try:
                data = read_bytes(file, MAX_JSON_BYTES, "MAX_JSON_BYTES", ResultError)
            except ResultError:
                if not file.exists():  # deleted meanwhile
                    continue
                raise
            result = load_bytes(data, str(file))
            path = path_in_store(result)
            if self.root / path != file:
                model = result["model"]["id"]
                raise ResultError(f"{file} holds the result of {model}@"
                                  f"{result['model'].get('revision')} on "
                                  f"{result['task']['name']}, whose place is {self.root / path};"
                                  " a store keeps each result at its own path: move or delete "
                                  "that file")
            out[path] = (result, data)
        return out

    def results(self) -> list[dict[str, Any]]:
        """Every stored result, validated (the store may hold tasks not registered here)."""
        return [r for r, _ in self._stored().values()]

    # --- filing ---------------------------------------------------------------------------

    def plan(self, results: Sequence[dict[str, Any]], replace: bool = False) -> list[Filing]:
        """What `add` would do; refuses a different run over a stored one unless `replace`,
        and a task fingerprint that differs from the store's for the same task version."""
        stored = self._stored()
        incoming = {path_in_store(r): r for r in results}
        check_fingerprints([*(r for r, _ in stored.values()), *incoming.values()])
        folded = {str(p).casefold(): p for p in stored}
        filings = []
        for path, result in incoming.items():
            old, data = stored.get(path, (None, None))
            if old is None:
                other = folded.get(str(path).casefold())
                if other is not None:
                    raise ResultError(_case_clash(path, other))
                action = "new"
            elif layout.identity(old) != layout.identity(result):
                # Unreachable while store paths are one-to-one; kept so that --replace can
                # never touch another model's result whatever the mapping becomes.
                raise ResultError(f"{self.root / path} holds {layout.identity(old)}, not "
                                  f"{layout.identity(result)}; refusing to touch it")
            elif old["run_id"] == result["run_id"]:
                action = "same"
            elif replace:
                action = "replace"
            else:
                raise ResultError(f"{self.root / path} already holds run {old['run_id']} of "
                                  f"{result['model']['id']}@{result['model'].get('revision')} "
                                  f"on {result['task']['name']}; run {result['run_id']} "
                                  "differs (seeds, probe or package versions): pass --replace "
                                  "to file it instead")
            filings.append(Filing(result, path, action, _digest(data)))
        return filings

    def add(self, filings: Iterable[Filing]) -> list[Path]:
        """Write the planned results, all or nothing, under the store lock; each write is a
        compare-and-swap against the file the plan saw. Returns the paths written."""
        filings = [f for f in filings if f.action != "same"]
        if not filings:
            return []
        with self.lock():
            for f in filings:  # every expectation first: nothing is written on a conflict
                self._expect(f)
            done: list[tuple[Path, bytes | None]] = []
            try:
                for f in filings:
                    target = self.root / f.path
                    old = _read_bytes(target)
                    self._write(f, target)
                    done.append((target, old))
            except BaseException:
                self._roll_back(done)
                raise
        return [target for target, _ in done]

    def submit(self, results: Sequence[dict[str, Any]], replace: bool = False,
               dry_run: bool = False,
               echo: Callable[[Filing], None] | None = None) -> tuple[list[Filing], list[Path]]:
        """Plan and file `results` under one hold of the lock, then call `echo` with each
        filing (only once all are written); with `dry_run`, plan only (no lock, no write)."""
        self.check(write=not dry_run)
        context = contextlib.nullcontext() if dry_run else self.lock()
        with context:
            filings = self.plan(results, replace=replace)
            written = [] if dry_run else self.add(filings)
        for f in filings:
            if echo is not None:
                echo(f)
        return filings, written

    def _expect(self, f: Filing) -> None:
        target = self.root / f.path
        now = _digest(_read_bytes(target))
        if now != f.expected:
            seen = "no file" if f.expected is None else "another result"
            raise StorageError(f"{target} changed after it was planned ({seen} was there then); "
                               "another writer filed it meanwhile: nothing was filed, submit "
                               "again to see what the store holds now")

    def _write(self, f: Filing, target: Path) -> None:
        """Compare-and-swap one file: a new file is hard-linked into place, which fails if
        anything appeared there; a replaced one is renamed over the bytes the plan saw."""
        if f.expected is not None:
            self._expect(f)
            with atomic_path(target) as tmp:
                tmp.write_bytes(encode(f.result))
            return
        import tempfile

        tmp = None
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp",
                                        dir=target.parent)
            tmp = Path(name)
            with os.fdopen(fd, "wb") as fh:
                fh.write(encode(f.result))
            mask = os.umask(0)
            os.umask(mask)
            os.chmod(tmp, 0o666 & ~mask)
            try:
                os.link(tmp, target)
            except OSError as e:
                if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV,
                                   errno.ENOSYS):
                    raise
                # A file system without hard links: under the lock, check and rename.
                if target.exists():
                    raise FileExistsError(errno.EEXIST, "File exists") from None
                os.replace(tmp, target)
        except FileExistsError:
            if tmp is None:  # a file stands where a folder is needed
                raise StorageError(f"cannot write {str(target)!r}: "
                                   f"{os_error_text(FileExistsError(17, 'File exists'), target)}"
                                   ) from None
            raise StorageError(f"{target} appeared while it was being filed: another writer "
                               "filed it meanwhile; nothing was filed, submit again") from None
        except OSError as e:
            raise StorageError(f"cannot write {str(target)!r}: {os_error_text(e, target)}; "
                               "nothing was written there") from e
        finally:
            if tmp is not None:
                tmp.unlink(missing_ok=True)

    def _roll_back(self, done: list[tuple[Path, bytes | None]]) -> None:
        for target, old in reversed(done):
            with contextlib.suppress(OSError, StorageError):
                if old is None:
                    target.unlink(missing_ok=True)
                else:
                    with atomic_path(target) as tmp:
                        tmp.write_bytes(old)

    # --- the lock -------------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, timeout: float | None = None) -> Iterator[None]:
        """Hold the store's write lock (reentrant in one thread); wait at most `timeout`
        seconds (LOCK_TIMEOUT_S) for another writer, then fail with StorageError."""
        import fcntl

        self.check(write=True)
        key = (str(self.root.resolve()), threading.get_ident())
        with _held_guard:
            depth, fh = _held.get(key, (0, None))
            if depth:
                _held[key] = (depth + 1, fh)
        if depth:
            try:
                yield
            finally:
                with _held_guard:
                    d, h = _held[key]
                    _held[key] = (d - 1, h)
            return
        path = self.root / LOCK_FILE
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fh = open(path, "a+")
        except OSError as e:
            raise StorageError(f"cannot lock store {str(self.root)!r}: "
                               f"{os_error_text(e, path)}") from None
        try:
            wait = next(t for t in (timeout, self.lock_timeout, LOCK_TIMEOUT_S) if t is not None)
            deadline = time.monotonic() + wait
            while True:
                try:
                    fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    pass
                except OSError as e:  # ENOLCK: a file system without locks
                    raise StorageError(f"cannot lock store {str(self.root)!r} "
                                       f"({e.strerror or e}); its file system does not "
                                       "support locks: use a store on a local disk") from None
                if time.monotonic() >= deadline:
                    raise StorageError(
                        f"store {str(self.root)!r} is locked by another probekit process "
                        f"({_holder(path)}) and stayed locked for {wait:g} s "
                        "(LOCK_TIMEOUT_S); wait for it to finish and submit again")
                time.sleep(_POLL_S)
            with contextlib.suppress(OSError):
                fh.seek(0)
                fh.truncate()
                fh.write(f"pid {os.getpid()} since "
                         f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime())}\n")
                fh.flush()
            with _held_guard:
                _held[key] = (1, fh)
            try:
                yield
            finally:
                with _held_guard:
                    _held.pop(key, None)
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
        finally:
            fh.close()


def _holder(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").strip()[:80]
    except OSError:
        text = ""
    return text or "holder unknown"
