"""The `frames` view (`probekit.worlds.render`): shapes and step alignment, pixels where the
observations put the balls, pairs and violations rendered too, determinism, the fingerprint,
the stored column and the spec's refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from probekit.errors import SpecError
from probekit.tasks import Task, TaskSpec, load_task
from probekit.worlds.render import GRAYS, PALETTE, render


def spec(frames: dict | None = None, **knobs) -> dict:
    raw = yaml.safe_load((Path(__file__).resolve().parent.parent / "tasks" /
                          "balls-2-frames.yaml").read_text())
    raw["name"] = "frames-test"
    raw["splits"] = {"train": {"size": 6, "seed": 1}, "val": {"size": 3, "seed": 2},
                     "test": {"size": 3, "seed": 3}}
    raw["knobs"].update(knobs)
    if frames is not None:
        raw["frames"] = frames
    return raw


def task(frames: dict | None = None, **knobs) -> Task:
    return Task(TaskSpec.parse(spec(frames, **knobs)))


def dense(params: dict, obs: np.ndarray, frames: dict) -> np.ndarray:
    """Reference renderer at one frame per step: every pixel against every ball."""
    size, T, K = frames["size"], obs.shape[0], obs.shape[1] // 3
    c = (np.arange(size) + 0.5) / size
    img = np.zeros((T, frames["channels"], size, size))
    colors = PALETTE[:K] if frames["channels"] == 3 else GRAYS[:K, None]
    for s in range(T):
        for k in range(K):
            x, y, seen = obs[s, 3 * k:3 * k + 3]
            if seen < 0.5:
                continue
            d = np.hypot(c[None, :] - x, c[::-1][:, None] - y) * size
            r = params["radius"] * size
            cover = (np.clip(r + 0.5 - d, 0, 1) if frames["style"] == "smooth" else d <= r)
            img[s] = np.maximum(img[s], cover[None] * colors[k][:, None, None])
    return np.rint(img).astype(np.uint8)


@pytest.mark.parametrize("frames", [{"size": 32, "frames_per_step": 1, "channels": 1},
                                    {"size": 24, "frames_per_step": 1, "channels": 3,
                                     "style": "flat"}])
def test_pixels_match_a_dense_reference(frames: dict):
    t = task(frames)
    world = t.spec.world_for("train")
    episodes = [t.generate("train", i)[0] for i in range(4)]
    for ep, got in zip(episodes, render(world, episodes, t.spec.frames)):
        np.testing.assert_array_equal(got, dense(world.params, ep.obs, t.spec.frames))


def test_step_alignment_and_pairs_carry_frames():
    t = task()  # balls-2-frames' knobs: 2 frames per step
    F = t.frames_per_step
    assert F == 2
    ep, pair, vio = t.generate("train", 0, violation=True)
    T = ep.n_steps
    assert ep.frames.shape == (T * F, 1, 32, 32) and ep.frames.dtype == np.uint8
    # The last frame of step s shows ball k where `obs` put it (its brightness-weighted mean).
    size = 32
    for s in range(T):
        img = ep.frames[s * F + F - 1, 0].astype(float)
        for k in range(2):
            x, y = ep.obs[s, 3 * k:3 * k + 2]
            mask = img == GRAYS[k]
            rows, cols = np.nonzero(mask)
            assert len(rows), f"ball {k} is not drawn at step {s}"
            assert abs((cols.mean() + 0.5) / size - x) < 1.5 / size
            assert abs(1 - (rows.mean() + 0.5) / size - y) < 1.5 / size
    # Pair and violation episodes are rendered too, identical to the base before their step.
    edited = [(pair.source, pair.step), (vio.possible, vio.step), (vio.impossible, vio.step)]
    if pair.placebo is not None:
        edited.append((pair.placebo.source, pair.placebo.step))
    for other, step in edited:
        assert other.frames.shape == ep.frames.shape
        np.testing.assert_array_equal(other.frames[:step * F], ep.frames[:step * F])
        assert not np.array_equal(other.frames[step * F:], ep.frames[step * F:])


def test_same_seed_same_bytes_and_the_fingerprint_follows_the_knobs():
    a, b = task(), task()
    assert a.fingerprint == b.fingerprint
    for i in range(3):
        assert a.generate("val", i)[0].frames.tobytes() == b.generate("val", i)[0].frames.tobytes()
    base = spec()["frames"]
    prints = {a.fingerprint}
    for change in ({"size": 16}, {"frames_per_step": 1}, {"channels": 3}, {"style": "flat"}):
        prints.add(task({**base, **change}).fingerprint)
    assert len(prints) == 5
    raw = spec()
    del raw["frames"]
    plain = Task(TaskSpec.parse(raw))
    assert plain.frames_per_step is None and plain.generate("train", 0)[0].frames is None
    assert plain.fingerprint not in prints


def test_stored_column_and_empty_placebo(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("PROBEKIT_CACHE", str(tmp_path))
    t = task()
    ds = t.dataset("train")
    assert ds.features["frames"].shape == (None, 1, 32, 32)
    assert ds.features["frames"].dtype == "uint8"
    ep = t.generate("train", 0)[0]
    np.testing.assert_array_equal(np.asarray(ds[0]["frames"], dtype=np.uint8), ep.frames)
    pairs = t.pairs("train")
    for row in pairs:
        n = len(row["placebo.frames"])
        assert n == (len(row["source.frames"]) if row["has_placebo"] else 0)
    assert "impossible.frames" in t.violations("train").column_names


def test_the_occluder_hides_what_it_covers():
    t = task(n_balls=3, occluder=0.3)
    ep = t.generate("train", 1)[0]
    hidden = ep.obs.reshape(ep.n_steps, 3, 3)[:, :, 2] < 0.5
    assert hidden.any()
    band = np.abs((np.arange(32) + 0.5) / 32 - 0.5) < 0.15
    assert (ep.frames[:, 0][:, :, band] == 60).all()  # the band is drawn over what it hides
    assert (ep.frames[:, 0][:, :, ~band] != 60).any()


@pytest.mark.parametrize("change, words", [
    ({"world": "groups", "knobs": {}}, "has no frames renderer"),
    ({"frames": {"size": 4}}, "size"),
    ({"frames": {"channels": 2}}, "channels"),
    ({"frames": {"colour": "red"}}, "unknown knob 'colour'"),
])
def test_bad_frames_fields_are_refused(change: dict, words: str):
    raw = {**spec(), **change}
    if raw["world"] == "groups":
        raw["targets"] = [{"name": "state", "kind": "class"}]
        raw.pop("counterfactual"), raw.pop("violations")
    with pytest.raises(SpecError, match=words):
        TaskSpec.parse(raw)


def test_the_registered_task():
    t = load_task("balls-2-frames")
    assert t.frames_per_step == 2 and t.spec.frames["size"] == 32


# --- export, card and preview ---------------------------------------------------------------

def test_export_writes_frames_and_a_preview(tmp_path: Path, monkeypatch):
    import datasets
    from PIL import Image

    from probekit.data import export, preview_name, shard_path, stale_cards, write_cards

    monkeypatch.setenv("PROBEKIT_CACHE", str(tmp_path / "cache"))
    t = task()
    out = export(t, tmp_path / "out")
    back = datasets.load_dataset("parquet", data_files=str(out / shard_path("episodes", "test")),
                                 split="train")
    assert back.features["frames"] == t.dataset("test").features["frames"]
    np.testing.assert_array_equal(np.asarray(back[0]["frames"], dtype=np.uint8),
                                  t.generate("test", 0)[0].frames)
    gif = out / preview_name(t)
    assert f"]({gif.name})" in (out / "README.md").read_text()
    with Image.open(gif) as im:  # 2×2 episodes of 32 pixels, 2-pixel borders, 3× larger
        assert im.size == (3 * 70, 3 * 70) and im.n_frames > 1
    # The cards folder keeps the preview beside the card and checks it for staleness.
    include = [str(tmp_path / "tasks")]
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "frames-test.yaml").write_text(yaml.safe_dump(spec()))
    write_cards(tmp_path / "cards", ["frames-test"], include)
    assert (tmp_path / "cards" / "frames-test.gif").read_bytes() == gif.read_bytes()
    assert stale_cards(tmp_path / "cards", ["frames-test"], include) == []
    (tmp_path / "cards" / "frames-test.gif").write_bytes(b"GIF89a")
    assert "frames-test.gif is missing or stale" in stale_cards(
        tmp_path / "cards", ["frames-test"], include)[0]


# --- the spectrum family on pixels ----------------------------------------------------------

@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_spectrum_trains_on_frames_and_the_adapter_reads_them(alpha: float, tmp_path: Path,
                                                              monkeypatch):
    import torch

    from probekit.adapters.spectrum import SpectrumAdapter
    from probekit.spectrum import SpectrumTrainer

    monkeypatch.setenv("PROBEKIT_CACHE", str(tmp_path / "cache"))
    t = task()
    trainer = SpectrumTrainer(alpha, inputs="frames", d_model=16, n_layers=1, n_heads=2,
                              d_ff=32, steps=3, episodes=8, probe_episodes=8, progress=False)
    trainer.fit(t)
    assert ("pixel" in trainer.history_[-1]) == (alpha < 1)
    assert trainer.model_.config.frame_channels == 2  # two grayscale frames per step
    adapter = SpectrumAdapter.from_folder(trainer.save(tmp_path / "model"), device="cpu")
    assert not adapter.has_token_head
    rows = list(t.dataset("val"))
    batch = adapter.batch(rows)
    assert batch.positions.tolist()[0] == list(range(16))
    with torch.no_grad():
        latents = adapter.forward(batch)
        direct = trainer.model_(torch.as_tensor(np.stack([
            t.generate("val", i)[0].frames.reshape(16, 2, 32, 32) for i in range(len(rows))])))
    assert latents.shape == (len(rows), 16, 16)
    torch.testing.assert_close(latents, direct)
    assert adapter.random_init(0).forward(batch).shape == latents.shape
    assert ("latent" in adapter.surprise_kinds()) == (alpha > 0)
    with pytest.raises(Exception, match="reads frames"):
        adapter.batch([{k: v for k, v in rows[0].items() if k != "frames"}])


def test_frames_inputs_need_a_frames_task():
    from probekit.errors import UserError
    from probekit.spectrum import SpectrumTrainer

    raw = spec()
    del raw["frames"]
    with pytest.raises(UserError, match="declares none"):
        SpectrumTrainer(1.0, inputs="frames", steps=1, episodes=2).fit(Task(TaskSpec.parse(raw)))
