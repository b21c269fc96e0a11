"""The spectrum model family: one small causal transformer trained anywhere from next-token
prediction (a = 0) to JEPA (a = 1), with collapse measured and checkpoints in plain files.

    from probekit.spectrum import SpectrumTrainer
    SpectrumTrainer(alpha=0.5).fit("boxes").save("runs/boxes-a0.5")
"""

from __future__ import annotations

from probekit.spectrum.checkpoint import SpectrumMeta, load, save, shipped
from probekit.spectrum.collapse import CollapseMonitor, CollapseReport, effective_rank
from probekit.spectrum.model import SpectrumConfig, SpectrumModel, init_model
from probekit.spectrum.objective import Objective, SpectrumLoss
from probekit.spectrum.train import SpectrumTrainer

__all__ = ["CollapseMonitor", "CollapseReport", "Objective", "SpectrumConfig", "SpectrumLoss",
           "SpectrumMeta", "SpectrumModel", "SpectrumTrainer", "effective_rank", "init_model",
           "load", "save", "shipped"]
