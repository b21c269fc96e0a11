"""Extraction: hooked values equal `output_hidden_states` (also when the forward stops after the
last hooked layer), positions come from offsets, shards are cached, and an extraction that was
interrupted (or SIGKILLed in a real process) resumes to identical data."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file
from torch import nn

import probekit.extraction as extraction
from probekit.adapters import load_model
from probekit.errors import UnknownNameError, UserError
from probekit.extraction import extract, latents_dir
from probekit.tasks import load_task


@pytest.fixture(scope="module")
def setup(tiny_gpt2, tiny_task_dir):
    return load_model(tiny_gpt2, device="cpu"), load_task("boxes-tiny", [tiny_task_dir])


def test_layer_names(setup):
    adapter, _ = setup
    assert adapter.layers() == ["embed", "block.0", "block.1"]
    with pytest.raises(UnknownNameError, match=r"did you mean 'block\.1'"):
        adapter.check_layers(["block.l"])


def test_positions_are_the_step_tokens(setup):
    adapter, task = setup
    rows = list(task.dataset("val").select(range(4)))
    batch = adapter.batch(rows)
    for b, row in enumerate(rows):
        assert batch.positions[b].tolist() == row["token_steps"]  # word tokenizer: same split
        ids = batch.inputs["input_ids"][b]
        assert adapter.tokenizer.convert_ids_to_tokens(ids[batch.positions[b]].tolist()) == \
            ["."] * len(row["step_spans"])
        answer = adapter.tokenizer.convert_ids_to_tokens([int(batch.answer_ids[b])])[0]
        assert answer == row["query_answer"]
        assert int(ids[batch.query_positions[b] + 1]) == int(batch.answer_ids[b])


def test_hooks_equal_output_hidden_states(setup):
    adapter, task = setup
    latents = extract(adapter, task, "val", progress=False)
    rows = list(task.dataset("val"))
    batch = adapter.batch(rows)
    with torch.no_grad():
        hs = adapter.model(**batch.inputs, output_hidden_states=True).hidden_states
    idx = torch.arange(len(rows))[:, None]
    final_norm = adapter.model.transformer.ln_f
    for i, name in enumerate(adapter.layers()):
        expected = hs[i][idx, batch.positions]
        if i == len(hs) - 1:  # HF applies the final norm to its last entry; ours is pre-norm
            got = final_norm(torch.from_numpy(latents.layer(name)))
        else:
            got = torch.from_numpy(latents.layer(name))
        torch.testing.assert_close(got, expected.float(), atol=2e-3, rtol=2e-3)  # float16 store


def test_resume_after_interruption_gives_identical_shards(setup, monkeypatch, tmp_path):
    adapter, task = setup
    monkeypatch.setenv("PROBEKIT_CACHE", str(tmp_path))  # not the session cache: fresh shards
    monkeypatch.setattr(extraction, "SHARD_SIZE", 64)
    full = extract(adapter, task, "train", ["block.0"], progress=False)
    root = latents_dir(adapter, task, "train") / "block.0"
    reference = {p.name: load_file(str(p))["latents"] for p in root.glob("shard-*")}
    assert len(reference) == 4
    # simulate a run killed after two shards: no manifest, later shards missing
    (root / "manifest.json").unlink()
    for name in sorted(reference)[2:]:
        (root / name).unlink()
    calls = []
    original = adapter.forward
    monkeypatch.setattr(adapter, "forward", lambda b: calls.append(1) or original(b))
    resumed = extract(adapter, task, "train", ["block.0"], batch_size=32, progress=False)
    # one single-episode forward to learn the hooked layers' calls, then the missing episodes
    assert len(calls) == 1 + (240 - 128 + 31) // 32
    for name, arr in reference.items():
        np.testing.assert_array_equal(load_file(str(root / name))["latents"], arr)
    np.testing.assert_array_equal(resumed.layer("block.0"), full.layer("block.0"))
    assert not list(root.glob(".*tmp"))


# A child process that extracts the train split slowly enough to be killed mid-run.
SLOW_EXTRACT = """
import sys, time
import probekit.extraction as extraction
from probekit.adapters import load_model
from probekit.tasks import load_task

