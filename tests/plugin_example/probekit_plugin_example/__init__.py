"""An example probekit plugin: the `counter` world and its tasks."""

from __future__ import annotations

from pathlib import Path


def task_folder() -> Path:
    """The folder of this plugin's task YAML files (the `counter-tasks` entry point)."""
    return Path(__file__).resolve().parent / "tasks"
