"""The leaderboard: a results store read with polars into one row per model, written as
`leaderboard.parquet` and a self-contained `index.html` (no network, everything inlined).

A task is keyed by name and version (`boxes@v1`); should one version carry two fingerprints
(a store assembled from several sources), each fingerprint becomes its own task
(`boxes@v1+c126d1c9`), so results on different data are never ranked together.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl

from probekit.errors import ResultError, UserError
from probekit.store import Store

ASSETS = Path(__file__).resolve().parent.parent / "leaderboard"
TASK_COLUMNS = ("decodability", "selectivity", "control", "random_init", "iia",
                "world_model_score", "verdict", "layer")
MODEL_COLUMNS = ("model", "revision", "adapter", "family", "alpha", "n_params", "dtype")


def task_keys(results: Sequence[dict[str, Any]]) -> list[str]:
    """`name@vN` per result, with `+fingerprint` where one version has several fingerprints."""
    fps: dict[str, set[str]] = {}
    for r in results:
        fps.setdefault(f"{r['task']['name']}@v{r['task']['version']}", set()).add(
            r["task"]["fingerprint"])
    keys = []
    for r in results:
        key = f"{r['task']['name']}@v{r['task']['version']}"
        keys.append(key if len(fps[key]) == 1 else f"{key}+{r['task']['fingerprint'][:8]}")
    return keys


def records(results: Sequence[dict[str, Any]]) -> pl.DataFrame:
    """One row per result: model identity, task key and the summary scores."""
    rows = []
    for r, task in zip(results, task_keys(results)):
        m, s = r["model"], r["scores"]
        d, c = s["decodability"], s.get("causality") or {}
        rows.append({
            "model": m["id"], "revision": m["revision"], "adapter": m["adapter"],
            "family": m["spectrum"]["family"], "alpha": m["spectrum"]["alpha"],
            "n_params": m["n_params"], "dtype": m["dtype"], "date": r["env"]["date"][:10],
            "task": task, "fingerprint": r["task"]["fingerprint"], "run_id": r["run_id"],
            "decodability": d["value"], "ci95_lo": d["ci95"][0], "ci95_hi": d["ci95"][1],
            "selectivity": d["selectivity"], "control": d["control"],
            "random_init": d["random_init"], "layer": d["layer"], "iia": c.get("iia"),
            "world_model_score": s.get("world_model_score"), "verdict": s.get("verdict"),
        })
    schema = {"alpha": pl.Float64, "random_init": pl.Float64, "iia": pl.Float64,
              "world_model_score": pl.Float64, "family": pl.String, "verdict": pl.String}
    df = pl.DataFrame(rows, schema_overrides=schema, infer_schema_length=None)
    twice = df.filter(pl.struct("model", "revision", "task").is_duplicated())
    if len(twice):
        row = twice.row(0, named=True)
        raise ResultError(f"two results for {row['model']}@{row['revision']} on {row['task']}; "
                          "results with different identities are never merged")
    return df


def table(results: Sequence[dict[str, Any]]) -> pl.DataFrame:
    """One row per model (id and revision): identity, latest date, and per task the columns
    `<task>/<score>` for each of TASK_COLUMNS. Sorted by best world-model score, then
    selectivity."""
    df = records(results)
    models = (df.group_by("model", "revision", maintain_order=True)
              .agg(*[pl.col(c).first() for c in MODEL_COLUMNS[2:]], pl.col("date").max()))
    for task in sorted(df["task"].unique()):
        part = (df.filter(pl.col("task") == task)
                .select("model", "revision", *[pl.col(c).alias(f"{task}/{c}")
                                               for c in TASK_COLUMNS]))
        models = models.join(part, on=["model", "revision"], how="left")
    best = [pl.max_horizontal(pl.col(f"^.*/{c}$")).alias(f"_{c}")
            for c in ("world_model_score", "selectivity")]
    return (models.with_columns(best)
            .sort("_world_model_score", "_selectivity", descending=True, nulls_last=True)
            .drop("_world_model_score", "_selectivity"))


def curve(result: dict[str, Any]) -> dict[str, Any]:
    """Normalised score per layer, mean over targets: trained test, control, random init."""
    df = (pl.DataFrame(result["per_layer"], infer_schema_length=None,
                       schema_overrides={"random_init": pl.Float64})
          .group_by("layer", maintain_order=True)
          .agg([((pl.col(c) - pl.col("chance")) / (1 - pl.col("chance"))).mean().alias(c)
                for c in ("test", "control", "random_init")]))
    out: dict[str, Any] = {"layers": df["layer"].to_list()}
    for c in ("test", "control", "random_init"):
        values = df[c].to_list()
        out[c] = None if any(v is None for v in values) else [round(v, 6) for v in values]
    return out


def page_data(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Everything the page shows, as the JSON it inlines."""
    wide = table(results)
    df = records(results)
    keys = task_keys(results)
    tasks = (df.group_by("task").agg(pl.len().alias("results"), pl.col("fingerprint").first())
             .sort("results", "task", descending=[True, False]))
    scores: dict[str, dict[str, Any]] = {}
    for r, key in zip(results, keys):
        d, c = r["scores"]["decodability"], r["scores"].get("causality") or {}
        scores.setdefault(key, {})[f"{r['model']['id']}@{r['model']['revision']}"] = {
            "decodability": d["value"], "ci95": d["ci95"], "layer": d["layer"],
            "control": d["control"], "selectivity": d["selectivity"],
            "random_init": d["random_init"], "iia": c.get("iia"), "iia_ci95": c.get("ci95"),
            "world_model_score": r["scores"].get("world_model_score"),
            "verdict": r["scores"].get("verdict"), "run_id": r["run_id"],
            "date": r["env"]["date"][:10], "curve": curve(r),
        }
    return {
        "generated": df["date"].max(),
        "tasks": [{"key": t["task"], "fingerprint": t["fingerprint"], "results": t["results"]}
                  for t in tasks.iter_rows(named=True)],
        "models": [{"key": f"{m['model']}@{m['revision']}", "id": m["model"],
                    **{c: m[c] for c in (*MODEL_COLUMNS[1:], "date")}}
                   for m in wide.select(*MODEL_COLUMNS, "date").iter_rows(named=True)],
        "scores": scores,
    }


