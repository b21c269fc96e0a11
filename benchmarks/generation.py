"""Episode generation speed of every registered task, against the target of 10,000 examples
(each episode with its counterfactual pair, the pair's placebo and the violation pair, as a
split's build makes them) in under 10 s.

Calls `Task.generate(..., violation=True)` in a loop in one process (one core), without
caching to disk, so the figure is what building a split costs before it is written. Reports
wall time and the process's CPU time (steadier on a shared machine), and the share of
examples with a pair, of pairs with a placebo and of examples with a violation pair.

    python benchmarks/generation.py [--n 10000] [--split train] [--quick] [task ...]
"""

from __future__ import annotations

import argparse
import time

from probekit.tasks import list_tasks, load_task

TARGET_EPISODES, TARGET_SECONDS = 10_000, 10.0


def measure(name: str, n: int, split: str) -> tuple[float, float, int, int, int]:
    """Wall and CPU seconds to generate examples 0..n-1 of `split`, and how many came with a
    pair, a placebo and a violation pair."""
    task = load_task(name)
    pairs = placebos = violations = 0
    start, cpu = time.perf_counter(), time.process_time()
    for i in range(n):
        _, pair, vio = task.generate(split, i, violation=True)
        pairs += pair is not None
        placebos += pair is not None and pair.placebo is not None
        violations += vio is not None
    return (time.perf_counter() - start, time.process_time() - cpu, pairs, placebos,
            violations)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tasks", nargs="*", help="task names (default: every registered task)")
    parser.add_argument("--n", type=int, default=TARGET_EPISODES, help="episodes per task")
    parser.add_argument("--split", default="train")
    parser.add_argument("--quick", action="store_true", help="1,000 episodes per task")
    args = parser.parse_args()
    n = 1_000 if args.quick else args.n
    names = args.tasks or list_tasks()
    print(f"{'task':<18} {'episodes/s':>11} {'10k in':>8} {'10k cpu':>8} {'pairs':>6} "
          f"{'placebo':>8} {'violat.':>8}  target (10k in < {TARGET_SECONDS:.0f} s, one core)")
    for name in names:
        seconds, cpu, pairs, placebos, violations = measure(name, n, args.split)
        rate = n / seconds
        per_10k, cpu_10k = TARGET_EPISODES / rate, cpu * TARGET_EPISODES / n
        verdict = "meets" if per_10k < TARGET_SECONDS else "MISSES"
        placebo = f"{placebos / pairs:.0%}" if pairs else "—"
        print(f"{name:<18} {rate:>11,.0f} {per_10k:>7.2f}s {cpu_10k:>7.2f}s {pairs / n:>6.0%} "
              f"{placebo:>8} {violations / n:>8.0%}  {verdict}", flush=True)


if __name__ == "__main__":
    main()
