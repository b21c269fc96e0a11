"""Batched linear probes against the scikit-learn loop a user would otherwise write.

Part 1, a grid of shapes: one probe per layer × target on synthetic residual-stream-like
activations, `fit_linear_probes(kind="logistic")` against a loop of StandardScaler +
LogisticRegression (multinomial L-BFGS, run to convergence: max_iter=5000, the same tol=1e-4).
Each shape is fitted at one penalty (scikit-learn's C = 1/penalty) and along a path of six
penalties chosen on validation (the loop warm-starts each probe along the path, as
LogisticRegression(warm_start=True) allows, and keeps the best on validation). Prints the
seconds, the speed-up and the test-accuracy gap at the layer each method picks on validation.

Part 2, a background load: the same batched fit in fresh processes, with probekit's thread
settings (threads = usable CPUs, OMP_WAIT_POLICY=PASSIVE), with torch's defaults (torch imported
first, so probekit cannot set the wait policy), and with one thread; each alone and next to a
process spinning on one core.

    python benchmarks/probes.py            # the full grid: every axis (layers, targets, width,
                                           # examples) at its low and high end, one penalty and
                                           # a path (the scikit-learn loops take many minutes)
    python benchmarks/probes.py --quick    # a smaller grid: about a minute on 2 idle cores
                                           # (longer when the machine is busy: part 2 starts
                                           # six fresh processes, some of them spinning)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass

import probekit  # noqa: F401  (first: it sets the thread count and wait policy before torch)
import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from probekit.probes import DEFAULT_PENALTIES, fit_linear_probes


def activations(n: int, layers: int, dim: int, targets: int, classes: int,
                seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Residual-stream-like activations [layers, n, dim] and labels [n, targets].

    A 16-dimensional world state z and 16 pairwise products of it make each target's noisy
    class scores. Each layer carries z (fading with depth) and the products (strongest in the
    middle) through slightly different projections, on top of a large low-rank nuisance that
    drifts slowly across layers, white noise, and uneven feature scales.
    """
    rng = np.random.default_rng(seed)
    k = 16
    z = rng.standard_normal((n, k)).astype(np.float32)
    i, j = rng.integers(0, k, size=(2, k))
    world = np.concatenate([z, z[:, i] * z[:, j]], 1)
    readout = rng.standard_normal((targets, 2 * k, classes)).astype(np.float32) / np.sqrt(2 * k)
    scores = 4.0 * np.einsum("nf,tfc->ntc", world, readout)
    labels = (scores + rng.gumbel(size=scores.shape)).argmax(-1)
    project = rng.standard_normal((2 * k, dim)).astype(np.float32) / np.sqrt(2 * k)
    rank = min(64, dim)
    mixing = rng.standard_normal((rank, dim)).astype(np.float32)
    nuisance = rng.standard_normal((n, rank)).astype(np.float32)
    scale = np.exp(rng.normal(0.0, 0.5, dim)).astype(np.float32)
    X = np.empty((layers, n, dim), np.float32)
    for layer in range(layers):
        depth = layer / max(layers - 1, 1)
        P = project + 0.3 * rng.standard_normal(project.shape).astype(np.float32) / np.sqrt(2 * k)
        signal = (1.0 - 0.5 * depth) * z @ P[:k] + np.sin(np.pi * depth) * world[:, k:] @ P[k:]
        nuisance = 0.9 * nuisance + 0.44 * rng.standard_normal(nuisance.shape).astype(np.float32)
        noise = 0.5 * rng.standard_normal((n, dim)).astype(np.float32)
        X[layer] = (signal + 0.5 * nuisance @ mixing + noise) * scale
    return X, labels


Split = tuple[np.ndarray, np.ndarray]  # activations [layers, n, dim], labels [n, targets]


@dataclass
class Shape:
    layers: int
    targets: int
    dim: int
    n: int
    classes: int = 3
    path: bool = False

    def __str__(self) -> str:
        return (f"{self.layers:>2} × {self.targets:>3} × {self.dim:>4} × {self.n:>6}, "
                f"{self.classes} cl, {'path' if self.path else 'one '}")


