"""The spectrum figure: decodability (late), selectivity, causality (gain) and prediction (VoE
accuracy) against a, per task and model size.

Reads `probekit.result/2` files of spectrum models (any results folder: `probekit eval --out`),
averages seeds at each (task, a, family, size) with a 95% t-interval over seeds — or, for a
single seed, the result's own bootstrap interval — and writes a PNG and the table (CSV and
Markdown). A size is a backbone, width × blocks, where the results record it (`model.width`,
`model.depth`), named by its parameter count; else a chain of close parameter counts
(`sizes`). Where the results span two sizes or more, `regress` fits, per task and score,
score ~ a + log2(parameters) + a × log2(parameters) over the seeds of the main line (ntp,
next-latent, jepa) and says whether a or the size explains more of the variance.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from probekit.errors import ResultError
from probekit.intervals import t_interval
from probekit.io import atomic_path, write_text
from probekit.record import SCHEMA

SCORES = ("decodability", "selectivity", "causal_gain", "voe")
TITLES = {"decodability": "decodability, late steps (chance 0)",
          "selectivity": "selectivity (probe − control)",
          "causal_gain": "causality: gain of the headline cell",
          "voe": "prediction: VoE accuracy (chance 0.5)"}
BASELINES = {"decodability": "random_init", "causal_gain": "random_control",
             "voe": "voe_random_init"}
MAIN_LINE = ("ntp", "next-latent", "jepa")  # one objective per a: what the fit compares
# The fits also take late decodability over the random-init twin: a wider random network
# already reads more of the state, so raw decodability grows with width before any training.
FITTED = ("decodability", "over_twin", "selectivity", "causal_gain", "voe")
CHANCE = {"voe": 0.5}  # the panel's reference line (0 elsewhere)
# Every score is bounded above by 1; a t interval over few seeds is not, so the panels keep to
# the scores' range and an interval that leaves it is cut at the edge.
YLIM = {"decodability": (-0.4, 1.05), "selectivity": (-0.4, 1.05),
        "causal_gain": (-0.4, 1.05), "voe": (0.3, 1.05)}


def collect(folder: str | Path) -> pl.DataFrame:
    """One row per spectrum result under `folder` (each model × task once)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ResultError(f"results folder {str(folder)!r} does not exist; write results with "
                          "probekit eval SPECTRUM_MODEL --out DIR first")
    rows, seen = [], {}
    for path in sorted(folder.rglob("*.json")):
        try:
            r = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        if not isinstance(r, dict) or r.get("schema") != SCHEMA:
            continue
        alpha = (r["model"].get("spectrum") or {}).get("alpha")
        key = (r["model"]["id"], r["task"]["name"])
        if alpha is None:
            continue
        if key in seen:
            if seen[key][1] == r["model"]["revision"]:
                continue
            raise ResultError(f"{path} and {seen[key][0]} hold two revisions of model {key[0]} "
                              f"on {key[1]} ({r['model']['revision']}, {seen[key][1]}); a "
                              "retrained model is a new seed of no one — remove the stale result")
        seen[key] = (path, r["model"]["revision"])
        rows.append(_row(r, alpha))
    if not rows:
        raise ResultError(f"no {SCHEMA} results of spectrum models (with an alpha) under "
                          f"{str(folder)!r}; run probekit eval on spectrum checkpoints first")
    table = pl.DataFrame(rows, infer_schema_length=None).sort("task", "alpha", "model")
    return pl.concat([_named(g) for _, g in table.group_by("task", maintain_order=True)],
                     how="vertical_relaxed")


def _named(task: pl.DataFrame) -> pl.DataFrame:
    """One task's rows with their `size` (a parameter count) and `shape` ("24x2", or null).

    Where every result records its backbone, a size is one backbone: two sizes may then lie
    close in parameters (a deep narrow model beside a shallow wide one) and still stay apart,
    and a variant's extra heads never move it off its backbone. Its name is the geometric mean
    of the main line's counts on it (the variant's own where the main line did not run it)."""
    if task["width"].null_count() or task["depth"].null_count():
        names = model_sizes(task)
        return task.with_columns(
            size=pl.Series([names[(t, f, n)] for t, f, n in
                            task.select("task", "family", "n_params").iter_rows()],
                           dtype=pl.Int64),
            shape=pl.lit(None, dtype=pl.String))
    task = task.with_columns(shape=pl.format("{}x{}", "width", "depth"))
    named = {}
    for (shape,), g in task.group_by("shape"):
        main = g.filter(pl.col("family").is_in(MAIN_LINE))
        named[shape] = _size_name((main if main.height else g)["n_params"].to_list())
    task = task.with_columns(size=pl.col("shape").replace_strict(named, return_dtype=pl.Int64))
    return task.select(pl.exclude("size", "shape"), "size", "shape")


