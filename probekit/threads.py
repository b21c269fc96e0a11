"""How many threads probekit's numerical work uses, and how idle threads wait.

`configure()` runs once, when `probekit` is first imported (and so before the CLI imports
torch). It changes nothing the user already chose; otherwise it does exactly this:

1. **Thread count.** It counts the CPUs this process may use: the CPUs in its affinity mask
   (`os.sched_getaffinity`, which follows `taskset`, `cpuset` cgroups and container CPU sets)
   and, if a cgroup CPU quota is set (cgroup v2 `cpu.max`, v1 `cpu.cfs_quota_us` /
   `cpu.cfs_period_us`), the quota rounded up to whole CPUs; the smaller of the two counts.
   - If none of `OMP_NUM_THREADS`, `MKL_NUM_THREADS` or `OPENBLAS_NUM_THREADS` is set and
     torch is not yet imported, it sets `OMP_NUM_THREADS` to that count in `os.environ`
     (torch's intra-op pool, MKL and OpenBLAS read it when they start; child processes
     inherit it).
   - If torch is already imported and its thread count is still the OpenMP runtime's default
     (one per CPU of the affinity mask), it calls `torch.set_num_threads(count)` when the
     count is smaller (a CPU quota below the mask); a count the user set through
     `torch.set_num_threads` differs from that default and is kept. (A user who sets exactly
     the default by hand cannot be told apart from one who did not; it is then lowered only
     to a smaller cgroup quota.)
2. **Wait policy.** If `OMP_WAIT_POLICY` is not set (nor `GOMP_SPINCOUNT`, libgomp's finer
   knob), it sets `OMP_WAIT_POLICY=PASSIVE`: a thread waiting at the end of a parallel region
   sleeps instead of spinning. Spinning waiters keep the CPUs busy between torch's many small
   parallel regions; when anything else runs on the machine, the spinners and the work they
   wait for compete for the same cores, and the batched probes ran 20–30× slower. The OpenMP
   runtime (libgomp, loaded by `import torch`) reads the variable once, when it is loaded, so
   this only takes effect if torch was not imported before probekit; when it was, the policy
   of the process cannot be changed any more and `STATE["wait_policy"]` says "unchanged:
   torch was imported first" (export `OMP_WAIT_POLICY=PASSIVE`, or import probekit first).

Nothing else is touched at import: no inter-op threads, no thread affinity. `STATE` records
what was decided, for logs and tests. `benchmarks/probes.py --load` measures the effect.

3. **Memory kept while probes fit** (`retained_memory()`, around each probe fit, not at
   import). A batched fit allocates and frees tensors of hundreds of MB every iteration
   (logits of every layer × class × target × example). glibc serves any block above 32 MB with
   a fresh mmap and unmaps it when freed, so each iteration page-faults its memory in again:
   on othello-6, a third of the probes' CPU time was the kernel's. For the duration of the fit
   glibc is told to take every block from its heap and to keep what is freed there
   (`mallopt(M_MMAP_MAX, 0)`, `mallopt(M_TRIM_THRESHOLD, …)`); afterwards its defaults are
   restored and the memory is returned (`malloc_trim(0)`). Nothing changes where the allocator
   is not glibc's, or where any `MALLOC_*` variable is set (the user chose).
"""

from __future__ import annotations

import ctypes
import math
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

USER_THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
STATE: dict[str, object] = {}
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc's mallopt parameters, and their defaults
GLIBC_DEFAULTS = {M_TRIM_THRESHOLD: 128 * 1024, M_MMAP_MAX: 65536}
_RETAINING = {"depth": 0}
_LOCK = threading.Lock()
_LIBC: list[ctypes.CDLL | None] = []  # glibc, once looked up


def available_cpus(cgroup_root: str | Path = "/sys/fs/cgroup",
                   proc_cgroup: str | Path = "/proc/self/cgroup") -> int:
    """The CPUs this process may use: its affinity mask, capped by a cgroup CPU quota."""
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        count = os.cpu_count() or 1
    quota = cgroup_quota(cgroup_root, proc_cgroup)
    if quota is not None:
        count = min(count, max(1, math.ceil(quota)))
    return max(1, count)


