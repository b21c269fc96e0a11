"""Batched linear probes agree with scikit-learn, fit targets independently, choose the penalty on
validation, and refuse bad data with one clear line."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.linear_model import LogisticRegression, Ridge, RidgeClassifier
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import (check_get_params_invariance,
                                            check_no_attributes_set_in_init,
                                            check_parameters_default_constructible,
                                            check_set_params)

from probekit.errors import DataError, UnknownNameError, UserError
from probekit.probes import LinearProbe, LinearProbes, batched, fit_linear_probes


def problem(layers: int = 2, n: int = 240, dim: int = 12, classes: tuple[int, ...] = (3, 2),
            seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Activations [layers, n, dim] with uneven scales and offsets, and noisy linear labels."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((layers, n, dim)) * rng.uniform(0.2, 5.0, dim) + rng.normal(0, 3, dim)
    Y = np.stack([(X[0] @ rng.standard_normal((dim, c)) / np.sqrt(dim) * 2
                   + rng.gumbel(size=(n, c))).argmax(1) for c in classes], 1)
    return X.astype(np.float32), Y


def standardised(X: np.ndarray) -> np.ndarray:
    return StandardScaler().fit_transform(X)


@pytest.mark.parametrize("classes", [(3, 4), (2,)])
def test_logistic_agrees_with_scikit_learn(classes):
    X, Y = problem(classes=classes)
    probes = fit_linear_probes(X, Y, penalties=0.5, tol=1e-5, max_iter=500)
    proba = probes.predict_proba(X)
    for layer in range(X.shape[0]):
        for t, c in enumerate(classes):
            ref = LogisticRegression(C=2.0, tol=1e-8, max_iter=5000).fit(
                standardised(X[layer]), Y[:, t])
            expected = ref.predict_proba(standardised(X[layer]))
            np.testing.assert_allclose(proba[layer, :, t, :c], expected, atol=2e-3)
            assert np.mean(probes.predict(X)[layer, :, t] ==
                           ref.predict(standardised(X[layer]))) >= 0.99
            assert probes.score(X, Y)[layer, t] == pytest.approx(
                ref.score(standardised(X[layer]), Y[:, t]), abs=0.01)


def test_ridge_kinds_agree_with_scikit_learn():
    X, Y = problem(classes=(3, 2))
    rng = np.random.default_rng(1)
    values = X[1] @ rng.standard_normal((X.shape[2], 2)) + rng.standard_normal((X.shape[1], 2))
    ridge = fit_linear_probes(X, values, "ridge", penalties=3.0)
    classifier = fit_linear_probes(X, Y, "ridge_classifier", penalties=3.0)
    for layer in range(X.shape[0]):
        Xs = standardised(X[layer])
        np.testing.assert_allclose(ridge.predict(X)[layer], Ridge(alpha=3.0).fit(Xs, values)
                                   .predict(Xs), rtol=1e-4, atol=1e-4)
        for t in range(2):
            ref = RidgeClassifier(alpha=3.0).fit(Xs, Y[:, t])
            np.testing.assert_array_equal(classifier.predict(X)[layer, :, t], ref.predict(Xs))
        np.testing.assert_allclose(ridge.score(X, values)[layer],
                                   [Ridge(alpha=3.0).fit(Xs, v).score(Xs, v) for v in values.T],
                                   rtol=1e-4)


@settings(max_examples=8, deadline=None)
@given(layers=st.integers(1, 3), targets=st.integers(1, 3), n=st.integers(20, 60),
       dim=st.integers(1, 8), seed=st.integers(0, 2**16))
def test_batched_ridge_equals_one_fit_per_layer_and_target(layers, targets, n, dim, seed):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((layers, n, dim)).astype(np.float32)
    values = rng.standard_normal((n, targets)).astype(np.float32)
    batched = fit_linear_probes(X, values, "ridge", penalties=1.0).predict(X)
    for layer in range(layers):
        Xs = standardised(X[layer])
        for t in range(targets):
            single = Ridge(alpha=1.0).fit(Xs, values[:, t]).predict(Xs)
            np.testing.assert_allclose(batched[layer, :, t], single, rtol=1e-3, atol=1e-3)


def test_targets_are_fit_independently_whatever_their_classes():
    X, Y = problem(classes=(4, 2, 3))
    together = fit_linear_probes(X, Y, penalties=1.0, tol=1e-5, max_iter=500)
    alone = fit_linear_probes(X, Y[:, 1:2], penalties=1.0, tol=1e-5, max_iter=500)
    np.testing.assert_allclose(together.predict_proba(X)[:, :, 1, :2],
                               alone.predict_proba(X)[:, :, 0], atol=1e-3)
    assert together.predict_proba(X)[:, :, 1, 2:].max() == 0.0  # padded classes
    assert together.predict(X)[:, :, 1].max() <= 1
    assert together.n_classes_.tolist() == [4, 2, 3]
    assert np.isneginf(together.intercept_[:, 1, 2:]).all()


def test_missing_labels_are_left_out():
    X, Y = problem(classes=(3, 3))
    Y_missing = Y.copy()
    Y_missing[::3, 0] = -1
    kept = Y_missing[:, 0] >= 0
    probes = fit_linear_probes(X, Y_missing, penalties=1.0, tol=1e-5, max_iter=500)
    subset = fit_linear_probes(X[:, kept], Y[kept][:, :1], penalties=1.0, tol=1e-5, max_iter=500)
    # standardisation uses every example, so compare predictions, which do not depend on it
    assert np.mean(probes.predict(X)[:, :, 0] == subset.predict(X)[:, :, 0]) >= 0.99
    ridge = fit_linear_probes(X, Y_missing, "ridge_classifier", penalties=2.0)
    Xs = (X - X.mean(1, keepdims=True)) / X.std(1, keepdims=True)
    ref = RidgeClassifier(alpha=2.0).fit(Xs[0][kept], Y[kept, 0])
    np.testing.assert_array_equal(ridge.predict(X)[0, :, 0], ref.predict(Xs[0]))
    np.testing.assert_array_equal(ridge.predict(X)[:, :, 1], fit_linear_probes(
        X, Y[:, 1:], "ridge_classifier", penalties=2.0).predict(X)[:, :, 0])
    scores = probes.score(X, Y_missing)
    assert scores[0, 0] == pytest.approx(np.mean(probes.predict(X)[0, kept, 0] == Y[kept, 0]))


@pytest.mark.parametrize("kind", ["ridge_classifier", "logistic"])
def test_penalty_is_chosen_per_layer_and_target_on_validation(kind):
    X, Y = problem(n=300, dim=40, classes=(3, 2))
    split = slice(0, 200), slice(200, None)
    penalties = (1000.0, 10.0, 0.1)
    probes = fit_linear_probes(X[:, split[0]], Y[split[0]], kind, X_val=X[:, split[1]],
                               Y_val=Y[split[1]], penalties=penalties, max_iter=300)
    assert probes.best_penalty_.shape == (2, 2)
    each = np.stack([fit_linear_probes(X[:, split[0]], Y[split[0]], kind, penalties=a,
                                       max_iter=300).score(X[:, split[1]], Y[split[1]])
                     for a in penalties])
    chosen = each[[penalties.index(a) for a in probes.best_penalty_.ravel()],
                  np.repeat(range(2), 2), np.tile(range(2), 2)].reshape(2, 2)
    if kind == "ridge_classifier":  # closed form: the same fits exactly
        np.testing.assert_array_equal(probes.best_penalty_, np.asarray(penalties)[each.argmax(0)])
    np.testing.assert_allclose(chosen, each.max(0), atol=0.02)
    np.testing.assert_allclose(probes.score(X[:, split[1]], Y[split[1]]), each.max(0), atol=0.02)


@pytest.mark.parametrize("kind", ["ridge_classifier", "logistic"])
def test_a_fixed_penalty_per_probe_fits_each_probe_at_its_own(kind, monkeypatch):
    X, Y = problem(n=300, dim=20, classes=(3, 2))
    chosen = np.array([[100.0, 0.1], [1.0, 100.0]])
    calls = []
    inner = batched._lbfgs
    monkeypatch.setattr(batched, "_lbfgs", lambda *a, **k: calls.append(1) or inner(*a, **k))
    probes = fit_linear_probes(X, Y, kind, penalties=chosen, tol=1e-5, max_iter=500)
    if kind == "logistic":  # the slowest probes finished on a block of their own
        assert len(calls) == 2
    np.testing.assert_array_equal(probes.best_penalty_, chosen)
    for value in np.unique(chosen):
        alone = fit_linear_probes(X, Y, kind, penalties=value, tol=1e-5, max_iter=500)
        at = chosen == value
        np.testing.assert_allclose(probes.coef_[at], alone.coef_[at], rtol=1e-3, atol=2e-4)
    with pytest.raises(UserError, match=r"needs \[layers, targets\] = \[2, 2\]"):
        fit_linear_probes(X, Y, kind, penalties=chosen[:1])


def test_fits_are_reproducible():
    X, Y = problem(n=300, dim=20, classes=(3, 2))
    fits = [fit_linear_probes(X[:, :200], Y[:200], X_val=X[:, 200:], Y_val=Y[200:])
            for _ in range(2)]
    np.testing.assert_array_equal(fits[0].coef_, fits[1].coef_)
    np.testing.assert_array_equal(fits[0].best_penalty_, fits[1].best_penalty_)
    np.testing.assert_array_equal(fits[0].n_iter_, fits[1].n_iter_)


def test_the_path_choice_matches_converged_scikit_learn_without_warnings():
    """Many examples for few features, as on the shipped demo: weak penalties win on validation
    and take the most iterations. The default fit converges without a warning, and its
    best-layer test accuracy matches scikit-learn's converged fits along the same path."""
    X, Y = problem(layers=2, n=3000, dim=10, classes=(3, 4), seed=3)
    X[1] += 0.3 * np.random.default_rng(0).standard_normal(X[1].shape).astype(np.float32)
    train, val, test = slice(0, 1500), slice(1500, 2200), slice(2200, None)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        probes = fit_linear_probes(X[:, train], Y[train], X_val=X[:, val], Y_val=Y[val])
    at_val = probes.score(X[:, val], Y[val])
    ours = at_val.max(0), probes.score(X[:, test], Y[test])[at_val.argmax(0), [0, 1]]
    reference = []
    for t in range(2):
        best = (-1.0, 0.0)
        for layer in range(2):
            scaler = StandardScaler().fit(X[layer, train])
            for penalty in batched.DEFAULT_PENALTIES:
                model = LogisticRegression(C=1 / penalty, tol=1e-4, max_iter=5000).fit(
                    scaler.transform(X[layer, train]), Y[train, t])
                score = model.score(scaler.transform(X[layer, val]), Y[val, t])
                if score > best[0]:
                    best = score, model.score(scaler.transform(X[layer, test]), Y[test, t])
        reference.append(best)
    # as good on validation (the choice) and on test, within 0.5 points (better is fine: the
    # two choose among near-ties differently)
    assert (ours[0] >= np.array(reference)[:, 0] - 0.005).all()
    assert (ours[1] >= np.array(reference)[:, 1] - 0.005).all()


