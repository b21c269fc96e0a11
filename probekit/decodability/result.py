"""`DecodabilityResult`: what `DecodabilityProbe.run` found — raw scores per layer × target ×
depth, the normalised headline, and the by-depth figure."""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from probekit.decodability.data import LONG, METRIC, normalise
from probekit.intervals import percentile_interval, resample_weights

ROW_SPLITS = ("train", "val", "test")


@dataclass
class DecodabilityResult:
    """Raw scores (accuracy for class targets, R² for regression targets) are arrays
    [layers, targets, depths] per split in `raw` (train, val, test and test_long where
    probed), `raw_control` (the control task on test) and `raw_twin` (the random-init
    twin: train, val, test); NaN where a depth bucket holds no label. `mdl_bits` and
    `twin_mdl_bits` are [layers, targets] online codelengths (NaN for regression targets) and
    `uniform_bits` [targets] the uniform code's; `penalties` [layers, targets] the probes'
    chosen penalties. `late_test` [layers, episodes, late steps, targets] holds the test
    predictions on the late bucket and `late_y` its labels, for the bootstrap."""

    name: str
    layers: list[str]
    targets: list[str]
    kinds: list[str]
    chance: np.ndarray
    depths: list[str]
    raw: dict[str, np.ndarray]
    raw_control: np.ndarray | None
    raw_twin: dict[str, np.ndarray] | None
    late_test: np.ndarray
    late_y: np.ndarray
    penalties: np.ndarray
    mdl_bits: np.ndarray | None
    twin_mdl_bits: np.ndarray | None
    uniform_bits: np.ndarray | None
    skipped: list[str]
    n_episodes: dict[str, int]
    timings: dict[str, float]
    seed: int = 0
    n_boot: int = 1000
    _ci: list[float | None] | None = field(default=None, repr=False)

    @property
    def late(self) -> str:
        """The depth bucket of the headline: the last quarter, `q4` (`q<k>` with k buckets)."""
        return [d for d in self.depths if d.startswith("q")][-1]

    def curve(self, which: str = "test", depth: str | None = None) -> np.ndarray:
        """Normalised score averaged over targets, [layers, depths] (or [layers] at `depth`):
        `which` is a split of the model ("train", "val", "test", "test_long"), "control", or
        "random_init:<split>" for the twin."""
        if which == "control":
            raw = self.raw_control
        elif which.startswith("random_init:"):
            raw = None if self.raw_twin is None else self.raw_twin.get(which.split(":")[1])
        else:
            raw = self.raw.get(which)
        if raw is None:
            raise KeyError(f"no scores for {which!r}")
        with np.errstate(invalid="ignore"), _quiet():
            out = np.nanmean(normalise(raw, self.chance[None, :, None]), axis=1)
        return out if depth is None else out[:, self.depths.index(depth)]

    @property
    def layer_index(self) -> int:
        """The model's layer: the best normalised validation score on the late bucket."""
        return _best(self.curve("val", self.late))

    @property
    def layer(self) -> str:
        return self.layers[self.layer_index]

    @property
    def twin_layer_index(self) -> int | None:
        """The twin's own layer, chosen the same way on its validation scores."""
        return None if self.raw_twin is None else _best(self.curve("random_init:val",
                                                                      self.late))

    def rows(self) -> list[dict[str, Any]]:
        """One row per layer × target × depth, raw metric values (None where absent);
        `mdl_bits` only on the `all` rows."""
        out = []
        for i, layer in enumerate(self.layers):
            for j, target in enumerate(self.targets):
                for d, depth in enumerate(self.depths):
                    def at(a: np.ndarray | None) -> float | None:
                        return None if a is None else _num(a[i, j, d])

                    twin = self.raw_twin
                    bits = None
                    if depth == "all" and self.mdl_bits is not None:
                        bits = _num(self.mdl_bits[i, j])
                    out.append({
                        "layer": layer, "target": target, "depth": depth,
                        "metric": METRIC[self.kinds[j]], "chance": float(self.chance[j]),
                        **{s: at(self.raw[s]) for s in ROW_SPLITS},
                        "control": at(self.raw_control),
                        "random_init": at(None if twin is None else twin["test"]),
                        "test_long": at(self.raw.get(LONG)), "mdl_bits": bits})
        return out

    def ci95(self) -> list[float | None]:
        """Bootstrap 95% interval over test episodes of `value` (cached; seeded)."""
        if self._ci is None:
            self._ci = _bootstrap(self.late_test[self.layer_index], self.late_y, self.kinds,
                                  self.chance, self.n_boot, self.seed)
        return list(self._ci)

    def scores(self) -> dict[str, Any]:
        """The headline, normalised (chance 0, perfect 1) and averaged over targets: `value` the
        test score on the late bucket at `layer` (chosen on the validation late bucket),
        `pooled` the test score over every step there, `ci95` a bootstrap over test episodes
        of `value`, `control` and `selectivity` (value − control) on the late bucket,
        `random_init` the twin's late test score at its own chosen layer, and `mdl` (None
        without MDL or class targets): online `bits` and `uniform_bits` summed over class
        targets at `layer`, `compression` = uniform / online, `random_init_compression` the
        twin's at its layer."""
        i, late = self.layer_index, self.late
        value = _num(self.curve("test", late)[i])
        control = None if self.raw_control is None else _num(self.curve("control", late)[i])
        t = self.twin_layer_index
        random_init = None if t is None else _num(self.curve("random_init:test", late)[t])
        return {"value": value, "pooled": _num(self.curve("test", "all")[i]),
                "ci95": self.ci95(), "layer": self.layers[i], "control": control,
                "selectivity": None if control is None or value is None else value - control,
                "random_init": random_init, "mdl": self._mdl(i, t)}

    def _mdl(self, i: int, t: int | None) -> dict[str, float | None] | None:
        cls = [j for j, k in enumerate(self.kinds) if k == "class"]
        if self.mdl_bits is None or self.uniform_bits is None or not cls:
            return None
        bits = float(self.mdl_bits[i, cls].sum())
        uniform = float(self.uniform_bits[cls].sum())
        twin = None
        if self.twin_mdl_bits is not None and t is not None:
            twin = uniform / float(self.twin_mdl_bits[t, cls].sum())
        return {"bits": bits, "uniform_bits": uniform, "compression": uniform / bits,
                "random_init_compression": twin}

    def plot_depth(self, path: str | Path, title: str | None = None) -> Path:
        """A PNG of the normalised test score against depth (q1…, last), one line per layer;
        the random-init twin dashed in the same colours, the chosen layer emphasised. `title`
        defaults to the task's name and the question the figure answers."""
        shown = [d for d in self.depths if d != "all"]
        at = [self.depths.index(d) for d in shown]
        twin = None if self.raw_twin is None else self.curve("random_init:test")[:, at]
        long = self.curve(LONG)[self.layer_index, at] if LONG in self.raw else None
        return draw_depth(self.layers, shown, self.curve("test")[:, at], twin, self.layer_index,
                          self.late, title or f"{self.name}: does the state stay readable late "
                          "in the episode?", path, long=long)


