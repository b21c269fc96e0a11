"""Shared by the reliability tests: a micro task that evaluates in about a second, checkpoint
copies to break, and a check that a failed command printed exactly one error line."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

#: A progress line of `probekit.progress` (`[extract] model task/split: … in 1.2s`).
PHASE_LINE = re.compile(r"\[(data|extract|probes|causal|das|attribution|export)\] ")


MICRO_TASK = """\
name: micro
version: 1
world: boxes
description: A micro boxes task for reliability tests.
license: cc-by-4.0
knobs: {n_boxes: 2, n_objects: 2, n_ops: 3, style: sentences}
splits:
  train: {size: 48, seed: 1}
  val: {size: 16, seed: 2}
  test: {size: 16, seed: 3}
targets:
  - {name: location, kind: class}
control: {feature: step_text_and_index, seed: 0}
"""


def write_task(folder: Path, text: str = MICRO_TASK, **changes: object) -> Path:
    """`folder/<name>.yaml` from `text` with top-level fields replaced; returns the folder."""
    import yaml

    spec = yaml.safe_load(text)
    spec.update(changes)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{spec['name']}.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return folder


def copy_checkpoint(src: Path, dst: Path, **config: object) -> Path:
    """A copy of the checkpoint folder `src` with `config.json` fields replaced."""
    shutil.copytree(src, dst)
    if config:
        path = dst / "config.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), **config}))
    return dst


def error_line(err: str) -> str:
    """The single `probekit: error:` line of stderr (progress bars cleared with '\\r' and the
    summary lines of phases that finished before the error, `[data] …`, aside); fails when
    stderr holds anything else, a traceback in particular."""
    assert "Traceback" not in err, err
    lines = [line.rsplit("\r", 1)[-1].strip() for line in err.split("\n")]
    lines = [line for line in lines if line and not PHASE_LINE.match(line)]
    assert len(lines) == 1 and lines[0].startswith("probekit: error: "), err
    return lines[0]


def eval_args(model: Path | str, tasks_dir: Path, out: Path, *extra: str,
              task: str = "micro") -> list[str]:
    """`probekit eval` arguments for the cheapest run: one task, CPU."""
    return ["eval", str(model), "--tasks", task, "--include-path", str(tasks_dir),
            "--out", str(out), "--device", "cpu", *extra]
