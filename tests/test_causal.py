"""Causal probes on a tiny GPT-2 built in the test: Captum's patching against a hand-written hook,
the cached fast path against Captum, the identities every patch must satisfy, and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from probekit.adapters import load_model
from probekit.causal import CachedPatcher, CaptumPatcher, CausalProbe, PairSet, layer_activations
from probekit.causal.pairs import site_names, site_positions
from probekit.causal.probe import _groups
from probekit.causal.readouts import ProbeReadout, TokenReadout
from probekit.errors import ModelError, UserError
from probekit.tasks import load_task

LAYERS = ["embed", "block.0", "block.1"]


@pytest.fixture(scope="module")
def adapter(tiny_gpt2):
    return load_model(tiny_gpt2, device="cpu")


@pytest.fixture(scope="module")
def task(tiny_task_dir):
    return load_task("boxes-tiny", [tiny_task_dir])


@pytest.fixture(scope="module")
def batch(adapter, task):
    pairs = PairSet.build(adapter, task, "test", max_pairs=12)
    return next(pairs.batches(adapter, 6))


@pytest.fixture(scope="module")
def readouts(adapter, batch):
    answers = torch.cat([batch.base.answer_ids, batch.source.answer_ids]).tolist()
    rng = np.random.default_rng(0)
    probe = ProbeReadout("block.0", ["x"], np.arange(4), rng.normal(size=(1, 4, 32)),
                         np.zeros((1, 4)))
    return [TokenReadout(adapter, answers + [1, 2]), probe]


def which(batch, n=2):
    return torch.zeros(len(batch.step), n, dtype=torch.long)


def site_groups(batch):
    return _groups(site_positions(batch.base, batch.step), batch.base.inputs["input_ids"].shape[1])


def hand_patch(adapter, layer, batch, positions, source_acts, candidates):
    """A plain forward hook that overwrites `positions` of `layer` with the source's output."""
    out = []
    for b, pos in enumerate(positions):
        def hook(module, args, output, b=b, pos=pos):
            output = output.clone()
            output[0, pos] = source_acts[b, pos]
            return output

        handle = adapter.module(layer).register_forward_hook(hook)
        try:
            with torch.no_grad():
                logits = adapter.model(**{k: v[b:b + 1] for k, v in batch.base.inputs.items()},
                                       use_cache=False).logits
        finally:
            handle.remove()
        out.append(logits[0, batch.base.query_positions[b], candidates])
    return torch.stack(out)


@pytest.mark.parametrize("layer", LAYERS)
def test_captum_equals_hand_written_hook(adapter, batch, readouts, layer):
    token = readouts[0]
    source = layer_activations(adapter, [layer], batch.source)[layer]
    positions = batch.base.positions[torch.arange(len(batch.step)), batch.step]
    groups = torch.full(batch.base.inputs["input_ids"].shape, -1)
    groups[torch.arange(len(positions)), positions] = 0
    (captum,) = CaptumPatcher(adapter, [token]).patch(layer, batch.base, groups, source,
                                                      which(batch, 1))
    hand = hand_patch(adapter, layer, batch, positions.tolist(), source,
                      torch.as_tensor(token.classes))
    torch.testing.assert_close(captum[:, 0], hand, atol=1e-5, rtol=0)


@pytest.mark.parametrize("layer", LAYERS)
def test_cached_path_equals_captum(adapter, batch, readouts, layer):
    groups = site_groups(batch)
    source = layer_activations(adapter, [layer], batch.source)[layer]
    captum = CaptumPatcher(adapter, readouts).patch(layer, batch.base, groups, source,
                                                    which(batch))
    cached = CachedPatcher(adapter, readouts).patch(layer, batch.base, groups, source,
                                                    which(batch))
    for a, b in zip(captum, cached):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    # sites hold the same token in base and source, so only blocks carry the change there
    moved = bool((captum[0] != captum[0][:, :1]).any())
    assert moved == (layer != "embed")


def test_cached_path_equals_captum_at_every_position(adapter, batch, readouts):
    B, T = batch.base.inputs["input_ids"].shape
    groups = torch.arange(T).repeat(B, 1)  # one run per position
    source = layer_activations(adapter, ["block.0"], batch.source)["block.0"]
    captum = CaptumPatcher(adapter, readouts[:1]).patch("block.0", batch.base, groups, source,
                                                        which(batch, 1))
    cached = CachedPatcher(adapter, readouts[:1]).patch("block.0", batch.base, groups, source,
                                                        which(batch, 1))
    torch.testing.assert_close(captum[0], cached[0], atol=1e-5, rtol=0)


