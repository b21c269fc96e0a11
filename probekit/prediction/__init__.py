"""The prediction axis: does the model expect what its world does?

`PredictionProbe(...).run(adapter, task, twin=...)` measures violation of expectation (surprise
on an impossible edit against a matched possible one) and next-step legality; its
`PredictionResult` gives `scores()` (`scores.prediction` of `probekit.result/2`) and `rows()`
(`per_offset`: the surprise curve around the violation). `plot_prediction` draws that curve.
"""

from probekit.adapters.surprise import KINDS, StepPredictions
from probekit.prediction.probe import PredictionProbe
from probekit.prediction.result import PredictionResult

__all__ = ["KINDS", "PredictionProbe", "PredictionResult", "StepPredictions"]
