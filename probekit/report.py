"""`Report`: the results of one `evaluate` call as tables, files and figures."""

from __future__ import annotations

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
        """The summary, one block per (model, task), each axis on its own line with its
        interval, where it was measured and its null — readable in a terminal or a log of any
        width. Scores are normalised (chance 0, perfect 1; VoE: chance 0.5)."""
        def num(x: float | None, digits: int = 3) -> str:
            return "—" if x is None else f"{x:.{digits}f}"

        def interval(x: float | None, ci: list[float] | None) -> str:
            if x is None:
                return "—"
            return f"{x:.3f} [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else f"{x:.3f}"

        lines = ["probekit — normalised scores (chance 0, perfect 1; VoE chance 0.5)"]
        for r in self.results:
            s = r["scores"]
            d, c, p = s["decodability"], s.get("causality"), s.get("prediction")
            lines.append("")
            lines.append(f"{r['model']['id']} · {r['task']['name']} · verdict "
                         f"{s.get('verdict') or '—'} · world-model score "
                         f"{num(s.get('world_model_score'))}")
            mdl = d.get("mdl") or {}
            extra = (f"; MDL {mdl['compression']:.1f}× (random init "
                     f"{num(mdl.get('random_init_compression'), 1)}×)"
                     if mdl.get("compression") is not None else "")
            lines.append(f"  decodability  {interval(d['value'], d.get('ci95')):<20} late steps "
                         f"at {d['layer']}; pooled {num(d.get('pooled'))}; selectivity "
                         f"{num(d.get('selectivity'))}; random init {num(d.get('random_init'))}"
                         f"{extra}")
            if c is not None:
                lines.append(f"  causality     {interval(c['gain'], c.get('ci95')):<20} gain at "
                             f"{c['layer']} {c['positions']} ({c['scope']}) {c['featurizer']}, "
                             f"{c['readout']} readout, {c['pairs']} pairs; random control "
                             f"{num(c.get('random_control'))}; full patch "
                             f"{num(c.get('full_upper_bound'))}")
            else:
                lines.append(f"  causality     —                    "
                             f"{s.get('causality_reason') or 'not measured'}")
            if p is not None:
                twin = p.get("random_init") or {}
                legal = (f"; legal top-1 {interval(p['legal_top1'], p.get('legal_ci95'))}"
                         if p.get("legal_top1") is not None else "")
                lines.append(f"  prediction    {interval(p['voe'], p.get('ci95')):<20} VoE "
                             f"({p['surprise']} surprise, {p['pairs']} pairs); AUROC "
                             f"{num(p.get('auroc'))}; random init {num(twin.get('voe'))}"
                             f"{legal}")
            else:
                lines.append(f"  prediction    —                    "
                             f"{s.get('prediction_reason') or 'not measured'}")
        return "\n".join(_wrap(line) for line in lines)

    def __repr__(self) -> str:
        return f"Report({len(self.results)} results)\n{self}"


def _wrap(line: str, width: int = 100) -> str:
    """An axis line wrapped under its details (column 37), other lines as they are."""
    import textwrap

    if not line.startswith("  ") or len(line) <= width:
        return line
    head, detail = line[:37], line[37:]
    return textwrap.fill(detail, width=width, initial_indent=head,
                         subsequent_indent=" " * 37, break_on_hyphens=False)
