"""Probes: linear probes for every layer × target at once, and the control tasks they need."""

from __future__ import annotations

from typing import Any

from probekit.probes.batched import DEFAULT_PENALTIES, LinearProbes, fit_linear_probes

__all__ = ["DEFAULT_PENALTIES", "LinearProbe", "LinearProbes", "fit_linear_probes"]


def __getattr__(name: str) -> Any:
    """`LinearProbe` on first use: it imports scikit-learn, which batched fits never need."""
    if name == "LinearProbe":
        from probekit.probes.estimator import LinearProbe

        return LinearProbe
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