def plot_depth(result: dict[str, Any], path: str | Path) -> Path:
    """The by-depth figure of a `probekit.result/2` record (from its per_layer rows)."""
    from probekit import record

    rows = result["per_layer"]
    layers = list(dict.fromkeys(r["layer"] for r in rows))
    present = {r["depth"] for r in rows}
    shown = [d for d in record.DEPTHS if d in present and d != record.POOLED]

    def curve(column: str) -> np.ndarray:
        out = np.full((len(layers), len(shown)), np.nan)
        for i, layer in enumerate(layers):
            for k, depth in enumerate(shown):
                v = record.layer_mean(rows, layer, column, depth)
                out[i, k] = np.nan if v is None else v
        return out

    twin = None if all(r["random_init"] is None for r in rows) else curve("random_init")
    chosen = layers.index(result["scores"]["decodability"]["layer"])
    long = None if all(r.get("test_long") is None for r in rows) else curve("test_long")[chosen]
    title = (f"{result['model']['id']} on {result['task']['name']}: does the state stay "
             "readable late in the episode?")
    return draw_depth(layers, shown, curve("test"), twin, chosen, record.LATE, title, path,
                      long=long)


def draw_depth(layers: list[str], shown: list[str], model: np.ndarray, twin: np.ndarray | None,
               chosen: int, late: str, title: str, path: str | Path,
               long: np.ndarray | None = None) -> Path:
    """Normalised decodability [layers, depths] against depth, one line per layer, the twin
    dashed in the same colours, the chosen layer emphasised, the legend outside the axes;
    `long`, the chosen layer on the held-out longer episodes (test_long), dotted in black."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    from probekit.io import atomic_path

    x = np.arange(len(shown))
    colours = plt.get_cmap("viridis")(np.linspace(0.0, 0.8, len(layers)))
    fig, ax = plt.subplots(figsize=(7.5, 4))
    for i, layer in enumerate(layers):
        wide = i == chosen
        style = {"color": colours[i], "lw": 3 if wide else 1.3, "alpha": 1 if wide else 0.8,
                 "zorder": 3 if wide else 2}
        ax.plot(x, model[i], "-o", ms=7 if wide else 3, mec="black" if wide else None,
                label=f"{layer} (chosen)" if wide else layer, **style)
        if twin is not None:
            ax.plot(x, twin[i], "--", **{**style, "lw": style["lw"] * 0.6,
                                         "alpha": style["alpha"] * 0.8})
    if long is not None and not np.all(np.isnan(long)):
        ax.plot(x, long, ":s", color="black", lw=1.6, ms=4, zorder=4,
                label=f"{layers[chosen]} on test_long\n(longer episodes)")
    ax.axhline(0, color="grey", lw=0.8, ls=":")
    ax.set_xticks(x, [d if d != late else f"{d}\n(headline)" for d in shown])
    ax.set_xlabel("step depth (quarters of the episode, then the last step)")
    ax.set_ylabel("decodability on test\n(normalised: chance 0, perfect 1)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        low = min(-0.05, np.nanmin(model) - 0.05,
                  np.nanmin(twin) - 0.05 if twin is not None else 0,
                  np.nanmin(long) - 0.05 if long is not None and not np.all(np.isnan(long))
                  else 0)
    ax.set_ylim(low, 1.05)
    ax.set_title(title, fontsize=10)
    handles, names = ax.get_legend_handles_labels()
    handles += [Line2D([], [], color="black", lw=1.3, ls="-"),
                Line2D([], [], color="black", lw=1.0, ls="--")]
    names += ["trained", "random init"] if twin is not None else ["trained"]
    handles = handles[:len(names)]
    ax.legend(handles, names, loc="upper left", bbox_to_anchor=(1.02, 1), fontsize=8,
              frameon=False, title="layer", title_fontsize=8, alignment="left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return Path(path)


def _num(x: Any) -> float | None:
    x = float(x)
    return None if math.isnan(x) else x


def _best(curve: np.ndarray) -> int:
    return int(np.argmax(np.nan_to_num(curve, nan=-np.inf)))


@contextmanager
def _quiet() -> Iterator[None]:
    """Silence numpy's 'mean of empty slice' for buckets that hold no label."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def _bootstrap(pred: np.ndarray, y: np.ndarray, kinds: list[str], chance: np.ndarray,
               n_boot: int, seed: int) -> list[float | None]:
    """95% interval of the normalised mean score of predictions pred [N, S', targets] against
    y [N, S', targets], resampling whole episodes."""
    W = resample_weights(len(y), seed, n_boot)  # [B, N]
    scores = []
    with np.errstate(invalid="ignore", divide="ignore"):
        for j, kind in enumerate(kinds):
            p, yy = pred[..., j].astype(np.float64), y[..., j]
            if kind == "class":
                observed = yy >= 0
                scores.append(W @ ((p == yy) & observed).sum(1) / (W @ observed.sum(1)))
            else:
                observed = ~np.isnan(yy)
                y0 = np.where(observed, yy, 0.0)
                n = W @ observed.sum(1)
                sst = W @ (y0 ** 2).sum(1) - (W @ y0.sum(1)) ** 2 / n
                sse = W @ ((y0 - p) ** 2 * observed).sum(1)
                scores.append(np.where(sst > 1e-12 * np.maximum(n, 1), 1 - sse / sst,
                                       (sse == 0).astype(float)))
        with _quiet():
            norm = np.nanmean(normalise(np.stack(scores, axis=1), chance), axis=1)
    interval = percentile_interval(norm)
    return [None, None] if interval is None else list(interval)