def cgroup_quota(cgroup_root: str | Path = "/sys/fs/cgroup",
                 proc_cgroup: str | Path = "/proc/self/cgroup") -> float | None:
    """The CPU quota (in CPUs) of this process's cgroup (v2 or v1), or None when unlimited or
    unknown. The tightest quota from the process's own cgroup up to the root counts."""
    root = Path(cgroup_root)
    v1_path, v2_path = "/", "/"
    try:
        for line in Path(proc_cgroup).read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            if controllers == "":
                v2_path = path
            elif "cpu" in controllers.split(","):
                v1_path = path
    except (OSError, ValueError):
        pass
    quotas = []
    for directory in _ancestors(root, v2_path):  # cgroup v2: "max 100000" or "200000 100000"
        fields = _read(directory / "cpu.max").split()
        if len(fields) == 2 and fields[0] != "max":
            quotas.append(_ratio(fields[0], fields[1]))
    for base in (root / "cpu", root / "cpu,cpuacct", root / "cpuacct,cpu"):  # cgroup v1
        for directory in _ancestors(base, v1_path):
            quota = _ratio(_read(directory / "cpu.cfs_quota_us"),
                           _read(directory / "cpu.cfs_period_us"))
            if quota is not None and quota > 0:
                quotas.append(quota)
    quotas = [q for q in quotas if q is not None and q > 0]
    return min(quotas) if quotas else None


def configure() -> dict[str, object]:
    """Choose the thread count and a sleeping wait policy unless the user chose them; see the
    module docstring for exactly what is changed. Returns (and keeps in STATE) what it did."""
    env = os.environ
    count = available_cpus()
    torch = sys.modules.get("torch")
    state: dict[str, object] = {"cpus": count}
    if any(env.get(name) for name in USER_THREAD_VARIABLES):
        state["threads"] = "unchanged: set by the environment"
    elif torch is None:
        env["OMP_NUM_THREADS"] = str(count)
        state["threads"] = count
    else:
        current = torch.get_num_threads()
        default = _affinity_count()
        if current == default and count < current:
            torch.set_num_threads(count)
            state["threads"] = count
        else:
            state["threads"] = f"unchanged: torch already uses {current}"
    if env.get("OMP_WAIT_POLICY") or env.get("GOMP_SPINCOUNT"):
        state["wait_policy"] = "unchanged: set by the environment"
    elif torch is not None:
        state["wait_policy"] = "unchanged: torch was imported first"
    else:
        env["OMP_WAIT_POLICY"] = "PASSIVE"
        state["wait_policy"] = "PASSIVE"
    STATE.clear()
    STATE.update(state)
    return state


def _affinity_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _ancestors(base: Path, path: str) -> list[Path]:
    """base/path and every directory above it up to base."""
    parts = [p for p in path.strip("/").split("/") if p and p != ".."]
    return [base.joinpath(*parts[:i]) for i in range(len(parts), -1, -1)]


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def _ratio(quota: str, period: str) -> float | None:
    try:
        q, p = float(quota), float(period)
    except ValueError:
        return None
    return q / p if q > 0 and p > 0 else None


@contextmanager
def retained_memory() -> Iterator[None]:
    """Within the block, glibc keeps freed memory for reuse instead of unmapping it (see the
    module docstring, item 3); nested blocks share the outermost one. A no-op where the
    allocator is not glibc's or a `MALLOC_*` variable is set."""
    libc = _glibc()
    with _LOCK:
        outermost = _RETAINING["depth"] == 0
        _RETAINING["depth"] += 1
        if outermost and libc is not None:
            libc.mallopt(M_MMAP_MAX, 0)
            libc.mallopt(M_TRIM_THRESHOLD, 2 ** 31 - 1)
    try:
        yield
    finally:
        with _LOCK:
            _RETAINING["depth"] -= 1
            if outermost and libc is not None:
                for param, value in GLIBC_DEFAULTS.items():
                    libc.mallopt(param, value)
                libc.malloc_trim(0)


def _glibc() -> ctypes.CDLL | None:
    """glibc's C library, or None (another allocator, or the user set MALLOC_* variables)."""
    if not _LIBC:
        libc = None
        if sys.platform.startswith("linux") and not any(k.startswith("MALLOC_")
                                                        for k in os.environ):
            try:
                libc = ctypes.CDLL("libc.so.6")
                libc.gnu_get_libc_version  # noqa: B018 (glibc only: musl has no such symbol)
                libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
                libc.malloc_trim.argtypes = [ctypes.c_size_t]
            except (OSError, AttributeError):
                libc = None
        _LIBC.append(libc)
    return _LIBC[0]
