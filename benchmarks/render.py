"""Rendering speed of the `frames` view, against the target of 1,000 episodes in under 10 s
on 2 cores (issue #19).

Renders the first N episodes of a frames task's train split (generated beforehand, not
timed) in one `render` call on one core, then times building the frames of whole examples as
a split's build makes them (`Task.generate(..., violation=True)`: the episode and every
episode of its pair, placebo and violation pair, i.e. up to five renders each) against the
same examples without frames. Prints wall and CPU seconds.

    python benchmarks/render.py [--n 1000] [task]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

from probekit.tasks import Task, load_task
from probekit.worlds.render import render

TARGET_EPISODES, TARGET_SECONDS = 1_000, 10.0


def timed(fn) -> tuple[float, float]:
    start, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - start, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("task", nargs="?", default="balls-2-frames")
    parser.add_argument("--n", type=int, default=TARGET_EPISODES, help="episodes")
    args = parser.parse_args()
    task = load_task(args.task)
    if task.spec.frames is None:
        parser.error(f"task {task.name} declares no frames; pass a *-frames task")
    world = task.spec.world_for("train")
    plain = Task(replace(task.spec, frames=None))  # the same episodes, without frames
    episodes = [plain.generate("train", i)[0] for i in range(args.n)]
    wall, cpu = timed(lambda: render(world, episodes, task.spec.frames))
    f = task.spec.frames
    print(f"{task.name}: {args.n:,} episodes of {episodes[0].n_steps} steps, "
          f"{f['frames_per_step']} × {f['channels']} × {f['size']} × {f['size']} per step")
    verdict = "meets" if wall * TARGET_EPISODES / args.n < TARGET_SECONDS else "MISSES"
    print(f"render only:         {wall:6.2f} s wall, {cpu:6.2f} s cpu  "
          f"({args.n / wall:,.0f} episodes/s; target {TARGET_EPISODES:,} in "
          f"< {TARGET_SECONDS:.0f} s: {verdict})")
    with_frames = timed(lambda: [task.generate("train", i, violation=True)
                                 for i in range(args.n)])
    without = timed(lambda: [plain.generate("train", i, violation=True)
                             for i in range(args.n)])
    print(f"examples with frames:    {with_frames[0]:6.2f} s wall, {with_frames[1]:6.2f} s cpu "
          "(episode, pair, placebo, violation pair, all rendered)")
    print(f"examples without frames: {without[0]:6.2f} s wall, {without[1]:6.2f} s cpu")


if __name__ == "__main__":
    main()
