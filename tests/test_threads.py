"""probekit picks its thread count and a sleeping OpenMP wait policy, unless the user chose."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from probekit import threads

CHOICES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_WAIT_POLICY",
           "GOMP_SPINCOUNT", "OMP_DISPLAY_ENV")
REPORT = ("import json, os, torch; torch.ones(64, 64).sum(); print(json.dumps(["
          "torch.get_num_threads(), os.environ.get('OMP_WAIT_POLICY'), "
          "__import__('probekit.threads').threads.STATE]))")


def run(code: str, **env: str) -> tuple[list, str]:
    """Run `code` in a fresh interpreter with none of the user's choices but those in env;
    OMP_DISPLAY_ENV makes libgomp print the settings it started with on stderr."""
    clean = {k: v for k, v in os.environ.items() if k not in CHOICES}
    clean.update(env, OMP_DISPLAY_ENV="TRUE")
    done = subprocess.run([sys.executable, "-c", code], env=clean, capture_output=True,
                          text=True, timeout=120, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


def test_defaults_use_the_available_cpus_and_sleeping_waiters():
    (n_threads, policy, state), stderr = run("import probekit; " + REPORT)
    assert n_threads == threads.available_cpus() == state["cpus"]
    assert policy == "PASSIVE" and state["wait_policy"] == "PASSIVE"
    # torch's own OpenMP runtime started with it (it reads the variable only when it loads)
    assert "OMP_WAIT_POLICY = 'PASSIVE'" in stderr


@pytest.mark.parametrize("variable", ["OMP_NUM_THREADS", "MKL_NUM_THREADS"])
def test_a_thread_count_in_the_environment_is_kept(variable):
    (n_threads, _, state), _ = run("import probekit; " + REPORT, **{variable: "1"})
    assert n_threads == 1 and state["threads"] == "unchanged: set by the environment"


def test_a_wait_policy_in_the_environment_is_kept():
    (_, policy, state), stderr = run("import probekit; " + REPORT, OMP_WAIT_POLICY="ACTIVE")
    assert policy == "ACTIVE" and state["wait_policy"] == "unchanged: set by the environment"
    assert "OMP_WAIT_POLICY = 'ACTIVE'" in stderr


def test_torch_set_num_threads_before_import_is_kept():
    code = "import torch; torch.set_num_threads(1); import probekit; " + REPORT
    (n_threads, policy, state), _ = run(code)
    assert n_threads == 1
    assert state["wait_policy"] == "unchanged: torch was imported first" and policy is None


def test_the_cli_runs_with_the_chosen_settings():
    code = ("import sys; sys.argv = ['probekit', '--version']; import probekit.cli; import torch;"
            "print(__import__('json').dumps([torch.get_num_threads()]))")
    (n_threads,), stderr = run(code)
    assert n_threads == threads.available_cpus()
    assert "OMP_WAIT_POLICY = 'PASSIVE'" in stderr


def test_cgroup_quotas_cap_the_count(tmp_path, monkeypatch):
    proc = tmp_path / "cgroup"
    proc.write_text("0::/user/job\n")
    job = tmp_path / "fs" / "user" / "job"
    job.mkdir(parents=True)
    (tmp_path / "fs" / "cpu.max").write_text("max 100000\n")
    (job / "cpu.max").write_text("150000 100000\n")
    assert threads.cgroup_quota(tmp_path / "fs", proc) == 1.5
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    assert threads.available_cpus(tmp_path / "fs", proc) == 2  # 1.5 CPUs round up
    (job / "cpu.max").write_text("max 100000\n")
    assert threads.cgroup_quota(tmp_path / "fs", proc) is None
    assert threads.available_cpus(tmp_path / "fs", proc) == 4
    # cgroup v1: quota / period of the cpu controller's own cgroup, -1 for none
    proc.write_text("4:cpu,cpuacct:/docker/abc\n0::/\n")
    v1 = tmp_path / "fs" / "cpu,cpuacct" / "docker" / "abc"
    v1.mkdir(parents=True)
    (v1 / "cpu.cfs_quota_us").write_text("300000\n")
    (v1 / "cpu.cfs_period_us").write_text("100000\n")
    assert threads.cgroup_quota(tmp_path / "fs", proc) == 3.0
    (v1 / "cpu.cfs_quota_us").write_text("-1\n")
    assert threads.cgroup_quota(tmp_path / "fs", proc) is None
    assert threads.cgroup_quota(tmp_path / "nowhere", tmp_path / "missing") is None


MAPPED = """
import ctypes, json, numpy as np
from probekit.threads import retained_memory, _glibc

class Info(ctypes.Structure):  # glibc's struct mallinfo2
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                                                "usmblks", "fsmblks", "uordblks", "fordblks",
                                                "keepcost")]

def mapped():
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = Info
    return libc.mallinfo2().hblkhd  # bytes in blocks glibc mmapped on their own

def held(keep):
    if not keep:
        a = np.ones(48 << 20, np.uint8)  # above glibc's 32 MB mmap threshold
        return mapped()
    with retained_memory():
        a = np.ones(48 << 20, np.uint8)
        return mapped()
print(json.dumps([_glibc() is not None, held(False), held(True)]))
"""


def test_retained_memory_takes_large_blocks_from_the_heap_it_keeps():
    """Outside the block a 48 MB array is a mapping of its own (unmapped when freed, faulted in
    again next time); inside, it comes from the heap, which keeps it for the next one."""
    (glibc, plain, kept), _ = run(MAPPED)
    if not glibc:
        pytest.skip("not glibc's allocator")
    assert plain >= 48 << 20
    assert kept < 48 << 20
    (glibc, plain, kept), _ = run(MAPPED, MALLOC_ARENA_MAX="2")  # the user chose: untouched
    assert not glibc and kept >= 48 << 20


def test_retained_memory_nests_and_restores_only_at_the_outermost(monkeypatch):
    calls = []

    class Libc:
        def mallopt(self, param, value):
            calls.append((param, value))

        def malloc_trim(self, pad):
            calls.append(("trim", pad))

    monkeypatch.setattr(threads, "_LIBC", [Libc()])
    with threads.retained_memory():
        with threads.retained_memory():
            pass
        assert len(calls) == 2 and calls[0] == (threads.M_MMAP_MAX, 0)
    assert calls[2:] == [*threads.GLIBC_DEFAULTS.items(), ("trim", 0)]