def test_warm_start_from_a_previous_fit_reaches_the_same_probes():
    X, Y = problem(n=300, dim=20, classes=(3, 2))
    cold = fit_linear_probes(X, Y, penalties=1.0, tol=1e-6, max_iter=500)
    warm = fit_linear_probes(X, Y, penalties=1.0, tol=1e-6, max_iter=500, init=cold)
    np.testing.assert_allclose(warm.predict_proba(X), cold.predict_proba(X), atol=1e-4)
    assert warm.n_iter_.max() < cold.n_iter_.min()  # it starts where the first one stopped
    with pytest.raises(UserError, match="init must be"):
        fit_linear_probes(X[:1], Y, penalties=1.0, init=cold)


def test_coef_is_in_the_original_feature_space():
    X, Y = problem()
    probes = fit_linear_probes(X, Y, penalties=1.0)
    logits = np.einsum("lnd,ltkd->lntk", X, probes.coef_) + probes.intercept_[:, None]
    np.testing.assert_allclose(logits[..., :2], probes.decision_function(X)[..., :2],
                               rtol=1e-4, atol=1e-3)
    assert probes.coef_.shape == (2, 2, 3, 12) and probes.intercept_.shape == (2, 2, 3)


def test_inputs_may_be_torch_or_half_precision():
    X, Y = problem()
    reference = fit_linear_probes(X, Y, "ridge_classifier", penalties=1.0).predict(X)
    from_torch = fit_linear_probes(torch.from_numpy(X), torch.from_numpy(Y), "ridge_classifier",
                                   penalties=1.0, device="cpu")
    assert isinstance(from_torch, LinearProbes)
    np.testing.assert_array_equal(from_torch.predict(torch.from_numpy(X)), reference)
    half = fit_linear_probes(X.astype(np.float16), Y, "ridge_classifier", penalties=1.0)
    assert np.mean(half.predict(X) == reference) > 0.98


