"""Causal probes: does the model's computation follow its latent world state when we change it?

`CausalProbe(...).run(adapter, task, layers)` runs interchange interventions (Captum's
`LayerFeatureAblation`, or the cached fast path for causal LMs), an unrelated-episode baseline,
probe-direction steering and integrated-gradients attributions on a task's counterfactual pairs.
"""

from __future__ import annotations

from probekit.causal.interventions import (CachedPatcher, CaptumPatcher, Patcher,
                                           layer_activations, make_patcher)
from probekit.causal.pairs import PairSet, site_names
from probekit.causal.probe import CausalProbe, CausalResult
from probekit.causal.readouts import ProbeReadout, Readout, TokenReadout
from probekit.causal.scores import Outcomes
from probekit.causal.verdict import verdict, world_model_score

__all__ = ["CachedPatcher", "CaptumPatcher", "CausalProbe", "CausalResult", "Outcomes", "PairSet",
           "Patcher", "ProbeReadout", "Readout", "TokenReadout", "layer_activations",
           "make_patcher", "site_names", "verdict", "world_model_score"]
