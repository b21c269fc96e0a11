"""Rendering speed of the `frames` view, against the target of 1,000 episodes in under 10 s
on 2 cores (issue #19), for every rendered world.

For each frames task (by default every registered one: one per world with a renderer),
renders the first N episodes of its train split (generated beforehand, not timed) in one
`render` call on one core, then times building the frames of whole examples as a split's
build makes them (`Task.generate(..., violation=True)`: the episode and every episode of its
pair, placebo and violation pair, i.e. up to five renders each) against the same examples
without frames. Prints wall and CPU seconds.

    python benchmarks/render.py [--n 1000] [task ...]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

from probekit.tasks import Task, list_tasks, load_task
from probekit.worlds.render import render

TARGET_EPISODES, TARGET_SECONDS = 1_000, 10.0


def timed(fn) -> tuple[float, float]:
    start, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - start, time.process_time() - cpu


def bench(task: Task, n: int) -> None:
    world = task.spec.world_for("train")
    plain = Task(replace(task.spec, frames=None))  # the same episodes, without frames
    episodes = [plain.generate("train", i)[0] for i in range(n)]
    wall, cpu = timed(lambda: render(world, episodes, task.spec.frames))
    f = task.spec.frames
    print(f"{task.name} ({world.name}): {n:,} episodes of {episodes[0].n_steps} steps, "
          f"{f['frames_per_step']} × {f['channels']} × {f['size']} × {f['size']} per step")
    verdict = "meets" if wall * TARGET_EPISODES / n < TARGET_SECONDS else "MISSES"
    print(f"  render only:             {wall:6.2f} s wall, {cpu:6.2f} s cpu  "
          f"({n / wall:,.0f} episodes/s; target {TARGET_EPISODES:,} in "
          f"< {TARGET_SECONDS:.0f} s: {verdict})")
    with_frames = timed(lambda: [task.generate("train", i, violation=True) for i in range(n)])
    without = timed(lambda: [plain.generate("train", i, violation=True) for i in range(n)])
    print(f"  examples with frames:    {with_frames[0]:6.2f} s wall, {with_frames[1]:6.2f} s cpu "
          "(episode, pair, placebo, violation pair, all rendered)")
    print(f"  examples without frames: {without[0]:6.2f} s wall, {without[1]:6.2f} s cpu")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tasks", nargs="*", metavar="task",
                        help="frames tasks (default: every registered one)")
    parser.add_argument("--n", type=int, default=TARGET_EPISODES, help="episodes")
    args = parser.parse_args()
    tasks = ([load_task(name) for name in args.tasks] if args.tasks
             else [t for t in map(load_task, list_tasks()) if t.spec.frames is not None])
    for task in tasks:
        if task.spec.frames is None:
            parser.error(f"task {task.name} declares no frames; pass a *-frames task")
    for task in tasks:
        bench(task, args.n)


if __name__ == "__main__":
    main()
