"""A second look at the latent VoE of a spectrum model that keeps its latent predictor, without
probekit's adapter, batching, step bookkeeping or `PredictionProbe`: each violation pair is run
one episode at a time through the model's own modules, the prediction error |predicted − encoded|
(mean over the latent's dimensions) is summed over the positions from the violating step to the
last step (not over a closing question's tokens), and
the impossible episode is counted more surprising when its sum is larger (a tie counts half).

    python scripts/second_look_voe.py spectrum-othello-4-a1 othello-4

Pairs edited at the first step are skipped (nothing before it predicts it), as `PredictionProbe`
skips them; every other pair of the test split is used (PredictionProbe draws at most 500).
"""

from __future__ import annotations

import sys

import numpy as np
import torch
from torch.nn import functional as F

import probekit
from probekit.spectrum import checkpoint


@torch.no_grad()
def errors(model, tokens: list[int]) -> np.ndarray:
    """Prediction error at each position 1 … T−1 of one episode (position 0: nothing)."""
    x = torch.tensor([tokens])
    hidden = model.embed(x)
    for block in model.blocks:
        hidden = block(hidden)
    h = model.norm(hidden)
    encoded = F.layer_norm(hidden, hidden.shape[-1:])
    predicted = model.predictor(torch.cat([h[:, :-1], model.embed.input(x[:, 1:])], -1))
    return np.concatenate([[0.0], (predicted - encoded[:, 1:]).abs().mean(-1)[0].numpy()])


def main(name: str, task_name: str) -> None:
    model, meta = checkpoint.load(checkpoint.SHIPPED / name)
    if not model.config.predictor:
        sys.exit(f"{name} keeps no latent predictor")
    table = probekit.load_task(task_name).violations("test")
    wins = []
    for row in table:
        if row["step"] == 0:
            continue
        steps = row["possible.token_steps"]
        start = steps[row["step"] - 1] + 1  # the violating step's first token …
        end = steps[-1] + 1  # … to the last step's last (a closing question is not a step)
        pos = errors(model, row["possible.tokens"])[start:end].sum()
        imp = errors(model, row["impossible.tokens"])[start:end].sum()
        wins.append(1.0 if imp > pos else 0.5 if imp == pos else 0.0)
    wins = np.asarray(wins)
    print(f"{name} on {task_name}: latent VoE {wins.mean():.3f} over {len(wins)} pairs "
          f"(from the violating step on)")


if __name__ == "__main__":
    main(*sys.argv[1:3])
