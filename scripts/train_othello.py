"""Train the shipped Othello checkpoint: a small GPT-2 that reads `othello-6` move lists
(next-token prediction only, as Othello-GPT in Li et al. 2023) and is saved to
probekit/checkpoints/othello6-gpt2.

    python scripts/train_othello.py [--steps 4000] [--games 100000] [--out DIR]

Training games are drawn from the othello world with their own seed (never the task's splits),
`--length` steps long so that the prediction after a test game's last move is trained too, and
each batch row is shown under one of the four board symmetries that fix the opening position
(an exact augmentation: the image of a random legal game is an equally likely one). The metric
is Li et al.'s legal-move rate: on every step of a game, is the model's top-1 next token a legal
move for the player to move (`pass` where nothing is legal)? It is printed on held-out games as
training goes and on the task's `test` split at the end, and saved in training.json.
One thread, reproducible: same arguments, same weights (on the same torch build).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core: before torch is imported
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402
from transformers import GPT2Config, GPT2LMHeadModel  # noqa: E402

from probekit.tasks import load_task  # noqa: E402
from probekit.tokenizer import word_tokenizer  # noqa: E402
from probekit.worlds.othello import Othello  # noqa: E402

OUT = Path(__file__).resolve().parent.parent / "probekit" / "checkpoints" / "othello6-gpt2"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--warmup", type=float, default=0.05, help="share of steps warming up")
    ap.add_argument("--games", type=int, default=100000, help="distinct training games")
    ap.add_argument("--length", type=int, default=28, help="steps per training game")
    ap.add_argument("--n-embd", type=int, default=128)
    ap.add_argument("--n-layer", type=int, default=4)
    ap.add_argument("--n-head", type=int, default=4)
    ap.add_argument("--no-symmetry", action="store_true", help="train on the games as drawn")
    ap.add_argument("--eval-every", type=int, default=250)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--task", default="othello-6", help="an othello-world task")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()

    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    start = time.perf_counter()
    task = load_task(args.task)
    world = task.spec.world_for("test")
    train_world = Othello(**{**world.params, "length": args.length})
    tokenizer = word_tokenizer(world.vocabulary())
    rng = np.random.default_rng([args.seed, 20261130])
    texts = [train_world.episode(rng).text
             for _ in tqdm(range(args.games), desc="draw training games")]
    ids = tokenizer(texts, return_tensors="pt")["input_ids"]
    held_out = [world.episode(rng) for _ in range(500)]  # the task's knobs; not its splits
    held_ids, held_legal = legal_targets(tokenizer, world, [e.text for e in held_out],
                                         [e.labels for e in held_out])
    syms = symmetries(tokenizer, world)[:1 if args.no_symmetry else None]
    check_symmetries(world, syms, tokenizer, ids[:50])
    data_seconds = time.perf_counter() - start

    config = GPT2Config(vocab_size=len(tokenizer), n_positions=32, n_embd=args.n_embd,
                        n_layer=args.n_layer, n_head=args.n_head, bos_token_id=0,
                        eos_token_id=0, pad_token_id=0, resid_pdrop=0.0, embd_pdrop=0.0,
                        attn_pdrop=0.0)
    model = GPT2LMHeadModel(config)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"GPT-2 {args.n_layer}x{args.n_embd} ({args.n_head} heads): {n_params:,} parameters; "
          f"{len(ids):,} games of {args.length} steps drawn in {data_seconds:.0f}s")
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=args.steps,
                                                pct_start=args.warmup)
    gen = torch.Generator().manual_seed(args.seed)
    curve, losses = [], []
    model.train()
    bar = tqdm(range(args.steps), desc="train othello6-gpt2")
    for step in bar:
        idx = torch.randint(0, len(ids), (args.batch_size,), generator=gen)
        sym = torch.randint(0, len(syms), (args.batch_size,), generator=gen)
        batch = syms[sym[:, None], ids[idx]]
        loss = model(input_ids=batch, labels=batch).loss
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
        if (step + 1) % args.eval_every == 0 or step == args.steps - 1:
            rate = legal_rate(model, held_ids, held_legal)
            model.train()
            mean = float(np.mean(losses[-args.eval_every:]))
            curve.append({"step": step + 1, "loss": round(mean, 4),
                          "held_out_legal": round(rate, 4),
                          "seconds": round(time.perf_counter() - start)})
            bar.set_postfix(loss=f"{mean:.3f}", legal=f"{rate:.3f}")
            tqdm.write(f"step {step + 1}: loss {mean:.4f}, held-out legal top-1 {rate:.4f}")
    train_seconds = time.perf_counter() - start - data_seconds
    model.eval()

    test = task.dataset("test")
    test_ids, test_legal = legal_targets(
        tokenizer, world, test["text"],
        [{f"legal.{s}": test[f"label.legal.{s}"] for s in world.squares}], batched=True)
    test_rate = legal_rate(model, test_ids, test_legal)
    torch.manual_seed(args.seed)  # the random-init baseline: the same draws on every run
    fresh = GPT2LMHeadModel(config).eval()
    random_rate = legal_rate(fresh, test_ids, test_legal)
    wall = time.perf_counter() - start

    args.out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(args.out)
    tokenizer.save_pretrained(args.out)
    (args.out / "training.json").write_text(json.dumps(
        {"task": task.name, "task_fingerprint": task.fingerprint, "objective": "next-token",
         "architecture": f"GPT-2 {args.n_layer} layers x {args.n_embd}, {args.n_head} heads",
         "parameters": n_params, "steps": args.steps, "batch_size": args.batch_size,
         "games": args.games, "game_length": args.length, "symmetries": len(syms),
         "seed": args.seed, "lr": args.lr, "warmup": args.warmup, "threads": 1,
         "data_seconds": round(data_seconds), "train_seconds": round(train_seconds),
         "wall_seconds": round(wall), "final_loss": curve[-1]["loss"],
         "test_legal_top1": round(test_rate, 4), "random_init_test_legal_top1":
         round(random_rate, 4), "curve": curve}, indent=2) + "\n")
    print(f"saved {args.out} (final loss {curve[-1]['loss']:.3f}; legal top-1 on "
          f"{args.task}/test {test_rate:.4f}, random init {random_rate:.4f}; "
          f"wall {wall / 60:.1f} min on one thread)")


def legal_targets(tokenizer, world: Othello, texts, labels, batched: bool = False
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids [N, T] of the games and, per step, which next tokens are legal [N, T, V]:
    the squares of the `legal.*` labels after that step, or `pass` where none is."""
    ids = tokenizer(list(texts), return_tensors="pt")["input_ids"]
    if batched:  # one dict of columns, each [N][T]
        legal = np.stack([np.asarray(labels[0][f"legal.{s}"]) for s in world.squares], -1)
    else:  # one dict per game, each column [T]
        legal = np.stack([np.stack([lab[f"legal.{s}"] for s in world.squares], -1)
                          for lab in labels])
    legal = torch.as_tensor(legal, dtype=torch.bool)  # [N, T, S]
    square_ids = torch.tensor(tokenizer.convert_tokens_to_ids(list(world.squares)))
    out = torch.zeros(*ids.shape, len(tokenizer), dtype=torch.bool)
    out[..., square_ids] = legal
    out[..., tokenizer.convert_tokens_to_ids("pass")] = ~legal.any(-1)
    return ids, out


