"""Interchange interventions at every position of a mid layer: the cached fast path against
Captum's generic path and the hand-written loop a user would otherwise write.

A random-init GPT-2 reads counterfactual pairs of the `boxes-text` task (English sentences,
word-level tokens, about 150 per episode). Each method patches the source's activations into
every position of the middle block, one position at a time, and reads the next-token logits at
the query over the answer tokens:
- Captum `LayerFeatureAblation`, all positions in one forward (perturbations_per_eval = T) and
  one position per forward (perturbations_per_eval = 1);
- a plain loop of one hooked forward per position;
- `CachedPatcher`: the clean run's keys/values for the prefix, only the blocks above the layer,
  only the positions from the patch to the query.
Prints seconds (median of repeats), speed ratios and the largest difference from Captum.

    python benchmarks/patching.py            # GPT-2-small shape (12 × 768), 8 pairs (about
                                             # half an hour on 2 CPU cores: Captum's pass alone
                                             # takes 4 minutes a repeat)
    python benchmarks/patching.py --quick    # the quickstart shape (4 × 64), 8 pairs
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import torch


def adapter(n_layer: int, n_embd: int, n_head: int):
    """A random-init GPT-2 with the boxes word vocabulary, as an HFAdapter on the CPU."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from probekit.adapters import HFAdapter, ModelIdentity
    from probekit.tokenizer import word_tokenizer
    from probekit.worlds.boxes import Boxes

    tok = word_tokenizer(Boxes().vocabulary())
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tok), n_positions=256, n_embd=n_embd, n_layer=n_layer,
                        n_head=n_head, bos_token_id=0, eos_token_id=0, pad_token_id=0)
    model = GPT2LMHeadModel(config)
    identity = ModelIdentity("bench/gpt2", "0", "0" * 64, "hf", 1, "float32")
    return HFAdapter(model, tok, identity, device="cpu")


def hooked_loop(a, layer: str, base, source_acts: torch.Tensor, columns: torch.Tensor
                ) -> torch.Tensor:
    """One hooked forward per position, the whole batch at a time: [B, T, K]."""
    B, T = base.inputs["input_ids"].shape
    out = torch.empty(B, T, len(columns))
    rows = torch.arange(B)
    for p in range(T):
        def hook(module, args, output, p=p):
            output = output.clone()
            output[:, p] = source_acts[:, p]
            return output

        handle = a.module(layer).register_forward_hook(hook)
        try:
            with torch.no_grad():
                logits = a.model(**base.inputs, use_cache=False).logits
        finally:
            handle.remove()
        out[:, p] = logits[rows, base.query_positions][:, columns]
    return out


def timed(fn, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the quickstart model shape")
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("PROBEKIT_CACHE", tempfile.mkdtemp(prefix="probekit-bench-"))

    from probekit.causal import CachedPatcher, CaptumPatcher, PairSet, layer_activations
    from probekit.causal.readouts import TokenReadout
    from probekit.tasks import load_task

    shape = (4, 64, 4) if args.quick else (12, 768, 12)
    a = adapter(*shape)
    layer = f"block.{shape[0] // 2 - 1}"
    pairs = PairSet.build(a, load_task("boxes-text"), "test", max_pairs=max(2, args.pairs))
    batch = next(pairs.batches(a, args.pairs))
    B, T = batch.base.inputs["input_ids"].shape
    readout = TokenReadout(a, torch.cat([batch.base.answer_ids,
                                         batch.source.answer_ids]).tolist())
    which = torch.zeros(B, 1, dtype=torch.long)
    groups = torch.arange(T).repeat(B, 1)  # every position, one run each
    source = layer_activations(a, [layer], batch.source)[layer]
    columns = torch.as_tensor(readout.classes)

    methods = {
        "captum, perturbations_per_eval=T": lambda: CaptumPatcher(a, [readout], T).patch(
            layer, batch.base, groups, source, which)[0],
        "captum, perturbations_per_eval=1": lambda: CaptumPatcher(a, [readout], 1).patch(
            layer, batch.base, groups, source, which)[0],
        "hooked loop, one forward/position": lambda: hooked_loop(a, layer, batch.base, source,
                                                                 columns),
        "cached (probekit fast path)": lambda: CachedPatcher(a, [readout]).patch(
            layer, batch.base, groups, source, which)[0],
    }
    print(f"GPT-2 {shape[0]} layers × {shape[1]} dims (random init), {B} pairs × {T} positions "
          f"patched at {layer}; torch threads: {torch.get_num_threads()}")
    results = {}
    for name, fn in methods.items():  # the reference first, then each against it
        results[name] = timed(fn, args.repeats)
        seconds, out = results[name]
        diff = float((out - results["captum, perturbations_per_eval=T"][1]).abs().max())
        print(f"  {name:36s} {seconds:8.3f} s   max |Δ| vs captum {diff:.1e}", flush=True)
    fast, out = results.pop("cached (probekit fast path)")
    worst = float((out - results["captum, perturbations_per_eval=T"][1]).abs().max())
    for name, (seconds, _) in results.items():
        print(f"  cached vs {name:36s} {seconds / fast:6.2f}× faster")
    best_captum = min(results[n][0] for n in methods if n.startswith("captum"))
    print(f"cached vs the faster Captum setting: {best_captum / fast:.2f}× (goal ≥ 2×); "
          f"equal to Captum within 1e-5: {worst <= 1e-5}")


if __name__ == "__main__":
    main()
