"""Linear probes for every layer × target in one fit, on the extraction device.

One eigendecomposition of each layer's feature covariance serves everything: ridge along the
whole path of penalties is closed-form in that basis (one factorisation per layer, not per
penalty), and the same basis preconditions a batched multinomial L-BFGS (the Hessian's diagonal
in that basis, measured per probe and class every few iterations, whatever each probe's
penalty). With several penalties, logistic probes run a short warm-started path, strong to weak,
to choose each probe's penalty on the validation split, and are then fitted to convergence only
at the penalty chosen. A fixed penalty per probe ([layers, targets], e.g. a previous fit's
`best_penalty_`) skips the path altogether.

Where the time goes (and why the layout is what it is): one iteration is two matrix products
over the examples (logits of the step; gradient) and a handful of elementwise passes over the
logits (softmax and residual). The logits are [layers, classes, targets, examples], so the
softmax across classes is elementwise work between contiguous blocks (a reduction over a small
innermost class axis, or a broadcast across it, ran ~8× slower per element); the intercept is a
row of ones in the features, so one product gives the logits; the label term of the loss comes
from per-class feature sums, not from a pass over the logits. A line-search retry evaluates only
the probes that need it, and once the probes still running fit in a small block of
layers × targets, the fit continues on that block alone.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from probekit.errors import DataError, UnknownNameError, UserError
from probekit.threads import retained_memory

KINDS = ("logistic", "ridge", "ridge_classifier")
DEFAULT_PENALTIES = (1e4, 1e3, 1e2, 10.0, 1.0, 0.1)
CURVATURE = 0.25  # per-example curvature of the log-loss assumed before it is measured
MEMORY = 10  # L-BFGS correction pairs kept per probe
REFRESH = 10  # iterations between two measurements of the Hessian's diagonal
PATH_ITER = 10  # L-BFGS iterations per penalty of the path that chooses the logistic penalty
COMPACT = 0.5  # the running probes move to a block of their own below this share of the whole
PATIENCE = 2  # the path stops once no probe improved on validation for this many penalties

ArrayLike = Any  # numpy array, torch tensor or nested lists


@retained_memory()  # glibc would map and unmap every large tensor of the fit
def fit_linear_probes(X: ArrayLike, Y: ArrayLike, kind: str = "logistic", *,
                      X_val: ArrayLike | None = None, Y_val: ArrayLike | None = None,
                      penalties: float | Sequence[float] | np.ndarray = DEFAULT_PENALTIES,
                      n_classes: int | Sequence[int] | None = None, max_iter: int = 300,
                      tol: float = 1e-4, device: str | torch.device | None = None,
                      init: LinearProbes | None = None, warn: bool = True) -> LinearProbes:
    """Fit one probe per layer and target: X is [layers, examples, dim], Y is [examples, targets]
    (class labels 0..C-1 with -1 for missing, or real values with NaN for missing for "ridge").

    kind: "logistic" (multinomial), "ridge_classifier" (ridge on one-hot labels, argmax) or
    "ridge" (regression, scored by R²). The penalty multiplies ½‖W‖² of the summed log-loss
    (scikit-learn's C = 1/penalty) or ‖W‖² of the summed squared error (scikit-learn's Ridge's
    alpha); features are standardised per layer on the training split. `penalties`: one value;
    several, with X_val/Y_val, to keep per layer × target the one scoring best on them (ties keep
    the stronger; logistic probes choose on a short warm-started path, then converge at the
    chosen one); or an array [layers, targets] of one fixed penalty per probe (e.g. another fit's
    `best_penalty_`; no validation split needed). n_classes: per target or for all (default: one
    more than the largest label seen); classes absent from training are never predicted.
    max_iter and tol bound the final logistic fit (tol: the largest gradient entry of the mean
    loss, scikit-learn's criterion). init: a previous fit of the same kind and shape to
    warm-start the logistic fit from. device: where to fit (default: X's device, else the CPU).
    warn: a scikit-learn ConvergenceWarning for logistic probes that end above tol (False: the
    caller takes any fit, as an online code does).
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
    L, T = X.shape[0], labels.shape[1]
    if per_probe:
        if np.shape(penalties) != (L, T):
            raise UserError(f"penalties has shape {np.shape(penalties)}; one penalty per probe "
                            f"needs [layers, targets] = [{L}, {T}]")
        penalties = torch.as_tensor(np.asarray(penalties, dtype=np.float64), device=device)
    elif len(penalties) == 1:  # one penalty: the same as one fixed penalty for every probe
        penalties = torch.full((L, T), penalties[0], dtype=torch.float64, device=device)
    mean, scale = _standardiser(X)
    Xs = (X - mean).div_(scale)
    Xs_val = None if X_val is None else (X_val - mean).div_(scale)
    del X, X_val  # only the standardised copies are needed from here: free the float32 inputs
    if kind == "ridge":
        classes = torch.zeros(T, dtype=torch.long, device=device)
        targets = labels[:, :, None]
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
    if init is not None and (not isinstance(init, LinearProbes) or init.kind != kind
                             or tuple(init._coef.shape) != (L, Xs.shape[2], T, targets.shape[2])):
        raise UserError(f"init must be the LinearProbes of a {kind!r} fit with {L} layers, "
                        f"{Xs.shape[2]} features, {T} targets and {targets.shape[2]} outputs")
    if kind == "logistic":
        start = None
        if init is not None:  # the previous fit in the standardised space of this one
            coef = init._coef.to(device)
            start = (coef * scale.transpose(1, 2)[..., None],
                     init._intercept.to(device).nan_to_num(0.0, 0.0, 0.0)
                     + torch.einsum("ld,ldtk->ltk", mean[:, 0], coef))
        W, b, chosen, n_iter, late, stalled = _fit_logistic(
            Xs, labels, targets, penalties, Xs_val, Y_val, max_iter, tol, start)
        if warn:
            _warn_unconverged(late, stalled, max_iter, tol)
    else:
        W, b, chosen = _fit_ridge(Xs, targets, observed, penalties, Xs_val, Y_val, kind)
        n_iter = torch.zeros_like(chosen, dtype=torch.long)
    coef = W / scale.transpose(1, 2)[..., None]  # back to the original feature space
    intercept = b - torch.einsum("ld,ldtk->ltk", mean[:, 0], coef)
    if kind != "ridge":
        intercept = intercept.masked_fill(targets.sum(0) == 0, -math.inf)
    return LinearProbes(kind, coef, intercept, classes, chosen, n_iter)


def _warn_unconverged(late: torch.Tensor, stalled: torch.Tensor, max_iter: int,
                      tol: float) -> None:
    if not (late.any() or stalled.any()):
        return
    from sklearn.exceptions import ConvergenceWarning  # only now: scikit-learn takes seconds

    total = late.numel()
    if late.any():
        warnings.warn(f"{int(late.sum())} of {total} logistic probes reached max_iter={max_iter} "
                      f"with a gradient above tol={tol}: raise max_iter", ConvergenceWarning,
                      stacklevel=3)
    if stalled.any():
        warnings.warn(f"{int(stalled.sum())} of {total} logistic probes stopped improving "
                      f"(float32 precision) with a gradient above tol={tol}: raise tol",
                      ConvergenceWarning, stacklevel=3)


class LinearProbes:
    """The fitted probes of every layer × target; `coef_`/`intercept_` are in the original
    (unstandardised) feature space, so a probe's class directions can steer activations."""

    def __init__(self, kind: str, coef: torch.Tensor, intercept: torch.Tensor,
                 n_classes: torch.Tensor, best_penalty: torch.Tensor, n_iter: torch.Tensor):
        self.kind = kind
        self._coef = coef  # [layers, dim, targets, outputs]
        self._intercept = intercept  # [layers, targets, outputs]
        self.n_classes_ = n_classes.cpu().numpy()  # [targets]; 0 for ridge regression
        self.best_penalty_ = best_penalty.cpu().numpy()  # [layers, targets], float64
        self.n_iter_ = n_iter.cpu().numpy()  # [layers, targets]; 0 for closed-form ridge

    @property
    def coef_(self) -> np.ndarray:
        """[layers, targets, outputs, dim]: one weight vector per class (one for ridge)."""
        return self._coef.permute(0, 2, 3, 1).cpu().numpy()

    @property
    def intercept_(self) -> np.ndarray:
        """[layers, targets, outputs]; -inf for classes a target never showed in training."""
        return self._intercept.cpu().numpy()

    def decision_function(self, X: ArrayLike) -> np.ndarray:
        """[layers, examples, targets, outputs] logits (or predicted values for ridge)."""
        return self._logits(X).cpu().numpy()

    def predict(self, X: ArrayLike) -> np.ndarray:
        """[layers, examples, targets]: the predicted class (or value for ridge)."""
        return self._predict(self._logits(X)).cpu().numpy()

    def predict_proba(self, X: ArrayLike) -> np.ndarray:
        """[layers, examples, targets, classes]: class probabilities of the logistic probes."""
        if self.kind != "logistic":
            raise UserError(f"predict_proba needs kind='logistic'; these probes are {self.kind!r}")
        return torch.softmax(self._logits(X), 3).cpu().numpy()

    def score(self, X: ArrayLike, Y: ArrayLike) -> np.ndarray:
        """[layers, targets]: accuracy (classifiers) or R² (ridge) over the non-missing labels."""
        z = self._logits(X)
        Y = _targets(Y, self.kind, z.shape[1], "Y", z.device)
        if Y.shape[1] != z.shape[2]:
            raise UserError(f"Y has {Y.shape[1]} targets; the probes have {z.shape[2]}")
        return _score(self._predict(z), Y, self.kind).cpu().numpy()

    def _logits(self, X: ArrayLike) -> torch.Tensor:
        X = _features(X, "X", self._coef.device)
        L, D, T, K = self._coef.shape
        if X.shape[0] != L or X.shape[2] != D:
            raise UserError(f"X has shape {tuple(X.shape)}; these probes need [{L}, examples, {D}]")
        z = torch.bmm(X, self._coef.reshape(L, D, T * K)).view(L, -1, T, K)
        return z + self._intercept[:, None]

    def _predict(self, z: torch.Tensor) -> torch.Tensor:
        return z[..., 0] if self.kind == "ridge" else z.argmax(3)


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
    """[examples, targets, classes] float one-hot; missing labels are all-zero rows."""
    onehot = torch.nn.functional.one_hot(labels.clamp_min(0), n_classes).float()
    return onehot * (labels >= 0)[..., None]


def _check_two_classes(onehot: torch.Tensor) -> None:
    present = (onehot.sum(0) > 0).sum(1)
    if (present < 2).any():
        t = int((present < 2).nonzero()[0])
        only = onehot[:, t].sum(0).nonzero().flatten().tolist()
        raise DataError(f"target {t} has {'only class ' + str(only[0]) if only else 'no labels'} "
                        "in the training split; a probe needs at least two classes")


def _standardiser(X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-layer feature mean and scale [layers, 1, dim]; near-constant features keep scale 1."""
    var, mean = torch.var_mean(X, 1, correction=0, keepdim=True)
    std = var.sqrt_()
    constant = std <= 1e-6 * mean.abs().clamp_min(1.0)
    return mean, torch.where(constant, torch.ones_like(std), std)


def _eigen(G: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenvalues [layers, dim] (clipped at 0) and eigenvectors [layers, dim, dim] of the
    symmetric G, in float64 (float32 rounding makes small eigenvalues of XᵀX meaningless)."""
    s, V = torch.linalg.eigh(G.double())
    return s.clamp_min(0.0), V


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
    """[layers, examples, targets] predictions of weights [layers, dim, targets, outputs]."""
    L, D, T, K = W.shape
    z = (Xs @ W.reshape(L, D, T * K)).view(L, -1, T, K) + b[:, None]
    return z[..., 0] if kind == "ridge" else z.argmax(3)


class _Best:
    """Per layer × target, the fit with the best validation score offered so far; ties keep the
    earlier (more strongly penalised) one. Without a score every offer replaces the last.
    `since` counts, per probe, the offers since its score last improved."""

    def __init__(self) -> None:
        self.score: torch.Tensor | None = None
        self.since: torch.Tensor | None = None

    def offer(self, score: torch.Tensor | None, **fits: torch.Tensor) -> None:
        keep = None
        if score is not None:
            score = score.nan_to_num(-math.inf)  # a target without validation labels
            if self.score is not None:
                keep = score > self.score
                self.since = torch.where(keep, 0, self.since + 1)
                score = torch.where(keep, score, self.score)
            else:
                self.since = torch.zeros_like(score, dtype=torch.long)
            self.score = score
        for name, value in fits.items():
            if keep is not None:  # [layers, targets] against [layers, (dim,) targets, (classes)]
                mask = keep[:, None] if value.ndim == 4 else keep
                mask = mask.view(mask.shape + (1,) * (value.ndim - mask.ndim))
                value = torch.where(mask, value, getattr(self, name))
            setattr(self, name, value)


def _fit_ridge(Xs: torch.Tensor, targets: torch.Tensor, observed: torch.Tensor,
               penalties: list[float] | torch.Tensor, Xs_val: torch.Tensor | None,
               Y_val: torch.Tensor | None, kind: str
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Closed-form ridge: targets observed on the same examples share one eigendecomposition
    of the layer's covariance, which gives the solution at every penalty of the path."""
    L, N, D = Xs.shape
    T, K = targets.shape[1:]
    W = Xs.new_zeros(L, D, T, K)
    b = Xs.new_zeros(L, T, K)
    chosen = Xs.new_zeros(L, T, dtype=torch.float64)
    fixed = isinstance(penalties, torch.Tensor)
    patterns, group = torch.unique(observed, dim=1, return_inverse=True)
    for g in range(patterns.shape[1]):
        cols = (group == g).nonzero().flatten()
        rows = patterns[:, g]
        Xg = Xs[:, rows] if not rows.all() else Xs
        mu = Xg.mean(1, keepdim=True)
        Xc = Xg - mu
        y = targets[rows][:, cols]
        y_mean = y.mean(0)
        s, V = _eigen(Xc.mT @ Xc)
        VtB = V.mT @ (Xc.mT @ (y - y_mean).reshape(len(y), -1)).double()  # [L, D, t·K]
        del Xc
        best = _Best()
        for penalty in (penalties[:, cols].unique().tolist() if fixed else penalties):
            Wp = (V @ (VtB / (s + penalty)[..., None])).float().view(L, D, len(cols), K)
            bp = y_mean - torch.einsum("ld,ldtk->ltk", mu[:, 0], Wp)
            if fixed:  # each probe keeps the solution at its own penalty
                score = (penalties[:, cols] == penalty).float()
            else:
                score = None if Xs_val is None else _score(
                    _predict(Xs_val, Wp, bp, kind), Y_val[:, cols], kind)
            best.offer(score, W=Wp, b=bp, penalty=torch.full_like(chosen[:, cols], penalty))
        W[:, :, cols], b[:, cols], chosen[:, cols] = best.W, best.b, best.penalty
    return W, b, chosen


class _Problem:
    """What every logistic fit of one call shares, in the layout the fit works in: features
    transposed with a row of ones for the intercept, XT [layers, dim + 1, examples]; parameters
    P [layers, dim + 1, classes, targets] (weights, then the intercept row); logits
    [layers, classes, targets, examples], so one matrix product gives every probe's logits and
    the softmax is elementwise work between contiguous blocks."""

    def __init__(self, Xs: torch.Tensor, labels: torch.Tensor, onehot: torch.Tensor):
        L, N, D = Xs.shape
        T, K = onehot.shape[1:]
        self.XT = torch.cat([Xs.mT, Xs.new_ones(L, 1, N)], 1)  # [L, D + 1, N]
        observed = labels >= 0
        self.missing = not bool(observed.all())
        self.weight = observed.T.float()[None, None]  # [1, 1, T, N]
        self.n = observed.sum(0).float()  # [T]
        self.negonehot = onehot.permute(2, 1, 0).neg()[None].contiguous()  # [1, K, T, N]
        # Σ of the examples of each class (and, in the last row, their count), so that the
        # log-likelihood's label term is a product with P, not a pass over the logits
        self.sums = (self.XT @ onehot.transpose(1, 2).reshape(N, K * T)).view(L, D + 1, K, T)
        self.sums = self.sums.double()
        self.counts = onehot.sum(0).T  # [K, T]
        absent = self.counts == 0  # classes a target never shows: never predicted
        self.pad = torch.zeros_like(self.counts).masked_fill(absent, -math.inf)
        # scikit-learn's binary model has one weight vector; two symmetric ones need twice the
        # penalty
        self.binary = ((~absent).sum(0) == 2).double()  # [T]
        features = self.XT[:, :D]
        s, V = _eigen(features @ features.mT)
        self.s, self.V = s.float(), V.float()
        self._squares: torch.Tensor | None = None

    def subset(self, layers: torch.Tensor, targets: torch.Tensor) -> _Problem:
        """The same problem for some layers and targets only."""
        new = object.__new__(_Problem)
        new.XT = self.XT if len(layers) == len(self.XT) else self.XT[layers]
        new.missing, new.n, new.weight = self.missing, self.n[targets], self.weight[:, :, targets]
        new.negonehot = self.negonehot[:, :, targets]
        new.sums = self.sums[layers][..., targets]
        new.counts, new.pad = self.counts[:, targets], self.pad[:, targets]
        new.binary, new.s, new.V = self.binary[targets], self.s[layers], self.V[layers]
        new._squares = None if self._squares is None else self._squares[layers]
        return new

    def squares(self) -> torch.Tensor:
        """[L, examples, D]: each example's squared coordinates in the eigenbasis."""
        if self._squares is None:
            self._squares = (self.XT[:, :-1].mT @ self.V).square_()
        return self._squares

    def logits(self, P: torch.Tensor, pad: bool = True, add_to: torch.Tensor | None = None
               ) -> torch.Tensor:
        """[layers, classes, targets, examples] logits of P, plus `add_to` if given; absent
        classes get -inf unless pad=False (the logits of a step direction, to be added to
        padded ones)."""
        L, D1, K, T = P.shape
        if pad:
            P = torch.cat([P[:, :-1], (P[:, -1] + self.pad)[:, None]], 1)
        if add_to is not None:
            z = torch.baddbmm(add_to.view(L, K * T, -1), P.reshape(L, D1, K * T).mT, self.XT)
            return z.view(L, K, T, -1)
        return (P.reshape(L, D1, K * T).mT @ self.XT).view(L, K, T, -1)

    def gradient(self, residual: torch.Tensor) -> torch.Tensor:
        """Gradient [L, D + 1, K, T] of the summed log-loss from the residual p − y."""
        L, K, T, N = residual.shape
        g = residual.view(L, K * T, N) @ self.XT.mT  # [L, K·T, D + 1]
        return g.mT.reshape(L, -1, K, T)

    def label_term(self, P: torch.Tensor) -> torch.Tensor:
        """Σ over examples of the true class's logit, [layers, targets] (P without padding)."""
        return (self.sums * P.double()).sum((1, 2))


class _LogLoss:
    """Penalised multinomial log-loss of every layer × target probe, each at its own penalty,
    in preconditioned coordinates x [layers, dim + 1, classes, targets]: with XᵀX = V S Vᵀ,
    W = V·(x[:, :dim] / root) and b = x[:, dim] · bscale, where root² approximates the diagonal
    of the Hessian in the eigenbasis (CURVATURE·S + penalty at first; refresh() measures it per
    class from the current probabilities), so L-BFGS needs few iterations."""

    def __init__(self, problem: _Problem, penalty: torch.Tensor):
        self.p = problem
        self.penalty = (penalty * (1.0 + problem.binary)).float()  # [layers, targets]
        h = CURVATURE * problem.s[:, :, None, None] + _expand(self.penalty)
        self.root = h.clamp_min(1e-12).sqrt()  # [L, D, 1, T]
        self.bscale = (CURVATURE * problem.n).rsqrt()  # [T]

    def subset(self, layers: torch.Tensor, targets: torch.Tensor) -> _LogLoss:
        """The same objective for some layers and targets only."""
        new = object.__new__(_LogLoss)
        new.p = self.p.subset(layers, targets)
        new.penalty = _take(self.penalty, layers, targets)
        new.root = _take(self.root, layers, targets)
        new.bscale = self.bscale[targets] if self.bscale.ndim == 1 else \
            _take(self.bscale, layers, targets)
        return new

    def refresh(self, residual: torch.Tensor) -> torch.Tensor:
        """Measure the Hessian's diagonal in the eigenbasis, per class, at the probabilities of
        `residual`; returns by what each x coordinate scales."""
        L, K, T, N = residual.shape
        prob = residual - self.p.negonehot  # p·weight: 0 for missing labels
        curvature = prob.mul_(1.0 - prob)  # [L, K, T, N]
        h = (curvature.view(L, K * T, N) @ self.p.squares()).mT.reshape(L, -1, K, T)
        root = h.add_(_expand(self.penalty)).clamp_min_(1e-12).sqrt_()
        bscale = curvature.sum(3).clamp_min(1e-6).rsqrt()  # [L, K, T]
        scale = torch.cat([(root / self.root).expand(L, -1, K, T),
                           (self.bscale / bscale).expand(L, K, T)[:, None]], 1)
        self.root, self.bscale = root, bscale
        return scale

    def params(self, x: torch.Tensor) -> torch.Tensor:
        L, D1, K, T = x.shape
        W = self.p.V @ (x[:, :-1] / self.root).reshape(L, D1 - 1, K * T)
        return torch.cat([W.view(L, D1 - 1, K, T), (x[:, -1] * self.bscale)[:, None]], 1)

    def whiten(self, gP: torch.Tensor) -> torch.Tensor:
        """The gradient in x coordinates (the chain rule through params)."""
        L, D1, K, T = gP.shape
        gV = (self.p.V.mT @ gP[:, :-1].reshape(L, D1 - 1, K * T)).view(L, D1 - 1, K, T)
        return torch.cat([gV / self.root, (gP[:, -1] * self.bscale)[:, None]], 1)

    def loss(self, z: torch.Tensor, P: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Objective [layers, targets] at logits z of P, and the residual p − y
        [layers, classes, targets, examples]."""
        lse, residual = _softmax(z, self.p.negonehot, self.p.weight if self.p.missing else None)
        value = lse.sum((1, 3), dtype=torch.float64) - self.p.label_term(P)
        W = P[:, :-1]
        return value + 0.5 * self.penalty * (W * W).sum((1, 2), dtype=torch.float64), residual

    def loss_of(self, z: torch.Tensor, P: torch.Tensor, layer: torch.Tensor, target: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """loss() of some probes only: z [probes, classes, examples], P [probes, dim + 1,
        classes] of the probes (layer[i], target[i])."""
        negonehot = self.p.negonehot[0][:, target].transpose(0, 1)
        weight = self.p.weight[0, 0, target][:, None] if self.p.missing else None
        lse, residual = _softmax(z, negonehot, weight)
        label = (self.p.sums[layer, :, :, target] * P.double()).sum((1, 2))
        W = P[:, :-1]
        penalty = self.penalty[layer, target]
        return (lse.sum((1, 2), dtype=torch.float64) - label
                + 0.5 * penalty * (W * W).sum((1, 2), dtype=torch.float64)), residual

    def gradient(self, residual: torch.Tensor, P: torch.Tensor) -> torch.Tensor:
        g = self.p.gradient(residual)
        g[:, :-1].add_(_expand(self.penalty) * P[:, :-1])
        return g

    def largest(self, gP: torch.Tensor) -> torch.Tensor:
        """[layers, targets] largest absolute entry of each probe's mean-loss gradient."""
        return gP.abs().amax((1, 2)) / self.p.n


def _fit_logistic(Xs: torch.Tensor, labels: torch.Tensor, onehot: torch.Tensor,
                  penalties: list[float] | torch.Tensor, Xs_val: torch.Tensor | None,
                  Y_val: torch.Tensor | None, max_iter: int, tol: float,
                  start: tuple[torch.Tensor, torch.Tensor] | None) -> tuple[torch.Tensor, ...]:
    """Batched L-BFGS at each probe's penalty: fixed ones ([layers, targets]) directly; from a
    list, a short path from strong to weak (at most PATH_ITER iterations each, warm-started,
    stopping once no probe has improved on validation for PATIENCE penalties) chooses each
    probe's penalty, and the fit then continues to convergence at that penalty only. W and b
    come and go as [layers, dim, targets, classes] and [layers, targets, classes]. Returns W, b,
    the penalties, the iterations run at them, and which probes stopped at max_iter or stalled."""
    L, N, D = Xs.shape
    T, K = onehot.shape[1:]
    problem = _Problem(Xs, labels, onehot)
    if start is not None:
        P = torch.cat([start[0].transpose(2, 3), start[1].transpose(1, 2)[:, None]], 1)
    else:
        P = Xs.new_zeros(L, D + 1, K, T)
        P[:, D] = (problem.counts / problem.counts.sum(0)).log().nan_to_num(0.0, 0.0, 0.0)
    steps = torch.zeros(L, T, dtype=torch.long, device=Xs.device)
    if not isinstance(penalties, torch.Tensor):
        best = _Best()
        for penalty in penalties:
            chosen = torch.full((L, T), penalty, dtype=torch.float64, device=Xs.device)
            P, ran, _, _ = _lbfgs(_LogLoss(problem, chosen), P, min(PATH_ITER, max_iter), tol)
            W, b = P[:, :-1].transpose(2, 3), P[:, -1].transpose(1, 2)  # as _Best, _predict take
            score = _score(_predict(Xs_val, W, b + problem.pad.T, "logistic"), Y_val, "logistic")
            best.offer(score, W=W, b=b, penalty=chosen, steps=ran)
            if (best.since >= PATIENCE).all():
                break
        P = torch.cat([best.W.transpose(2, 3), best.b.transpose(1, 2)[:, None]], 1)
        penalties, steps = best.penalty, best.steps
    P, ran, late, stalled = _lbfgs(_LogLoss(problem, penalties), P, max_iter, tol)
    return P[:, :-1].transpose(2, 3), P[:, -1].transpose(1, 2), penalties, steps + ran, late, \
        stalled


def _lbfgs(f: _LogLoss, P: torch.Tensor, max_iter: int, tol: float, state: dict | None = None
           ) -> tuple[torch.Tensor, ...]:
    """Minimise every probe's objective at once from P; a probe stops when the largest entry of
    its mean-loss gradient is at most tol (scikit-learn's criterion). Once the probes still
    running fit in a block of layers × targets at most COMPACT of the whole, the fit goes on
    with that block only (L-BFGS's memory carried over in `state`). Returns P, the iterations
    each probe ran, and which probes ended above tol at max_iter (late) or without any decrease
    float32 can resolve (stalled)."""
    P = P.contiguous()
    z = f.p.logits(P)
    value, residual = f.loss(z, P)
    gP = f.gradient(residual, P)
    state = state or {}
    history: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = state.get("history", [])
    gamma = state.get("gamma", P.new_ones(value.shape))
    stalled = state.get("stalled", torch.zeros_like(value, dtype=torch.bool))
    failed = state.get("failed", torch.zeros_like(value, dtype=torch.bool))
    phase = state.get("phase", 0)
    steps = torch.zeros_like(value, dtype=torch.long)
    active = (f.largest(gP) > tol) & ~stalled
    g = f.whiten(gP)
    for it in range(max_iter):
        if not active.any():
            break
        layers, targets = active.any(1).nonzero()[:, 0], active.any(0).nonzero()[:, 0]
        if it > 0 and len(layers) * len(targets) <= COMPACT * active.numel():
            sub = dict(history=[(_take(p, layers, targets), _take(c, layers, targets),
                                 _take(r, layers, targets)) for p, c, r in history],
                       gamma=_take(gamma, layers, targets), phase=phase + it,
                       stalled=_take(stalled, layers, targets),
                       failed=_take(failed, layers, targets))
            P_sub, ran, late_sub, stalled_sub = _lbfgs(
                f.subset(layers, targets), _take(P, layers, targets), max_iter - it, tol, sub)
            late = torch.zeros_like(stalled)
            return (_put(P, layers, targets, P_sub), _put(steps, layers, targets, ran +
                                                           _take(steps, layers, targets)),
                    _put(late, layers, targets, late_sub),
                    _put(stalled, layers, targets, stalled_sub))
        if (phase + it) % REFRESH == 0:  # measure the diagonal; rescale what L-BFGS keeps
            scale = f.refresh(residual)
            history = [(p * scale, c / scale, r) for p, c, r in history]
            g = g / scale
            if history:
                p_, c_, _ = history[-1]
                gamma = _dot(p_, c_) / _dot(c_, c_).clamp_min(1e-30)
        d = _two_loop(g, history, gamma)
        slope = _dot(g, d)
        if not (slope < 0).all():  # numerical trouble: restart those probes on the gradient
            d = torch.where(_expand(slope < 0), d, -g)
            slope = _dot(g, d)
        steps += active
        d, slope = d * _expand(active), slope * active
        dP = f.params(d)
        t = torch.ones_like(slope)
        if not history:  # no curvature yet: find the step length by a few secant steps
            dz = f.p.logits(dP, pad=False)
            t = _secant(f, z, dz, P, dP, slope, t)
            z_new = _moved(z, dz, t)
        else:  # a unit step, its logits added to z inside the matrix product
            dz, z_new = None, f.p.logits(dP, pad=False, add_to=z)
        t, z, new_value, new_residual = _armijo(f, z, dz, z_new, P, dP, value, residual, slope,
                                                t)
        P_new = P + _expand(t) * dP
        gP = f.gradient(new_residual, P_new)
        g_new = f.whiten(gP)
        step, change = _expand(t) * d, g_new - g
        curvature = _dot(step, change)
        ok = curvature > 1e-10 * _dot(change, change).sqrt() * _dot(step, step).sqrt()
        rho = torch.where(ok, 1.0 / curvature.clamp_min(1e-30), 0.0)
        history = (history + [(step, change, rho)])[-MEMORY:]
        gamma = torch.where(ok, curvature / _dot(change, change).clamp_min(1e-30), gamma)
        # A probe without a decrease forgets its curvature pairs and retries on the gradient;
        # failing again there, float32 cannot resolve its progress: that fit is done.
        fail = active & (t == 0)
        stalled |= fail & failed
        failed = fail
        if fail.any():
            history = [(p, c, torch.where(fail, 0.0, r)) for p, c, r in history]
            gamma = torch.where(fail, 1.0, gamma)
        P, g, value, residual = P_new, g_new, new_value, new_residual
        active = (f.largest(gP) > tol) & ~stalled
    above = f.largest(gP) > tol
    return P, steps, above & ~stalled, above & stalled


def _take(v: torch.Tensor, layers: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The block layers × targets of a [layers, ..., targets] tensor."""
    return v[layers][..., targets]


def _put(v: torch.Tensor, layers: torch.Tensor, targets: torch.Tensor,
         block: torch.Tensor) -> torch.Tensor:
    """v with its block layers × targets replaced by `block` (a new tensor)."""
    rows = v[layers]
    rows[..., targets] = block
    out = v.clone()
    out[layers] = rows
    return out


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


def _softmax(z: torch.Tensor, negonehot: torch.Tensor, weight: torch.Tensor | None
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """log Σ exp over the classes (dim 1) and the residual softmax − onehot, both times the
    weight (0 for a missing label) when given."""
    m = z.amax(1, keepdim=True)
    e = torch.sub(z, m).exp_()
    s = e.sum(1, keepdim=True)
    residual = torch.addcdiv(negonehot, e, s)
    lse = s.log_().add_(m)
    if weight is not None:
        residual.mul_(weight)
        lse.mul_(weight)
    return lse, residual


def _moved(z: torch.Tensor, dz: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """z + t·dz with one step length per probe ([layers, targets] over [L, K, T, N])."""
    if bool((t == 1.0).all()):
        return torch.add(z, dz)
    return torch.addcmul(z, t[:, None, :, None], dz)


def _secant(f: _LogLoss, z: torch.Tensor, dz: torch.Tensor, P: torch.Tensor, dP: torch.Tensor,
            slope: torch.Tensor, t: torch.Tensor, rounds: int = 3) -> torch.Tensor:
    """Step lengths near the minimum along each probe's direction: regula falsi on the
    directional derivative, which costs no matrix product since the logits move linearly."""
    lo, d_lo = torch.zeros_like(t), slope
    hi, d_hi = torch.full_like(t, math.inf), torch.full_like(t, math.inf)
    ww, dd = _dot(P[:, :-1], dP[:, :-1]), _dot(dP[:, :-1], dP[:, :-1])
    for _ in range(rounds):
        _, residual = f.loss(_moved(z, dz, t), P + _expand(t) * dP)
        deriv = (residual * dz).sum((1, 3)) + f.penalty * (ww + t * dd)
        below = deriv < 0
        lo, d_lo = torch.where(below, t, lo), torch.where(below, deriv, d_lo)
        hi, d_hi = torch.where(below, hi, t), torch.where(below, d_hi, deriv)
        bracketed = hi.isfinite()
        guess = lo - d_lo * (hi - lo) / (d_hi - d_lo)
        t = torch.where(bracketed, guess.nan_to_num(1.0), 4.0 * t)
    return t


def _armijo(f: _LogLoss, z: torch.Tensor, dz: torch.Tensor | None, z_new: torch.Tensor,
            P: torch.Tensor, dP: torch.Tensor, value: torch.Tensor, residual: torch.Tensor,
            slope: torch.Tensor, t: torch.Tensor, tries: int = 10
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Halve each probe's step until it decreases its objective enough (Armijo's rule); a probe
    still without a decrease after `tries` halvings gets step 0. z_new: the logits at step t
    (dz: those of the direction, or None when t is 1 and dz = z_new − z). After the first try
    only the probes still looking for a step are evaluated. Returns the step, the new logits,
    objective and residual (z, value and residual are those at step 0)."""
    new_value, new_residual = f.loss(z_new, P + _expand(t) * dP)
    ok = new_value <= value + 1e-4 * t * slope
    if ok.all():
        return t, z_new, new_value, new_residual
    layer, target = (~ok).nonzero(as_tuple=True)
    zs = z[layer, :, target]  # [probes, classes, examples]
    Ps, dPs = P[layer, :, :, target], dP[layer, :, :, target]
    # (not z_new − z: near convergence that difference has lost the step's digits)
    dzs = torch.bmm(dPs.mT, f.p.XT[layer]) if dz is None else dz[layer, :, target]
    ts, bound = t[layer, target], value[layer, target]
    slopes = slope[layer, target]
    for _ in range(tries):
        ts = 0.5 * ts
        z_try = torch.addcmul(zs, ts[:, None, None], dzs)
        value_try, residual_try = f.loss_of(z_try, Ps + ts[:, None, None] * dPs, layer, target)
        good = value_try <= bound + 1e-4 * ts * slopes
        if good.any():
            at = layer[good], target[good]
            t[at] = ts[good]
            new_value[at] = value_try[good]
            z_new[at[0], :, at[1]] = z_try[good]
            new_residual[at[0], :, at[1]] = residual_try[good]
            keep = ~good
            layer, target, zs, dzs, Ps, dPs, ts, bound, slopes = (
                v[keep] for v in (layer, target, zs, dzs, Ps, dPs, ts, bound, slopes))
        if len(layer) == 0:
            return t, z_new, new_value, new_residual
    t[layer, target] = 0.0  # no decrease: stay where it was
    new_value[layer, target] = value[layer, target]
    z_new[layer, :, target] = z[layer, :, target]
    new_residual[layer, :, target] = residual[layer, :, target]
    return t, z_new, new_value, new_residual


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-probe inner product of two [layers, rows, classes, targets] tensors."""
    return (a * b).sum((1, 2))


def _expand(v: torch.Tensor) -> torch.Tensor:
    """[layers, targets] → [layers, 1, 1, targets] for broadcasting."""
    return v[:, None, None, :]
