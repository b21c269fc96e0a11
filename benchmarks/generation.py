"""Episode generation speed of every registered task, against the target of 10,000 episodes
(each with its counterfactual pair) in under 10 s.

Calls `Task.generate` in a loop in one process (one core), without caching to disk, so the
figure is what building a split costs before it is written.

    python benchmarks/generation.py [--n 10000] [--split train] [task ...]
"""

from __future__ import annotations

import argparse
import time

from probekit.tasks import list_tasks, load_task

TARGET_EPISODES, TARGET_SECONDS = 10_000, 10.0


def measure(name: str, n: int, split: str) -> tuple[float, int]:
    """Seconds to generate episodes 0..n-1 of `split`, and how many came with a pair."""
    task = load_task(name)
    pairs = 0
    start = time.perf_counter()
    for i in range(n):
        pairs += task.generate(split, i)[1] is not None
    return time.perf_counter() - start, pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tasks", nargs="*", help="task names (default: every registered task)")
    parser.add_argument("--n", type=int, default=TARGET_EPISODES, help="episodes per task")
    parser.add_argument("--split", default="train")
    args = parser.parse_args()
    names = args.tasks or list_tasks()
    print(f"{'task':<18} {'episodes/s':>11} {'pairs':>7} {'10k in':>8}  target "
          f"(10k in < {TARGET_SECONDS:.0f} s, one core)")
    for name in names:
        seconds, pairs = measure(name, args.n, args.split)
        rate = args.n / seconds
        per_10k = TARGET_EPISODES / rate
        verdict = "meets" if per_10k < TARGET_SECONDS else "MISSES"
        print(f"{name:<18} {rate:>11,.0f} {pairs / args.n:>7.0%} {per_10k:>7.2f}s  {verdict}",
              flush=True)


if __name__ == "__main__":
    main()
