"""Adapters beside the causal-LM one, each end to end through `probekit.evaluate`: a Hugging Face
encoder (BertModel), and any torch.nn.Module on world tokens or continuous observations."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import probekit
from probekit.adapters import ModuleAdapter, load_model
from probekit.adapters.module import encode
from probekit.errors import ModelError, UserError
from probekit.worlds.boxes import Boxes

VOCAB = len(Boxes().vocabulary())



class CumMean(nn.Module):
    """Running mean over positions: a causal mixing layer with no parameters."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = torch.arange(1, x.shape[1] + 1, device=x.device, dtype=x.dtype)[None, :, None]
        return x.cumsum(1) / n


class TokenNet(nn.Module):
    """A user's small causal model on world tokens, with next-token logits."""

    def __init__(self, d: int = 16):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, d)
        self.mix = nn.Sequential(CumMean(), nn.Linear(d, d), nn.Tanh())
        self.head = nn.Linear(d, VOCAB)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.mix(self.embed(ids)))


class ObsEncoder(nn.Module):
    """A JEPA-style encoder of observations: latents out, no token head."""

    def __init__(self, dim: int, d: int = 16):
        super().__init__()
        self.proj = nn.Linear(dim, d)
        self.context = nn.Sequential(CumMean(), nn.Linear(d, d), nn.GELU())

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.context(self.proj(obs))


