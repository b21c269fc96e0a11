"""The spectrum family: objective, EMA and stop-gradient, collapse monitor, checkpoints, the
trainer's bad input and the shipped references."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

import probekit
from probekit.adapters import SpectrumAdapter, load_model
from probekit.errors import ModelError, UnknownNameError, UserError
from probekit.spectrum import (CollapseMonitor, Objective, SpectrumConfig, SpectrumLoss,
                               SpectrumTrainer, checkpoint, effective_rank, init_model)
from probekit.spectrum.train import draw, quick_probe

REFERENCE = "spectrum-othello-4-a0.75"  # a shipped reference whose latents beat its twin's
TINY = dict(d_model=16, n_layers=2, n_heads=2, d_ff=32, batch_size=16, episodes=200,
            probe_episodes=60, progress=False)



@pytest.fixture(scope="module")
def task(tiny_task_dir):
    return probekit.load_task("boxes-tiny", [tiny_task_dir])


@pytest.fixture(scope="module")
def trained(task):
    """A small run in the middle of the spectrum, with the anti-collapse term on."""
    return SpectrumTrainer(0.5, vicreg=1.0, steps=200, log_every=50, **TINY).fit(task)


@pytest.fixture(scope="module")
def saved(trained, tmp_path_factory):
    return trained.save(tmp_path_factory.mktemp("spectrum") / "boxes-tiny-a0.5")


def inputs(task, n=8):
    data = draw(task, task.spec.world_for("train"), n, 0, 9, "tokens")
    return data.x, data.mask


# --- objective ----------------------------------------------------------------------------------

def test_training_reduces_each_loss(trained):
    first, last = trained.history_[0], trained.history_[-1]
    for term in ("token", "latent", "vicreg", "total"):
        assert last[term] < first[term], term
    assert [h["step"] for h in trained.history_] == [50, 100, 150, 200]


@pytest.mark.parametrize("alpha, terms", [(0.0, {"token", "total"}),
                                          (1.0, {"latent", "total"}),
                                          (0.5, {"token", "latent", "total"})])
def test_the_ends_of_the_spectrum(task, alpha, terms):
    vocab = len(task.spec.world_for().vocabulary())
    model = init_model(SpectrumConfig(vocab_size=vocab, d_model=16, n_heads=2, d_ff=32,
                                      token_head=alpha < 1), 0)
    loss = SpectrumLoss(model, Objective(alpha))
    assert set(loss(*inputs(task))) == terms
    assert hasattr(loss, "target") == (alpha > 0)  # no EMA network and no predictor at a = 0
    assert model.has_token_head == (alpha < 1)


def test_ema_update_and_stop_gradient(task):
    vocab = len(task.spec.world_for().vocabulary())
    model = init_model(SpectrumConfig(vocab_size=vocab, d_model=16, n_heads=2, d_ff=32), 0)
    loss = SpectrumLoss(model, Objective(0.5))
    terms = loss(*inputs(task))
    terms["latent"].backward()
    assert all(p.grad is None and not p.requires_grad for p in loss.target.parameters())
    assert all(p.grad is not None for p in loss.predictor.parameters())
    assert model.embed.input.weight.grad is not None  # the online side learns
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    before = [t.clone() for t in loss.target.parameters()]
    loss.update_target(0.9)
    for b, t, o in zip(before, loss.target.parameters(), model.parameters()):
        assert torch.allclose(t, 0.9 * b + 0.1 * o)
    o = Objective(0.5)
    ms = [o.momentum(s, 100) for s in range(101)]
    assert ms[0] == pytest.approx(0.99) and ms[-1] == pytest.approx(0.999)
    assert all(a <= b for a, b in zip(ms, ms[1:]))


@pytest.mark.parametrize("kwargs, station", [
    ({"alpha": 0.0}, "ntp"), ({"alpha": 0.0, "horizon": 4}, "multi-token"),
    ({"alpha": 0.5}, "next-latent"), ({"alpha": 0.5, "horizon": 4}, "multi-token"),
    ({"alpha": 0.5, "horizon": 4, "target": "summary"},
                                      "future-summary"), ({"alpha": 1.0}, "jepa")])
def test_stations(kwargs, station):
    assert Objective(**kwargs).station == station


def test_multi_token_and_summary_losses(task):
    vocab = len(task.spec.world_for().vocabulary())
    model = init_model(SpectrumConfig(vocab_size=vocab, d_model=16, n_heads=2, d_ff=32,
                                      horizon=3), 0)
    assert len(model.heads) == 3
    terms = SpectrumLoss(model, Objective(0.5, horizon=3, target="summary"))(*inputs(task))
    assert all(torch.isfinite(v) for v in terms.values())


# --- collapse -----------------------------------------------------------------------------------

def test_effective_rank():
    g = torch.Generator().manual_seed(0)
    iso = torch.randn(4000, 8, generator=g)
    assert effective_rank(iso) == pytest.approx(8, abs=0.3)
    line = torch.randn(500, 1, generator=g) * torch.ones(1, 8)
    assert effective_rank(line) == pytest.approx(1, abs=1e-6)
    assert effective_rank(torch.ones(50, 8)) == 0.0


def test_collapse_monitor_detects_a_collapsed_run(task, trained):
    """A learning rate far too high drives every latent to nearly one point while the latent
    loss looks excellent: only the monitor tells."""
    bad = SpectrumTrainer(1.0, lr=1.0, steps=40, log_every=20, **TINY).fit(task)
    assert bad.collapse_.collapsed and "COLLAPSED" in str(bad.collapse_)
    assert bad.history_[-1]["latent"] < 0.1
    assert bad.collapse_.probe < bad.collapse_.random_init_probe
    assert not trained.collapse_.collapsed
    assert bad.meta_.collapse["collapsed"] is True


def test_monitor_bad_input():
    with pytest.raises(UserError, match="min_rank"):
        CollapseMonitor(min_rank=2).check(torch.randn(10, 4))
    with pytest.raises(UserError, match=r"\[N >= 2, d\]"):
        CollapseMonitor().check(torch.randn(4))


# --- checkpoints --------------------------------------------------------------------------------

def test_checkpoint_reloads_to_identical_outputs(trained, saved, task):
    assert {p.name for p in saved.iterdir()} == {"config.json", "model.safetensors",
                                                 "spectrum.json"}
    model, meta = checkpoint.load(saved)
    x, _ = inputs(task)
    with torch.no_grad():
        assert torch.equal(model(x), trained.model_(x))
    assert meta == trained.meta_
    assert meta.family == "next-latent" and meta.alpha == 0.5 and meta.task == "boxes-tiny"
    assert meta.world == "boxes" and meta.steps == 200 and meta.seed == 0


def test_load_model_resolves_a_spectrum_folder(saved, task):
    adapter = load_model(saved, device="cpu")
    assert isinstance(adapter, SpectrumAdapter) and adapter.has_token_head
    assert adapter.identity.adapter == "spectrum"
    assert (adapter.identity.family, adapter.identity.alpha) == ("next-latent", 0.5)
    assert adapter.layers() == ["embed", "block.0", "block.1"]
    twin, again = adapter.random_init(3), adapter.random_init(3)
    assert twin.identity.sha256 == again.identity.sha256 != adapter.identity.sha256
    shape = (adapter.model.config.d_model, adapter.model.config.n_layers)
    assert (adapter.identity.width, adapter.identity.depth) == shape
    assert (twin.identity.width, twin.identity.depth) == shape
    assert twin.model.config == adapter.model.config


def test_spectrum_checkpoint_end_to_end(saved, tiny_task_dir):
    (r,) = probekit.evaluate(str(saved), ["boxes-tiny"], include=[tiny_task_dir], device="cpu",
                             progress=False).results
    assert r["model"]["spectrum"] == {"family": "next-latent", "alpha": 0.5}
    assert r["model"]["adapter"] == "spectrum"
    assert r["scores"]["decodability"]["random_init"] is not None
    assert {row["readout"] for row in r["per_cell"]} == {"token"}  # it has a token head
    cells = [row for row in r["per_cell"] if row["layer"] == "block.1"]
    assert cells and not any(row["reachable"] for row in cells)  # the layer feeding the head


def test_the_checkpoint_keeps_the_latent_predictor(trained, saved, task):
    """The trained predictor is saved and reloaded; with it the model has a latent surprise
    beside its token surprise, and its twin re-initialises the predictor too."""
    assert trained.model_.config.predictor and trained.model_.predictor is not None
    model, _ = checkpoint.load(saved)
    x, _ = inputs(task)
    with torch.no_grad():
        for got, want in zip(model.predict_next(x), trained.model_.predict_next(x)):
            assert torch.equal(got, want)
        predicted, encoded = model.predict_next(x)
    assert predicted.shape == encoded.shape == (*x.shape, 16) and not predicted[:, -1].any()
    adapter = load_model(saved, device="cpu")
    assert adapter.surprise_kinds() == ("token", "latent")
    rows = list(task.dataset("val").select(range(4)))
    batch = adapter.batch(rows)
    latent = adapter.surprise(batch, "latent")
    assert latent.shape == batch.positions.shape and (latent[:, 1:] > 0).all()
    twin = adapter.random_init(0)
    assert not torch.equal(twin.model.predictor[0].weight, adapter.model.predictor[0].weight)
    assert not torch.allclose(twin.surprise(batch, "latent"), latent)


def test_a_checkpoint_saved_without_its_predictor_still_loads(saved, tmp_path):
    """Checkpoints written before the predictor was kept: token surprise only."""
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "old"
    shutil.copytree(saved, folder)
    _edit(folder, "config.json", lambda c: c.pop("predictor"))
    weights = load_file(str(folder / "model.safetensors"))
    save_file({k: v for k, v in weights.items() if not k.startswith("predictor.")},
              str(folder / "model.safetensors"))
    adapter = load_model(folder, device="cpu")
    assert not adapter.model.config.predictor and adapter.surprise_kinds() == ("token",)


@pytest.mark.parametrize("kwargs", [{"alpha": 0.0}, {"alpha": 0.5, "horizon": 2}])
def test_no_predictor_is_kept_where_it_does_not_predict_the_next_latent(task, kwargs):
    run = SpectrumTrainer(steps=4, log_every=2, **{**TINY, **kwargs}).fit(task)
    assert not run.model_.config.predictor and not hasattr(run.model_, "predictor")
    with pytest.raises(ModelError, match="horizon 1"):
        SpectrumConfig(vocab_size=5, horizon=2, predictor=True)


def _edit(folder, name, change):
    path = folder / name
    raw = json.loads(path.read_text())
    change(raw)
    path.write_text(json.dumps(raw))


@pytest.mark.parametrize("name, change, match", [
    ("spectrum.json", lambda m: m.update(alpha=0.0), "family 'next-latent' does not match"),
    ("spectrum.json", lambda m: m.update(alpha=1.0), "does not match alpha"),
    ("spectrum.json", lambda m: m.update(family="jepa", alpha=1.0), "token_head=True"),
    ("spectrum.json", lambda m: m.update(alpha=1.5), "alpha must be in"),
    ("spectrum.json", lambda m: m.pop("seed"), "missing field 'seed'"),
    ("spectrum.json", lambda m: m.update(steps="80"), "steps: expected int"),
    ("spectrum.json", lambda m: m.update(colour="red"), "unknown field 'colour'"),
    ("spectrum.json", lambda m: m.update(world="mars"), "unknown world 'mars'"),
    ("spectrum.json", lambda m: m.update(schema="probekit.spectrum/9"), "schema"),
    ("spectrum.json", lambda m: m.update(device="tpu"), "device 'tpu' is not cpu or cuda"),
    ("config.json", lambda c: c.update(vocab_size=c["vocab_size"] + 1), "words"),
    ("config.json", lambda c: c.update(model_type="gpt2"), "model_type"),
    ("config.json", lambda c: c.update(d_model=32), "is \\(.*\\), not \\(.*32"),
    ("config.json", lambda c: c.update(n_layers=3), "lacks 'blocks.2"),
    ("config.json", lambda c: c.update(predictor=False), "unexpected 'predictor.0.bias'"),
])
def test_bad_checkpoint_metadata(saved, tmp_path, name, change, match):
    folder = tmp_path / "ckpt"
    shutil.copytree(saved, folder)
    _edit(folder, name, change)
    with pytest.raises(ModelError, match=match):
        load_model(folder, device="cpu")


@pytest.mark.parametrize("missing", ["spectrum.json", "model.safetensors"])
def test_checkpoint_missing_file(saved, tmp_path, missing):
    folder = tmp_path / "ckpt"
    shutil.copytree(saved, folder)
    (folder / missing).unlink()
    with pytest.raises(ModelError, match=f"has no {missing}"):
        load_model(folder, device="cpu")


def test_checkpoint_with_unreadable_weights(saved, tmp_path):
    folder = tmp_path / "ckpt"
    shutil.copytree(saved, folder)
    (folder / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ModelError, match="not a readable safetensors file"):
        load_model(folder, device="cpu")


# --- bad input ----------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, error, match", [
    ({"alpha": 1.5}, UserError, r"alpha must be in \[0, 1\]"),
    ({"alpha": -0.1}, UserError, r"alpha must be in \[0, 1\]"),
    ({"alpha": 0.5, "inputs": "obs"}, ModelError, "token head.*continuous-only"),
    ({"alpha": 0.5, "target": "past"}, UnknownNameError, "latent target 'past'"),
    ({"alpha": 0.5, "horizon": 0}, UserError, "horizon must be at least 1"),
    ({"alpha": 0.5, "ema": (0.999, 0.99)}, UserError, "ema must rise"),
    ({"alpha": 0.5, "steps": 0}, UserError, "steps must be at least 1"),
    ({"alpha": 0.5, "device": "gpu0"}, UserError, "device 'gpu0' is not a device"),
    ({"alpha": 0.5, "device": "meta"}, UserError, "holds no data"),
])
def test_bad_training_input(task, kwargs, error, match):
    with pytest.raises(error, match=match):
        SpectrumTrainer(**{**TINY, **kwargs}).fit(task)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_training_on_an_absent_gpu_is_refused_before_any_work(task, monkeypatch):
    import probekit.spectrum.train as train

    monkeypatch.setattr(train, "draw", lambda *a, **k: pytest.fail("episodes were drawn"))
    with pytest.raises(UserError, match="device 'cuda' is not available here"):
        SpectrumTrainer(0.5, device="cuda", **TINY).fit(task)


def test_a_checkpoint_from_before_the_device_was_recorded_reads_as_cpu(saved, tmp_path):
    """spectrum.json files written before `device` existed were all trained on the CPU."""
    folder = tmp_path / "ckpt"
    shutil.copytree(saved, folder)
    assert checkpoint.load(folder)[1].device == "cpu"
    _edit(folder, "spectrum.json", lambda m: m.pop("device"))
    assert checkpoint.load(folder)[1].device == "cpu"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_training_on_a_gpu_is_the_cpu_run_to_float_tolerance(task):
    """The same run on the GPU: the same draws and initial weights, so the trained weights
    agree with the CPU run's to float tolerance; the model comes back on the CPU."""
    kwargs = dict(steps=30, log_every=10, **TINY)
    cpu = SpectrumTrainer(0.5, **kwargs).fit(task)
    gpu = SpectrumTrainer(0.5, device="cuda", **kwargs).fit(task)
    assert gpu.meta_.device == "cuda" and cpu.meta_.device == "cpu"
    assert next(gpu.model_.parameters()).device.type == "cpu"
    for (name, a), b in zip(cpu.model_.state_dict().items(), gpu.model_.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-3, rtol=1e-3), name