SAME_SIZE = 1.5  # parameter counts within this ratio are one model size


def sizes(n_params: pl.Series) -> dict[int, int]:
    """Each parameter count → its model size: sorted counts each within `SAME_SIZE`× of the
    one before are one size (a's token heads and latent predictor, and a checkpoint saved
    without its predictor, move the count of one backbone by up to ~1.4×; the sizes of a sweep
    lie ≥ 2× apart), named by the group's geometric mean."""
    out: dict[int, int] = {}
    group: list[int] = []
    for n in sorted(set(n_params.to_list())) + [None]:
        if group and (n is None or n > SAME_SIZE * group[-1]):
            name = _size_name(group)
            out.update({g: name for g in group})
            group = []
        if n is not None:
            group.append(n)
    return out


def _size_name(counts: list[int]) -> int:
    """A size's name: the geometric mean of its parameter counts."""
    return int(round(float(np.exp(np.mean(np.log(np.asarray(counts, dtype=float)))))))


def model_sizes(table: pl.DataFrame) -> dict[tuple[str, str, int], int]:
    """(task, family, parameter count) → model size, per task: the main line's counts are
    grouped by `sizes`; a variant (multi-token, future summary) carries extra heads, so its
    counts are grouped among themselves and its k-th size named after the main line's k-th when
    both have as many sizes (the same backbones), else after the nearest main-line size."""
    out: dict[tuple[str, str, int], int] = {}
    for (task,), g in table.group_by("task", maintain_order=True):
        main = g.filter(pl.col("family").is_in(MAIN_LINE))
        main_sizes = sizes(main["n_params"]) if main.height else {}
        for (family,), f in g.group_by("family", maintain_order=True):
            counts = set(f["n_params"].to_list())
            own = main_sizes if family in MAIN_LINE else sizes(f["n_params"])
            ranks = sorted(set(own.values()))
            line = sorted(set(main_sizes.values()))
            if len(ranks) == len(line):
                rename = dict(zip(ranks, line))
            else:  # fewer sizes run (a partial grid): the nearest backbone, in log parameters
                rename = {r: min(line, key=lambda m: abs(np.log(m / r))) for r in ranks} \
                    if line else {}
            out.update({(task, family, n): rename.get(v, v) for n, v in own.items()
                        if n in counts})
    return out


def _row(r: dict[str, Any], alpha: float) -> dict[str, Any]:
    d = r["scores"]["decodability"]
    c = r["scores"].get("causality") or {}
    p = r["scores"].get("prediction") or {}
    lo, hi = d["ci95"]
    c_lo, c_hi = c.get("ci95") or (None, None)
    p_lo, p_hi = p.get("ci95") or (None, None)
    return {
        "task": r["task"]["name"], "alpha": float(alpha),
        "family": r["model"]["spectrum"]["family"], "model": r["model"]["id"],
        "n_params": int(r["model"]["n_params"]),
        "width": r["model"].get("width"), "depth": r["model"].get("depth"),
        "layer": d["layer"], "decodability": d["value"], "decodability_lo": lo,
        "decodability_hi": hi, "selectivity": d["selectivity"],
        "selectivity_lo": lo - d["control"], "selectivity_hi": hi - d["control"],
        "random_init": d["random_init"],
        "over_twin": None if d["random_init"] is None else d["value"] - d["random_init"],
        "causal_gain": c.get("gain"), "causal_gain_lo": c_lo,
        "causal_gain_hi": c_hi, "random_control": c.get("random_control"),
        "voe": p.get("voe"), "voe_lo": p_lo, "voe_hi": p_hi, "surprise": p.get("surprise"),
        "voe_random_init": (p.get("random_init") or {}).get("voe"),
        "verdict": r["scores"].get("verdict"),
    }