def test_too_few_iterations_warn():
    X, Y = problem()
    with pytest.warns(ConvergenceWarning, match="max_iter"):
        fit_linear_probes(X, Y, penalties=1e-3, max_iter=2)


@pytest.mark.parametrize("change, error, message", [
    (lambda X, Y: (X, np.ones_like(Y)), DataError, "target 0 has only class 1"),
    (lambda X, Y: (np.where(np.arange(2)[:, None, None] == 1, np.nan, X), Y), DataError,
     "layer index 1"),
    (lambda X, Y: (X[:, :0], Y[:0]), DataError, "empty"),
    (lambda X, Y: (X[0], Y), UserError, "3-D"),
    (lambda X, Y: (X, Y[:, 0]), UserError, "2-D"),
    (lambda X, Y: (X, Y[:-1]), UserError, "240 examples"),
    (lambda X, Y: (X, Y + 0.5), UserError, "integer class labels"),
    (lambda X, Y: (X, Y - 2), UserError, "below -1"),
])
def test_bad_data_is_refused_with_one_line(change, error, message):
    X, Y = change(*problem())
    with pytest.raises(error, match=message) as caught:
        fit_linear_probes(X, Y, penalties=1.0)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("options, error, message", [
    (dict(kind="logistc"), UnknownNameError, "did you mean 'logistic'"),
    (dict(penalties=0.0), UserError, "penalty must be a finite number > 0"),
    (dict(penalties=()), UserError, "penalty must be"),
    (dict(penalties=(1.0, 10.0)), UserError, "no validation split"),
    (dict(penalties=1.0, max_iter=0), UserError, "max_iter"),
    (dict(penalties=1.0, tol=-1), UserError, "tol"),
    (dict(penalties=1.0, n_classes=2), UserError, "n_classes is 2"),
])
def test_bad_parameters_are_refused(options, error, message):
    X, Y = problem(classes=(3,))
    with pytest.raises(error, match=message):
        fit_linear_probes(X, Y, **options)


