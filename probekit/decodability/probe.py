"""`DecodabilityProbe`: linear probes of the world state in every layer × target at once, scored
by step depth, against a control task, the random-init twin and description length."""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from probekit.adapters.base import Adapter
from probekit.decodability import cache
from probekit.decodability.data import (
    LONG,
    PROBE_KIND,
    SPLITS,
    Labels,
    ProbeData,
    chance_levels,
    constant_targets,
    depth_buckets,
    layer_groups,
)
from probekit.decodability.mdl import MDL_PENALTY, online_bits, uniform_bits
from probekit.decodability.result import DecodabilityResult
from probekit.errors import DataError, ProbekitWarning, TooLongError, UnknownNameError, UserError
from probekit.extraction import AUTOCAST, extract
from probekit.latents import Latents
from probekit.probes import DEFAULT_PENALTIES, LinearProbes, fit_linear_probes
from probekit.probes.control import ControlTask
from probekit.tasks import Task
from probekit.threads import retained_memory
from probekit.worlds import Target

Source = Adapter | Mapping[str, Any]


class DecodabilityProbe:
    """Linear probes reading a task's targets from a model's latents at every layer.

    One probe per layer × target (logistic for class targets, ridge for regression targets) is
    fit once on every step of every training episode, its penalty chosen per probe on the
    validation split from `penalties`. Each probe is then scored on every split by **step
    depth**: `q1`…`q4` (quarters of the episode: step s of S, counted from 0, is in quarter
    ceil(4·(s+1)/S), so the last step is always in `q4`), `last` (the last step) and `all` (every
    step, pooled). With `depths=k` there are k buckets `q1`…`qk` instead of four. Alongside:
    the same probes on the task's held-out longer split `test_long` where it has one (buckets
    relative to its own length), a control task (`control`: each surface type of a step gets a
    fixed random label, Hewitt & Liang 2019; fit at the model's chosen penalties), the
    random-init twin's probes (`twin`, fit at the model's chosen penalties) and, for class
    targets, the online-code description length of the training labels (`mdl`, Voita & Titov
    2020; every probe at the one fixed `mdl_penalty`, see `probekit.decodability.mdl`;
    regression targets get none), for the model and the twin.

    **Constant targets.** A class target with fewer than two classes on the train split, or a
    regression target with fewer than two distinct values there, says nothing about a model: it
    is skipped, with one `ProbekitWarning` naming every such target, and listed in
    `result.skipped`; when no target is left, `run` raises `DataError`. The same rule holds
    wherever probekit fits decodability probes (`evaluate`, the spectrum trainer's quick probe).

    **Headline** (`result.scores()`, normalised: chance 0, perfect 1, averaged over targets):
    the layer with the best validation score on the last quarter of the steps (`q4`); `value`
    is the test score on `q4` there (state tracking is what happens late in an episode),
    `pooled` the test score over all steps at the same layer, `ci95` a bootstrap over test
    episodes of `value`; `control` and `selectivity` (value − control) on `q4`; `random_init`
    the twin's `q4` test score at the twin's own validation-chosen layer.

    Parameters are kept as given and checked by `run`. `batch_size` and `autocast` are those of
    `extract` (for an `Adapter`); `device` is where probes are fit (default: the adapter's
    device, else the CPU); `seed` orders the episodes of the MDL code and draws the bootstrap.
    `cache`: keep each layer group's fitted scores in the content-addressed probe cache
    (`probekit.decodability.cache`: keyed by the latents' bytes, the labels, the settings and
    the fitting code, so a hit returns what a new fit would, its warnings included); False
    always fits.
    """

    def __init__(self, *, control: bool = True, mdl: bool = True,
                 depths: str | int = "quartiles", penalties: Sequence[float] = DEFAULT_PENALTIES,
                 mdl_penalty: float = MDL_PENALTY, max_iter: int = 300, tol: float = 1e-4,
                 batch_size: int | str = 32, autocast: str | None = None,
                 device: str | torch.device | None = None, seed: int = 0, n_boot: int = 1000,
                 cache: bool = True, progress: bool = True):
        self.control, self.mdl, self.depths, self.penalties = control, mdl, depths, penalties
        self.mdl_penalty, self.max_iter, self.tol = mdl_penalty, max_iter, tol
        self.batch_size, self.autocast, self.device = batch_size, autocast, device
        self.seed, self.n_boot, self.cache, self.progress = seed, n_boot, cache, progress

    def config(self) -> dict[str, Any]:
        """The settings that decide the numbers (recorded in the result's identity)."""
        return {"control": self.control, "mdl": self.mdl, "depths": self.depths,
                "penalties": [float(p) for p in np.atleast_1d(self.penalties)],
                "mdl_penalty": float(self.mdl_penalty), "max_iter": self.max_iter,
                "tol": self.tol, "selection": "val", "headline": "q4", "seed": self.seed,
                "n_boot": self.n_boot}

    def run(self, model: Source, task: Task | Labels, layers: Sequence[str] | None = None, *,
            twin: Source | None = None) -> DecodabilityResult:
        """Probe `layers` (all by default) of `model` on `task`.

        `model` and `twin` are each an `Adapter` (latents are extracted, and cached, for the
        task's splits) or a dict {split: `Latents` or array [layers, episodes, steps, dim]} with
        the splits train, val, test and optionally test_long (`layers` then selects among the
        Latents' layers, or names the array's). `task` is a registered `Task`, or `Labels` for
        latents of episodes no task holds. `twin` is the random-init twin, made by the caller
        (`adapter.random_init(seed)`) so that other axes can share it; None leaves it out."""
        n_depths = self._checked()
        t0 = time.perf_counter()
        splits = self._splits(model, task)
        labels = task if isinstance(task, Labels) else Labels.of_task(task, splits)
        labels.check()
        absent = [s for s in splits if s not in labels.y]
        if absent:
            raise UserError(f"labels have no split {absent[0]!r}, which the latents have; add "
                            "its labels or drop its latents")
        if self.control and (labels.keys is None or any(s not in labels.keys for s in SPLITS)):
            raise UserError("control=True needs the surface keys of every split (Labels.keys); "
                            "pass them or set control=False")
        keep = self._targets(labels)
        targets = [labels.targets[j] for j in keep]
        names, latents = self._latents(model, task, layers, splits, labels, "model")
        splits = [s for s in splits if s in latents]  # test_long only where the model reads it
        twin_latents = None
        if twin is not None:
            _, twin_latents = self._latents(twin, task, names, SPLITS, labels, "twin")
        t_extract = time.perf_counter() - t0

        Y = {s: labels.y[s][..., keep].reshape(-1, len(keep)) for s in splits}
        keys = {s: labels.keys[s].reshape(-1) for s in SPLITS} if self.control else None
        data = {s: _probe_data(latents[s], Y[s]) for s in splits}
        chance = chance_levels(labels, targets, Y["train"])
        n_classes = _n_classes(targets, Y)
        control_Y = _control_labels(labels.control_seed, targets, keys, Y) if keys else None
        device = self.device if self.device is not None else (
            model.device if isinstance(model, Adapter) else "cpu")
        rng = np.random.default_rng(self.seed)
        order = rng.permutation(data["train"].n_episodes)
        fit = _Fitter(self, targets, n_classes, device, n_depths)
        main = fit.run(data, control_Y, order, None, labels.name)
        twin_pass = None
        if twin_latents is not None:
            twin_data = {s: _probe_data(twin_latents[s], Y[s]) for s in SPLITS}
            twin_pass = fit.run(twin_data, None, order, main.penalties,
                                f"{labels.name} (random init)")
        t_probe = time.perf_counter() - t0 - t_extract
        skipped = [t.name for j, t in enumerate(labels.targets) if j not in keep]
        return DecodabilityResult(
            name=labels.name, layers=names, targets=[t.name for t in targets],
            kinds=[t.kind for t in targets], chance=chance,
            depths=[name for name, _ in depth_buckets(data["train"].n_steps, n_depths)],
            raw=main.scores, raw_control=main.control,
            raw_twin=None if twin_pass is None else twin_pass.scores,
            late_test=main.late_test, late_y=_late(Y["test"], data["test"].n_steps, n_depths),
            penalties=main.penalties, mdl_bits=main.bits,
            twin_mdl_bits=None if twin_pass is None else twin_pass.bits,
            uniform_bits=uniform_bits(Y["train"], n_classes) if self.mdl else None,
            skipped=skipped, n_episodes={s: d.n_episodes for s, d in data.items()},
            timings={"extract_s": round(t_extract, 3), "probe_s": round(t_probe, 3)},
            seed=self.seed, n_boot=self.n_boot)

    # --- checks and inputs ---------------------------------------------------------------------

    def _checked(self) -> int:
        """The number of depth buckets, after every parameter is checked."""
        for name in ("control", "mdl", "cache", "progress"):
            if not isinstance(getattr(self, name), bool):
                raise UserError(f"{name} must be True or False, got {getattr(self, name)!r}")
        depths = 4 if self.depths == "quartiles" else self.depths
        if not _is_int(depths) or depths < 2:
            raise UserError(f"depths must be 'quartiles' or a number of depth buckets >= 2, got "
                            f"{self.depths!r}")
        values = np.atleast_1d(np.asarray(self.penalties, dtype=object))
        if values.ndim != 1 or len(values) == 0 or not all(
                isinstance(v, (int, float, np.number)) and not isinstance(v, bool)
                and np.isfinite(v) and v > 0 for v in values):
            raise UserError(f"penalties must be a non-empty list of finite numbers > 0, got "
                            f"{self.penalties!r}")
        if isinstance(self.mdl_penalty, bool) or not isinstance(
                self.mdl_penalty, (int, float, np.number)) or not 0 < self.mdl_penalty < np.inf:
            raise UserError(f"mdl_penalty must be a finite number > 0, got {self.mdl_penalty!r}")
        if not _is_int(self.max_iter) or self.max_iter < 1:
            raise UserError(f"max_iter must be an integer >= 1, got {self.max_iter!r}")
        if isinstance(self.tol, bool) or not isinstance(self.tol, (int, float)) or \
                not self.tol > 0:
            raise UserError(f"tol must be a number > 0, got {self.tol!r}")
        if self.batch_size != "auto" and (not _is_int(self.batch_size) or self.batch_size < 1):
            raise UserError(f"batch_size must be a positive integer or 'auto', got "
                            f"{self.batch_size!r}")
        if self.autocast is not None and self.autocast not in AUTOCAST:
            raise UnknownNameError("autocast dtype", str(self.autocast), AUTOCAST)
        if not _is_int(self.seed) or not 0 <= self.seed < 2 ** 32:
            raise UserError(f"seed must be an integer in [0, 2**32), got {self.seed!r}")
        if not _is_int(self.n_boot) or self.n_boot < 1:
            raise UserError(f"n_boot must be an integer >= 1, got {self.n_boot!r}")
        if self.device is not None and not isinstance(self.device, (str, torch.device)):
            raise UserError(f"device must be a device name such as 'cpu' or 'cuda', or None, "
                            f"got {self.device!r}")
        return int(depths)

    @staticmethod
    def splits_of(task: Task) -> list[str]:
        """The splits `run` extracts for a model `Adapter` on `task`: train, val, test and
        test_long where the task has one (for the twin: train, val, test). Under
        torch.distributed, every rank extracts these before rank 0 runs the probe."""
        return list(SPLITS) + ([LONG] if LONG in task.splits else [])

    def _splits(self, model: Source, task: Task | Labels) -> list[str]:
        """The splits to probe: train, val, test and, where there is one, test_long."""
        if isinstance(model, Adapter):
            if not isinstance(task, Task):
                raise UserError("an Adapter needs a registered Task to extract latents from; "
                                "for Labels, pass a dict of latents {split: array} instead")
            return self.splits_of(task)
        if not isinstance(model, Mapping):
            raise UserError(f"model must be an Adapter or a dict {{split: Latents or array "
                            f"[layers, episodes, steps, dim]}}, got {type(model).__name__}")
        unknown = [s for s in model if s not in SPLITS + (LONG,)]
        if unknown:
            raise UserError(f"latents of split {unknown[0]!r} are not probed (the splits are "
                            f"{', '.join(SPLITS + (LONG,))}); leave it out of the dict")
        return list(SPLITS) + ([LONG] if LONG in model else [])

    def _targets(self, labels: Labels) -> list[int]:
        """Columns of the targets to probe; warns once about those constant on train."""
        y = labels.y["train"].reshape(-1, len(labels.targets))
        constant = constant_targets(labels.targets, y)
        if constant:
            names = [labels.targets[j].name for j in constant]
            warnings.warn(f"{labels.name}: skipping {len(names)} target(s) with a single class "
                          f"or a single value on train: {', '.join(names)}", ProbekitWarning,
                          stacklevel=3)
        keep = [j for j in range(len(labels.targets)) if j not in constant]
        if not keep:
            raise DataError(f"{labels.name}: every target has a single class or value on train; "
                            "nothing to probe (enlarge the split or change the knobs)")
        return keep

    def _latents(self, source: Source, task: Task | Labels, layers: Sequence[str] | None,
                 splits: Sequence[str], labels: Labels, who: str
                 ) -> tuple[list[str], dict[str, np.ndarray | Latents]]:
        """Layer names and latents per split, checked against the labels' episodes and steps."""
        if isinstance(source, Adapter):
            if not isinstance(task, Task):
                raise UserError(f"the {who} is an Adapter, which needs a registered Task; pass "
                                "a dict of latents with Labels instead")
            names = source.check_layers(list(layers) if layers is not None else None)
            out: dict[str, np.ndarray | Latents] = {}
            for s in splits:
                try:
                    out[s] = extract(source, task, s, names, batch_size=self.batch_size,
                                     autocast=self.autocast, progress=self.progress)
                except TooLongError as e:
                    if s != LONG:
                        raise
                    warnings.warn(f"{task.name}: {LONG} left out for {source.identity.id}: {e}",
                                  ProbekitWarning, stacklevel=3)
            return names, out
        if not isinstance(source, Mapping):
            raise UserError(f"the {who} must be an Adapter or a dict {{split: Latents or array "
                            f"[layers, episodes, steps, dim]}}, got {type(source).__name__}")
        missing = [s for s in splits if s not in source]
        if missing:
            raise UserError(f"the {who}'s latents lack split {missing[0]!r}; give "
                            f"{', '.join(splits)}")
        names: list[str] | None = None
        out: dict[str, np.ndarray | Latents] = {}
        for s in splits:
            value, here = _one_split(source[s], layers, f"the {who}'s {s} latents")
            if names is not None and here != names:
                raise UserError(f"the {who}'s {s} latents have layers {here}; its {splits[0]} "
                                f"latents have {names}")
            names = here
            shape = (value.n_episodes, value.n_steps) if isinstance(value, Latents) else \
                value.shape[1:3]
            if tuple(shape) != labels.y[s].shape[:2]:
                raise UserError(f"the {who}'s {s} latents hold {shape[0]} episodes × {shape[1]} "
                                f"steps; the labels {labels.y[s].shape[0]} × "
                                f"{labels.y[s].shape[1]}")
            out[s] = value
        assert names is not None
        return names, out


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _one_split(value: Any, layers: Sequence[str] | None, where: str
               ) -> tuple[np.ndarray | Latents, list[str]]:
    """Latents of one split, with the chosen layers, and their names."""
    if isinstance(value, Latents):
        if layers is not None:
            absent = [name for name in layers if name not in value.layers]
            if absent:
                raise UnknownNameError("layer", absent[0], value.layers)
            value = replace(value, layers=tuple(layers))
        return value, list(value.layers)
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    value = np.asarray(value)
    if value.ndim != 4 or 0 in value.shape or not np.issubdtype(value.dtype, np.number):
        raise UserError(f"{where} have shape {value.shape}; they need a non-empty array of "
                        "numbers [layers, episodes, steps, dim]")
    names = list(layers) if layers is not None else [f"layer.{i}" for i in range(len(value))]
    if len(names) != len(value):
        raise UserError(f"{where} have {len(value)} layers but {len(names)} layer names were "
                        "given")
    return value.astype(np.float32, copy=False), names


