"""Simulated worlds, registered by name. Third-party worlds come through the `probekit.tasks`
entry-point group (see `probekit.tasks`)."""

from __future__ import annotations

from probekit.registry import Registry
from probekit.worlds.base import Counterfactual, Episode, Knob, Target, World

WORLDS: Registry[type[World]] = Registry("world")


def _lazy(module: str, cls: str):
    def load():
        import importlib

        return getattr(importlib.import_module(module), cls)

    return load


WORLDS.add("boxes", loader=_lazy("probekit.worlds.boxes", "Boxes"))

__all__ = ["WORLDS", "World", "Episode", "Counterfactual", "Knob", "Target"]