def sklearn_loop(train: Split, val: Split, test: Split, penalties: tuple[float, ...]
                 ) -> tuple[float, np.ndarray, np.ndarray, int]:
    """Seconds to fit every probe (along the path, warm-started, when several penalties), the
    validation and test accuracy [layers, targets] at the penalty each probe keeps, and how many
    fits stopped at max_iter. BLAS runs one thread, its fastest setting here."""
    X, Y = train
    L, T = X.shape[0], Y.shape[1]
    acc_val, acc_test = np.zeros((L, T)), np.zeros((L, T))
    seconds = 0.0
    with threadpool_limits(1), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        for layer in range(L):
            scaler = StandardScaler().fit(X[layer])
            Xs, Xv, Xt = (scaler.transform(a[layer]) for a in (X, val[0], test[0]))
            for target in range(T):
                start = time.perf_counter()
                model = LogisticRegression(max_iter=5000, warm_start=True)
                best = -1.0
                for penalty in penalties:
                    model.set_params(C=1.0 / penalty).fit(Xs, Y[:, target])
                    score = model.score(Xv, val[1][:, target]) if len(penalties) > 1 else 0.0
                    if score > best:
                        best, kept = score, model.score(Xt, test[1][:, target])
                        kept_val = model.score(Xv, val[1][:, target])
                seconds += time.perf_counter() - start
                acc_val[layer, target], acc_test[layer, target] = kept_val, kept
    unconverged = sum(issubclass(w.category, ConvergenceWarning) for w in caught)
    return seconds, acc_val, acc_test, unconverged


def batched(train: Split, val: Split, penalties: tuple[float, ...], device: str,
            repeat: int) -> tuple[float, object]:
    """Best of `repeat` timings of the batched fit (the CPU is shared), and the probes."""
    seconds = float("inf")
    options = dict(X_val=val[0], Y_val=val[1]) if len(penalties) > 1 else {}
    for _ in range(repeat):
        start = time.perf_counter()
        probes = fit_linear_probes(train[0], train[1], "logistic", penalties=penalties,
                                   device=device, **options)
        if device == "cuda":
            torch.cuda.synchronize()
        seconds = min(seconds, time.perf_counter() - start)
    return seconds, probes


def best_layer(val: np.ndarray, test: np.ndarray) -> np.ndarray:
    """Per target: the test accuracy at the layer with the best validation accuracy."""
    return test[val.argmax(0), np.arange(test.shape[1])]