def test_token_head_on_continuous_input_is_refused():
    with pytest.raises(ModelError, match="continuous-only"):
        SpectrumConfig(inputs="obs", obs_dim=4, token_head=True)


def test_jepa_on_continuous_observations(task, tmp_path):
    run = SpectrumTrainer(1.0, inputs="obs", steps=20, log_every=10, **TINY).fit(task)
    folder = run.save(tmp_path / "obs-jepa")
    adapter = load_model(folder, device="cpu")
    assert adapter.inputs == "obs" and not adapter.has_token_head
    assert run.meta_.family == "jepa" and set(run.meta_.final) == {"latent", "total"}
    rows = list(task.dataset("val").select(range(4)))
    out = adapter.forward(adapter.batch(rows))
    assert out.shape == (4, 5, 16)


# --- shipped references -------------------------------------------------------------------------

def test_shipped_references_load_by_name():
    names = checkpoint.shipped()
    assert len({checkpoint.load(checkpoint.SHIPPED / n)[1].world for n in names}) >= 2
    assert len({checkpoint.load(checkpoint.SHIPPED / n)[1].alpha for n in names}) >= 5
    for name in names:
        adapter = load_model(name, device="cpu")
        assert adapter.identity.id == f"probekit/{name}" and adapter.identity.alpha is not None
    assert checkpoint.model_name(checkpoint.SHIPPED / REFERENCE) == REFERENCE  # by its name
    assert checkpoint.model_name("runs/x/boxes-a0-s1") == "runs/x/boxes-a0-s1"  # by its path
    size = sum(p.stat().st_size for p in checkpoint.SHIPPED.rglob("*") if p.is_file())
    assert size < 8 * 2 ** 20


