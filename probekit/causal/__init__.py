"""Causal probes: does the model use the world state it encodes?

`CausalProbe(...).run(adapter, task, layers)` runs featurized interchange interventions
(full vector, decodability-probe subspace, random control, DAS) at sites named from each pair
(`diff`, `read`, `last`, `query`), only where the patch can reach the readout, with a ceiling
check and a Captum cross-check on every run, plus steering and attributions.
"""

from __future__ import annotations

from probekit.causal.featurizers import FEATURIZERS, StateProbes, fit_state_probes
from probekit.causal.pairs import POSITIONS, PairSet
from probekit.causal.probe import CausalProbe
from probekit.causal.readouts import LegalReadout, ProbeReadout, Readout, TokenReadout
from probekit.causal.result import CausalResult, Outcomes

__all__ = ["FEATURIZERS", "POSITIONS", "CausalProbe", "CausalResult", "LegalReadout",
           "Outcomes", "PairSet", "ProbeReadout", "Readout", "StateProbes", "TokenReadout",
           "fit_state_probes"]
