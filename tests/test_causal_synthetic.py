"""A hand-built model whose state is carried at one known layer and position: the intervened
step's token at layer `mix`, which holds each token together with the one before it (the box
number). Layer `read` copies that one position into the query, whose next-token logits are the
box number. IIA must be high exactly there and near chance elsewhere; this model is not a
Hugging Face causal LM, so it runs the Captum path."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from probekit.adapters.base import Adapter, Batch, ModelIdentity
from probekit.causal import CausalProbe, layer_activations
from probekit.errors import ModelError
from probekit.tasks import load_task
from probekit.tokenizer import word_tokenizer
from probekit.worlds.boxes import Boxes


class Shift(nn.Module):
    """[x_t ; x_{t-1}]: each position with the token before it."""

    def __init__(self, pair: bool = False):
        super().__init__()
        self.pair = pair

    def forward(self, x: torch.Tensor) -> Any:
        prev = torch.cat([torch.zeros_like(x[:, :1]), x[:, :-1]], 1)
        out = torch.cat([x, prev], -1)
        return (out, prev) if self.pair else out


class Read(nn.Module):
    """Adds twice the latent at `pointer` to every position (a hard-wired attention head)."""

    def forward(self, h: torch.Tensor, pointer: torch.Tensor) -> torch.Tensor:
        rows = torch.arange(len(h), device=h.device)
        return h + 2 * h[rows, pointer][:, None]


class Toy(nn.Module):
    def __init__(self, vocab: int, pair: bool = False):
        super().__init__()
        self.embed = nn.Embedding(vocab, vocab)
        self.embed.weight.data = torch.eye(vocab)
        self.mix, self.read, self.vocab, self.pair = Shift(pair), Read(), vocab, pair

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                pointer: torch.Tensor) -> torch.Tensor:
        h = self.mix(self.embed(input_ids))
        h = h[0] if self.pair else h
        return self.read(h, pointer)[..., self.vocab:]  # logits: the previous-token half


class ToyAdapter(Adapter):
    """Words are tokens; `pointer` is the last step that mentions the queried object."""

    has_token_head = True

    def __init__(self, pair: bool = False):
        self.tokenizer = word_tokenizer(Boxes().vocabulary())
        self.vocab = self.tokenizer.get_vocab()
        self.model = Toy(len(self.vocab), pair).eval()
        self.device = torch.device("cpu")
        self.identity = ModelIdentity("test/toy", "1", "0" * 64, "toy", 1, "float32")

    def layers(self) -> list[str]:
        return ["embed", "mix", "read"]

    def module(self, layer: str) -> nn.Module:
        return getattr(self.model, self.check_layers([layer])[0])

    def batch(self, episodes: list[dict[str, Any]]) -> Batch:
        B = len(episodes)
        words = [e["text"].split(" ") for e in episodes]
        T = max(map(len, words))
        ids = torch.zeros(B, T, dtype=torch.long)
        mask = torch.zeros(B, T, dtype=torch.long)
        positions = torch.zeros(B, len(episodes[0]["step_spans"]), dtype=torch.long)
        query, answer, pointer = (torch.zeros(B, dtype=torch.long) for _ in range(3))
        for b, (e, w) in enumerate(zip(episodes, words)):
            ids[b, :len(w)] = torch.as_tensor([self.vocab[x] for x in w])
            mask[b, :len(w)] = 1
            starts = [len(" ".join(w[:i])) + (i > 0) for i in range(len(w))]
            for s, (_, end) in enumerate(e["step_spans"]):
                positions[b, s] = max(i for i, c in enumerate(starts) if c < end)
            query[b], answer[b] = len(w) - 2, ids[b, len(w) - 1]
            queried = w[-3]
            touched = [s for s, text in enumerate(e["surface"]) if queried in text.split()]
            pointer[b] = positions[b, touched[-1]]
        return Batch({"input_ids": ids, "attention_mask": mask, "pointer": pointer}, positions,
                     query, answer)

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.model(**batch.inputs)

    def random_init(self, seed: int) -> "ToyAdapter":
        return ToyAdapter(self.model.pair)


@pytest.fixture(scope="module")
def task(tiny_task_dir):
    return load_task("boxes-tiny", [tiny_task_dir])


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_state_carried_at_one_layer_and_position(task):
    result = CausalProbe(readouts=["token"], max_pairs=60, batch_size=20, attribution_pairs=20,
                         n_steps=4).run(ToyAdapter(), task)
    rows = {(r["layer"], r["position"]): r for r in result.rows()}
    carried = rows[("mix", "step")]
    assert carried["iia"] >= 0.95 and carried["effect"] == pytest.approx(1.0, abs=1e-5)
    assert carried["baseline_iia"] <= 0.6  # an unrelated episode's box number: chance (1/3)
    for where in [("embed", "step"), ("mix", "step+1"), ("mix", "query"), ("read", "step")]:
        if where in rows:
            assert rows[where]["iia"] <= 0.1, where
    assert carried["attribution"] == pytest.approx(1.0, abs=0.05)
    assert carried["steering"] >= 0.9  # edits along the probe's directions are followed
    assert rows[("read", "step")]["steering"] in (None, 0.0)  # downstream of nothing read
    block = result.block("mix")
    assert block["iia"] == carried["iia"] and block["skipped"] == 60 - block["pairs"]


def test_layer_that_outputs_two_tensors_is_refused(task):
    adapter = ToyAdapter(pair=True)
    rows = [task.dataset("test")[i] for i in range(2)]
    with pytest.raises(ModelError, match="layer mix outputs a tuple of 2 values; .* one tensor"):
        layer_activations(adapter, ["mix"], adapter.batch(rows))
    with pytest.raises(ModelError, match="one tensor"):
        CausalProbe(readouts=["token"], max_pairs=4, steering=False, attribution=False).run(
            adapter, task, ["mix"])