def _asset(name: str) -> str:
    path = ASSETS / name
    if not path.is_file():
        raise UserError(f"leaderboard asset {str(path)!r} is missing; the page is built from the "
                        "leaderboard/ folder of a probekit source checkout")
    text = path.read_text(encoding="utf-8")
    if "</script" in text.lower() or "</style" in text.lower():
        raise UserError(f"{path} must not contain a closing script or style tag")
    return text


def render(data: dict[str, Any]) -> str:
    """The self-contained page: template with the style, data and script inlined."""
    blob = (json.dumps(data, allow_nan=False, separators=(",", ":"), ensure_ascii=False)
            .replace("<", "\\u003c"))
    return (_asset("template.html")
            .replace("<!-- probekit:style -->", f"<style>\n{_asset('style.css')}</style>")
            .replace("<!-- probekit:data -->",
                     f'<script type="application/json" id="leaderboard-data">{blob}</script>')
            .replace("<!-- probekit:script -->", f"<script>\n{_asset('leaderboard.js')}</script>"))


OUTPUTS = ("leaderboard.parquet", "index.html")


def check_outputs(out: str | os.PathLike) -> list[Path]:
    """The files `build` writes, refused before anything is read when one cannot be written:
    `out` a file, or a folder standing where one of the files goes."""
    from probekit.io import check_output_dir

    out = check_output_dir(out, "--out")
    paths = [out / name for name in OUTPUTS]
    for path in paths:
        if path.is_dir():
            raise UserError(f"--out: {str(path)!r} is a folder where the leaderboard writes a "
                            "file; move it or pass another --out")
    return paths


def build(store: str | os.PathLike, out: str | os.PathLike) -> list[Path]:
    """Read the store at `store`; write `leaderboard.parquet` and `index.html` into `out`, both
    or neither (outputs are checked first, then both files are written and renamed together)."""
    import io

    from probekit.io import write_all

    parquet, html = check_outputs(out)
    source = Store(store).check(write=False)
    results = source.results()
    if not results:
        raise UserError(f"store {str(store)!r} holds no results; file some with `probekit submit`")
    buffer = io.BytesIO()
    table(results).write_parquet(buffer)
    page = render(page_data(results)).encode("utf-8")
    return write_all({parquet: buffer.getvalue(), html: page})