def summarise(rows: pl.DataFrame) -> pl.DataFrame:
    """Per (task, a, family, size): seeds, and each score's mean with its 95% interval."""
    out = []
    for (task, alpha, family, size, shape), g in rows.group_by(
            "task", "alpha", "family", "size", "shape", maintain_order=True):
        rec: dict[str, Any] = {"task": task, "alpha": alpha, "family": family,
                               "size": size, "shape": shape, "seeds": g.height}
        for s in SCORES:
            rec[s], rec[f"{s}_lo"], rec[f"{s}_hi"] = _interval(g, s)
        for s in ("random_init", "random_control", "voe_random_init"):
            v = g[s].drop_nulls()
            rec[s] = float(v.mean()) if len(v) else None
        out.append(rec)
    return pl.DataFrame(out, infer_schema_length=None).sort("task", "size", "alpha", "family")


def regress(rows: pl.DataFrame, below_one: bool = False) -> pl.DataFrame | None:
    """Per task and score (`FITTED`: the panels' scores and decodability over the twin), OLS
    over seeds of score ~ a + s + a·s, s = log2(model size) (see
    `sizes`) centred on the task's mean: each coefficient with its 95% t interval, R², and how
    much R² is lost without a (its main effect and the interaction) and without s (likewise);
    `explains` names the larger ("neither" when neither adds 5% of the variance, or the score
    is constant). None when the results hold one size only (nothing separates a from size).
    `below_one` leaves the JEPA end (a = 1) out: a straight line in a cannot tell a slope along
    the spectrum from a step at its end."""
    from probekit.intervals import ols

    main = rows.filter(pl.col("family").is_in(MAIN_LINE))
    if below_one:
        main = main.filter(pl.col("alpha") < 1)
    if main["size"].n_unique() < 2:
        return None
    out = []
    for (task,), g in main.group_by("task", maintain_order=True):
        for score in FITTED:
            have = g.filter(pl.col(score).is_not_null())
            if have["size"].n_unique() < 2 or have["alpha"].n_unique() < 2 or have.height < 6:
                continue
            a = have["alpha"].to_numpy().astype(float)
            size = np.log2(have["size"].to_numpy().astype(float))
            size = size - size.mean()
            y = have[score].to_numpy().astype(float)
            one = np.ones_like(a)
            coef, ci, r2 = ols(np.stack([one, a, size, a * size], 1), y)
            _, _, r2_no_a = ols(np.stack([one, size], 1), y)
            _, _, r2_no_size = ols(np.stack([one, a], 1), y)
            rec: dict[str, Any] = {"task": task, "score": score, "runs": have.height,
                                   "sizes": have["size"].n_unique(), "r2": r2,
                                   "r2_from_a": r2 - r2_no_a, "r2_from_size": r2 - r2_no_size}
            for j, name in enumerate(("intercept", "a", "log2_params", "a_x_log2_params")):
                rec[name], rec[f"{name}_lo"], rec[f"{name}_hi"] = coef[j], *ci[j]
            rec["explains"] = _explains(rec["r2_from_a"], rec["r2_from_size"])
            out.append(rec)
    return pl.DataFrame(out, infer_schema_length=None) if out else None


