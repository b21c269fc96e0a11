"""probekit: does a model's latent state track the world it reads, and does it use it?"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from probekit import threads as _threads

_threads.configure()  # before torch loads its OpenMP runtime; see probekit/threads.py

__version__ = "0.1.0"
__all__ = ["evaluate", "load_task", "list_tasks", "load_model", "Report", "__version__"]

if TYPE_CHECKING:
    from probekit.adapters import load_model
    from probekit.evaluation import evaluate
    from probekit.report import Report
    from probekit.tasks import list_tasks, load_task

_LAZY = {"evaluate": "probekit.evaluation", "load_task": "probekit.tasks",
         "list_tasks": "probekit.tasks", "load_model": "probekit.adapters",
         "Report": "probekit.report"}


def __getattr__(name: str) -> Any:
    """Import heavy parts (torch, transformers) only when used, so the CLI starts fast."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'probekit' has no attribute {name!r}")
