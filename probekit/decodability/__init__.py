"""Decodability: linear probes read the world state from a model's latents, per layer × target
× step depth, against a control task, the random-init twin and description length (MDL).

    from probekit.decodability import DecodabilityProbe
    result = DecodabilityProbe().run(adapter, task, twin=adapter.random_init(0))
    result.scores()       # the headline: late decodability, pooled, CI, control, twin, MDL
    result.rows()         # one row per layer × target × depth
    result.plot_depth("depth.png")

Scores are normalised so chance is 0 and perfect is 1 before they are averaged over targets.
"""

from __future__ import annotations

from probekit.decodability.data import (
                                        LONG,
                                        METRIC,
                                        PROBE_KIND,
                                        PROBE_MEMORY,
                                        SPLITS,
                                        Labels,
                                        ProbeData,
                                        chance_levels,
                                        depth_buckets,
                                        layer_groups,
                                        normalise,
                                        probe_data,
)
from probekit.decodability.probe import DecodabilityProbe
from probekit.decodability.result import DecodabilityResult, plot_depth

__all__ = ["DecodabilityProbe", "DecodabilityResult", "Labels", "LONG", "METRIC", "PROBE_KIND",
           "PROBE_MEMORY", "SPLITS", "ProbeData", "chance_levels", "depth_buckets",
           "layer_groups", "normalise", "plot_depth", "probe_data"]