def test_ridge_needs_values_to_fit():
    X, _ = problem()
    values = np.full((240, 2), np.nan)
    values[:, 0] = 1.0
    with pytest.raises(DataError, match="target 1 has 0 values in the training split"):
        fit_linear_probes(X, values, "ridge", penalties=1.0)


def test_validation_split_must_match():
    X, Y = problem()
    with pytest.raises(UserError, match="both X_val and Y_val"):
        fit_linear_probes(X, Y, X_val=X)
    with pytest.raises(UserError, match="X_val has shape"):
        fit_linear_probes(X, Y, X_val=X[:1], Y_val=Y)
    with pytest.raises(UserError, match="Y_val has 1 targets"):
        fit_linear_probes(X, Y, X_val=X, Y_val=Y[:, :1])
    probes = fit_linear_probes(X, Y, penalties=1.0)
    with pytest.raises(UserError, match=r"need \[2, examples, 12\]"):
        probes.predict(X[:, :, :5])


def test_single_probe_follows_scikit_learn_conventions():
    name = "LinearProbe"
    for check in (check_no_attributes_set_in_init, check_get_params_invariance,
                  check_set_params, check_parameters_default_constructible):
        check(name, LinearProbe())
    probe = LinearProbe(penalty=-1.0)  # validated at fit, not here
    with pytest.raises(UserError, match="penalty"):
        probe.fit(np.zeros((4, 2)), [0, 1, 0, 1])
    with pytest.raises(NotFittedError):
        LinearProbe().predict(np.zeros((2, 2)))
    assert clone(LinearProbe(kind="ridge", penalty=3.0)).get_params()["penalty"] == 3.0


