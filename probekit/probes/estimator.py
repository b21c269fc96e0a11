"""`LinearProbe`: one linear probe (one layer, one target) with scikit-learn's interface.

It runs the batched fit of `probekit.probes.batched` with one layer and one target, so single
and batched probes share one path. Kept apart from the batched fit so that fitting probes never
imports scikit-learn (seconds of start-up); `probekit.probes.LinearProbe` imports it on first
use.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.metrics import accuracy_score, r2_score
from sklearn.utils import ClassifierTags, RegressorTags, Tags
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted

from probekit.errors import DataError, UserError
from probekit.probes.batched import ArrayLike, LinearProbes, _check_params, fit_linear_probes


class LinearProbe(BaseEstimator):
    """One linear probe (one layer, one target) with scikit-learn's interface; it runs the
    batched fit with one layer and one target, so single and batched probes share one path."""

    def __init__(self, kind: str = "logistic", penalty: float = 1.0, max_iter: int = 300,
                 tol: float = 1e-4, device: str | None = None):
        self.kind = kind
        self.penalty = penalty
        self.max_iter = max_iter
        self.tol = tol
        self.device = device

    def fit(self, X: ArrayLike, y: ArrayLike) -> LinearProbe:
        """Fit on X [examples, features] and y [examples] (any labels for classifiers)."""
        _check_params(self.kind, self.penalty, self.max_iter, self.tol)
        if np.ndim(self.penalty) != 0:
            raise UserError(f"penalty must be one number, got {self.penalty!r}")
        X = self._matrix(X)
        y = np.asarray(y)
        if y.ndim != 1 or len(y) != len(X):
            raise UserError(f"y must be 1-D with one label per row of X ({len(X)}), "
                            f"got shape {y.shape}")
        if self.kind == "ridge":
            targets = y
        else:
            self.classes_, targets = np.unique(y, return_inverse=True)
            if len(self.classes_) < 2:
                raise DataError(f"y has the single class {self.classes_.tolist()[0]!r}; a probe "
                                "needs at least two")
        self.probes_ = fit_linear_probes(X[None], targets[:, None], self.kind,
                                         penalties=self.penalty, max_iter=self.max_iter,
                                         tol=self.tol, device=self.device)
        coef, intercept = self.probes_.coef_[0, 0], self.probes_.intercept_[0, 0]
        if self.kind == "ridge":
            coef, intercept = coef[0], intercept[0]
        elif len(self.classes_) == 2:  # scikit-learn's binary form: one vector, for class 1
            coef, intercept = coef[1:] - coef[:1], intercept[1:] - intercept[:1]
        self.coef_, self.intercept_ = coef, intercept
        self.n_iter_ = int(self.probes_.n_iter_[0, 0])
        self.n_features_in_ = X.shape[1]
        return self

    @available_if(lambda self: self.kind != "ridge")
    def decision_function(self, X: ArrayLike) -> np.ndarray:
        """X @ coef_.T + intercept_: [examples, classes], or [examples] for two classes."""
        z = self._fitted().decision_function(self._matrix(X)[None])[0, :, 0]
        return z[:, 1] - z[:, 0] if z.shape[1] == 2 else z

    def predict(self, X: ArrayLike) -> np.ndarray:
        """[examples]: the predicted label (or value for ridge)."""
        pred = self._fitted().predict(self._matrix(X)[None])[0, :, 0]
        return pred if self.kind == "ridge" else self.classes_[pred]

    @available_if(lambda self: self.kind == "logistic")
    def predict_proba(self, X: ArrayLike) -> np.ndarray:
        """[examples, classes]: class probabilities (kind='logistic' only)."""
        return self._fitted().predict_proba(self._matrix(X)[None])[0, :, 0]

    def score(self, X: ArrayLike, y: ArrayLike) -> float:
        """Accuracy for classifiers, R² for ridge, as scikit-learn's mixins define them."""
        metric = r2_score if self.kind == "ridge" else accuracy_score
        return float(metric(y, self.predict(X)))

    def __sklearn_tags__(self) -> Tags:
        tags = super().__sklearn_tags__()
        if self.kind == "ridge":
            tags.estimator_type, tags.regressor_tags = "regressor", RegressorTags()
        else:
            tags.estimator_type, tags.classifier_tags = "classifier", ClassifierTags()
        return tags

    def _fitted(self) -> LinearProbes:
        check_is_fitted(self, "probes_")
        return self.probes_

    def _matrix(self, X: ArrayLike) -> np.ndarray:
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2:
            raise UserError(f"X must be 2-D [examples, features], got shape {X.shape}")
        if hasattr(self, "n_features_in_") and X.shape[1] != self.n_features_in_:
            raise UserError(f"X has {X.shape[1]} features; the probe was fitted on "
                            f"{self.n_features_in_}")
        return X