extraction.SHARD_SIZE = 16
adapter = load_model(sys.argv[1], device="cpu")
forward = adapter.forward
adapter.forward = lambda batch: time.sleep(0.05) or forward(batch)
extraction.extract(adapter, load_task("boxes-tiny", [sys.argv[2]]), "train", batch_size=8,
                   progress=False)
"""


def shard_files(root: Path) -> dict[str, Path]:
    return {str(p.relative_to(root)): p for p in root.rglob("shard-*.safetensors")}


def test_extraction_killed_with_sigkill_resumes_to_the_uninterrupted_shards(
        setup, tiny_gpt2, tiny_task_dir, tmp_path, monkeypatch):
    adapter, task = setup
    monkeypatch.setattr(extraction, "SHARD_SIZE", 16)  # 240 episodes: 15 shards × 3 layers
    monkeypatch.setenv("PROBEKIT_CACHE", str(tmp_path / "killed"))
    root = latents_dir(adapter, task, "train")
    child = subprocess.Popen([sys.executable, "-c", SLOW_EXTRACT, str(tiny_gpt2),
                              str(tiny_task_dir)], env={**os.environ, "OMP_NUM_THREADS": "1"},
                             stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while len(shard_files(root)) < 6:  # two shards of every layer are done: kill it
        assert child.poll() is None, child.stderr.read()
        assert time.monotonic() < deadline
        time.sleep(0.005)
    child.send_signal(signal.SIGKILL)
    child.communicate()
    assert child.returncode == -signal.SIGKILL
    done = {name: (p.stat().st_ino, p.stat().st_mtime_ns) for name, p in shard_files(root).items()}
    assert 6 <= len(done) < 45 and not list(root.rglob("manifest.json"))

    written = []
    write = extraction._write_shard
    monkeypatch.setattr(extraction, "_write_shard",
                        lambda path, *a: written.append(path) or write(path, *a))
    resumed = extract(adapter, task, "train", batch_size=8, progress=False)
    assert len(written) == 45 - len(done)
    assert {n: (p.stat().st_ino, p.stat().st_mtime_ns) for n, p in shard_files(root).items()
            if n in done} == done  # what the killed run finished is kept as it is
    assert all(p.name.startswith(".") for p in root.rglob("*.tmp"))  # a killed writer's temp

    monkeypatch.setenv("PROBEKIT_CACHE", str(tmp_path / "whole"))
    whole = extract(adapter, task, "train", batch_size=8, progress=False)
    mine, theirs = shard_files(root), shard_files(whole.root)
    assert mine.keys() == theirs.keys()
    for name in mine:
        assert mine[name].read_bytes() == theirs[name].read_bytes(), name
    for layer in adapter.layers():
        assert (root / layer / "manifest.json").read_text() == \
            (whole.root / layer / "manifest.json").read_text()
    np.testing.assert_array_equal(resumed.stack(), whole.stack())


def test_stopping_after_the_last_hooked_layer_keeps_the_values(setup, tmp_path, monkeypatch):
    adapter, task = setup
    monkeypatch.setenv("PROBEKIT_CACHE", str(tmp_path))
    rows = list(task.dataset("test"))
    later: list[int] = []
    handle = adapter.module("block.1").register_forward_hook(lambda *a: later.append(1))
    try:
        latents = extract(adapter, task, "test", ["embed", "block.0"], batch_size=16,
                          progress=False)
    finally:
        handle.remove()
    assert len(later) == 1  # only the one-episode forward that learns the calls ran past it
    batch = adapter.batch(rows)
    with torch.no_grad():
        hs = adapter.model(**batch.inputs, output_hidden_states=True).hidden_states
    idx = torch.arange(len(rows))[:, None]
    for i, name in enumerate(["embed", "block.0"]):
        torch.testing.assert_close(torch.from_numpy(latents.layer(name)),
                                   hs[i][idx, batch.positions], atol=2e-3, rtol=2e-3)


class Twice(nn.Module):
    """Embeddings, one block applied twice, then a narrower projection."""

    def __init__(self, vocab: int):
        super().__init__()
        self.embed, self.block = nn.Embedding(vocab, 16), nn.Linear(16, 16)
        self.proj = nn.Linear(16, 8)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.proj(self.block(torch.tanh(self.block(self.embed(ids)))))


def test_a_layer_run_twice_keeps_its_last_output_and_widths_fit_apart(tiny_task_dir):
    from probekit.adapters import ModuleAdapter
    from probekit.decodability import SPLITS, DecodabilityProbe, layer_groups, probe_data
    from probekit.worlds.boxes import Boxes

    torch.manual_seed(0)
    model = Twice(len(Boxes().vocabulary()))
    adapter = ModuleAdapter(model, {"embed": model.embed, "block": model.block,
                                    "proj": model.proj}, device="cpu")
    task = load_task("boxes-tiny", [tiny_task_dir])
    latents = extract(adapter, task, "val", batch_size=16, progress=False)
    rows = list(task.dataset("val"))
    batch = adapter.batch(rows)
    with torch.no_grad():
        second = model.block(torch.tanh(model.block(model.embed(batch.inputs["input_ids"]))))
    idx = torch.arange(len(rows))[:, None]
    torch.testing.assert_close(torch.from_numpy(latents.layer("block")),
                               second[idx, batch.positions], atol=2e-3, rtol=2e-3)
    assert [latents.dim(n) for n in latents.layers] == [16, 16, 8]

    data = {s: probe_data(task, s, extract(adapter, task, s, progress=False), task.targets)
            for s in SPLITS}
    assert layer_groups(data) == [range(0, 2), range(2, 3)]
    result = DecodabilityProbe(progress=False).run(adapter, task)
    assert result.layers == ["embed", "block", "proj"]
    tests = [r["test"] for r in result.rows()]
    assert len(tests) == 3 * len(task.targets) * 6 and all(np.isfinite(tests))


def test_autocast_latents_are_cached_apart_and_close(setup):
    adapter, task = setup
    full = extract(adapter, task, "val", ["block.1"], progress=False)
    bf16 = extract(adapter, task, "val", ["block.1"], autocast="bf16", progress=False)
    assert bf16.root != full.root and "autocast-bf16" in str(bf16.root)
    np.testing.assert_allclose(bf16.layer("block.1"), full.layer("block.1"), atol=0.1)
    assert not np.array_equal(bf16.layer("block.1"), full.layer("block.1"))


@pytest.mark.parametrize("kwargs, error", [
    ({"batch_size": 0}, UserError), ({"batch_size": "many"}, UserError),
    ({"autocast": "bf61"}, UnknownNameError)])
def test_bad_extraction_options(setup, kwargs, error):
    adapter, task = setup
    with pytest.raises(error):
        extract(adapter, task, "val", **kwargs)


def test_auto_batch_size_on_the_cpu(setup):
    adapter, task = setup
    assert extraction.auto_batch_size(adapter, list(task.dataset("val").select(range(4)))) == \
        extraction.CPU_BATCH


def test_probes_fit_from_the_shards_a_layer_at_a_time_as_all_at_once(setup, monkeypatch):
    import probekit.decodability.data as data_module
    from probekit.decodability import SPLITS, DecodabilityProbe, layer_groups, probe_data

    adapter, task = setup
    data = {s: probe_data(task, s, extract(adapter, task, s, progress=False), task.targets)
            for s in SPLITS}
    assert layer_groups(data) == [range(0, 3)]
    probe = DecodabilityProbe(progress=False)
    together = probe.run(adapter, task, twin=adapter.random_init(0))
    monkeypatch.setattr(data_module, "PROBE_MEMORY", 1)  # one layer in memory at a time
    assert layer_groups(data) == [range(0, 1), range(1, 2), range(2, 3)]
    apart = probe.run(adapter, task, twin=adapter.random_init(0))
    # Probe scores are equal; description lengths agree to the probes' tolerance (L-BFGS
    # finishes its last iterations on the probes still running, so batching moves the last
    # digits of the MDL prefix fits).
    bits = [(a["mdl_bits"], b["mdl_bits"]) for a, b in zip(apart.rows(), together.rows())]
    assert [dict(r, mdl_bits=None) for r in apart.rows()] == \
        [dict(r, mdl_bits=None) for r in together.rows()]
    assert all((a is None) == (b is None) for a, b in bits)
    assert [a for a, _ in bits if a is not None] == pytest.approx(
        [b for _, b in bits if b is not None], rel=1e-5)
    s, t = apart.scores(), together.scores()
    assert s.pop("mdl") == pytest.approx(t.pop("mdl"), rel=1e-5) and s == t


def _positions_step_by_step(enc, episodes, cut=None):
    """The step positions, query positions and answer ids by one scan per step (the plain
    reference for `HFAdapter.batch`, which finds them all at once)."""
    length = enc["input_ids"].shape[1]
    positions, query, answer = [], [], []
    for b, ep in enumerate(episodes):
        offsets = enc["offset_mapping"][b].tolist()
        valid = [bool(m) and hi > lo for m, (lo, hi) in
                 zip(enc["attention_mask"][b].tolist(), offsets)]
        row = []
        for lo, hi in ep["step_spans"]:
            hits = [t for t, (a, z) in enumerate(offsets) if valid[t] and a < hi and z > lo]
            row.append(hits[-1])
        positions.append(row)
        q0 = ep["query_span"][0]
        hits = [t for t, (a, z) in enumerate(offsets) if valid[t] and a <= q0 < z] \
            if q0 >= 0 else []
        ok = bool(hits) and 0 < hits[0] <= (cut or length)
        query.append(hits[0] - 1 if ok else -1)
        answer.append(int(enc["input_ids"][b, hits[0]]) if ok else -1)
    return positions, query, answer


def test_batch_positions_match_a_scan_per_step_under_a_subword_tokenizer(setup, tiny_gpt2):
    """A byte-pair tokenizer (a word in several pieces, padding where episodes differ in
    length): the positions `HFAdapter.batch` finds all at once equal a scan per step."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from probekit.errors import DataError

    _, task = setup
    rows = list(task.dataset("val").select(range(12)))
    raw = Tokenizer(models.BPE(unk_token="[UNK]"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    raw.train_from_iterator([r["text"] for r in rows], trainers.BpeTrainer(
        vocab_size=60, special_tokens=["[PAD]", "[UNK]"]))
    tok = PreTrainedTokenizerFast(tokenizer_object=raw, pad_token="[PAD]", unk_token="[UNK]")
    adapter = load_model(str(tiny_gpt2), device="cpu")
    adapter.tokenizer = tok
    episodes = [dict(r) for r in rows]
    batch = adapter.batch(episodes)
    enc = tok([e["text"] for e in episodes], return_offsets_mapping=True, padding=True,
              return_tensors="pt", add_special_tokens=False)
    assert (enc["attention_mask"] == 0).any()  # padded: the episodes differ in length
    positions, query, answer = _positions_step_by_step(enc, episodes)
    assert batch.positions.tolist() == positions
    assert batch.query_positions.tolist() == query
    assert batch.answer_ids.tolist() == answer
    assert any(q >= 0 for q in query)
    # a step no token covers (a span past the text's end) is refused, naming the step
    broken = [dict(e) for e in episodes]
    broken[3]["step_spans"] = [list(s) for s in broken[3]["step_spans"]]
    broken[3]["step_spans"][2] = [len(broken[3]["text"]) + 5, len(broken[3]["text"]) + 9]
    with pytest.raises(DataError, match=r"^step 2 of episode .* is not covered by any token"):
        adapter.batch(broken)


def test_rows_and_step_columns_read_at_once_equal_reads_one_by_one(setup):
    """`rows_of` (one query) gives exactly the rows `table[i]` gives, in the order asked, and
    `step_column` the per-step labels of the column's own dtype as Python lists would."""
    from probekit.tasks import rows_of, step_column

    _, task = setup
    ds, pairs = task.dataset("val"), task.pairs("val")
    order = [7, 2, 2, 11, 0]
    assert rows_of(ds, order) == [ds[i] for i in order]
    assert rows_of(pairs, np.array([3, 1])) == [pairs[3], pairs[1]]
    assert rows_of(ds, []) == []
    part = ds.select(range(9))
    for t in task.targets:
        got = step_column(part.with_format("arrow"), f"label.{t.name}")
        want = np.asarray(part[f"label.{t.name}"])
        assert got.dtype == want.dtype and np.array_equal(got, want, equal_nan=True)
