"""The GPU path (`pytest -m gpu`; skipped without CUDA): `auto` picks CUDA, extraction through
pinned non-blocking copies equals the CPU's, bf16 autocast stays close, the automatic batch
size fits the free memory, evaluate() runs end to end, and (with two GPUs) NCCL ranks split
the shards."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import probekit.extraction as extraction
from probekit.adapters import load_model, resolve_device
from probekit.evaluation import evaluate
from probekit.extraction import extract
from probekit.tasks import load_task
from tests.micro import eval_args, write_task

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


@pytest.fixture
def task(tiny_task_dir):
    return load_task("boxes-tiny", [tiny_task_dir])


def test_auto_picks_cuda(tiny_gpt2):
    assert resolve_device("auto").type == "cuda"
    assert load_model(tiny_gpt2).device.type == "cuda"


def test_cuda_extraction_equals_the_cpu(tiny_gpt2, task, tmp_path, monkeypatch):
    monkeypatch.setattr(extraction, "SHARD_SIZE", 64)  # several shards, several syncs
    got = {}
    for device in ("cpu", "cuda"):
        monkeypatch.setenv("PROBEKIT_CACHE", str(tmp_path / device))
        got[device] = extract(load_model(tiny_gpt2, device=device), task, "train",
                              batch_size=24, progress=False).stack()
    np.testing.assert_allclose(got["cuda"], got["cpu"], atol=2e-3, rtol=2e-3)


def test_bf16_autocast_is_close_and_cached_apart(tiny_gpt2, task, tmp_path, monkeypatch):
    monkeypatch.setenv("PROBEKIT_CACHE", str(tmp_path))
    adapter = load_model(tiny_gpt2, device="cuda")
    full = extract(adapter, task, "val", progress=False)
    bf16 = extract(adapter, task, "val", autocast="bf16", progress=False)
    assert bf16.root != full.root
    np.testing.assert_allclose(bf16.stack(), full.stack(), atol=0.1)


def test_auto_batch_size_fits_free_memory(tiny_gpt2, task, tmp_path, monkeypatch):
    monkeypatch.setenv("PROBEKIT_CACHE", str(tmp_path))
    adapter = load_model(tiny_gpt2, device="cuda")
    rows = list(task.dataset("val").select(range(8)))
    size = extraction.auto_batch_size(adapter, rows)
    assert size == extraction.SHARD_SIZE  # a tiny model: a whole shard fits
    latents = extract(adapter, task, "val", batch_size="auto", progress=False)
    assert latents.stack().shape[:3] == (len(adapter.layers()), 80, len(rows[0]["step_spans"]))


def test_evaluate_on_cuda(tiny_gpt2, tiny_task_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("PROBEKIT_CACHE", str(tmp_path))
    (result,) = evaluate(tiny_gpt2, ["boxes-tiny"], include=[tiny_task_dir], device="auto",
                         batch_size="auto", autocast="bf16", causal=False,
                         progress=False).results
    assert result["env"]["device"].startswith("cuda")
    assert result["model"]["dtype"] == "float32-autocast-bf16"
    assert 0 <= result["scores"]["decodability"]["value"] <= 1


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_two_nccl_ranks_equal_one_process(tiny_gpt2, tmp_path):
    tasks = write_task(tmp_path / "tasks")
    out = {}
    for n in (1, 2):
        env = {**os.environ, "PROBEKIT_CACHE": str(tmp_path / f"cache{n}")}
        proc = subprocess.run(
            [sys.executable, "-m", "torch.distributed.run", "--standalone",
             "--nproc_per_node", str(n), "-m", "probekit",
             *eval_args(tiny_gpt2, tasks, tmp_path / f"out{n}")[:-2], "--device", "auto"],
            env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        (path,) = (tmp_path / f"out{n}").rglob("micro.json")
        out[n] = json.loads(path.read_text())
    assert out[2]["scores"]["decodability"]["layer"] == out[1]["scores"]["decodability"]["layer"]
    for key in ("test", "control", "random_init"):
        np.testing.assert_allclose([r[key] for r in out[2]["per_layer"]],
                                   [r[key] for r in out[1]["per_layer"]], atol=1e-6)
