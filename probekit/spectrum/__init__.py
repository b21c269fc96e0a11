"""The spectrum model family: one small causal transformer trained anywhere from next-token
prediction (a = 0) to JEPA (a = 1), with collapse measured and checkpoints in plain files.

    from probekit.spectrum import SpectrumTrainer
    SpectrumTrainer(alpha=0.5).fit("boxes").save("runs/boxes-a0.5")

The model, its objective and its checkpoints load with the package; the trainer
(`probekit.spectrum.train`, which draws episodes and probes them) loads only when
`SpectrumTrainer` is asked for, so that loading a checkpoint (`probekit.load_model`) never
imports training or probing code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from probekit.spectrum.checkpoint import SpectrumMeta, load, save, shipped
from probekit.spectrum.collapse import CollapseMonitor, CollapseReport, effective_rank
from probekit.spectrum.model import SpectrumConfig, SpectrumModel, init_model
from probekit.spectrum.objective import Objective, SpectrumLoss

if TYPE_CHECKING:
    from probekit.spectrum.train import SpectrumTrainer

__all__ = ["CollapseMonitor", "CollapseReport", "Objective", "SpectrumConfig", "SpectrumLoss",
           "SpectrumMeta", "SpectrumModel", "SpectrumTrainer", "effective_rank", "init_model",
           "load", "save", "shipped"]


def __getattr__(name: str) -> Any:
    """`SpectrumTrainer`, imported on first use (see the module docstring)."""
    if name == "SpectrumTrainer":
        from probekit.spectrum.train import SpectrumTrainer

        return SpectrumTrainer
    raise AttributeError(f"module 'probekit.spectrum' has no attribute {name!r}")
