"""`torchrun --nproc_per_node 2 -m probekit eval …` on the CPU (gloo): the ranks split the shards
(i % world_size == rank), rank 0 alone writes the result, and result and latents equal those of
one process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import probekit.extraction as extraction
from probekit import distributed
from probekit.cli import main
from tests.micro import eval_args, write_task  # noqa: F401

SHARD_SIZE = 16  # micro splits are 48/16/16 episodes: train has 3 shards, so both ranks work

# `python -m probekit` with small shards, logging the shards each rank writes.
RUN = """
import os, sys
import probekit.extraction as extraction
from probekit.cli import main

extraction.SHARD_SIZE = {shard_size}
write = extraction._write_shard

def logged(path, *args):
    with open(os.path.join(sys.argv[1], "rank" + os.environ["RANK"]), "a") as f:
        f.write(str(path) + "\\n")
    return write(path, *args)

extraction._write_shard = logged
sys.exit(main(sys.argv[2:]))
""".format(shard_size=SHARD_SIZE)


def shard_bytes(cache: Path) -> dict[str, bytes]:
    return {str(p.relative_to(cache)): p.read_bytes()
            for p in (cache / "latents").rglob("shard-*.safetensors")}


def test_two_ranks_write_what_one_process_writes(tiny_gpt2, tmp_path, monkeypatch):
    tasks = write_task(tmp_path / "tasks")
    script, logs = tmp_path / "run.py", tmp_path / "logs"
    script.write_text(RUN)
    logs.mkdir()
    env = {**os.environ, "PROBEKIT_CACHE": str(tmp_path / "cache2"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         str(script), str(logs), *eval_args(tiny_gpt2, tasks, tmp_path / "out2")],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # meanwhile, the same evaluation in this process
    monkeypatch.setattr(extraction, "SHARD_SIZE", SHARD_SIZE)
    monkeypatch.setenv("PROBEKIT_CACHE", str(tmp_path / "cache1"))
    assert main(eval_args(tiny_gpt2, tasks, tmp_path / "out1")) == 0
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err

    (one,) = (tmp_path / "out1").rglob("micro.json")
    (two,) = (tmp_path / "out2").rglob("micro.json")  # rank 1 wrote no result
    single, ranked = json.loads(one.read_text()), json.loads(two.read_text())
    assert {k: v for k, v in ranked.items() if k != "timings"} == \
        {k: v for k, v in single.items() if k != "timings"}
    assert shard_bytes(tmp_path / "cache2") == shard_bytes(tmp_path / "cache1")
    for rank in (0, 1):
        written = (logs / f"rank{rank}").read_text().split()
        assert written and all(int(Path(p).stem.split("-")[1]) % 2 == rank for p in written)
    assert len((logs / "rank1").read_text().split()) == 3 * 2  # train shard 1: 3 layers, 2 models


def test_one_process_joins_no_group(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with distributed.group("cpu") as device:
        assert device == "cpu"
        assert (distributed.rank(), distributed.world_size()) == (0, 1)
    assert not (distributed.dist.is_available() and distributed.dist.is_initialized())
