"""Faults: `probekit eval` killed (SIGKILL, a real subprocess) at several points resumes without
recomputing cached shards and writes the same result as an uninterrupted run; writes that fail
(a full disk) leave no partial file; two runs sharing one cache at once both succeed."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import probekit.extraction as extraction
from probekit.cli import main
from probekit.errors import StorageError
from probekit.io import write_json
from tests.micro import error_line, eval_args, write_task  # noqa: F401


SHARD_SIZE = 16  # micro splits are 48/16/16 episodes: 5 shards per layer, 3 layers, 2 models
SHARDS_PER_RUN = 5 * 3 * 2

# Runs the CLI with small shards and SIGKILLs itself at the n-th event of one kind: `shard`
# (inside the atomic write of a latents shard: written, not yet renamed) or `probe` (the end of a
# probe fit, after extraction).
KILLER = """
import os, signal, sys
import probekit.extraction as extraction, probekit.probes.batched as batched
from probekit.cli import main

kind, n, argv = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
extraction.SHARD_SIZE = {shard_size}
seen = [0]

def tick(event):
    if event == kind:
        seen[0] += 1
        if seen[0] == n:
            os.kill(os.getpid(), signal.SIGKILL)

replace = os.replace

def killing_replace(src, dst):
    tick("shard" if os.path.basename(str(src)).startswith(".shard-") else "other")
    return replace(src, dst)

class KillingProbes(batched.LinearProbes):  # every probe fit ends by making one, wherever called
    def __init__(self, *args, **kwargs):
        tick("probe")
        super().__init__(*args, **kwargs)

os.replace, batched.LinearProbes = killing_replace, KillingProbes
sys.exit(main(argv))
""".format(shard_size=SHARD_SIZE)


@pytest.fixture(scope="module")
def tasks(tmp_path_factory) -> Path:
    return write_task(tmp_path_factory.mktemp("micro"))


@pytest.fixture
def small_shards(monkeypatch):
    monkeypatch.setattr(extraction, "SHARD_SIZE", SHARD_SIZE)


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """A fresh cache for this test, here and in its subprocesses."""
    monkeypatch.setenv("PROBEKIT_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def reference(tiny_gpt2, tasks, tmp_path_factory) -> dict:
    """The result of an uninterrupted run in its own cache."""
    root = tmp_path_factory.mktemp("reference")
    saved = os.environ["PROBEKIT_CACHE"]
    os.environ["PROBEKIT_CACHE"] = str(root / "cache")
    try:
        assert main(eval_args(tiny_gpt2, tasks, root / "out")) == 0
    finally:
        os.environ["PROBEKIT_CACHE"] = saved
    (path,) = (root / "out").rglob("micro.json")
    return json.loads(path.read_text())


def same_run(result: dict, reference: dict) -> None:
    """Equal in everything but wall-clock timings."""
    assert {k: v for k, v in result.items() if k != "timings"} == \
        {k: v for k, v in reference.items() if k != "timings"}


def run_cli(args: list[str], kill: tuple[str, int] = ("none", 0)) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", KILLER, kill[0], str(kill[1]), *args],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def shards(cache: Path) -> dict[Path, tuple[int, int]]:
    """Every finished shard file: (inode, mtime) — a rewrite changes both."""
    return {p: (p.stat().st_ino, p.stat().st_mtime_ns)
            for p in (cache / "latents").rglob("shard-*.safetensors")}


def check_cache(cache: Path) -> None:
    """Every manifest lists loadable shards of the recorded size; stray files are only hidden
    temporaries of a killed writer (never read)."""
    from safetensors.numpy import load_file

    manifests = list((cache / "latents").rglob("manifest.json"))
    assert manifests
    for m in manifests:
        meta = json.loads(m.read_text())
        rows = sum(len(load_file(str(m.parent / s))["latents"]) for s in meta["shards"])
        assert rows == meta["episodes"]
    for path in cache.rglob("*"):
        if path.is_file() and path.name.endswith(".tmp"):
            assert path.name.startswith(".")


def count_writes(monkeypatch) -> list[Path]:
    written: list[Path] = []
    original = extraction._write_shard
    monkeypatch.setattr(extraction, "_write_shard",
                        lambda path, *a: written.append(path) or original(path, *a))
    return written


@pytest.mark.parametrize("kill, done", [
    (("shard", 5), 4),  # shard 0 of every layer and shard 1 of embed renamed; block.0's not
    (("probe", 1), SHARDS_PER_RUN),  # every latent cached, killed in the first probe fit
])
def test_killed_eval_resumes_without_recomputing(tiny_gpt2, tasks, tmp_path, cache, reference,
                                                 small_shards, monkeypatch, kill, done):
    out = tmp_path / "out"
    proc = run_cli(eval_args(tiny_gpt2, tasks, out), kill)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == -signal.SIGKILL, err
    assert not list(out.rglob("micro.json"))
    before = shards(cache)
    assert len(before) == done
    written = count_writes(monkeypatch)
    assert main(eval_args(tiny_gpt2, tasks, out)) == 0
    assert len(written) == SHARDS_PER_RUN - done and not set(written) & set(before)
    assert {p: v for p, v in shards(cache).items() if p in before} == before  # not rewritten
    (path,) = out.rglob("micro.json")
    same_run(json.loads(path.read_text()), reference)
    check_cache(cache)


def test_two_runs_sharing_a_cache_at_once(tiny_gpt2, tasks, tmp_path, cache, reference):
    out = tmp_path / "out"  # the same results folder too
    procs = [run_cli(eval_args(tiny_gpt2, tasks, out)) for _ in range(2)]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    (path,) = out.rglob("micro.json")
    same_run(json.loads(path.read_text()), reference)
    check_cache(cache)
    assert not [p for p in cache.rglob("*") if p.name.startswith(".")]  # nobody was killed
    assert not [p for p in out.rglob("*") if p.name.startswith(".")]


# Overwrites a result with a bigger one and SIGKILLs itself halfway through writing it.
HALF_WRITE = """
import os, signal, sys
from pathlib import Path
from probekit.io import write_json

