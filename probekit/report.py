"""`Report`: the results of one `evaluate` call as tables, files and figures."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import polars as pl

from probekit import results as store_paths


class Report:
    """Holds `probekit.result/2` records: `table` has one row per (model, task, layer, target,
    depth), `cells` one per causal cell, `summary` one per (model, task)."""

    def __init__(self, results: list[dict[str, Any]]):
        self.results = results

    @property
    def table(self) -> pl.DataFrame:
        rows = [{"model": r["model"]["id"], "task": r["task"]["name"], **row}
                for r in self.results for row in r["per_layer"]]
        return pl.DataFrame(rows, infer_schema_length=None)

    @property
    def cells(self) -> pl.DataFrame:
        """The causal per-cell table (lists flattened to lo/hi columns)."""
        rows = []
        for r in self.results:
            for c in r["per_cell"]:
                row = {"model": r["model"]["id"], "task": r["task"]["name"]}
                for k, v in c.items():
                    if isinstance(v, list):
                        row[f"{k}_lo"], row[f"{k}_hi"] = v
                    else:
                        row[k] = v
                rows.append(row)
        return pl.DataFrame(rows, infer_schema_length=None)

    @property
    def summary(self) -> pl.DataFrame:
        rows = []
        for r in self.results:
            s = r["scores"]
            d = s["decodability"]
            c = s.get("causality") or {}
            p = s.get("prediction") or {}
            p_twin = p.get("random_init") or {}
            mdl = d.get("mdl") or {}
            rows.append({
                "model": r["model"]["id"], "task": r["task"]["name"], "layer": d["layer"],
                "decodability": d["value"], "ci95_lo": d["ci95"][0], "ci95_hi": d["ci95"][1],
                "pooled": d["pooled"], "control": d["control"], "selectivity": d["selectivity"],
                "random_init": d["random_init"], "mdl_compression": mdl.get("compression"),
                "causal_gain": c.get("gain"),
                "causal_lo": (c.get("ci95") or [None, None])[0],
                "causal_hi": (c.get("ci95") or [None, None])[1],
                "causal_site": " ".join(str(c[k]) for k in ("layer", "positions", "featurizer"))
                if c else None,
                "random_control": c.get("random_control"),
                "surprise": p.get("surprise"), "voe": p.get("voe"),
                "voe_lo": (p.get("ci95") or [None, None])[0],
                "voe_hi": (p.get("ci95") or [None, None])[1],
                "voe_step": p.get("voe_step"), "auroc": p.get("auroc"),
                "voe_random_init": p_twin.get("voe"), "legal_top1": p.get("legal_top1"),
                "legal_lo": (p.get("legal_ci95") or [None, None])[0],
                "legal_hi": (p.get("legal_ci95") or [None, None])[1],
                "legal_random_init": p_twin.get("legal_top1"),
                "world_model_score": s.get("world_model_score"), "verdict": s.get("verdict"),
            })
        return pl.DataFrame(rows, infer_schema_length=None)

    def save(self, out: str | Path, plots: bool = True) -> list[Path]:
        """Write each result at `<out>/<org>__<model>/<revision>/<task>.json` (atomically), with
        its figures beside it (decodability by layer and depth; the causal grid; the surprise
        curve around the violation, `<task>.prediction.png`); returns the JSON paths."""
        paths = []
        for r in self.results:
            path = store_paths.save(r, out)
            if plots:
                from probekit.decodability import plot_depth

                plot_depth(r, path.with_suffix(".depth.png"))
                if r.get("per_cell"):
                    from probekit.causal.heatmap import plot_causal

                    plot_causal(r, path.with_suffix(".causal.png"))
                if r["scores"].get("prediction") is not None:
                    from probekit.prediction.figure import plot_prediction

                    plot_prediction(r, path.with_suffix(".prediction.png"))
            paths.append(path)
        return paths

    def __str__(self) -> str:
        """The summary as a readable text table (normalised scores: chance 0, perfect 1)."""
        from rich.console import Console
        from rich.table import Table

        def num(x: float | None) -> str:
            return "—" if x is None else f"{x:.3f}"

        def interval(x: float | None, lo: float | None, hi: float | None) -> str:
            return "—" if x is None else f"{x:.3f} [{lo:.2f}, {hi:.2f}]" if lo is not None \
                else f"{x:.3f}"

        table = Table("model", "task", "layer", "decodability (late) [95% CI]", "pooled",
                      "selectivity", "random init", "causal gain [95% CI]", "causal site",
                      "VoE, chance 0.5 [95% CI]", "VoE random init", "legal top-1 [95% CI]",
                      "world model", "verdict",
                      title="probekit — normalised scores (chance 0, perfect 1)")
        for r in self.summary.iter_rows(named=True):
            table.add_row(r["model"], r["task"], r["layer"],
                          interval(r["decodability"], r["ci95_lo"], r["ci95_hi"]),
                          num(r["pooled"]), num(r["selectivity"]), num(r["random_init"]),
                          interval(r["causal_gain"], r["causal_lo"], r["causal_hi"]),
                          r["causal_site"] or "—",
                          interval(r["voe"], r["voe_lo"], r["voe_hi"]),
                          num(r["voe_random_init"]),
                          interval(r["legal_top1"], r["legal_lo"], r["legal_hi"]),
                          num(r["world_model_score"]),
                          r["verdict"] or "—")
        console = Console(width=200, record=True, file=open(os.devnull, "w"))
        console.print(table)
        return console.export_text().rstrip()

    def __repr__(self) -> str:
        return f"Report({len(self.results)} results)\n{self}"
