"""Writing new tasks: a commented spec YAML for any registered world, plus its card stub.

The spec lists every knob at its default with its valid range, so an author edits values
instead of looking them up; it is validated by the same parser as every other task.
"""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import numpy as np
import yaml

from probekit.errors import SpecError, UserError
from probekit.io import write_text
from probekit.tasks import CONTROL_FEATURES, Task, TaskSpec, registry
from probekit.worlds import WORLDS, Knob, World

SPLITS = {"train": 2000, "val": 500, "test": 500}
LONG_SPLIT = ("test_long", 500)


def _value(v: object) -> str:
    """A YAML flow value (JSON is valid YAML flow syntax)."""
    return json.dumps(list(v) if isinstance(v, tuple) else v)


def _scalar(text: str) -> str:
    """`text` as a YAML string, quoted only where YAML would read it as something else."""
    return text if yaml.safe_load(text) == text else _value(text)


def _comment(k: Knob) -> str:
    return f"  # {k.doc}; {k.range_text()}"


def length_knob(world_cls: type[World]) -> tuple[str, int] | None:
    """The integer knob that lengthens episodes most when doubled, and its doubled value (capped
    at its maximum), found by drawing one episode each way; None if no knob lengthens them."""
    base = world_cls().episode(np.random.default_rng(0)).n_steps
    best, best_steps = None, base
    for k in world_cls.knobs:
        if k.type is not int or not k.default:
            continue
        value = int(min(2 * k.default, k.max if k.max is not None else 2 * k.default))
        if value <= k.default:
            continue
        try:
            world = world_cls(**{k.name: value})
        except SpecError:  # a cross-knob constraint forbids it
            continue
        steps = world.episode(np.random.default_rng(0)).n_steps
        if steps > best_steps:
            best, best_steps = (k.name, value), steps
    return best


def new_task_spec(name: str, world: str) -> str:
    """The YAML text of a new task on `world`: every knob at its default (range as a comment),
    train/val/test splits plus a longer test_long split when a knob lengthens episodes, every
    target family, the control task and, if the world makes them, counterfactual pairs and
    violation pairs."""
    world_cls = WORLDS.get(world)
    instance = world_cls()
    description = textwrap.fill(f"A task on the {world} world. {world_cls.description}".strip(),
                                width=90, initial_indent="  ", subsequent_indent="  ")
    lines = [
        "# probekit task spec, validated strictly (unknown keys are errors).",
        f"# Check it: probekit tasks show {name} --include-path <the folder holding this file>",
        f"name: {_scalar(name)}",
        "version: 1  # bump whenever the data changes",
        f"world: {_scalar(world)}",
        "description: >",
        description,
        "license: cc-by-4.0",
        "knobs:",
    ]
    lines += [f"  {k.name}: {_value(k.default)}{_comment(k)}" for k in world_cls.knobs]
    lines.append("splits:")
    seeds = iter(range(1, 100))
    lines += [f"  {s}: {{size: {n}, seed: {next(seeds)}}}" for s, n in SPLITS.items()]
    longer = length_knob(world_cls)
    if longer is None:
        lines.append("  # no knob lengthens this world's episodes, so no longer test split")
    else:
        split, n = LONG_SPLIT
        lines.append(f"  {split}: {{size: {n}, seed: {next(seeds)}, knobs: {{{longer[0]}: "
                     f"{longer[1]}}}}}  # longer episodes than in training")
    lines.append("targets:  # kind: class | regress; optional chance: the expected chance score")
    families = dict.fromkeys((t.family, t.kind) for t in instance.targets())
    lines += [f"  - {{name: {f}, kind: {kind}}}" for f, kind in families]
    lines.append("control: {feature: step_text_and_index, seed: 0}  # feature: "
                 + " | ".join(CONTROL_FEATURES))
    if world_cls.counterfactual_knobs:
        lines.append("counterfactual:")
        lines += [f"  {k.name}: {_value(k.default)}{_comment(k)}"
                  for k in world_cls.counterfactual_knobs]
    if world_cls.violation_knobs:
        lines.append("violations:  # impossible episodes beside possible ones (prediction axis)")
        lines += [f"  {k.name}: {_value(k.default)}{_comment(k)}"
                  for k in world_cls.violation_knobs]
    elif world_cls.no_violations:
        lines.append(f"# no violations: {world_cls.no_violations}")
    return "\n".join(lines) + "\n"


def write_new_task(name: str, world: str, out: str | os.PathLike = ".",
                   include: list[str | os.PathLike] | tuple = ()) -> tuple[Path, Path]:
    """Write `out/<name>.yaml` and its card stub `out/<name>.md`; refuses to overwrite either
    or to shadow a registered task. Returns both paths."""
    from probekit.data import render_card

    tasks = registry(include)  # also registers worlds that plugins provide
    if name in tasks:
        raise UserError(f"task {name!r} already exists ({tasks.get(name).path}); pick another "
                        "name")
    text = new_task_spec(name, world)
    task = Task(TaskSpec.parse(yaml.safe_load(text), where=f"new task {name}"))
    paths = Path(out) / f"{name}.yaml", Path(out) / f"{name}.md"
    for p in paths:
        if p.exists():
            raise UserError(f"{p} already exists; refusing to overwrite it (delete it or pick "
                            "another name or folder)")
    write_text(paths[0], text)
    write_text(paths[1], render_card(task, None))
    return paths
