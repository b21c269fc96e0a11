"""Train the shipped quickstart checkpoint: a tiny GPT-2 that reads `boxes` text (next-token
prediction only) and is saved to probekit/checkpoints/boxes-gpt2-tiny.

    python scripts/train_quickstart.py [--steps 12000] [--out DIR]

Training episodes are drawn from the boxes world with their own seed, so they are not the
task's probe splits. Reproducible: same arguments, same weights (on the same torch build).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import GPT2Config, GPT2LMHeadModel

from probekit.tasks import load_task
from probekit.tokenizer import word_tokenizer
from probekit.worlds.boxes import Boxes

OUT = Path(__file__).resolve().parent.parent / "probekit" / "checkpoints" / "boxes-gpt2-tiny"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=12000)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--episodes", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--task", default="boxes", help="a boxes-world task to train on")
    ap.add_argument("--include-path", action="append", default=[], metavar="DIR")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()

    torch.manual_seed(args.seed)
    task = load_task(args.task, args.include_path)
    world = task.spec.world_for("train")
    tokenizer = word_tokenizer(world.vocabulary())
    rng = np.random.default_rng([args.seed, 20261128])
    # A curriculum in the data: half of the episodes have fewer objects and operations, where
    # looking an object up is easy to learn; the rest are drawn from the task's own knobs.
    knobs = task.spec.knobs
    easy = [Boxes(**{**knobs, "n_objects": int(rng.integers(2, knobs["n_objects"] + 1)),
                     "n_ops": int(rng.integers(2, knobs["n_ops"] + 1))})
            for _ in range(16)]
    texts = [(easy[i % 16] if i % 2 == 0 else world).episode(rng).text
             for i in range(args.episodes)]
    texts += [world.episode(rng).text for _ in range(256)]  # held out, the task's own knobs
    enc = tokenizer(texts, padding=True, return_tensors="pt")
    ids, mask = enc["input_ids"][:args.episodes], enc["attention_mask"][:args.episodes]
    held_out = enc["input_ids"][args.episodes:], enc["attention_mask"][args.episodes:]

    config = GPT2Config(vocab_size=len(tokenizer), n_positions=256, n_embd=64, n_layer=4,
                        n_head=4, bos_token_id=0, eos_token_id=0, pad_token_id=0,
                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    model = GPT2LMHeadModel(config)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=args.steps,
                                                pct_start=0.05)
    model.train()
    bar = tqdm(range(args.steps), desc="train boxes-gpt2-tiny")
    for step in bar:
        idx = torch.randint(0, len(ids), (args.batch_size,))
        labels = ids[idx].masked_fill(mask[idx] == 0, -100)
        loss = model(input_ids=ids[idx], attention_mask=mask[idx], labels=labels).loss
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 250 == 0 or step == args.steps - 1:
            acc = query_accuracy(model, *held_out)
            model.train()
            bar.set_postfix(loss=f"{loss.item():.3f}", query_acc=f"{acc:.3f}")
    model.eval()
    args.out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(args.out)
    tokenizer.save_pretrained(args.out)
    (args.out / "training.json").write_text(json.dumps(
        {"task": task.name, "task_fingerprint": task.fingerprint, "objective": "next-token",
         "steps": args.steps, "batch_size": args.batch_size, "episodes": args.episodes,
         "seed": args.seed, "lr": args.lr, "final_loss": round(loss.item(), 4),
         "held_out_query_accuracy": round(acc, 4)}, indent=2) + "\n")
    print(f"saved {args.out} (final loss {loss.item():.3f}, query accuracy {acc:.3f})")


@torch.no_grad()
def query_accuracy(model: GPT2LMHeadModel, ids: torch.Tensor, mask: torch.Tensor) -> float:
    """How often the model answers the closing question (the episode's last token) right."""
    model.eval()
    last = mask.sum(1) - 1
    logits = model(input_ids=ids, attention_mask=mask).logits
    rows = torch.arange(len(ids))
    return (logits[rows, last - 1].argmax(-1) == ids[rows, last]).float().mean().item()


if __name__ == "__main__":
    main()
