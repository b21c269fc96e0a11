"""Vision adapters (V-JEPA 2, I-JEPA) on frames: steps as their patch tokens, patches that
write whole steps, the latent surprise, loading from a folder and a Hub id alike.

Random tiny models built from configs (no download), on synthetic frames rows.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from probekit.adapters import ImageAdapter, VJEPA2Adapter, load_model
from probekit.adapters.hooks import Site, capture, intercept
from probekit.causal.interventions import Swap, index_lists
from probekit.causal.pairs import differ
from probekit.errors import DataError, ModelError

S, FPS, SIZE = 4, 2, 32  # steps, frames per step, frame side (the models read 64 and 32)


def save_vjepa2(folder: Path, seed: int = 0, crop_size: int = 64) -> Path:
    from transformers import VJEPA2Config, VJEPA2Model

    torch.manual_seed(seed)
    config = VJEPA2Config(crop_size=crop_size, patch_size=16, frames_per_clip=8, tubelet_size=2,
                          hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                          mlp_ratio=2.0, pred_hidden_size=32, pred_num_hidden_layers=2,
                          pred_num_attention_heads=4, pred_mlp_ratio=2.0)
    VJEPA2Model(config).save_pretrained(folder)
    return folder


def save_ijepa(folder: Path, seed: int = 0, image_size: int = 32) -> Path:
    from transformers import IJepaConfig, IJepaModel

    torch.manual_seed(seed)
    config = IJepaConfig(image_size=image_size, patch_size=8, hidden_size=32, num_hidden_layers=2,
                         num_attention_heads=2, intermediate_size=64)
    IJepaModel(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("vision")
    return {"vjepa2": save_vjepa2(root / "tiny-vjepa2"), "ijepa": save_ijepa(root / "tiny-ijepa")}


def rows(n: int, seed: int = 0, steps: int = S, fps: int = FPS) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [{"frames": rng.integers(0, 256, (steps * fps, 1, SIZE, SIZE), dtype=np.uint8),
             "step_spans": [[i, i + 1] for i in range(steps)]} for _ in range(n)]


def test_vjepa2_reads_a_step_as_the_mean_of_its_tokens_and_patches_all_of_them(folders):
    a = load_model(str(folders["vjepa2"]), device="cpu")
    assert isinstance(a, VJEPA2Adapter) and a.layers() == ["embed", "block.0", "block.1"]
    assert a.identity.adapter == "vision" and a.identity.architecture == "vjepa2"
    config = a.model.config
    assert (a.identity.width, a.identity.depth) == (config.hidden_size, config.num_hidden_layers)
    assert (a.random_init(1).identity.width, a.random_init(1).identity.depth) == \
        (a.identity.width, a.identity.depth)
    b = a.batch(rows(3))
    K = a.step_width(b)  # one tubelet (2 frames) per step, 4 × 4 patches
    assert K == 16 and b.inputs["patches"].shape == (3, S * K, 2 * 3 * 16 * 16)
    assert b.positions[0].tolist() == [15, 31, 47, 63] and (b.query_positions == -1).all()
    assert torch.equal(a.patchify(a.unpatchify(b.inputs["patches"])), b.inputs["patches"])
    full = capture(a, b, a.layers())
    with torch.no_grad(), intercept(a, capture=[Site(x, b.positions, K)
                                                for x in a.layers()]) as read:
        a.forward(b)
    for x in a.layers():
        assert torch.allclose(read[x], full[x].reshape(3, S, K, -1).mean(2), atol=1e-6)
    # a patch at step 1 of block.0 writes its 16 tokens and nothing before them
    pos = index_lists(torch.arange(S * K)[None].expand(3, -1) // K == 1)
    src = torch.roll(full["block.0"], 1, 0)
    with torch.no_grad(), intercept(a, capture=[Site("block.0")],
                                    edit={"block.0": Swap(pos, src[:, K:2 * K]).edit()}) as got:
        a.forward(b)
    assert torch.allclose(got["block.0"][:, K:2 * K], src[:, K:2 * K], atol=1e-6)
    assert torch.equal(got["block.0"][:, :K], full["block.0"][:, :K])


def test_swapping_the_differing_patch_tokens_at_embed_reproduces_the_source(folders):
    """The causal ceiling on video: `diff` names the tokens whose pixels differ."""
    a = load_model(str(folders["vjepa2"]), device="cpu")
    base = rows(2, seed=1)
    source = [dict(r, frames=r["frames"].copy()) for r in base]
    for r in source:  # a change from step 2 on, in one corner of the frames
        r["frames"][2 * FPS:, :, :8, :8] = 255
    b, s = a.batch(base), a.batch(source)
    mask = differ(b, s)
    assert mask[:, :2 * a.step_width(b)].sum() == 0 and 0 < mask.sum() < mask.numel() // 4
    pos = index_lists(mask)
    emb = capture(a, s, ["embed"])["embed"]
    values = emb[torch.arange(2)[:, None], pos]
    with torch.no_grad(), intercept(a, edit={"embed": Swap(pos, values).edit()}):
        patched = a.forward(b)
    with torch.no_grad():
        want = a.forward(s)
    assert (patched - want).abs().max() < 1e-4


def test_vjepa2_latent_surprise_reads_only_the_past(folders):
    a = load_model(str(folders["vjepa2"]), device="cpu")
    assert a.surprise_kinds() == ("latent",)
    possible = rows(1, seed=2)[0]
    impossible = dict(possible, frames=possible["frames"].copy())
    impossible["frames"][2 * FPS:] = 255 - impossible["frames"][2 * FPS:]  # from step 2 on
    b = a.batch([possible, impossible])
    got = a.surprise(b)
    again = a.surprise(b)
    assert got.shape == (2, S) and got.dtype == torch.float64 and torch.equal(got, again)
    assert (got[:, 0] == 0).all() and (got[:, 1:] > 0).all()
    assert torch.allclose(got[0, :2], got[1, :2]) and not torch.allclose(got[0, 2], got[1, 2])


def test_ijepa_reads_frames_one_by_one_and_has_no_surprise(folders):
    a = load_model(str(folders["ijepa"]), device="cpu")
    assert isinstance(a, ImageAdapter) and a.identity.architecture == "ijepa"
    b = a.batch(rows(2))
    K = a.step_width(b)
    assert K == FPS * 16 and b.positions[0].tolist() == [31, 63, 95, 127]
    full = capture(a, b, ["embed", "block.1"])
    with torch.no_grad(), intercept(a, capture=[Site("block.1", b.positions, K)]) as read:
        a.forward(b)
    assert torch.allclose(read["block.1"], full["block.1"].reshape(2, S, K, -1).mean(2),
                          atol=1e-6)
    # frame 3 (step 1) alone changes: only its own 16 tokens' embeddings move
    other = [dict(r, frames=r["frames"].copy()) for r in rows(2)]
    for r in other:
        r["frames"][3] = 0
    moved = (capture(a, a.batch(other), ["embed"])["embed"] - full["embed"]).abs().amax(-1) > 0
    assert moved[:, 48:64].all() and moved.sum() == 2 * 16
    assert a.surprise_kinds() == ()
    with pytest.raises(ModelError, match="defines no surprise"):
        a.surprise(b)
    twin = a.random_init(3)
    assert twin.identity.id.endswith("@random-init") and twin.layers() == a.layers()
    assert not torch.equal(twin.forward(b), a.forward(b))


def test_frames_per_step_against_the_tubelet(folders):
    a = load_model(str(folders["vjepa2"]), device="cpu")
    one = a.batch(rows(1, fps=1))  # 1 frame per step: each repeated into a whole tubelet
    assert a.step_width(one) == 16 and one.inputs["patches"].shape[1] == S * 16
    four = a.batch(rows(1, fps=4))  # 4 frames per step: two tubelets
    assert a.step_width(four) == 32
    with pytest.raises(DataError, match="draws 3 frames per step but .* tubelets of 2 frames"):
        a.batch(rows(1, fps=3))
    with pytest.raises(DataError, match="carry no frames.*frames task"):
        a.batch([{"step_spans": [[0, 1]], "text": "x"}])

    class Textual:
        name = "boxes"
        frames_per_step = None

    with pytest.raises(DataError, match="task boxes has no frames view"):
        a.check_task(Textual())


def test_a_hub_id_loads_through_the_same_path_as_its_folder(folders, monkeypatch):
    """The Hub id resolves from the local Hugging Face cache (HF_HUB_OFFLINE, no network)."""
    from huggingface_hub import constants

    cache = Path(constants.HF_HUB_CACHE)
    repo = cache / "models--probekit-test--tiny-vjepa2"
    snap = repo / "snapshots" / ("b" * 40)
    shutil.copytree(folders["vjepa2"], snap, dirs_exist_ok=True)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text("b" * 40)
    hub = load_model("probekit-test/tiny-vjepa2", device="cpu")
    local = load_model(str(folders["vjepa2"]), device="cpu")
    assert isinstance(hub, VJEPA2Adapter) and hub.identity.id == "probekit-test/tiny-vjepa2"
    b = local.batch(rows(1))
    assert torch.equal(hub.forward(b), local.forward(b))


def test_vision_checkpoints_load_from_safetensors_only(folders, tmp_path):
    from safetensors.torch import load_file

    folder = tmp_path / "pickled"
    folder.mkdir()
    shutil.copy(folders["ijepa"] / "config.json", folder)
    torch.save(load_file(folders["ijepa"] / "model.safetensors"), folder / "pytorch_model.bin")
    with pytest.raises(ModelError, match="safetensors only"):
        load_model(str(folder), device="cpu")
