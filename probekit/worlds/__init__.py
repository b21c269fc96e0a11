"""Simulated worlds, registered by name. Third-party worlds come through the `probekit.tasks`
entry-point group (see `probekit.tasks`)."""

from __future__ import annotations

from probekit.registry import Registry
from probekit.worlds.base import Counterfactual, Episode, Knob, Target, Violation, World

WORLDS: Registry[type[World]] = Registry("world")


def _lazy(module: str, cls: str):
    def load():
        import importlib

        return getattr(importlib.import_module(module), cls)

    return load


WORLDS.add("boxes", loader=_lazy("probekit.worlds.boxes", "Boxes"))
WORLDS.add("bouncing_balls", loader=_lazy("probekit.worlds.bouncing_balls", "BouncingBalls"))
WORLDS.add("groups", loader=_lazy("probekit.worlds.groups", "Groups"))
WORLDS.add("gridworld", loader=_lazy("probekit.worlds.gridworld", "Gridworld"))
WORLDS.add("cellular", loader=_lazy("probekit.worlds.cellular", "Cellular"))
WORLDS.add("othello", loader=_lazy("probekit.worlds.othello", "Othello"))

__all__ = ["WORLDS", "World", "Episode", "Counterfactual", "Violation", "Knob", "Target"]
