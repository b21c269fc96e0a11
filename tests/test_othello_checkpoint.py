"""The shipped Othello checkpoint plays legal moves: on test games of `othello-6`, its top-1 next
token is a legal move (or a forced `pass`) at ≥ 90% of steps, as Li et al. (2023) measure
Othello-GPT, while its random-init twin's almost never is."""

from __future__ import annotations

import numpy as np
import torch

from probekit.adapters import load_model
from probekit.tasks import load_task

GAMES = 100


def legal_top1(adapter, episodes, world) -> float:
    """Share of steps (each move's prediction of the next, the last move's included) where the
    top-1 next token is legal for the player to move: a square its `legal.*` label marks, or
    `pass` where none is."""
    tok = adapter.tokenizer
    square_ids = tok.convert_tokens_to_ids(list(world.squares))
    pass_id = tok.convert_tokens_to_ids("pass")
    batch = adapter.batch([e.row() for e in episodes])
    with torch.no_grad():
        logits = adapter.forward(batch)
    top = logits.gather(1, batch.positions[..., None].expand(-1, -1, logits.shape[-1]))
    top = top.argmax(-1)  # [N, T]: the predicted token after each step
    hits = []
    for e, pred in zip(episodes, top.tolist()):
        legal = np.stack([e.labels[f"legal.{s}"] for s in world.squares], -1)  # [T, S]
        for row, p in zip(legal, pred):
            ok = {square_ids[i] for i in np.flatnonzero(row)} or {pass_id}
            hits.append(p in ok)
    return float(np.mean(hits))


def test_shipped_othello_checkpoint_plays_legal_moves():
    task = load_task("othello-6")
    world = task.spec.world_for("test")
    # The first games of the test split, drawn as the split draws them (without the pairs).
    episodes = [world.episode(task.example_rng("test", i)) for i in range(GAMES)]
    assert [e.text for e in episodes[:3]] == [task.generate("test", i)[0].text
                                               for i in range(3)]
    adapter = load_model("othello6-gpt2", device="cpu")
    trained = legal_top1(adapter, episodes, world)
    random = legal_top1(adapter.random_init(0), episodes, world)
    assert trained >= 0.9, (trained, random)
    assert random < 0.3, (trained, random)