def depth_contrast(rows: pl.DataFrame, fits: pl.DataFrame | None = None) -> pl.DataFrame | None:
    """Per task, score and width run at two depths or more (results that record their shape):
    what each deeper backbone changes against the next shallower one, as the mean over the main
    line's cells (one per a) of the cell's mean over seeds, deeper − shallower, with a 95% t
    interval over those cells, beside the ratio of their parameters and, given the `regress`
    fits, what the fit's parameter slope predicts for that ratio (the slope at each cell's a,
    times log2 of the ratio, averaged over the cells): the change if only the parameter count
    mattered, not where the parameters sit. None when no width was run at two depths."""
    main = rows.filter(pl.col("family").is_in(MAIN_LINE) & pl.col("shape").is_not_null())
    out = []
    for (task, width), g in main.group_by("task", "width", maintain_order=True):
        depths = sorted(g["depth"].unique().to_list())
        for shallow, deep in zip(depths, depths[1:]):
            pair = g.filter(pl.col("depth").is_in((shallow, deep)))
            sizes = dict(pair.select("depth", "size").unique().iter_rows())
            for score in FITTED:
                cells = (pair.filter(pl.col(score).is_not_null())
                         .group_by("alpha", "depth").agg(pl.col(score).mean())
                         .pivot("depth", index="alpha", values=score).drop_nulls()
                         .sort("alpha"))  # a fixed order: the same sums, digit for digit
                if cells.height < 2 or not {str(shallow), str(deep)} <= set(cells.columns):
                    continue
                d = (cells[str(deep)] - cells[str(shallow)]).to_numpy().astype(float)
                lo, hi = t_interval(float(d.mean()), float(d.std(ddof=1)), len(d))
                ratio = sizes[deep] / sizes[shallow]
                fit = None if fits is None else fits.filter(
                    (pl.col("task") == task) & (pl.col("score") == score))
                predicted = None
                if fit is not None and fit.height:
                    f = fit.row(0, named=True)
                    a = cells["alpha"].to_numpy().astype(float)
                    slope = f["log2_params"] + f["a_x_log2_params"] * a
                    predicted = float(np.mean(slope) * np.log2(ratio))
                out.append({"task": task, "score": score, "width": width, "shallow": shallow,
                            "deep": deep, "params_ratio": ratio, "cells": len(d),
                            "delta": float(d.mean()), "delta_lo": lo, "delta_hi": hi,
                            "fit_predicts": predicted})
    return pl.DataFrame(out) if out else None


def depth_markdown(contrast: pl.DataFrame) -> str:
    """The depth contrast as a Markdown table."""
    return _table(["task", "score", "width", "blocks", "params ×", "cells (a)",
                   "deeper − shallower", "the fit's size slope predicts"],
                  [[r["task"], r["score"], r["width"], f"{r['shallow']} → {r['deep']}",
                    f"{r['params_ratio']:.2f}", r["cells"],
                    f"{r['delta']:+.3f} [{r['delta_lo']:+.3f}, {r['delta_hi']:+.3f}]",
                    "—" if r.get("fit_predicts") is None else f"{r['fit_predicts']:+.3f}"]
                   for r in contrast.iter_rows(named=True)])


def _explains(from_a: float, from_size: float, least: float = 0.05) -> str:
    """Which term's R² share is larger: "a", "size", or "neither" (a constant score, or
    neither adds `least` of the variance)."""
    if not (np.isfinite(from_a) and np.isfinite(from_size)) or max(from_a, from_size) < least:
        return "neither"
    return "a" if from_a > from_size else "size"


def regression_markdown(fits: pl.DataFrame) -> str:
    """The fits as a Markdown table: coefficients with intervals, R² and its split."""
    def coef(r: dict[str, Any], name: str) -> str:
        return f"{r[name]:+.3f} [{r[f'{name}_lo']:+.3f}, {r[f'{name}_hi']:+.3f}]"

    return _table(["task", "score", "runs", "sizes", "a", "log2 params", "a × log2 params", "R²",
                   "R² from a", "R² from size", "explains more"],
                  [[r["task"], r["score"], r["runs"], r["sizes"], coef(r, "a"),
                    coef(r, "log2_params"), coef(r, "a_x_log2_params"), f"{r['r2']:.2f}",
                    f"{r['r2_from_a']:.2f}", f"{r['r2_from_size']:.2f}", r["explains"]]
                   for r in fits.iter_rows(named=True)])