@torch.no_grad()
def legal_rate(model: GPT2LMHeadModel, ids: torch.Tensor, legal: torch.Tensor) -> float:
    """Share of steps (each move's prediction of the next, the last move's included) where the
    top-1 next token is legal."""
    model.eval()
    top = model(input_ids=ids).logits.argmax(-1)  # [N, T]
    return legal.gather(-1, top[..., None]).float().mean().item()


def symmetries(tokenizer, world: Othello) -> torch.Tensor:
    """Token-id maps [4, V] of the board symmetries that fix the opening position: identity,
    both diagonal reflections and the half turn (`pass` and the specials map to themselves)."""
    n = world.params["size"]
    maps = [lambda r, c: (r, c), lambda r, c: (c, r), lambda r, c: (n - 1 - c, n - 1 - r),
            lambda r, c: (n - 1 - r, n - 1 - c)]
    sq = world.squares
    out = torch.arange(len(tokenizer)).repeat(len(maps), 1)
    for k, f in enumerate(maps):
        for i, name in enumerate(sq):
            r, c = f(*divmod(i, n))
            out[k, tokenizer.convert_tokens_to_ids(name)] = \
                tokenizer.convert_tokens_to_ids(sq[r * n + c])
    return out


def check_symmetries(world: Othello, syms: torch.Tensor, tokenizer, ids: torch.Tensor) -> None:
    """Every image of a legal game must be a legal game (the augmentation is exact)."""
    index = {s: i for i, s in enumerate(world.squares)}
    for game in ids:
        for k in range(len(syms)):
            words = tokenizer.convert_ids_to_tokens(syms[k][game].tolist())
            if world.play([index.get(w, -1) for w in words]) is None:
                raise AssertionError(f"symmetry {k} makes an illegal game of {words}")


if __name__ == "__main__":
    main()