def test_a_reference_beats_its_random_init_twin():
    """Measured afresh, on held-out episodes of its own world: the reference's probe score is
    above that of the same architecture at the run's initial weights."""
    model, meta = checkpoint.load(checkpoint.SHIPPED / REFERENCE)
    task = probekit.load_task(meta.task)
    world = task.spec.world_for("train")
    probe = {s: draw(task, world, n, 7, i + 10, model.config.inputs)
             for i, (s, n) in enumerate({"train": 100, "val": 50, "test": 50}.items())}
    trained = quick_probe(model, task, probe)
    twin = quick_probe(init_model(model.config, meta.seed), task, probe)
    assert trained > twin + 0.02, (trained, twin)


def test_side_by_side_references_read_the_world_as_text_and_as_video():
    """The bouncing-balls references of the README's side by side load by name, each reading
    its view: world tokens, or frames (the a = 0 pixel model, forward on two episodes)."""
    text, pixels, latent = (load_model(f"spectrum-balls-2{view}", device="cpu")
                            for view in ("-a0", "-frames-a0", "-frames-a1"))
    assert (text.inputs, text.has_token_head) == ("tokens", True)
    assert pixels.model.config.inputs == latent.model.config.inputs == "frames"
    assert pixels.model.config.pixel_head and latent.model.config.predictor
    task = probekit.load_task("balls-2-frames").limited(2)
    out = pixels.forward(pixels.batch(list(task.dataset("val"))))
    assert out.shape == (2, 16, 64) and torch.isfinite(out).all()
