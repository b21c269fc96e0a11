"""Second look at decodability by depth: an independent scikit-learn `LogisticRegression`
(default settings, standardised latents) on the same cached latents of one layer (default: the
quickstart's `block.3` of `boxes-gpt2-tiny` on boxes), scored per class target (up to 20
classes) on the test episodes' steps by depth bucket, normalised as probekit does
(majority-class rate on train = 0, perfect = 1) and averaged.

    python scripts/second_look_depth.py [--layer block.3] [--max-train 8000]
    python scripts/second_look_depth.py --model spectrum-gridworld-5x5-a0 --task gridworld-5x5 \
        --layer block.1 [--random-init]
"""

from __future__ import annotations

import argparse

import numpy as np


def main() -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from probekit.adapters import load_model
    from probekit.decodability import depth_buckets
    from probekit.extraction import extract
    from probekit.tasks import load_task

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="boxes-gpt2-tiny")
    ap.add_argument("--task", default="boxes")
    ap.add_argument("--layer", default="block.3")
    ap.add_argument("--random-init", action="store_true",
                    help="the model's random-init twin (seed 0, as probekit eval draws it)")
    ap.add_argument("--max-train", type=int, default=8000, help="training rows (steps) used")
    args = ap.parse_args()
    adapter, task = load_model(args.model, device="cpu"), load_task(args.task)
    if args.random_init:
        adapter = adapter.random_init(0)
    lat = {s: extract(adapter, task, s, [args.layer], progress=False).layer(args.layer)
           for s in ("train", "test")}
    n_steps = lat["test"].shape[1]
    rng = np.random.default_rng(0)
    ds = {s: task.dataset(s) for s in ("train", "test")}
    labels = sorted(c[len("label."):] for c in ds["test"].column_names if c.startswith("label."))
    X = lat["train"].reshape(-1, lat["train"].shape[-1]).astype(np.float64)
    rows = rng.choice(len(X), size=min(args.max_train, len(X)), replace=False)
    scaler = StandardScaler().fit(X[rows])
    buckets = depth_buckets(n_steps)
    table = {name: [] for name, _ in buckets}
    for target in labels:
        y_tr = np.asarray(ds["train"][f"label.{target}"], dtype=np.float64).reshape(-1)
        y_te = np.asarray(ds["test"][f"label.{target}"], dtype=np.float64).reshape(
            len(lat["test"]), n_steps)
        if len(np.unique(y_tr)) < 2 or len(np.unique(y_tr)) > 20:
            continue  # a regression target: not this check's business
        clf = LogisticRegression(max_iter=1000).fit(scaler.transform(X[rows]), y_tr[rows])
        values, counts = np.unique(y_tr, return_counts=True)
        chance = counts.max() / counts.sum()
        for name, steps in buckets:
            x = lat["test"][:, steps].reshape(-1, X.shape[1]).astype(np.float64)
            acc = float((clf.predict(scaler.transform(x)) == y_te[:, steps].reshape(-1)).mean())
            table[name].append((acc - chance) / (1 - chance))
    print(f"scikit-learn LogisticRegression on {adapter.identity.id} {args.layer}, "
          f"{len(table['all'])} class targets, "
          "normalised (chance 0, perfect 1):")
    for name, values in table.items():
        print(f"  {name:>4}: {np.mean(values):.3f}")


if __name__ == "__main__":
    main()