def half_then_killed(self, text, encoding=None):
    with open(self, "w", encoding=encoding) as f:
        f.write(text[:len(text) // 2])
    os.kill(os.getpid(), signal.SIGKILL)

Path.write_text = half_then_killed
write_json(sys.argv[1], {"scores": list(range(100_000))})
"""


def test_a_write_killed_halfway_leaves_the_old_file(tmp_path):
    path = write_json(tmp_path / "result.json", {"scores": [1, 2, 3]})
    proc = subprocess.run([sys.executable, "-c", HALF_WRITE, str(path)], capture_output=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert json.loads(path.read_text()) == {"scores": [1, 2, 3]}
    (stray,) = [p for p in tmp_path.iterdir() if p != path]  # the killed writer's temporary
    assert stray.name.startswith(".result.json.") and stray.name.endswith(".tmp")
    assert stray.stat().st_size > 0


# --- failed writes --------------------------------------------------------------------------

def disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    path = write_json(tmp_path / "r.json", {"old": 1})
    monkeypatch.setattr(os, "replace", disk_full)
    with pytest.raises(StorageError, match="r.json'.*No space left on device"):
        write_json(path, {"new": 2})
    monkeypatch.undo()
    assert json.loads(path.read_text()) == {"old": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_eval_on_a_full_disk_exits_1_with_one_line_and_no_partial_file(
        tiny_gpt2, tasks, tmp_path, cache, small_shards, monkeypatch, capsys):
    save_file, replace = extraction.save_file, os.replace

    def half_then_full(tensors, filename, *args, **kwargs):  # the disk fills mid-shard
        save_file(tensors, filename)
        Path(filename).write_bytes(Path(filename).read_bytes()[:100])
        disk_full()

    out = tmp_path / "out"
    monkeypatch.setattr(extraction, "save_file", half_then_full)
    assert main(eval_args(tiny_gpt2, tasks, out)) == 1
    line = error_line(capsys.readouterr().err)
    assert "shard-00000.safetensors'" in line and "No space left on device" in line
    assert not list((cache / "latents").rglob("*.safetensors*"))  # nothing, not even a temporary

    def full_for_results(src, dst):  # now only the result file cannot be written
        return disk_full() if str(dst).endswith("micro.json") else replace(src, dst)

    monkeypatch.setattr(extraction, "save_file", save_file)
    monkeypatch.setattr(os, "replace", full_for_results)
    assert main(eval_args(tiny_gpt2, tasks, out)) == 1
    line = error_line(capsys.readouterr().err)
    assert "micro.json'" in line and "No space left on device" in line
    assert not [p for p in out.rglob("*") if p.is_file()]


def test_task_data_on_a_full_disk_leaves_no_partial_split(tasks, cache, monkeypatch, capsys):
    import datasets

    monkeypatch.setattr(datasets.Dataset, "save_to_disk", disk_full)
    assert main(["data", "export", "micro", "--include-path", str(tasks), "--out",
                 str(cache.parent / "export")]) == 1
    assert "No space left on device" in error_line(capsys.readouterr().err)
    assert not [p for p in (cache / "data").rglob("*") if p.is_file()]
    assert not (cache.parent / "export").exists()


def test_a_damaged_cache_is_named_not_trusted(tiny_gpt2, tasks, tmp_path, cache, small_shards,
                                              capsys):
    assert main(eval_args(tiny_gpt2, tasks, tmp_path / "out", "--no-random-init")) == 0
    capsys.readouterr()
    shard = next((cache / "latents").rglob("shard-00001.safetensors"))
    shard.write_bytes(shard.read_bytes()[:100])
    assert main(eval_args(tiny_gpt2, tasks, tmp_path / "out", "--no-random-init")) == 1
    line = error_line(capsys.readouterr().err)
    assert f"cached latents in '{shard.parent}' are unreadable" in line
    assert "delete that folder and run again" in line


@pytest.mark.parametrize("file, change", [
    ("config.json", {"layer_norm_epsilon": 1e-3}),
    ("tokenizer_config.json", {"padding_side": "left"}),
])
def test_an_edited_config_or_tokenizer_is_another_cache_key(tiny_gpt2, tmp_path, file, change):
    from probekit.adapters import load_model

    folder = tmp_path / "ckpt"
    shutil.copytree(tiny_gpt2, folder)
    path = folder / file
    path.write_text(json.dumps({**json.loads(path.read_text()), **change}))
    edited, original = load_model(folder, device="cpu"), load_model(tiny_gpt2, device="cpu")
    assert edited.identity.sha256 != original.identity.sha256



# A submitter killed while it holds the store lock, in the middle of filing a new result: the
# link into place done, the rest not.
KILLED_FILER = """
import os, signal, sys
from probekit import store
from tests.result_factory import make

root = store.Store(sys.argv[1])
link = os.link

def killing_link(src, dst):
    link(src, dst)
    os.kill(os.getpid(), signal.SIGKILL)

os.link = killing_link
root.submit([make(model="org/killed")])
"""


def test_a_submitter_killed_holding_the_store_lock_blocks_nobody(tmp_path, capsys):
    """The lock is an flock: the kernel drops it with its holder, so the next submit neither
    waits nor finds a half-written file (the one linked into place is whole)."""
    import time

    from tests.result_factory import make

    root = tmp_path / "store"
    proc = subprocess.run([sys.executable, "-c", KILLED_FILER, str(root)], cwd=Path.cwd(),
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert (root / ".lock").read_text().startswith("pid ")  # the dead holder's mark
    path = write_json(tmp_path / "r.json", make(model="org/next"))
    t0 = time.monotonic()
    assert main(["submit", str(path), "--store", str(root)]) == 0
    assert time.monotonic() - t0 < 5
    from probekit import store

    assert sorted(r["model"]["id"] for r in store.Store(root).results()) == ["org/killed",
                                                                             "org/next"]
    assert "filed 1 result(s)" in capsys.readouterr().out
