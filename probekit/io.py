"""Atomic file writes (a file is written to a temporary name and renamed, never left
half-written), bounded reads of untrusted JSON, and checks of output paths before any work."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from probekit.errors import StorageError, UserError

MAX_JSON_BYTES = 32 * 2 ** 20  # a result with thousands of per-layer rows is a few MB
MAX_JSON_DEPTH = 32  # a result nests 4 levels deep


def blocking_file(path: str | os.PathLike) -> Path | None:
    """The file (not folder) that stands where `path` or one of its parents needs a folder."""
    for parent in Path(path).parents:
        if parent.exists() or parent.is_symlink():
            return None if parent.is_dir() else parent
    return None


def os_error_text(e: OSError, path: str | os.PathLike) -> str:
    """What failed and what would fix it, by errno: a full disk, a permission, a file in the
    way (never 'free some space' for a file that exists)."""
    what = e.strerror or str(e)
    if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return f"{what}; free some space or choose another folder"
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"{what}; check the permissions of that folder or choose another one"
    if e.errno in (errno.EEXIST, errno.ENOTDIR):
        block = blocking_file(path)
        if block is not None:
            return f"{what}: {str(block)!r} is a file where a folder is needed; move it or " \
                   "choose another path"
        return f"{what}; move what is there or choose another path"
    if e.errno == errno.EISDIR:
        return f"{what}: {str(path)!r} is a folder; move it or choose another path"
    return f"{what}; choose another folder"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds.

    An OSError while writing (disk full, no permission, a file in the way) becomes a
    StorageError naming `path`; either way the temporary file is removed and `path` keeps its
    old content, if any."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        tmp = Path(name)
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, path)
    except OSError as e:
        raise StorageError(f"cannot write {str(path)!r}: {os_error_text(e, path)}; nothing was "
                           "written there") from e
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: str | os.PathLike, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write JSON atomically; NaN and infinities are refused (they are not JSON)."""
    return write_text(path, json.dumps(obj, indent=2, sort_keys=False, allow_nan=False) + "\n")


def stable_hash(obj: Any, n: int = 16) -> str:
    """Hex digest of a JSON-canonical form of `obj` (never Python's `hash()`)."""
    import hashlib

    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:n]


# --- bounded reads ----------------------------------------------------------------------------

def _mb(n: int) -> str:
    if n >= 2 ** 20:
        return f"{n / 2 ** 20:,.1f} MB"
    return f"{n / 2 ** 10:,.1f} KB" if n >= 2 ** 10 else f"{n:,} bytes"


def read_bytes(path: str | os.PathLike, limit: int, limit_name: str,
               error: type[UserError] = UserError) -> bytes:
    """The bytes of the regular file `path`, refused (`error`, naming `limit_name`) when its
    size exceeds `limit` bytes — checked with stat before reading, so a huge file is never read
    into memory; at most `limit` + 1 bytes are read even if it grows meanwhile."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            info = os.fstat(fh.fileno())
            if not _is_regular(info.st_mode):
                raise error(f"{path}: not a regular file")
            if info.st_size > limit:
                raise error(f"{path}: {_mb(info.st_size)} is over the {_mb(limit)} limit for "
                            f"this file ({limit_name}); it cannot be what probekit writes")
            data = fh.read(limit + 1)
    except OSError as e:
        raise error(f"{path}: cannot read ({type(e).__name__}: {e.strerror or e})") from None
    if len(data) > limit:
        raise error(f"{path}: over the {_mb(limit)} limit for this file ({limit_name})")
    return data


def decode_text(data: bytes, where: str, error: type[UserError] = UserError) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise error(f"{where}: cannot read (not UTF-8 text: {e.reason} at byte {e.start})") \
            from None


def read_text(path: str | os.PathLike, limit: int, limit_name: str,
              error: type[UserError] = UserError) -> str:
    """`read_bytes` decoded as UTF-8 (a decoding error is `error` too)."""
    return decode_text(read_bytes(path, limit, limit_name, error), str(path), error)


def _is_regular(mode: int) -> bool:
    import stat

    return stat.S_ISREG(mode)


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number JSON allows; write null for a missing score")


def json_depth(obj: Any) -> int:
    """How deeply lists and objects nest in `obj` (a scalar is 0), without recursion."""
    deepest, stack = 0, [(obj, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, depth + 1)
            stack.extend((v, depth + 1) for v in (item.values() if isinstance(item, dict)
                                                   else item))
    return deepest


def parse_json(text: str, where: str, error: type[UserError] = UserError,
               max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Parse JSON text: NaN and Infinity refused, nesting deeper than `max_depth`
    (MAX_JSON_DEPTH) refused — also where Python's parser would run out of stack."""
    try:
        obj = json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise error(f"{where}: lists and objects nest deeper than Python can parse; the limit "
                    f"is {max_depth} levels (MAX_JSON_DEPTH)") from None
    except ValueError as e:
        raise error(f"{where}: not valid JSON ({e})") from None
    depth = json_depth(obj)
    if depth > max_depth:
        raise error(f"{where}: lists and objects nest {depth} levels deep; the limit is "
                    f"{max_depth} (MAX_JSON_DEPTH)")
    return obj


# --- output paths -----------------------------------------------------------------------------

def check_output_dir(path: str | os.PathLike, what: str) -> Path:
    """Refuse, before any work, an output folder that cannot be one: an existing file, a file
    in place of one of its parents, or a place this user cannot write (UserError, exit 2)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{what} {str(path)!r} is a file, not a folder; pass a folder (it is "
                        "created if missing)")
    block = blocking_file(path)
    if block is not None:
        raise UserError(f"{what} {str(path)!r} cannot be created: {str(block)!r} is a file, "
                        "not a folder; pass another folder")
    check_writable(path, what)
    return path


def check_writable(path: str | os.PathLike, what: str) -> None:
    """The nearest existing folder at or above `path` must be writable (StorageError, exit 1:
    a permission is the environment's, not the input's)."""
    here = Path(path)
    while not here.exists():
        if here.parent == here:
            return
        here = here.parent
    if here.is_dir() and not os.access(here, os.W_OK | os.X_OK):
        raise StorageError(f"cannot write {what} {str(path)!r}: {str(here)!r} is not writable "
                           "(Permission denied); check its permissions or choose another folder")


def write_all(files: dict[Path, bytes]) -> list[Path]:
    """Write several files as one: each to a temporary beside it, then all renamed into place;
    if any step fails, the files already renamed get their old content back (or are removed)
    and a StorageError names the file that failed."""
    temps: dict[Path, Path] = {}
    done: list[tuple[Path, bytes | None]] = []
    current = None
    try:
        for path, data in files.items():
            current = path
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            temps[path] = Path(name)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.chmod(name, 0o666 & ~_umask())
        for path, tmp in temps.items():
            current = path
            old = path.read_bytes() if path.is_file() else None
            os.replace(tmp, path)
            done.append((path, old))
    except OSError as e:
        for path, old in reversed(done):
            with contextlib.suppress(OSError):
                if old is None:
                    path.unlink()
                else:
                    with atomic_path(path) as tmp:
                        tmp.write_bytes(old)
        raise StorageError(f"cannot write {str(current)!r}: {os_error_text(e, current)}; "
                           "nothing was written") from e
    finally:
        for tmp in temps.values():
            tmp.unlink(missing_ok=True)
    return list(files)
