"""Interchange interventions at every position of a mid layer, one position per run: probekit's
batched hook path and its cached fast path against Captum and the loop a user would write.

A random-init GPT-2 reads counterfactual pairs of a boxes task. Each method patches the source's
activations into every position of the middle block, one position at a time, and reads the
readout margin (logit of the counterfactual answer minus the base answer's) at the query:
- Captum `LayerFeatureAblation`, one mask group per position (all groups in one forward:
  perturbations_per_eval = T, and one group per forward);
- a plain loop of one hooked forward per position (the whole batch at a time);
- probekit's hook path: every (pair, position) run of a batch in a few large forwards;
- probekit's cached path: the clean run's keys/values for the prefix, only the blocks above the
  layer, only the positions from the patch to the query.
Prints seconds (median of repeats), speed ratios and the largest margin difference from Captum.

    python benchmarks/patching.py            # GPT-2-small shape (12 × 768), boxes-text, 4 pairs
    python benchmarks/patching.py --quick    # the quickstart shape (4 × 64), boxes, 16 pairs
"""

from __future__ import annotations

import argparse
import statistics
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
    identity = ModelIdentity("bench/gpt2", "0", "0" * 64, "hf", 1, "float32")
    return HFAdapter(GPT2LMHeadModel(config), tok, identity, device="cpu")


def margin(z: torch.Tensor, labels) -> torch.Tensor:
    rows = torch.arange(len(z))
    return z[rows, labels.cf.clamp_min(0)] - z[rows, labels.base.clamp_min(0)]


def hooked_loop(a, readout, layer, pb, labels, source) -> torch.Tensor:
    """One hooked forward per position, the whole batch at a time: [B, T] margins."""
    B, T = pb.base.inputs["input_ids"].shape
    out = torch.empty(B, T)
    for p in range(T):
        def hook(module, args, output, p=p):
            output = output.clone()
            output[:, p] = source[:, p]
            return output

        handle = a.module(layer).register_forward_hook(hook)
        try:
            with torch.no_grad():
                out[:, p] = margin(readout.logits(a, pb.base, labels), labels)
        finally:
            handle.remove()
    return out


def captum(a, readout, layer, pb, labels, source, per_eval: int | None) -> torch.Tensor:
    """Captum `LayerFeatureAblation`, a mask group per position, pair by pair: [B, T]."""
    from captum.attr import LayerFeatureAblation

    from probekit.adapters.base import Batch
    from probekit.causal.readouts import Labels

    base = pb.base
    keys = tuple(base.inputs)
    B, T = base.inputs["input_ids"].shape
    out = torch.empty(B, T)
    for b in range(B):
        one = labels.rows(torch.tensor([b]))

        def f(*tensors):
            n = tensors[0].shape[0]
            batch = Batch(dict(zip(keys, tensors)), base.positions[b:b + 1].expand(n, -1),
                          base.query_positions[b:b + 1].expand(n),
                          base.answer_ids[b:b + 1].expand(n))
            rep = Labels(one.position.expand(n), one.base.expand(n), one.cf.expand(n),
                         one.extra.expand(n, -1))
            return margin(readout.logits(a, batch, rep), rep)

        inputs = tuple(t[b:b + 1] for t in base.inputs.values())
        with torch.no_grad():
            clean = f(*inputs)
            diff = LayerFeatureAblation(f, a.module(layer)).attribute(
                inputs, layer_baselines=source[b:b + 1],
                layer_mask=torch.arange(T)[None, :, None], perturbations_per_eval=per_eval or T)
        out[b] = clean - diff[0, :, 0]
    return out


def probekit_runs(a, readout, layer, pb, labels, source, cached: bool) -> torch.Tensor:
    """probekit: every (pair, position) a run, in large batched forwards: [B, T]."""
    from probekit.adapters.hooks import capture
    from probekit.causal.cached import CachedRunner
    from probekit.causal.interventions import Swap, run_edits

    B, T = pb.base.inputs["input_ids"].shape
    rows = torch.arange(B).repeat_interleave(T)
    pos = torch.arange(T).repeat(B)[:, None]
    swap = Swap(pos, source[rows, pos[:, 0]][:, None])
    with torch.no_grad():
        if cached:
            hidden = capture(a, pb.base, a.layers()[:-1])
            z = CachedRunner(a, readout).run(pb.base, hidden, rows, labels, {layer: swap})
        else:
            z = run_edits(a, readout, pb.base, rows, labels, {layer: swap.edit()})
    return margin(z, labels.rows(rows)).reshape(B, T)


def timed(fn, repeats: int) -> tuple[float, torch.Tensor]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the quickstart shape")
    parser.add_argument("--pairs", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from probekit.adapters.hooks import capture
    from probekit.causal import PairSet
    from probekit.causal.readouts import TokenReadout
    from probekit.tasks import load_task

    shape, task, n = ((4, 64, 4), "boxes", 16) if args.quick else ((12, 768, 12), "boxes-text", 4)
    a = adapter(*shape)
    pairs = PairSet.build(a, load_task(task), "test", max_pairs=max(args.pairs or n, 2))
    pb = next(pairs.batches(a, args.pairs or n))
    answers = torch.cat([pb.base.answer_ids, pb.source.answer_ids]).tolist()
    readout = TokenReadout(a, answers)
    labels = readout.labels(pb)
    layer = f"block.{shape[0] // 2 - 1}"
    source = capture(a, pb.source, [layer])[layer]
    B, T = pb.base.inputs["input_ids"].shape
    methods = {
        "captum, perturbations_per_eval=T": lambda: captum(a, readout, layer, pb, labels,
                                                           source, None),
        "captum, perturbations_per_eval=1": lambda: captum(a, readout, layer, pb, labels,
                                                           source, 1),
        "hooked loop, one forward/position": lambda: hooked_loop(a, readout, layer, pb, labels,
                                                                 source),
        "probekit hook path (batched runs)": lambda: probekit_runs(a, readout, layer, pb,
                                                                   labels, source, False),
        "probekit cached path": lambda: probekit_runs(a, readout, layer, pb, labels, source,
                                                      True),
    }
    print(f"GPT-2 {shape[0]} layers × {shape[1]} dims (random init), {B} pairs × {T} positions "
          f"patched at {layer}; torch threads: {torch.get_num_threads()}")
    results = {}
    reference = "captum, perturbations_per_eval=T"
    for name, fn in methods.items():
        results[name] = timed(fn, args.repeats)
        seconds, out = results[name]
        diff = float((out - results[reference][1]).abs().max())
        print(f"  {name:36s} {seconds:8.3f} s   max |Δ margin| vs captum {diff:.1e}", flush=True)
    for fast in ("probekit hook path (batched runs)", "probekit cached path"):
        for name in list(methods)[:3]:
            print(f"  {fast} vs {name:36s} {results[name][0] / results[fast][0]:6.2f}× faster")


if __name__ == "__main__":
    main()
