"""Probes: linear probes for every layer × target at once, and the control tasks they need."""

from __future__ import annotations

from probekit.probes.batched import DEFAULT_PENALTIES, LinearProbe, LinearProbes, fit_linear_probes

__all__ = ["DEFAULT_PENALTIES", "LinearProbe", "LinearProbes", "fit_linear_probes"]