def _table(header: list[str], rows: list[list[Any]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _interval(g: pl.DataFrame, score: str) -> tuple[float | None, float | None, float | None]:
    """Mean and 95% interval: a t-interval over seeds, or one seed's bootstrap interval."""
    have = g.filter(pl.col(score).is_not_null())
    if have.height == 0:
        return None, None, None
    mean = float(have[score].mean())
    if have.height == 1:
        return mean, have[f"{score}_lo"][0], have[f"{score}_hi"][0]
    lo, hi = t_interval(mean, float(have[score].std()), have.height)
    return mean, lo, hi


def plot(summary: pl.DataFrame, rows: pl.DataFrame, path: str | Path) -> Path:
    """One row per task, one column per score, against a: each model size (colour, light to
    dark blue by parameters) as its mean with its interval, the seeds as dots, the random-init twin
    (decodability, VoE) and the random-subspace control (causal gain) dotted in the size's
    colour; the horizon and summary variants (at their a) as hollow markers beside the line.
    The VoE panel reads each model's headline surprise: token surprisal where the model has a
    token head (a < 1), latent prediction error otherwise."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    tasks = summary["task"].unique(maintain_order=True).to_list()
    fig, axes = plt.subplots(len(tasks), len(SCORES), figsize=(3.6 * len(SCORES) + 2.2,
                             2.7 * len(tasks) + 0.7), sharex=True, squeeze=False)
    markers = {"multi-token": ("^", -0.04), "future-summary": ("P", 0.04)}
    for row, task in zip(axes, tasks):
        g = summary.filter(pl.col("task") == task)
        own = sorted(g["size"].unique().to_list())
        shades = plt.cm.Blues(np.linspace(0.45, 0.95, len(own))) if len(own) > 1 else ["C0"]
        # a deeper backbone than the task's shallowest: dashed, square markers (the blues alone
        # do not tell 24 × 2 from 24 × 4)
        depth = dict(rows.filter(pl.col("task") == task).select("shape", "depth").drop_nulls()
                     .iter_rows())
        shallowest = min(depth.values(), default=None)
        for (size,), line in g.group_by("size", maintain_order=True):
            c = shades[own.index(size)]
            deeper = depth.get(line["shape"][0], shallowest) != shallowest
            dot, style = ("s", (0, (5, 2))) if deeper else ("o", "-")
            main = line.filter(pl.col("family").is_in(MAIN_LINE))
            variants = line.filter(~pl.col("family").is_in(MAIN_LINE))
            seeds = rows.filter((pl.col("task") == task) & (pl.col("size") == size)
                                & pl.col("family").is_in(MAIN_LINE))
            for ax, s in zip(row, SCORES):
                have = main.filter(pl.col(s).is_not_null())
                if have.height:
                    x, y = have["alpha"].to_numpy(), have[s].to_numpy()
                    err = [y - have[f"{s}_lo"].to_numpy(), have[f"{s}_hi"].to_numpy() - y]
                    ax.errorbar(x, y, yerr=err, fmt=dot, ls=style, color=c, capsize=3, ms=4,
                                label=_size_label(line.row(0, named=True)))
                    dots = seeds.filter(pl.col(s).is_not_null())
                    ax.plot(dots["alpha"].to_numpy(), dots[s].to_numpy(), ".", color=c,
                            alpha=0.35)
                    base = BASELINES.get(s)
                    if base and have[base].null_count() < have.height:
                        ax.plot(x, have[base].to_numpy(), ls=(0, (2, 2)), color=c, lw=0.9,
                                alpha=0.7)
                for r in variants.filter(pl.col(s).is_not_null()).iter_rows(named=True):
                    marker, dx = markers.get(r["family"], ("x", 0.0))
                    ax.errorbar([r["alpha"] + dx], [r[s]], yerr=[[r[s] - r[f"{s}_lo"]],
                                                                 [r[f"{s}_hi"] - r[s]]],
                                fmt=marker, color=c, ms=6, capsize=2, mfc="white")
        for ax, s in zip(row, SCORES):
            ax.axhline(CHANCE.get(s, 0), color="grey", lw=0.6)
            ax.set_ylim(*YLIM[s])
            ax.tick_params(labelsize=8)
            if g[s].null_count() == g.height:
                ax.text(0.5, 0.5, "not scored (see the table)", ha="center", va="center",
                        transform=ax.transAxes, color="grey", fontsize=8)
        row[0].set_ylabel(task, fontsize=10, fontweight="bold")
        handles, labels = [], []
        for ax in row:  # a size missing from the first panel still gets its legend entry
            for h, lab in zip(*ax.get_legend_handles_labels()):
                if lab not in labels:
                    handles.append(h)
                    labels.append(lab)
        for family in g.filter(~pl.col("family").is_in(MAIN_LINE))["family"].unique().sort():
            marker, _ = markers.get(family, ("x", 0.0))
            handles.append(Line2D([], [], marker=marker, mfc="white", color="grey", ls="none"))
            labels.append(f"{family} (hollow, its size's colour)")
        row[-1].legend(handles, labels, fontsize=7, loc="center left",
                       bbox_to_anchor=(1.02, 0.5), frameon=False)
    for ax, s in zip(axes[0], SCORES):
        ax.set_title(TITLES[s], fontsize=10)
    for ax in axes[-1]:
        ax.set_xlabel("a  (0: next-token prediction → 1: JEPA)", fontsize=9)
    fig.suptitle("probekit spectrum: scores against a, per task and model size (mean, 95% "
                 "t-interval over seeds; dots: seeds; dotted: random-init twin, or for the "
                 "causal gain a random subspace of the same rank; dashed with squares: a "
                 "deeper backbone)", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def _size_label(r: dict[str, Any]) -> str:
    """A size in the legend: its backbone (width × blocks) when known, and its parameters."""
    return (f"{_shape(r['shape'])} · " if r.get("shape") else "") + f"{_size(r['size'])} params"


def _shape(shape: str | None) -> str:
    """A backbone as people write it: "24x4" → "24 × 4" ("—" when unknown)."""
    return shape.replace("x", " × ") if shape else "—"


def _size(n: int) -> str:
    """A parameter count, short: 26k, 1.2M."""
    return f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.0f}k"


def markdown(summary: pl.DataFrame) -> str:
    """The summary as a Markdown table (each score with its interval)."""
    def cell(r: dict[str, Any], s: str) -> str:
        if r[s] is None:
            return "—"
        return f"{r[s]:.3f} [{r[f'{s}_lo']:.3f}, {r[f'{s}_hi']:.3f}]"

    def num(x: float | None) -> str:
        return "—" if x is None else f"{x:.3f}"

    return _table(["task", "a", "family", "params", "width × blocks", "seeds",
                   "decodability (late)", "random init", "selectivity", "causal gain",
                   "random control", "VoE", "VoE random init"],
                  [[r["task"], f"{r['alpha']:g}", r["family"], _size(r["size"]),
                    _shape(r.get("shape")), r["seeds"],
                    cell(r, "decodability"), num(r["random_init"]), cell(r, "selectivity"),
                    cell(r, "causal_gain"), num(r["random_control"]), cell(r, "voe"),
                    num(r["voe_random_init"])] for r in summary.iter_rows(named=True)])


def report(results: str | Path, png: str | Path) -> tuple[pl.DataFrame, list[Path]]:
    """Collect, summarise and write the figure `png` with `.csv` and `.md` tables beside it."""
    rows = collect(results)
    summary = summarise(rows)
    png = Path(png)
    paths = [plot(summary, rows, png)]
    with atomic_path(png.with_suffix(".csv")) as tmp:
        summary.write_csv(tmp)
    paths.append(png.with_suffix(".csv"))
    fits = regress(rows)
    text = markdown(summary)
    if fits is not None:
        below = regress(rows, below_one=True)
        both = pl.concat([fits.with_columns(a_range=pl.lit("0-1"))]
                         + ([below.with_columns(a_range=pl.lit("below 1"))]
                            if below is not None else []), how="diagonal_relaxed")
        with atomic_path(png.with_name(png.stem + "-regression.csv")) as tmp:
            both.write_csv(tmp)
        paths.append(png.with_name(png.stem + "-regression.csv"))
        text += "\nscore ~ a + log2(params) + a × log2(params), per task (95% t intervals):\n\n" \
            + regression_markdown(fits)
        if below is not None:
            text += "\nThe same fit without the JEPA end (a < 1 only):\n\n" \
                + regression_markdown(below)
    depth = depth_contrast(rows, fits)
    if depth is not None:
        with atomic_path(png.with_name(png.stem + "-depth.csv")) as tmp:
            depth.write_csv(tmp)
        paths.append(png.with_name(png.stem + "-depth.csv"))
        text += "\nDepth at a fixed width: deeper − shallower backbone, mean over the main " \
            "line's cells (one per a, each the mean over seeds), 95% t interval over the " \
            "cells; beside it, what the fit over a and log2(params) above predicts from the " \
            "parameter ratio alone:\n\n" + depth_markdown(depth)
    paths.append(write_text(png.with_suffix(".md"), text))
    return summary, paths
