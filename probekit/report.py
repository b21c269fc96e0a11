"""`Report`: the results of one `evaluate` call as tables, files and a per-layer plot."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import polars as pl

from probekit import results as store_paths


class Report:
    """Holds `probekit.result/1` records; `table` has one row per (model, task, layer, target),
    `summary` one row per (model, task)."""

    def __init__(self, results: list[dict[str, Any]]):
        self.results = results

    @property
    def table(self) -> pl.DataFrame:
        rows = [{"model": r["model"]["id"], "task": r["task"]["name"], **row}
                for r in self.results for row in r["per_layer"]]
        return pl.DataFrame(rows, infer_schema_length=None)

    @property
    def summary(self) -> pl.DataFrame:
        rows = []
        for r in self.results:
            d = r["scores"]["decodability"]
            c = r["scores"].get("causality") or {}
            rows.append({
                "model": r["model"]["id"], "task": r["task"]["name"], "layer": d["layer"],
                "decodability": d["value"], "ci95_lo": d["ci95"][0], "ci95_hi": d["ci95"][1],
                "control": d["control"], "selectivity": d["selectivity"],
                "random_init": d["random_init"], "iia": c.get("iia"),
                "world_model_score": r["scores"].get("world_model_score"),
                "verdict": r["scores"].get("verdict"),
            })
        return pl.DataFrame(rows, infer_schema_length=None)

    def save(self, out: str | Path, plots: bool = True) -> list[Path]:
        """Write each result at `<out>/<org>__<model>/<revision>/<task>.json` (atomically), with a
        per-layer plot beside it; returns the JSON paths."""
        paths = []
        for r in self.results:
            path = store_paths.save(r, out)
            if plots:
                plot_layers(r, path.with_suffix(".layers.png"))
                if r.get("per_layer_causal"):
                    from probekit.causal.heatmap import plot_causal

                    plot_causal(r, path.with_suffix(".causal.png"))
            paths.append(path)
        return paths

    def __str__(self) -> str:
        """The summary as a readable text table (normalised scores: chance 0, perfect 1)."""
        from rich.console import Console
        from rich.table import Table

        def num(x: float | None) -> str:
            return "—" if x is None else f"{x:.3f}"

        table = Table("model", "task", "layer", "decodability [95% CI]", "control",
                      "selectivity", "random init", "IIA", "world model", "verdict",
                      title="probekit — normalised scores (chance 0, perfect 1)")
        for r in self.summary.iter_rows(named=True):
            table.add_row(r["model"], r["task"], r["layer"],
                          f"{r['decodability']:.3f} [{r['ci95_lo']:.3f}, {r['ci95_hi']:.3f}]",
                          num(r["control"]), num(r["selectivity"]), num(r["random_init"]),
                          num(r["iia"]), num(r["world_model_score"]), r["verdict"] or "—")
        console = Console(width=160, record=True, file=open(os.devnull, "w"))
        console.print(table)
        return console.export_text().rstrip()

    def __repr__(self) -> str:
        return f"Report({len(self.results)} results)\n{self}"


def plot_layers(result: dict[str, Any], path: Path) -> Path:
    """Normalised test score per layer (mean over targets): trained, control, random init."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from probekit.io import atomic_path

    df = pl.DataFrame(result["per_layer"], infer_schema_length=None)
    layers = list(dict.fromkeys(df["layer"].to_list()))
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for column, style in (("test", "-o"), ("control", "--s"), ("random_init", ":^")):
        if df[column].null_count() == len(df):
            continue
        norm = df.with_columns(((pl.col(column) - pl.col("chance")) / (1 - pl.col("chance")))
                               .alias("n")).group_by("layer", maintain_order=True).agg(
            pl.col("n").mean())
        ax.plot(range(len(layers)), norm["n"].to_list(), style, label=column.replace("_", " "))
    chosen = result["scores"]["decodability"]["layer"]
    ax.axvline(layers.index(chosen), color="grey", lw=0.8, ls=":")
    ax.set_xticks(range(len(layers)), layers, rotation=45, ha="right")
    ax.set_ylabel("normalised score (chance 0)")
    ax.set_title(f"{result['model']['id']} on {result['task']['name']}", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path