def test_single_probe_matches_the_batched_fit_and_keeps_labels():
    X, Y = problem(classes=(3,))
    labels = np.array(["left", "middle", "right"])
    names = labels[Y[:, 0]]
    probe = LinearProbe(penalty=2.0).fit(X[0], names)
    assert probe.fit(X[0], names) is probe
    batched = fit_linear_probes(X[:1], Y, penalties=2.0)
    np.testing.assert_array_equal(probe.predict(X[0]), labels[batched.predict(X[:1])[0, :, 0]])
    np.testing.assert_allclose(probe.coef_, batched.coef_[0, 0], rtol=1e-4, atol=1e-5)
    assert probe.predict_proba(X[0]).shape == (240, 3)
    assert probe.score(X[0], names) == pytest.approx(batched.score(X[:1], Y)[0, 0])
    assert probe.__sklearn_tags__().estimator_type == "classifier"
    with pytest.raises(UserError, match="fitted on 12"):
        probe.predict(X[0, :, :3])


@pytest.mark.parametrize("kind, reference", [
    ("logistic", LogisticRegression(C=0.5, tol=1e-8, max_iter=5000)),
    ("ridge_classifier", RidgeClassifier(alpha=2.0))])
def test_single_binary_probe_has_scikit_learns_shapes(kind, reference):
    X, Y = problem(classes=(2,))
    probe = LinearProbe(kind, penalty=2.0, tol=1e-5, max_iter=500).fit(X[0], Y[:, 0] == 1)
    reference.fit(standardised(X[0]), Y[:, 0] == 1)
    assert probe.coef_.shape == (1, 12)  # one vector, for class 1, as LogisticRegression has
    scale = X[0].std(0)
    np.testing.assert_allclose(probe.coef_ * scale, reference.coef_.reshape(1, -1), rtol=0.02,
                               atol=1e-3)
    np.testing.assert_allclose(probe.decision_function(X[0]),
                               reference.decision_function(standardised(X[0])), atol=0.02)
    with pytest.raises(DataError, match="single class True"):
        probe.fit(X[0], np.ones(240, dtype=bool))


def test_single_ridge_probe_is_a_regressor():
    X, _ = problem()
    y = X[1] @ np.arange(12.0) / 12
    probe = LinearProbe(kind="ridge", penalty=1.0).fit(X[1], y)
    assert probe.__sklearn_tags__().estimator_type == "regressor"
    Xs = standardised(X[1])
    assert probe.score(X[1], y) == pytest.approx(Ridge(alpha=1.0).fit(Xs, y).score(Xs, y),
                                                 rel=1e-4)
    assert not hasattr(probe, "predict_proba") and not hasattr(probe, "decision_function")
    assert probe.coef_.shape == (12,) and np.ndim(probe.intercept_) == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        LinearProbe(kind="ridge_classifier").fit(X[1], y > y.mean())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("kind", ["logistic", "ridge_classifier"])
def test_cuda_fit_matches_the_cpu_fit(kind):
    X, Y = problem(layers=3, classes=(3, 2, 4))
    cpu = fit_linear_probes(X, Y, kind, X_val=X, Y_val=Y, penalties=(10.0, 1.0))
    cuda = fit_linear_probes(torch.from_numpy(X).cuda(), Y, kind, X_val=X, Y_val=Y,
                             penalties=(10.0, 1.0))
    assert np.mean(cuda.predict(X) == cpu.predict(X)) >= 0.99
    np.testing.assert_allclose(cuda.score(X, Y), cpu.score(X, Y), atol=0.01)


def test_fitting_probes_never_imports_scikit_learn():
    """scikit-learn costs seconds at start-up; only LinearProbe (its interface) needs it."""
    import subprocess
    import sys

    code = ("import sys, numpy as np; from probekit.probes import fit_linear_probes; "
            "import probekit.decodability, probekit.evaluation; "
            "fit_linear_probes(np.eye(4, dtype='float32')[None].repeat(8, 1), "
            "np.arange(32)[:, None] % 2, penalties=1.0, warn=False); "
            "assert 'sklearn' not in sys.modules; from probekit.probes import LinearProbe; "
            "assert 'sklearn' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
