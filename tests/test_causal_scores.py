"""Scores, steering and verdict of the causal probes, checked on constructed numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from probekit.causal.scores import Outcomes, bootstrap_ci, layer_rows, ratio
from probekit.causal.steering import steer
from probekit.causal.verdict import CAUSAL, DECODABLE, verdict, world_model_score


@given(st.lists(st.booleans(), min_size=1, max_size=60), st.integers(0, 10))
@settings(max_examples=40, deadline=None)
def test_bootstrap_interval_brackets_the_mean(hits, seed):
    hits = np.asarray(hits)
    lo, hi = bootstrap_ci(hits, seed=seed)
    assert 0 <= lo <= hits.mean() <= hi <= 1


def test_ratio_is_none_without_a_denominator():
    assert ratio(np.ones(3), np.zeros(3)) is None
    assert ratio(np.array([1.0, 2.0]), np.array([2.0, 2.0])) == pytest.approx(0.75)


def outcomes(patched: np.ndarray, unrelated: np.ndarray) -> Outcomes:
    """Three pairs, one layer, two sites, two classes: base class 0, counterfactual class 1."""
    base = np.tile([1.0, 0.0], (3, 1))
    source = np.tile([0.0, 1.0], (3, 1))
    return Outcomes("token", ["block.0"], ["step", "query"], base, source, np.zeros(3, int),
                    np.ones(3, int), patched[None], unrelated[None],
                    np.ones((1, 3, 2), bool))


def test_rows_score_iia_effect_and_baseline():
    patched = np.array([[[0.0, 1.0], [1.0, 0.0]],   # site step moves all the way
                        [[0.0, 1.0], [1.0, 0.0]],
                        [[0.5, 0.5], [1.0, 0.0]]])  # a tie at half the margin
    unrelated = np.tile([1.0, 0.0], (3, 2, 1))
    step, query = layer_rows(outcomes(patched, unrelated))
    assert step["iia"] == pytest.approx(2 / 3) and query["iia"] == 0
    assert step["effect"] == pytest.approx((2 + 2 + 1) / 6) and query["effect"] == 0
    assert step["baseline_iia"] == 0 and step["pairs"] == 3
    assert step["steering"] is None and step["attribution"] is None


@given(st.integers(2, 6), st.integers(2, 12), st.integers(0, 1000))
@settings(max_examples=30, deadline=None)
def test_steering_makes_the_probe_decode_the_target(K, D, seed):
    g = torch.Generator().manual_seed(seed)
    B = 8
    coef = torch.randn(B, K, D, generator=g)
    intercept = torch.randn(B, K, generator=g)
    h = torch.randn(B, D, generator=g)
    current = torch.randint(0, K, (B,), generator=g)
    target = (current + 1 + torch.randint(0, K - 1, (B,), generator=g)) % K
    edited, ok = steer(h, coef, intercept, current, target)
    z = torch.einsum("bd,bkd->bk", edited, coef) + intercept
    assert (z.argmax(-1)[ok] == target[ok]).all()
    moved = (edited - h).norm(dim=-1)
    direction = coef[torch.arange(B), target] - coef[torch.arange(B), current]
    cos = torch.nn.functional.cosine_similarity(edited - h, direction, dim=-1)
    assert ((moved < 1e-6) | (cos > 0.999)).all()  # edits run along the class direction
    if K == 2:
        assert ok.all()  # with two classes the direction always suffices


def test_verdict_thresholds():
    assert verdict(0.9, 0.1, 0.2 + CAUSAL + 0.05, (0.3, 0.5), 0.2) == "causal"
    assert verdict(0.1 + DECODABLE, 0.1, 0.3, (0.1, 0.5), 0.25) == "decodable-not-causal"
    assert verdict(0.9, None, 0.9, (0.1, 0.95), 0.2) == "decodable-not-causal"  # wide interval
    assert verdict(0.2, 0.1, 0.3, (0.2, 0.4), 0.25) == "neither"


@given(st.floats(0, 1), st.one_of(st.none(), st.floats(-0.5, 0.99)), st.floats(0, 1),
       st.floats(0, 0.99))
def test_world_model_score_is_a_bounded_geometric_mean(d, r, iia, b):
    s = world_model_score(d, r, iia, b)
    assert 0 <= s <= 1 + 1e-12
    if d <= max(0.0, r or 0.0) or iia <= b:
        assert s == 0
    assert world_model_score(1.0, r, 1.0, b) == pytest.approx(1.0)
    assert not math.isnan(s)
