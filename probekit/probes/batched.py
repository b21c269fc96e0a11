"""Linear probes for every layer × target in one fit, on the extraction device.

Ridge is closed-form: one Cholesky factor of each layer's covariance per penalty serves every
target. Multinomial logistic regression runs a batched L-BFGS in coordinates whitened by
that same decomposition, so all probes converge in a few dozen iterations; the penalty of both
is chosen per layer and target on the validation split.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, r2_score
from sklearn.utils import ClassifierTags, RegressorTags, Tags
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted

from probekit.errors import DataError, UnknownNameError, UserError

KINDS = ("logistic", "ridge", "ridge_classifier")
DEFAULT_PENALTIES = (1e4, 1e3, 1e2, 10.0, 1.0, 0.1)
CURVATURE = 0.25  # typical per-example curvature of the log-loss; sets the whitening's balance
MEMORY = 10  # L-BFGS correction pairs kept per probe

ArrayLike = Any  # numpy array, torch tensor or nested lists


def fit_linear_probes(X: ArrayLike, Y: ArrayLike, kind: str = "logistic", *,
                      X_val: ArrayLike | None = None, Y_val: ArrayLike | None = None,
                      penalties: float | Sequence[float] | np.ndarray = DEFAULT_PENALTIES,
                      n_classes: int | Sequence[int] | None = None, max_iter: int = 100,
                      tol: float = 1e-4, device: str | torch.device | None = None,
                      init: LinearProbes | None = None) -> LinearProbes:
    """Fit one probe per layer and target: X is [layers, examples, dim], Y is [examples, targets]
    (class labels 0..C-1 with -1 for missing, or real values with NaN for missing for "ridge").

    kind: "logistic" (multinomial), "ridge_classifier" (ridge on one-hot labels, argmax) or
    "ridge" (regression, scored by R²). The penalty multiplies ½‖W‖² of the summed log-loss
    (scikit-learn's C = 1/penalty) or ‖W‖² of the summed squared error (scikit-learn's Ridge's
    alpha); features are standardised per layer on the training split. `penalties`: one value;
    several, with X_val/Y_val, to keep per layer × target the one scoring best on them; or an
    array [layers, targets] of one fixed penalty per probe (e.g. another fit's `best_penalty_`).
    n_classes: per target or for all (default: one more than the largest label seen); classes
    absent from training are never predicted. max_iter and tol bound the logistic fit (tol: the
    largest gradient entry of the mean loss, scikit-learn's criterion). init: a previous fit of
    the same shape to warm-start the logistic fit from. device: where to fit (default: X's
    device, else the CPU).
    """
    _check_params(kind, penalties, max_iter, tol)
    if (X_val is None) != (Y_val is None):
        raise UserError("pass both X_val and Y_val, or neither")
    per_probe = np.ndim(penalties) == 2
    if not per_probe:
        penalties = sorted({float(a) for a in np.atleast_1d(penalties)}, reverse=True)
        if X_val is None and len(penalties) > 1:
            raise UserError(f"{len(penalties)} penalties but no validation split to choose "
                            "among them: pass X_val and Y_val, or a single penalty")
    X = _features(X, "X", device)
    device = X.device
    labels = _targets(Y, kind, X.shape[1], "Y", device)
    if X_val is not None:
        X_val = _features(X_val, "X_val", device)
        if X_val.shape[0] != X.shape[0] or X_val.shape[2] != X.shape[2]:
            raise UserError(f"X_val has shape {tuple(X_val.shape)}; it needs {X.shape[0]} layers "
                            f"and {X.shape[2]} features like X")
        Y_val = _targets(Y_val, kind, X_val.shape[1], "Y_val", device)
        if Y_val.shape[1] != labels.shape[1]:
            raise UserError(f"Y_val has {Y_val.shape[1]} targets; Y has {labels.shape[1]}")
    if per_probe:
        if np.shape(penalties) != (X.shape[0], labels.shape[1]):
            raise UserError(f"penalties has shape {np.shape(penalties)}; one penalty per probe "
                            f"needs [layers, targets] = [{X.shape[0]}, {labels.shape[1]}]")
        penalties = torch.as_tensor(np.asarray(penalties, dtype=np.float64), device=device)
    if init is not None and (not isinstance(init, LinearProbes) or init.kind != kind
                             or init._coef.shape[0] != X.shape[0]
                             or init._coef.shape[1] != X.shape[2]
                             or init._coef.shape[3] != labels.shape[1]):
        raise UserError(f"init must be the LinearProbes of a {kind!r} fit with {X.shape[0]} "
                        f"layers, {X.shape[2]} features and {labels.shape[1]} targets")
    mean, scale = _standardiser(X)
    Xs = (X - mean).div_(scale)
    Xs_val = None if X_val is None else (X_val - mean).div_(scale)
    del X, X_val  # only the standardised copies are needed from here: free the float32 inputs
    if kind == "ridge":
        classes = torch.zeros(labels.shape[1], dtype=torch.long, device=device)
        targets = labels[:, None, :]
        observed = ~labels.isnan()
        if (observed.sum(0) < 2).any():
            t = int((observed.sum(0) < 2).nonzero()[0])
            raise DataError(f"target {t} has {int(observed[:, t].sum())} values in the training "
                            "split; a probe needs at least two")
    else:
        classes = _n_classes(n_classes, labels, Y_val)
        targets = _one_hot(labels, int(classes.max()))
        observed = labels >= 0
        _check_two_classes(targets)
    if kind == "logistic":
        start = None
        if init is not None:  # the previous fit in the standardised space of this one
            coef = init._coef.to(device)[..., :targets.shape[1], :]
            finite = init._intercept.to(device)[:, :targets.shape[1]].nan_to_num(0, 0, 0)
            start = (coef * scale.transpose(1, 2)[..., None],
                     finite + torch.einsum("ld,ldkt->lkt", mean[:, 0], coef))
        W, b, best, n_iter = _fit_logistic(Xs, labels, targets, penalties, Xs_val, Y_val,
                                           max_iter, tol, start)
    else:
        W, b, best = _fit_ridge(Xs, targets, observed, penalties, Xs_val, Y_val, kind)
        n_iter = torch.zeros_like(best, dtype=torch.long)
    coef = W / scale.transpose(1, 2)[..., None]  # back to the original feature space
    intercept = b - torch.einsum("ld,ldkt->lkt", mean[:, 0], coef)
    if kind != "ridge":
        intercept = intercept.masked_fill(targets.sum(0) == 0, -math.inf)
    return LinearProbes(kind, coef, intercept, classes, best, n_iter)


class LinearProbes:
    """The fitted probes of every layer × target; `coef_`/`intercept_` are in the original
    (unstandardised) feature space, so a probe's class directions can steer activations."""

    def __init__(self, kind: str, coef: torch.Tensor, intercept: torch.Tensor,
                 n_classes: torch.Tensor, best_penalty: torch.Tensor, n_iter: torch.Tensor):
        self.kind = kind
        self._coef = coef  # [layers, dim, outputs, targets]
        self._intercept = intercept  # [layers, outputs, targets]
        self.n_classes_ = n_classes.cpu().numpy()  # [targets]; 0 for ridge regression
        self.best_penalty_ = best_penalty.cpu().numpy()  # [layers, targets]
        self.n_iter_ = n_iter.cpu().numpy()  # [layers, targets]; 0 for closed-form ridge

    @property
    def coef_(self) -> np.ndarray:
        """[layers, targets, outputs, dim]: one weight vector per class (one for ridge)."""
        return self._coef.permute(0, 3, 2, 1).cpu().numpy()

    @property
    def intercept_(self) -> np.ndarray:
        """[layers, targets, outputs]; -inf for classes a target never showed in training."""
        return self._intercept.permute(0, 2, 1).cpu().numpy()

    def decision_function(self, X: ArrayLike) -> np.ndarray:
        """[layers, examples, targets, outputs] logits (or predicted values for ridge)."""
        return self._logits(X).permute(0, 1, 3, 2).cpu().numpy()

    def predict(self, X: ArrayLike) -> np.ndarray:
        """[layers, examples, targets]: the predicted class (or value for ridge)."""
        return self._predict(self._logits(X)).cpu().numpy()

    def predict_proba(self, X: ArrayLike) -> np.ndarray:
        """[layers, examples, targets, classes]: class probabilities of the logistic probes."""
        if self.kind != "logistic":
            raise UserError(f"predict_proba needs kind='logistic'; these probes are {self.kind!r}")
        return torch.softmax(self._logits(X), 2).permute(0, 1, 3, 2).cpu().numpy()

    def score(self, X: ArrayLike, Y: ArrayLike) -> np.ndarray:
        """[layers, targets]: accuracy (classifiers) or R² (ridge) over the non-missing labels."""
        z = self._logits(X)
        Y = _targets(Y, self.kind, z.shape[1], "Y", z.device)
        if Y.shape[1] != z.shape[3]:
            raise UserError(f"Y has {Y.shape[1]} targets; the probes have {z.shape[3]}")
        return _score(self._predict(z), Y, self.kind).cpu().numpy()

    def _logits(self, X: ArrayLike) -> torch.Tensor:
        X = _features(X, "X", self._coef.device)
        L, D, K, T = self._coef.shape
        if X.shape[0] != L or X.shape[2] != D:
            raise UserError(f"X has shape {tuple(X.shape)}; these probes need [{L}, examples, {D}]")
        z = torch.bmm(X, self._coef.reshape(L, D, K * T)).view(L, -1, K, T)
        return z + self._intercept[:, None]

    def _predict(self, z: torch.Tensor) -> torch.Tensor:
        return z[:, :, 0] if self.kind == "ridge" else z.argmax(2)


class LinearProbe(BaseEstimator):
    """One linear probe (one layer, one target) with scikit-learn's interface; it runs the
    batched fit with one layer and one target, so single and batched probes share one path."""

    def __init__(self, kind: str = "logistic", penalty: float = 1.0, max_iter: int = 100,
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
        self.probes_ = fit_linear_probes(X[None], targets[:, None], self.kind, penalties=self.penalty,
                                         max_iter=self.max_iter, tol=self.tol, device=self.device)
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


def _check_params(kind: str, penalties: Any, max_iter: Any, tol: Any) -> None:
    if kind not in KINDS:
        raise UnknownNameError("probe kind", str(kind), KINDS)
    values = np.atleast_1d(np.asarray(penalties, dtype=object))
    if values.ndim > 2 or values.size == 0 or not all(
            isinstance(a, (int, float, np.number)) and not isinstance(a, bool)
            and math.isfinite(a) and a > 0 for a in values.ravel()):
        raise UserError("penalty must be a finite number > 0 (or a non-empty list of them, or "
                        f"an array [layers, targets] of them), got {_short(penalties)}")
    if not isinstance(max_iter, (int, np.integer)) or isinstance(max_iter, bool) or max_iter < 1:
        raise UserError(f"max_iter must be an integer >= 1, got {max_iter!r}")
    if not isinstance(tol, (int, float, np.number)) or not tol > 0:
        raise UserError(f"tol must be a number > 0, got {tol!r}")


def _short(value: Any) -> str:
    text = repr(value).replace("\n", " ")
    return text if len(text) <= 80 else text[:77] + "..."


def _features(X: ArrayLike, name: str, device: str | torch.device | None) -> torch.Tensor:
    """[layers, examples, dim] float32 on the device, finite and non-empty."""
    if isinstance(X, torch.Tensor):
        X = X.detach().to(device=device if device is not None else X.device)
    else:
        X = torch.as_tensor(np.asarray(X), device=device if device is not None else "cpu")
    if X.ndim != 3:
        raise UserError(f"{name} must be 3-D [layers, examples, dim], got shape {tuple(X.shape)}")
    if 0 in X.shape:
        raise DataError(f"{name} is empty (shape {tuple(X.shape)}): nothing to probe")
    if not (X.dtype.is_floating_point or X.dtype in (torch.int32, torch.int64)):
        raise UserError(f"{name} must hold real numbers, got dtype {X.dtype}")
    X = X.float()
    finite = torch.isfinite(X).flatten(1).all(1)
    if not finite.all():
        layer = int((~finite).nonzero()[0])
        raise DataError(f"{name} has NaN or inf values at layer index {layer}: "
                        "probes need finite activations")
    return X


def _targets(Y: ArrayLike, kind: str, n: int, name: str, device: torch.device) -> torch.Tensor:
    """[examples, targets]: int64 labels (-1 = missing) or float32 values (NaN = missing)."""
    Y = np.asarray(Y.cpu() if isinstance(Y, torch.Tensor) else Y)
    if Y.ndim != 2 or Y.shape[0] != n:
        raise UserError(f"{name} must be 2-D [examples, targets] with {n} examples, "
                        f"got shape {Y.shape}")
    if Y.shape[1] == 0:
        raise DataError(f"{name} has no targets")
    if kind == "ridge":
        if not np.issubdtype(Y.dtype, np.number) or np.isinf(Y).any():
            raise UserError(f"{name} must hold real values (NaN for missing) for kind='ridge'")
        return torch.as_tensor(Y.astype(np.float32), device=device)
    integral = np.issubdtype(Y.dtype, np.integer) or (
        np.issubdtype(Y.dtype, np.floating) and bool(np.all(Y == np.round(Y))))
    if not integral:
        raise UserError(f"{name} must hold integer class labels 0..C-1 (-1 for missing) "
                        f"for kind={kind!r}")
    if (Y < -1).any():
        raise UserError(f"{name} has labels below -1; use 0..C-1, and -1 for missing")
    return torch.as_tensor(Y.astype(np.int64), device=device)


def _n_classes(n_classes: int | Sequence[int] | None, labels: torch.Tensor,
               labels_val: torch.Tensor | None) -> torch.Tensor:
    """Classes per target: given, or one more than the largest label seen."""
    seen = labels.max(0).values
    if labels_val is not None:
        seen = torch.maximum(seen, labels_val.max(0).values)
    if n_classes is None:
        return seen + 1
    given = torch.as_tensor(np.broadcast_to(np.asarray(n_classes), labels.shape[1:]).copy(),
                            device=labels.device)
    if (given < seen + 1).any():
        t = int((given < seen + 1).nonzero()[0])
        raise UserError(f"target {t} has label {int(seen[t])} but n_classes is {int(given[t])}")
    return given.long()


def _one_hot(labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """[examples, classes, targets] float one-hot; missing labels are all-zero rows."""
    onehot = torch.nn.functional.one_hot(labels.clamp_min(0), n_classes).float()
    return (onehot * (labels >= 0)[..., None]).transpose(1, 2).contiguous()


def _check_two_classes(onehot: torch.Tensor) -> None:
    present = (onehot.sum(0) > 0).sum(0)
    if (present < 2).any():
        t = int((present < 2).nonzero()[0])
        only = onehot[:, :, t].sum(0).nonzero().flatten().tolist()
        raise DataError(f"target {t} has {'only class ' + str(only[0]) if only else 'no labels'} "
                        "in the training split; a probe needs at least two classes")


def _standardiser(X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-layer feature mean and scale [layers, 1, dim]; near-constant features keep scale 1."""
    mean = X.mean(1, keepdim=True)
    std = X.std(1, correction=0, keepdim=True)
    constant = std <= 1e-6 * mean.abs().clamp_min(1.0)
    return mean, torch.where(constant, torch.ones_like(std), std)


def _cholesky(G: torch.Tensor, shift: float | torch.Tensor) -> torch.Tensor:
    """Lower Cholesky factors of G + shift·I [layers, dim, dim], factored in float64; a layer that
    rounding made indefinite gets the smallest extra shift, from 1e-6 of its mean diagonal up."""
    eye = torch.eye(G.shape[-1], dtype=torch.float64, device=G.device)
    if isinstance(shift, torch.Tensor):
        shift = shift.double()[:, None, None]
    A = G.double() + shift * eye
    factor, info = torch.linalg.cholesky_ex(A)
    extra = 1e-6 * G.diagonal(dim1=1, dim2=2).double().mean(1).clamp_min(1e-12)
    while (info > 0).any():
        A = A + torch.where(info > 0, extra, 0.0)[:, None, None] * eye
        factor, info = torch.linalg.cholesky_ex(A)
        extra = 10.0 * extra
    return factor.float()


def _score(pred: torch.Tensor, Y: torch.Tensor, kind: str) -> torch.Tensor:
    """[layers, targets] accuracy or R² of predictions [layers, examples, targets]."""
    if kind != "ridge":
        observed = (Y >= 0).float()
        return ((pred == Y).float() * observed).sum(1) / observed.sum(0)
    observed = ~Y.isnan()
    y = torch.where(observed, Y, 0.0)
    n = observed.sum(0)
    total = ((y - y.sum(0) / n) ** 2 * observed).sum(0)
    residual = ((y - pred) ** 2 * observed).sum(1)
    r2 = 1.0 - residual / total
    return torch.where(total > 0, r2, (residual == 0).float())


def _predict(Xs: torch.Tensor, W: torch.Tensor, b: torch.Tensor, kind: str) -> torch.Tensor:
    """[layers, examples, targets] predictions of weights [layers, dim, outputs, targets]."""
    L, D, K, T = W.shape
    z = (Xs @ W.reshape(L, D, K * T)).view(L, -1, K, T) + b[:, None]
    return z[:, :, 0] if kind == "ridge" else z.argmax(2)


class _Best:
    """Per layer × target, the fit with the best validation score offered so far; ties keep the
    earlier (more strongly penalised) one. Without a score every offer replaces the last."""

    def __init__(self) -> None:
        self.score: torch.Tensor | None = None

    def offer(self, score: torch.Tensor | None, **fits: torch.Tensor) -> None:
        keep = None
        if score is not None:
            score = score.nan_to_num(-math.inf)  # a target without validation labels
            if self.score is not None:
                keep = score > self.score
                score = torch.where(keep, score, self.score)
            self.score = score
        for name, value in fits.items():
            if keep is not None:
                shape = (keep.shape[0],) + (1,) * (value.ndim - 2) + (keep.shape[1],)
                value = torch.where(keep.view(shape), value, getattr(self, name))
            setattr(self, name, value)


def _fit_ridge(Xs: torch.Tensor, targets: torch.Tensor, observed: torch.Tensor,
               penalties: list[float], Xs_val: torch.Tensor | None, Y_val: torch.Tensor | None,
               kind: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Closed-form ridge: targets observed on the same examples share one Cholesky factor per
    layer and penalty."""
    L, N, D = Xs.shape
    K, T = targets.shape[1:]
    W = Xs.new_zeros(L, D, K, T)
    b = Xs.new_zeros(L, K, T)
    chosen = Xs.new_zeros(L, T, dtype=torch.float64)
    patterns, group = torch.unique(observed, dim=1, return_inverse=True)
    for g in range(patterns.shape[1]):
        cols = (group == g).nonzero().flatten()
        rows = patterns[:, g]
        Xg = Xs[:, rows]
        mu = Xg.mean(1, keepdim=True)
        Xc = Xg - mu
        y = targets[rows][:, :, cols]
        y_mean = y.mean(0)
        G, B = Xc.mT @ Xc, Xc.mT @ (y - y_mean).reshape(len(y), -1)
        best = _Best()
        fixed = isinstance(penalties, torch.Tensor)
        for penalty in (penalties[:, cols].unique().tolist() if fixed else penalties):
            Wa = torch.cholesky_solve(B, _cholesky(G, penalty)).view(L, D, K, len(cols))
            ba = y_mean - torch.einsum("ld,ldkt->lkt", mu[:, 0], Wa)
            score = None if Xs_val is None or fixed else _score(
                _predict(Xs_val, Wa, ba, kind), Y_val[:, cols], kind)
            if fixed:  # a probe keeps the solve at its own penalty
                score = (penalties[:, cols] == penalty).float()
            best.offer(score, W=Wa, b=ba, penalty=torch.full_like(chosen[:, cols], penalty))
        W[..., cols], b[..., cols], chosen[:, cols] = best.W, best.b, best.penalty
    return W, b, chosen


class _LogLoss:
    """Penalised multinomial log-loss of every layer × target probe at one penalty, in
    coordinates x [layers, dim + 1, classes, targets] whitened by the layer's covariance: with
    R Rᵀ = CURVATURE·XᵀX + penalty·I, W = R⁻ᵀ x[:, :dim] and b = x[:, dim] / √(CURVATURE·n), so the
    Hessian is close to the identity and L-BFGS needs few iterations."""

    def __init__(self, Xs: torch.Tensor, factor: torch.Tensor, labels: torch.Tensor,
                 onehot: torch.Tensor, penalty: torch.Tensor):
        self.Xs, self.factor, self.onehot = Xs, factor, onehot
        self.penalty = penalty.expand(Xs.shape[0], onehot.shape[2])  # [layers, targets]
        self.weight = (labels >= 0).float()[:, None, :]  # [N, 1, T]
        absent = onehot.sum(0) == 0  # [K, T] classes a target never shows: never predicted
        self.pad = torch.zeros_like(absent, dtype=Xs.dtype).masked_fill(absent, -math.inf)
        fill = (~absent).float().argmax(0)  # any present class stands in for a missing label
        self.index = torch.where(labels >= 0, labels, fill)[None, :, None, :].expand(
            Xs.shape[0], -1, 1, -1)
        self.bscale = (CURVATURE * self.weight.sum(0)).rsqrt()  # [1, T]

    def params(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        L, D1, K, T = x.shape
        V = x[:, :-1].reshape(L, D1 - 1, K * T)
        W = torch.linalg.solve_triangular(self.factor.mT, V, upper=True)
        return W.view(L, D1 - 1, K, T), x[:, -1] * self.bscale

    def logits(self, W: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """[layers, examples, classes, targets]; without the -inf of absent classes, so the
        logits of a step direction can be added to them."""
        L, D, K, T = W.shape
        return (self.Xs @ W.reshape(L, D, K * T)).view(L, -1, K, T) + b[:, None]

    def loss(self, z: torch.Tensor, W: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Objective [layers, targets] and residual p − y [layers, examples, classes, targets]."""
        logp = torch.log_softmax(z, 2)
        nll = -(logp.gather(2, self.index) * self.weight).sum((1, 2), dtype=torch.float64)
        residual = logp.exp_().mul_(self.weight).sub_(self.onehot)
        return nll + 0.5 * self.penalty * (W * W).sum((1, 2), dtype=torch.float64), residual

    def gradient(self, residual: torch.Tensor, W: torch.Tensor) -> tuple[torch.Tensor,
                                                                          torch.Tensor]:
        """Gradients with respect to W and b in the standardised feature space."""
        L, N, K, T = residual.shape
        gW = (self.Xs.transpose(1, 2) @ residual.view(L, N, K * T)).view(L, -1, K, T)
        return gW + _expand(self.penalty) * W, residual.sum(1)

    def whiten(self, gW: torch.Tensor, gb: torch.Tensor) -> torch.Tensor:
        """The same gradient in x coordinates (the chain rule through params)."""
        L, D, K, T = gW.shape
        gV = torch.linalg.solve_triangular(self.factor, gW.reshape(L, D, K * T), upper=False)
        gV = gV.view(L, D, K, T)
        return torch.cat([gV, (gb * self.bscale)[:, None]], 1)


def _fit_logistic(Xs: torch.Tensor, labels: torch.Tensor, onehot: torch.Tensor,
                  penalties: list[float] | torch.Tensor, Xs_val: torch.Tensor | None,
                  Y_val: torch.Tensor | None, max_iter: int, tol: float,
                  start: tuple[torch.Tensor, torch.Tensor] | None
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Batched L-BFGS along the path of penalties from strong to weak, each fit warm-started
    from the previous one; keeps per layer × target the penalty that scores best on validation."""
    L, N, D = Xs.shape
    K, T = onehot.shape[1:]
    G = Xs.mT @ Xs
    # scikit-learn's binary model has one weight vector; two symmetric ones need twice the penalty
    binary = ((onehot.sum(0) > 0).sum(0) == 2).float()
    counts = onehot.sum(0)
    W = Xs.new_zeros(L, D, K, T)
    b = (counts / counts.sum(0)).log().nan_to_num(0.0, 0.0, 0.0).expand(L, K, T).clone()
    if start is not None:
        W, b = start
    best = _Best()
    if isinstance(penalties, torch.Tensor):  # one fixed penalty per probe
        shift = penalties.log().mean(1).exp()  # whitening is a preconditioner: any shift works
        objective = _LogLoss(Xs, _cholesky(CURVATURE * G, shift), labels, onehot,
                             (penalties * (1.0 + binary)).float())
        W, b, steps = _lbfgs(objective, W, b, max_iter, tol)
        return W, b, penalties, steps
    for penalty in penalties:
        objective = _LogLoss(Xs, _cholesky(CURVATURE * G, penalty), labels, onehot,
                             penalty * (1.0 + binary))
        W, b, steps = _lbfgs(objective, W, b, max_iter, tol)
        score = None if Xs_val is None else _score(
            _predict(Xs_val, W, b + objective.pad, "logistic"), Y_val, "logistic")
        best.offer(score, W=W, b=b, penalty=torch.full_like(W[:, 0, 0], penalty, dtype=torch.float64),
                   steps=steps)
    return best.W, best.b, best.penalty, best.steps


def _lbfgs(f: _LogLoss, W: torch.Tensor, b: torch.Tensor, max_iter: int, tol: float
           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Minimise every probe's objective at once from (W, b); a probe stops when the largest
    entry of its mean-loss gradient is below tol (scikit-learn's criterion)."""
    z = f.logits(W, b + f.pad)
    value, residual = f.loss(z, W)
    gW, gb = f.gradient(residual, W)
    g = f.whiten(gW, gb)
    n = f.weight.sum(0)  # [1, T]
    history: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    gamma = g.new_ones(value.shape)
    steps = torch.zeros_like(value, dtype=torch.long)
    stalled = torch.zeros_like(value, dtype=torch.bool)
    for _ in range(max_iter):
        d = _two_loop(g, history, gamma)
        slope = _dot(g, d)
        if not (slope < 0).all():  # numerical trouble: restart those probes on the gradient
            d = torch.where((slope < 0)[:, None, None], d, -g)
            slope = _dot(g, d)
        active = (_largest(gW, gb) / n > tol) & ~stalled
        if not active.any():
            break
        steps += active
        d, slope = d * _expand(active), slope * active
        dW, db = f.params(d)
        dz = f.logits(dW, db)
        t = torch.ones_like(slope)
        if not history:  # no curvature yet: find the step length by a few secant steps
            t = _secant(f, z, dz, W, dW, slope, t)
        t, z, new_value, new_residual = _armijo(f, z, dz, W, dW, value, slope, t)
        stalled |= active & (t == 0)  # no decrease float32 can resolve: that fit is done
        W_new, b_new = W + _expand(t) * dW, b + t[:, None] * db
        gW, gb = f.gradient(new_residual, W_new)
        g_new = f.whiten(gW, gb)
        step, change = _expand(t) * d, g_new - g
        curvature = _dot(step, change)
        ok = curvature > 1e-10 * _dot(change, change).sqrt() * _dot(step, step).sqrt()
        rho = torch.where(ok, 1.0 / curvature.clamp_min(1e-30), 0.0)
        history = (history + [(step, change, rho)])[-MEMORY:]
        gamma = torch.where(ok, curvature / _dot(change, change).clamp_min(1e-30), gamma)
        W, b, g, value = W_new, b_new, g_new, new_value
    unfinished = _largest(gW, gb) / n > tol
    if unfinished.any():
        warnings.warn(f"{int(unfinished.sum())} of {unfinished.numel()} logistic probes stopped "
                      f"with a gradient above tol={tol}: raise max_iter (now {max_iter}), or tol "
                      "if float32 precision stalled them", ConvergenceWarning, stacklevel=4)
    return W, b, steps


def _two_loop(g: torch.Tensor, history: list, gamma: torch.Tensor) -> torch.Tensor:
    """−H·g for every probe from its L-BFGS correction pairs."""
    q = -g
    coefs = []
    for step, change, rho in reversed(history):
        a = rho * _dot(step, q)
        q = q - _expand(a) * change
        coefs.append(a)
    q = q * _expand(gamma)
    for (step, change, rho), a in zip(history, reversed(coefs)):
        q = q + _expand(a - rho * _dot(change, q)) * step
    return q


def _secant(f: _LogLoss, z: torch.Tensor, dz: torch.Tensor, W: torch.Tensor, dW: torch.Tensor,
            slope: torch.Tensor, t: torch.Tensor, rounds: int = 3) -> torch.Tensor:
    """Step lengths near the minimum along each probe's direction: regula falsi on the
    directional derivative, which costs no matrix product since the logits move linearly."""
    lo, d_lo = torch.zeros_like(t), slope
    hi, d_hi = torch.full_like(t, math.inf), torch.full_like(t, math.inf)
    ww, dd = (W * dW).sum((1, 2)), (dW * dW).sum((1, 2))
    for _ in range(rounds):
        _, residual = f.loss(z + _expand(t) * dz, W + _expand(t) * dW)
        deriv = (residual * dz).sum((1, 2)) + f.penalty * (ww + t * dd)
        below = deriv < 0
        lo, d_lo = torch.where(below, t, lo), torch.where(below, deriv, d_lo)
        hi, d_hi = torch.where(below, hi, t), torch.where(below, d_hi, deriv)
        bracketed = hi.isfinite()
        guess = lo - d_lo * (hi - lo) / (d_hi - d_lo)
        t = torch.where(bracketed, guess.nan_to_num(1.0), 4.0 * t)
    return t


def _armijo(f: _LogLoss, z: torch.Tensor, dz: torch.Tensor, W: torch.Tensor, dW: torch.Tensor,
            value: torch.Tensor, slope: torch.Tensor, t: torch.Tensor, tries: int = 10
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Halve each probe's step until it decreases its objective enough (Armijo's rule); a probe
    still without a decrease after `tries` halvings gets step 0. Returns the step, the new
    logits, objective and residual."""
    for _ in range(tries):
        z_new = torch.addcmul(z, _expand(t), dz)
        new_value, residual = f.loss(z_new, W + _expand(t) * dW)
        ok = new_value <= value + 1e-4 * t * slope
        if ok.all():
            return t, z_new, new_value, residual
        t = torch.where(ok, t, 0.5 * t)
    t = torch.where(ok, t, 0.0)
    z_new = torch.addcmul(z, _expand(t), dz)
    new_value, residual = f.loss(z_new, W + _expand(t) * dW)
    return t, z_new, new_value, residual


def _largest(gW: torch.Tensor, gb: torch.Tensor) -> torch.Tensor:
    """[layers, targets] largest absolute entry of each probe's gradient."""
    return torch.maximum(gW.abs().amax((1, 2)), gb.abs().amax(1))


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-probe inner product of two [layers, rows, classes, targets] tensors."""
    return (a * b).sum((1, 2))


def _expand(v: torch.Tensor) -> torch.Tensor:
    """[layers, targets] → [layers, 1, 1, targets] for broadcasting."""
    return v[:, None, None, :]