def grid(shapes: list[Shape], args: argparse.Namespace) -> None:
    print(f"torch threads {torch.get_num_threads()}, OMP_WAIT_POLICY "
          f"{os.environ.get('OMP_WAIT_POLICY')}, device {args.device}; scikit-learn: one BLAS "
          f"thread, max_iter=5000; one penalty = {args.penalty}, path = {DEFAULT_PENALTIES}")
    print(f"\n{'layers × targets × dim × examples':44s} {'sklearn':>8s} {'batched':>8s} "
          f"{'ratio':>7s} {'gap worst':>9s} {'mean':>6s} {'sk late':>7s}")
    ratios, below = [], []
    for shape in shapes:
        n_val, n_test = max(shape.n // 2, 2000), max(shape.n, 4000)
        X, Y = activations(shape.n + n_val + n_test, shape.layers, shape.dim, shape.targets,
                           shape.classes, args.seed)
        train, val, test = [(X[:, a:b], Y[a:b]) for a, b in [
            (0, shape.n), (shape.n, shape.n + n_val), (shape.n + n_val, None)]]
        penalties = DEFAULT_PENALTIES if shape.path else (args.penalty,)
        fit_linear_probes(train[0][:1, :200], train[1][:200, :1], penalties=1.0)  # warm up
        ours, probes = batched(train, val, penalties, args.device, args.repeat)
        ref, ref_val, ref_test, late = sklearn_loop(train, val, test, penalties)
        gap = 100 * (best_layer(ref_val, ref_test)
                     - best_layer(probes.score(*val), probes.score(*test)))
        ratios.append(ref / ours)
        if ref / ours < 10:
            below.append(f"{' '.join(str(shape).split())} ({ref / ours:.1f}x)")
        print(f"{str(shape):44s} {ref:7.2f}s {ours:7.2f}s {ref / ours:6.1f}x "
              f"{gap.max():7.2f}pt {gap.mean():5.2f}pt {late:>7d}", flush=True)
    print(f"\nratio: scikit-learn loop seconds / batched seconds (batched: best of --repeat "
          f"{args.repeat}); smallest {min(ratios):.1f}x. gap: the loop's test accuracy minus the "
          "batched probes', each at the layer it picks on validation (worst and mean over "
          "targets; negative = batched better). sk late: scikit-learn fits that hit max_iter.")
    print(f"{len(shapes) - len(below)} of {len(shapes)} shapes at 10x or more; below 10x: "
          + ("; ".join(below) if below else "none"))


LOAD_SHAPE = Shape(12, 8, 256, 2000)  # the measurement: one penalty
CHILD = """
import json, sys, time, warnings
{preamble}
import numpy as np
from probekit.probes import fit_linear_probes
X, Y = np.load(sys.argv[1])["X"], np.load(sys.argv[1])["Y"]
warnings.simplefilter("ignore")
fit_linear_probes(X[:1, :200], Y[:200, :1], penalties=1.0)
best = float("inf")
for _ in range({repeat}):
    start = time.perf_counter()
    fit_linear_probes(X, Y, penalties=1.0)
    best = min(best, time.perf_counter() - start)
print(json.dumps([best, torch.get_num_threads()]))
"""
SETTINGS = {  # name: (code before probekit's import, extra environment)
    "probekit's (PASSIVE, usable CPUs)": ("import probekit, torch", {}),
    "torch's defaults (torch first)": ("import torch, probekit", {}),
    "one thread (OMP_NUM_THREADS=1)": ("import probekit, torch", {"OMP_NUM_THREADS": "1"}),
}


def background_load(args: argparse.Namespace) -> None:
    """The batched fit in fresh processes under each thread setting, alone and next to a
    process spinning on one core."""
    import tempfile

    shape = Shape(6, 8, 128, 1000) if args.quick else LOAD_SHAPE
    X, Y = activations(shape.n, shape.layers, shape.dim, shape.targets, shape.classes, args.seed)
    clean = {k: v for k, v in os.environ.items()
             if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT",
                          "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
    rounds, limit = (1, 60.0) if args.quick else (3, 180.0)
    print(f"\nbackground load: {shape} (one penalty); each run a fresh process timing the best of "
          f"{args.repeat} fits; median of {rounds} rounds, the settings interleaved; "
          f"{os.cpu_count()} CPUs")
    print(f"{'thread settings':36s} {'alone':>8s} {'+1 spinning':>12s} {'slowdown':>9s}")
    with tempfile.TemporaryDirectory() as folder:
        data = os.path.join(folder, "probes.npz")
        np.savez(data, X=X, Y=Y)
        runs: dict[tuple[str, bool], list[float]] = {}
        threads = {}
        for loaded in (False, True):
            spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"]) \
                if loaded else None
            try:
                for _ in range(rounds):
                    for name, (preamble, env) in SETTINGS.items():
                        code = CHILD.format(preamble=preamble, repeat=args.repeat)
                        try:
                            done = subprocess.run([sys.executable, "-c", code, data], text=True,
                                                  capture_output=True, env={**clean, **env},
                                                  check=True, timeout=limit)
                            seconds, threads[name] = json.loads(done.stdout.splitlines()[-1])
                        except subprocess.TimeoutExpired:  # shown as "> limit"
                            seconds = float("inf")
                        runs.setdefault((name, loaded), []).append(seconds)
            finally:
                if spinner is not None:
                    spinner.kill()
                    spinner.wait()
        def shown(seconds: float, width: int) -> str:
            over = f">{limit:.0f}s"
            return f"{seconds:{width - 1}.2f}s" if seconds < limit else f"{over:>{width}s}"

        for name in SETTINGS:
            alone, busy = (float(np.median(runs[name, loaded])) for loaded in (False, True))
            ratio = f"{busy / alone:8.1f}x" if max(alone, busy) < limit else f"{'—':>9s}"
            print(f"{name:36s} {shown(alone, 8)} {shown(busy, 12)} {ratio}  "
                  f"({threads.get(name, '?')} threads)")
        print(f"(a run over {limit:.0f} s is stopped and shown as >{limit:.0f}s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smaller grid, under a minute")
    parser.add_argument("--penalty", type=float, default=1.0,
                        help="the one penalty (scikit-learn's C = 1/penalty)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=3, help="time each batched fit this often")
    parser.add_argument("--no-load", action="store_true", help="skip the background-load part")
    parser.add_argument("--no-grid", action="store_true", help="skip the grid of shapes")
    args = parser.parse_args()
    if args.quick:
        shapes = [Shape(4, 4, 32, 2000), Shape(4, 4, 32, 2000, path=True),
                  Shape(1, 1, 32, 2000), Shape(1, 1, 32, 2000, path=True),
                  Shape(2, 2, 128, 2000), Shape(4, 16, 32, 2000, 2)]
    else:  # every axis of the shape at its low and high end, each at one penalty and a path
        base = dict(layers=4, targets=8, dim=64, n=4000)
        shapes = [Shape(**base), Shape(**base, path=True)]
        for key, values in (("layers", (1, 12)), ("targets", (1, 32)), ("dim", (16, 256)),
                            ("n", (1000, 16000))):
            shapes += [Shape(**{**base, key: v}, path=path) for v in values
                       for path in (False, True)]
        shapes += [Shape(**base, classes=2), Shape(**base, classes=5, path=True),
                   Shape(1, 1, 64, 4000), Shape(1, 1, 64, 4000, path=True),
                   Shape(1, 1, 16, 1000), Shape(1, 1, 16, 1000, path=True),
                   Shape(5, 8, 64, 32000, 5), Shape(5, 8, 64, 32000, 5, path=True),
                   Shape(5, 104, 128, 8000, 3), Shape(12, 16, 768, 4000)]
    if not args.no_grid:
        grid(shapes, args)
    if not args.no_load:
        background_load(args)


if __name__ == "__main__":
    main()