def _probe_data(latents: np.ndarray | Latents, Y: np.ndarray) -> ProbeData:
    if isinstance(latents, Latents):
        return ProbeData(latents, Y, np.empty(0), latents.n_episodes, latents.n_steps)
    L, N, S, D = latents.shape
    return ProbeData(latents.reshape(L, N * S, D), Y, np.empty(0), N, S)


def _n_classes(targets: list[Target], Y: dict[str, np.ndarray]) -> np.ndarray:
    """Classes per target (1 for regression targets): the world's count, else one more than the
    largest label in any split."""
    out = []
    for j, t in enumerate(targets):
        if t.kind != "class":
            out.append(1)
        else:
            seen = int(max(np.nanmax(y[:, j]) for y in Y.values())) + 1
            out.append(max(seen, t.n_classes or 0))
    return np.asarray(out, dtype=np.int64)


def _control_labels(seed: int, targets: list[Target], keys: dict[str, np.ndarray],
                    Y: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Control-task labels of train and test, one column per target."""
    out = {s: np.zeros_like(Y[s]) for s in ("train", "test")}
    types = {s: np.unique(keys[s].astype(str), return_inverse=True) for s in out}  # once
    for j, t in enumerate(targets):
        task = ControlTask(seed).fit(types["train"][0], Y["train"][:, j], t.name)
        for s, (uniq, inverse) in types.items():
            out[s][:, j] = task.type_labels(uniq)[inverse]
    return out


def _late(y: np.ndarray, n_steps: int, n_depths: int) -> np.ndarray:
    """Rows [N, S_late, ...] of the last depth bucket `q<n>` of episode-major rows y."""
    steps = depth_buckets(n_steps, n_depths)[n_depths - 1][1]
    return y.reshape(-1, n_steps, *y.shape[1:])[:, steps]


def depth_scores(pred: np.ndarray, y: np.ndarray, kind: str, n_steps: int, n_depths: int
                 ) -> np.ndarray:
    """[layers, targets, buckets] accuracy (class) or R² (regress) of predictions
    [layers, N·S, targets] against labels [N·S, targets] in each depth bucket (NaN where a
    bucket holds no label)."""
    L, _, T = pred.shape
    P = pred.reshape(L, -1, n_steps, T)
    Yr = y.reshape(-1, n_steps, T)
    buckets = depth_buckets(n_steps, n_depths)
    out = np.full((L, T, len(buckets)), np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        for b, (_, steps) in enumerate(buckets):
            if len(steps) == 0:
                continue
            p, yy = P[:, :, steps].reshape(L, -1, T), Yr[:, steps].reshape(-1, T)
            if kind == "class":
                observed = yy >= 0
                out[:, :, b] = ((p == yy) & observed).sum(1) / observed.sum(0)
            else:
                observed = ~np.isnan(yy)
                n = observed.sum(0)
                y0 = np.where(observed, yy, 0.0)
                total = ((y0 - y0.sum(0) / n) ** 2 * observed).sum(0)
                residual = ((y0 - p) ** 2 * observed).sum(1)
                r2 = np.where(total > 0, 1 - residual / total, (residual == 0).astype(float))
                out[:, :, b] = np.where(n > 0, r2, np.nan)
    return out


@dataclass
class _Pass:
    """One model's probes: raw scores per split [layers, targets, buckets], the control task's
    on test, late test predictions [layers, N, S_late, targets], penalties and MDL bits."""

    scores: dict[str, np.ndarray]
    control: np.ndarray | None
    late_test: np.ndarray
    penalties: np.ndarray
    bits: np.ndarray | None


class _Fitter:
    """Fits and scores the probes of one model (its penalties chosen on val, or given)."""

    def __init__(self, probe: DecodabilityProbe, targets: list[Target], n_classes: np.ndarray,
                 device: str | torch.device, n_depths: int):
        self.probe, self.targets, self.n_classes = probe, targets, n_classes
        self.device, self.n_depths = device, n_depths
        self.kinds = [(kind, [j for j, t in enumerate(targets) if t.kind == kind])
                      for kind in ("class", "regress")]

    def fit(self, X: np.ndarray, Y: np.ndarray, kind: str, cols: list[int],
            penalties: np.ndarray | None = None, X_val: np.ndarray | None = None,
            Y_val: np.ndarray | None = None, init: LinearProbes | None = None,
            warn: bool = True) -> LinearProbes:
        """Probes for the label columns `cols` of `targets`: at fixed `penalties`
        [layers, len(cols)], or along the penalty path chosen on (X_val, Y_val)."""
        p = self.probe
        extra = {} if kind == "regress" else {"n_classes": self.n_classes[cols]}
        return fit_linear_probes(X, Y, PROBE_KIND[kind], X_val=X_val, Y_val=Y_val,
                                 penalties=p.penalties if penalties is None else penalties,
                                 max_iter=p.max_iter, tol=p.tol, device=self.device, init=init,
                                 warn=warn, **extra)

    def control_predictions(self, X: dict[str, np.ndarray], y: np.ndarray, kind: str,
                            cols: list[int], penalties: np.ndarray) -> np.ndarray:
        """Test predictions [layers, rows, len(cols)] of control-task probes fit on train labels
        y. A control target whose few surface types all drew one label is predicted as that
        label (a probe cannot be fit to one class, and would predict nothing else)."""
        varied = [k for k in range(len(cols)) if len(np.unique(y[:, k])) > 1]
        pred = np.broadcast_to(y[0], (len(X["test"]), X["test"].shape[1], len(cols))).copy()
        if varied:
            probes = self.fit(X["train"], y[:, varied], kind, [cols[k] for k in varied],
                              penalties[:, varied])
            pred[..., varied] = probes.predict(X["test"])
        return pred

    def run(self, data: dict[str, ProbeData], control_Y: dict[str, np.ndarray] | None,
            order: np.ndarray, penalties: np.ndarray | None, desc: str) -> _Pass:
        from probekit.progress import phase

        L, T = data["train"].n_layers, len(self.targets)
        S = {s: d.n_steps for s, d in data.items()}
        B = self.n_depths + 2
        scores = {s: np.full((L, T, B), np.nan) for s in data}
        control = np.full((L, T, B), np.nan) if control_Y is not None else None
        n_late = len(depth_buckets(S["test"], self.n_depths)[self.n_depths - 1][1])
        late_test = np.zeros((L, data["test"].n_episodes, n_late, T), np.float32)
        chosen = np.zeros((L, T)) if penalties is None else penalties
        mdl = self.probe.mdl and bool(self.kinds[0][1])
        bits = np.full((L, T), np.nan) if self.probe.mdl else None
        # progress in probes: each layer × target once, again for the control task and for
        # the MDL code of class targets
        n_class = len(self.kinds[0][1])
        per_layer = T + (T if control is not None else 0) + (n_class if mdl else 0)
        bar = phase("probes", desc, total=L * per_layer, unit="probes", show=self.probe.progress)
        bar.summary = summary = (f"{L} layers × {T} targets"
                                 + (", control task" if control is not None else "")
                                 + (", MDL" if mdl else ""))
        hits, groups = 0, layer_groups(data)
        n_groups = len(groups)
        for group in bar.wrap(groups):
            g = slice(group.start, group.stop)
            out = {"chosen": chosen, "late_test": late_test, "control": control, "bits": bits,
                   **{f"scores.{s}": scores[s] for s in data}}
            k = self._key(data, group, control_Y, order, penalties) if self.probe.cache else None
            hit = cache.load(k) if k is not None else None
            if hit is not None and _restore(*hit, out, g):
                hits += 1
                bar.summary = f"{summary} (cached: {hits} of {n_groups} layer groups)"
                bar.update(len(group) * per_layer)
                continue
            with warnings.catch_warnings(record=True) as caught, retained_memory():
                warnings.simplefilter("always")
                self._group(data, group, control_Y, order, penalties, scores, control,
                            late_test, chosen, bits, mdl, bar)
            for w in caught:  # shown as they would be without the recording
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
            if k is not None:
                cache.save(k, {name: v[g] for name, v in out.items() if v is not None},
                           [_warning_text(w) for w in caught])
        return _Pass(scores, control, late_test, chosen, bits)

    def _group(self, data: dict[str, ProbeData], group: range,
               control_Y: dict[str, np.ndarray] | None, order: np.ndarray,
               penalties: np.ndarray | None, scores: dict[str, np.ndarray],
               control: np.ndarray | None, late_test: np.ndarray, chosen: np.ndarray,
               bits: np.ndarray | None, mdl: bool, bar: Any) -> None:
        """Fit and score the probes of one layer group, writing into the pass's arrays."""
        S = {s: d.n_steps for s, d in data.items()}
        X = {s: d.rows(group) for s, d in data.items()}
        g = slice(group.start, group.stop)
        for kind, cols in self.kinds:
            if not cols:
                continue
            Y = {s: d.Y[:, cols] for s, d in data.items()}
            if penalties is None:
                probes = self.fit(X["train"], Y["train"], kind, cols,
                                  X_val=X["val"], Y_val=Y["val"])
                chosen[g, cols] = probes.best_penalty_
            else:
                probes = self.fit(X["train"], Y["train"], kind, cols, chosen[g][:, cols])
            bar.update(len(group) * len(cols))
            for s in data:
                pred = probes.predict(X[s])
                scores[s][g, cols] = depth_scores(pred, Y[s], kind, S[s], self.n_depths)
                if s == "test":
                    late_test[g][..., cols] = _late(pred.transpose(1, 0, 2), S[s],
                                                    self.n_depths).transpose(2, 0, 1, 3)
            if control is not None:
                pred = self.control_predictions(X, control_Y["train"][:, cols], kind, cols,
                                                chosen[g][:, cols])
                control[g, cols] = depth_scores(pred, control_Y["test"][:, cols], kind,
                                                S["test"], self.n_depths)
                bar.update(len(group) * len(cols))
            if mdl and kind == "class":
                bits[g, cols] = online_bits(
                    X["train"], Y["train"], S["train"], self.n_classes[cols], order,
                    lambda x, y, sub, init, cols=cols: self.fit(
                        x, y, "class", [cols[j] for j in sub],
                        np.full((len(group), len(sub)), self.probe.mdl_penalty), init=init,
                        warn=False))
                bar.update(len(group) * len(cols))
        del X

    def _key(self, data: dict[str, ProbeData], group: range,
             control_Y: dict[str, np.ndarray] | None, order: np.ndarray,
             penalties: np.ndarray | None) -> str:
        """The probe cache's key of one layer group's pass (`probekit.decodability.cache`)."""
        p = self.probe
        settings = {**p.config(), "device": torch.device(self.device).type,
                    "kinds": [t.kind for t in self.targets], "n_depths": self.n_depths,
                    "n_classes": self.n_classes.tolist()}
        arrays: dict[str, np.ndarray | None] = {f"Y.{s}": d.Y for s, d in data.items()}
        arrays["order"] = order
        arrays["penalties"] = None if penalties is None else penalties[group.start:group.stop]
        for s, y in (control_Y or {}).items():
            arrays[f"control.{s}"] = y
        return cache.key(settings, {s: d.X for s, d in data.items()}, group, arrays)


def _restore(hit: dict[str, np.ndarray], texts: list[str], out: dict[str, np.ndarray | None],
             g: slice) -> bool:
    """Copy a cache entry into the pass's arrays and show its warnings again; False (refit)
    when it does not fit them."""
    names = [name for name, v in out.items() if v is not None]
    if any(name not in hit or hit[name].shape != out[name][g].shape  # type: ignore[index]
           for name in names):
        return False
    for name in names:
        out[name][g] = hit[name]  # type: ignore[index]
    for text in texts:
        category, _, message = text.partition("\x00")
        warnings.warn(message, _category(category), stacklevel=4)
    return True


def _warning_text(w: warnings.WarningMessage) -> str:
    c = w.category
    return f"{c.__module__}:{c.__qualname__}\x00{w.message}"


def _category(name: str) -> type[Warning]:
    """The warning class `module:qualname` (a plain UserWarning if it cannot be found)."""
    import importlib

    module, _, qualname = name.partition(":")
    try:
        found: Any = importlib.import_module(module)
        for part in qualname.split("."):
            found = getattr(found, part)
        return found if isinstance(found, type) and issubclass(found, Warning) else UserWarning
    except (ImportError, AttributeError):
        return UserWarning
