"""Extraction: hooked values equal `output_hidden_states`, positions come from offsets, shards
are cached and an interrupted extraction resumes to identical data."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from probekit.adapters import load_model
from probekit.errors import UnknownNameError
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
    import probekit.extraction as extraction

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
    assert len(calls) == (240 - 128 + 31) // 32  # only the missing episodes ran
    for name, arr in reference.items():
        np.testing.assert_array_equal(load_file(str(root / name))["latents"], arr)
    np.testing.assert_array_equal(resumed.layer("block.0"), full.layer("block.0"))
    assert not list(root.glob(".*tmp"))