class Bare(nn.Module):
    """A module with a parameter that no reset_parameters() covers."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(4))
        self.lin = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x * self.scale)


def obs_dim() -> int:
    return 3 + 3 + 2 * 4  # boxes-tiny: 3 actions, 3 objects, (3 boxes + out) x 2


@pytest.fixture(scope="module")
def episodes(tiny_task_dir):
    return list(probekit.load_task("boxes-tiny", [tiny_task_dir]).dataset("val").select(range(6)))


def test_encode_tokens_and_obs(episodes):
    b = encode(episodes, "tokens")
    ids, mask = b.inputs["input_ids"], b.inputs["attention_mask"]
    assert ids.shape[0] == 6 and mask.sum(1).tolist() == [len(e["tokens"]) for e in episodes]
    assert b.positions.tolist() == [e["token_steps"] for e in episodes]
    vocab = Boxes().vocabulary()
    for i, e in enumerate(episodes):
        q = int(b.query_positions[i])
        assert vocab[int(b.answer_ids[i])] == e["query_answer"] == vocab[int(ids[i, q + 1])]
    o = encode(episodes, "obs")
    assert o.inputs["obs"].shape == (6, 5, obs_dim()) and o.inputs["obs"].dtype == torch.float32
    assert o.positions.tolist() == [list(range(5))] * 6
    assert (o.query_positions == -1).all() and (o.answer_ids == -1).all()


def test_hf_encoder_end_to_end(tmp_path, tiny_task_dir):
    from transformers import BertConfig, BertModel

    from probekit.tokenizer import word_tokenizer

    tok = word_tokenizer(Boxes().vocabulary())
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=128,
                        pad_token_id=0)
    BertModel(config).save_pretrained(tmp_path / "bert")
    tok.save_pretrained(tmp_path / "bert")
    adapter = load_model(tmp_path / "bert", device="cpu")
    assert adapter.layers() == ["embed", "block.0", "block.1"] and not adapter.has_token_head
    assert type(adapter.module("embed")).__name__ == "BertEmbeddings"  # positions included
    (r,) = probekit.evaluate(adapter, ["boxes-tiny"], include=[tiny_task_dir], device="cpu",
                             causal=False, progress=False).results
    d = r["scores"]["decodability"]
    assert r["model"]["adapter"] == "hf" and d["random_init"] is not None
    assert d["layer"] in adapter.layers() and d["ci95"][0] <= d["value"] <= d["ci95"][1]


def test_token_module_end_to_end(tiny_task_dir):
    torch.manual_seed(0)
    net = TokenNet()
    adapter = ModuleAdapter(net, {"embed": net.embed, "mix": "mix"}, "tokens",
                            model_id="me/token-net", token_head=True, device="cpu")
    assert adapter.layers() == ["embed", "mix"] and adapter.module("mix") is net.mix
    (r,) = probekit.evaluate(adapter, ["boxes-tiny"], include=[tiny_task_dir], device="cpu",
                             causal=False, progress=False).results
    assert r["model"]["id"] == "me/token-net" and r["model"]["adapter"] == "module"
    assert r["model"]["sha256"] == adapter.identity.sha256 != r["model"]["revision"]
    assert {x["layer"] for x in r["per_layer"]} == {"embed", "mix"}
    assert r["scores"]["decodability"]["random_init"] is not None


def test_obs_module_end_to_end_with_interventions(tiny_task_dir):
    torch.manual_seed(0)
    net = ObsEncoder(obs_dim())
    adapter = ModuleAdapter(net, {"proj": "proj", "context": "context"}, "obs",
                            model_id="me/obs-jepa", family="jepa", alpha=1.0, device="cpu")
    (r,) = probekit.evaluate(adapter, ["boxes-tiny"], include=[tiny_task_dir], device="cpu",
                             progress=False).results
    assert r["model"]["spectrum"] == {"family": "jepa", "alpha": 1.0}
    # The running mean carries every earlier observation, so the obs probe reads locations well.
    assert r["scores"]["decodability"]["value"] > 0.3
    readouts = {row["readout"] for row in r["per_cell"]}
    assert readouts == {"probe"}  # no token head: the probe readout judges the interventions
    assert r["causal"]["ceiling"]["pairs"] > 0  # the input layer reproduces the source run


def test_random_init_twin_is_seeded_and_fresh():
    torch.manual_seed(0)
    net = TokenNet()
    adapter = ModuleAdapter(net, {"mix": "mix"}, "tokens", device="cpu")
    a, b, c = adapter.random_init(1), adapter.random_init(1), adapter.random_init(2)
    assert a.identity.sha256 == b.identity.sha256 != c.identity.sha256
    assert a.identity.sha256 != adapter.identity.sha256
    assert a.identity.id.endswith("@random-init") and type(a.model) is TokenNet
    assert torch.equal(net.embed.weight, adapter.model.embed.weight)  # the original is untouched
    assert a.module("mix") is a.model.mix


def test_random_init_needs_init_for_bare_parameters():
    adapter = ModuleAdapter(Bare(), {"lin": "lin"}, "obs", device="cpu")
    with pytest.raises(ModelError, match="scale.*init="):
        adapter.random_init(0)

    def init(m: nn.Module) -> None:
        nn.init.normal_(m.scale)
        m.lin.reset_parameters()

    twin = ModuleAdapter(Bare(), {"lin": "lin"}, "obs", init=init, device="cpu").random_init(0)
    assert not torch.equal(twin.model.scale, torch.ones(4))


@pytest.mark.parametrize("kwargs, error, match", [
    ({"inputs": "obs", "token_head": True}, ModelError, "token head.*continuous-only"),
    ({"inputs": "pixels"}, UserError, "inputs 'pixels' is not valid"),
    ({"layers": {"x": "nope"}}, ModelError, "no submodule 'nope'"),
    ({"layers": {"x": nn.Linear(2, 2)}}, ModelError, "not a submodule"),
    ({"layers": {}}, UserError, "at least one layer"),
])
def test_bad_module_adapter_input(kwargs, error, match):
    net = TokenNet()
    args = {"layers": {"mix": "mix"}, "inputs": "tokens", **kwargs}
    with pytest.raises(error, match=match):
        ModuleAdapter(net, args.pop("layers"), args.pop("inputs"), **args)


def test_load_model_points_a_module_to_module_adapter():
    with pytest.raises(UserError, match="ModuleAdapter"):
        load_model(TokenNet())


def test_forward_must_return_a_tensor(episodes):
    class Dict(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Embedding(VOCAB, 4)

        def forward(self, ids):
            return {"h": self.lin(ids)}

    adapter = ModuleAdapter(Dict(), {"lin": "lin"}, device="cpu")
    with pytest.raises(ModelError, match="returned dict"):
        adapter.forward(adapter.batch(episodes))