@pytest.mark.parametrize("patcher", [CaptumPatcher, CachedPatcher])
@pytest.mark.parametrize("layer", LAYERS)
def test_patching_every_position_gives_the_source_run(adapter, batch, readouts, patcher, layer):
    p = patcher(adapter, readouts)
    groups = torch.zeros(batch.base.inputs["input_ids"].shape, dtype=torch.long)
    source = layer_activations(adapter, [layer], batch.source)[layer]
    patched = p.patch(layer, batch.base, groups, source, which(batch))
    order = adapter.layers()
    for r, got, src, base in zip(readouts, patched, p.clean(batch.source, which(batch)),
                                 p.clean(batch.base, which(batch))):
        upstream = r.layer is not None and order.index(r.layer) < order.index(layer)
        torch.testing.assert_close(got[:, 0], base if upstream else src, atol=1e-5, rtol=0)


@pytest.mark.parametrize("patcher", [CaptumPatcher, CachedPatcher])
@pytest.mark.parametrize("layer", LAYERS)
def test_patching_own_activations_changes_nothing(adapter, batch, readouts, patcher, layer):
    p = patcher(adapter, readouts)
    own = layer_activations(adapter, [layer], batch.base)[layer]
    patched = p.patch(layer, batch.base, site_groups(batch), own, which(batch))
    for got, clean in zip(patched, p.clean(batch.base, which(batch))):
        torch.testing.assert_close(got, clean[:, None].expand_as(got), atol=1e-5, rtol=0)


def test_misaligned_pairs_are_skipped_and_counted(adapter, task):
    table = task.pairs("test")
    pairs = [table[i] for i in range(6)]
    bases = [task.dataset("test")[p["base_index"]] for p in pairs]
    pairs[2] = {**pairs[2], "source.text": "put the apple in box 0 . " + pairs[2]["source.text"]}
    found = PairSet.aligned(adapter, pairs, bases)
    assert (len(found), found.skipped) == (5, 1)


def test_causal_probe_end_to_end(adapter, task):
    result = CausalProbe(max_pairs=24, batch_size=8, attribution_pairs=8, n_steps=4).run(
        adapter, task, ["embed", "block.1"])
    assert result.main == "token" and set(result.outcomes) == {"token", "probe"}
    block = result.block("block.1")
    assert block["pairs"] + block["skipped"] == 24 and block["layer"] == "block.1"
    assert block["ci95"][0] <= block["iia"] <= block["ci95"][1]
    assert 0 <= block["baseline_iia"] <= 1
    rows = result.rows()
    assert {r["position"] for r in rows} <= set(site_names(5))
    assert {r["readout"] for r in rows} == {"token", "probe"}
    steps = [r for r in rows if r["position"] == "step" and r["readout"] == "token"]
    assert all(r["steering"] is None or 0 <= r["steering"] <= 1 for r in steps)
    assert any(r["attribution"] is not None for r in rows if r["readout"] == "token")
    # the probe reads block.1 at the last step: patching that very vector is not scored
    last = [r for r in rows if r["readout"] == "probe" and r["layer"] == "block.1"
            and r["position"] == "step"]
    assert not last or last[0]["pairs"] < 24
    scores = result.scores("block.1", decodability=0.5, random_init=0.1)
    assert scores["verdict"] in ("causal", "decodable-not-causal", "neither")
    assert 0 <= scores["world_model_score"] <= 1


def test_same_seed_same_causal_scores(adapter, task):
    probe = CausalProbe(max_pairs=10, batch_size=5, steering=False, attribution=False)
    a, b = probe.run(adapter, task, ["block.0"]), probe.run(adapter, task, ["block.0"])
    assert a.rows() == b.rows()


def test_task_without_pairs_is_refused(adapter, tiny_task_dir, tmp_path):
    text = (tiny_task_dir / "boxes-tiny.yaml").read_text()
    (tmp_path / "boxes-nocf.yaml").write_text(
        text.replace("name: boxes-tiny", "name: boxes-nocf").split("counterfactual:")[0])
    task = load_task("boxes-nocf", [tmp_path])
    with pytest.raises(UserError, match="no counterfactual pairs"):
        CausalProbe(max_pairs=4).run(adapter, task)


def test_token_readout_needs_a_token_head(tiny_gpt2, task, tmp_path):
    import shutil

    from transformers import GPT2Model

    headless = tmp_path / "headless"
    shutil.copytree(tiny_gpt2, headless)
    GPT2Model.from_pretrained(tiny_gpt2).save_pretrained(headless)
    model = load_model(headless, device="cpu")
    with pytest.raises(ModelError, match="no token head"):
        CausalProbe(readouts=["token"], max_pairs=4).run(model, task, ["block.0"])


def test_unknown_readout_and_method(adapter, task):
    with pytest.raises(UserError, match="did you mean 'token'"):
        CausalProbe(readouts=["tokens"], max_pairs=4).run(adapter, task, ["block.0"])
    with pytest.raises(UserError, match="patching method"):
        CausalProbe(method="fast", max_pairs=4, steering=False).run(adapter, task, ["block.0"])
