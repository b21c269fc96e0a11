"""The leaderboard: a results store read with polars into one row per model and schema, written
as `leaderboard.parquet` and a self-contained `index.html` (no network, everything inlined).

A task is keyed by name and version (`boxes@v3`); should one version carry two fingerprints
(a store assembled from several sources), each fingerprint becomes its own task
(`boxes@v3+c126d1c9`), so results on different data are never ranked together.

Only `probekit.result/2` results are ranked. A store may still hold `probekit.result/1`
results (their causal headline was structural: read at the decodability layer, where a patch
often cannot reach the readout); they stay readable, as rows with schema /1 and no rank after
every ranked row, and on the page in a section of their own — never beside a /2 row, even when
they share a task key.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl

from probekit import record
from probekit.errors import ResultError, UserError
from probekit.store import Store

ASSETS = Path(__file__).resolve().parent.parent / "leaderboard"
RANKED = record.SCHEMA  # the only schema whose results are ranked
SUPERSEDED = tuple(s for s in record.SCHEMAS if s != RANKED)
# Per task, `<task>/<column>`. The row's `schema` says how to read them: for /2 rows
# `decodability` is late (the last quarter of the steps) and `pooled` every step; /1 rows carry
# their own summary (decodability pooled over every step, `iia` the superseded headline) and
# leave the /2-only columns null.
TASK_COLUMNS = ("decodability", "decodability_lo", "decodability_hi", "pooled", "selectivity",
                "control", "random_init", "mdl_compression", "causal_gain", "causal_gain_lo",
                "causal_gain_hi", "random_control", "causal_layer", "causal_positions",
                "causal_scope", "causal_featurizer", "iia", "prediction", "world_model_score",
                "verdict", "layer")
MODEL_COLUMNS = ("model", "revision", "adapter", "family", "architecture", "family_label",
                 "alpha", "n_params", "width", "depth", "dtype")
FLOAT_COLUMNS = ("alpha", "decodability", "decodability_lo", "decodability_hi", "pooled",
                 "selectivity", "control", "random_init", "mdl_compression", "causal_gain",
                 "causal_gain_lo", "causal_gain_hi", "random_control", "iia", "prediction",
                 "world_model_score")
STRING_COLUMNS = ("family", "architecture", "verdict", "causal_layer", "causal_positions",
                  "causal_scope", "causal_featurizer", "layer")

# What a Hugging Face `model_type` is, for the family label of a model outside the spectrum.
CAUSAL_LMS = frozenset((
    "bloom", "codegen", "falcon", "gemma", "gemma2", "gemma3", "gpt2", "gpt_bigcode", "gpt_neo",
    "gpt_neox", "gptj", "llama", "mamba", "mamba2", "mistral", "mixtral", "mpt", "olmo",
    "olmo2", "opt", "phi", "phi3", "qwen2", "qwen3", "rwkv", "stablelm", "xglm"))
ENCODERS = frozenset((
    "albert", "bert", "deberta", "deberta-v2", "distilbert", "electra", "modernbert", "roberta",
    "xlm-roberta", "dinov2", "ijepa", "vit", "videomae", "vjepa2", "clip_vision_model"))
ADAPTERS = {"hf": "Hugging Face model", "module": "torch module", "spectrum": "spectrum model"}


def family_label(model: dict[str, Any]) -> str:
    """What a reader calls the model's family: its spectrum family (`ntp`, `jepa`, …), else its
    architecture and kind (`gpt2 (causal LM)`, `MyNet (torch module)`), else its adapter."""
    family = (model.get("spectrum") or {}).get("family")
    if family:
        return str(family)
    arch, adapter = model.get("architecture"), model.get("adapter") or "unknown adapter"
    kind = ADAPTERS.get(adapter, f"{adapter} adapter")
    if arch:
        key = str(arch).lower()
        if adapter == "hf" and key in CAUSAL_LMS:
            kind = "causal LM"
        elif adapter == "hf" and key in ENCODERS:
            kind = "encoder"
        return f"{arch} ({kind})"
    return kind


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


def _scores(r: dict[str, Any]) -> dict[str, Any]:
    """The TASK_COLUMNS of one result, read the way its schema defines them."""
    s = r["scores"]
    d, c = s["decodability"], s.get("causality") or {}
    out: dict[str, Any] = dict.fromkeys(TASK_COLUMNS)
    out.update(decodability=d["value"], decodability_lo=d["ci95"][0],
               decodability_hi=d["ci95"][1], selectivity=d["selectivity"],
               control=d["control"], random_init=d.get("random_init"), layer=d["layer"],
               iia=c.get("iia"), world_model_score=s.get("world_model_score"),
               verdict=s.get("verdict"))
    if r["schema"] != RANKED:
        return out
    gain_ci = c.get("ci95") or [None, None]
    prediction = s.get("prediction") or {}
    out.update(pooled=d["pooled"], mdl_compression=(d.get("mdl") or {}).get("compression"),
               causal_gain=c.get("gain"), causal_gain_lo=gain_ci[0], causal_gain_hi=gain_ci[1],
               random_control=c.get("random_control"), causal_layer=c.get("layer"),
               causal_positions=c.get("positions"), causal_scope=c.get("scope"),
               causal_featurizer=c.get("featurizer"), prediction=prediction.get("voe"))
    return out


def records(results: Sequence[dict[str, Any]]) -> pl.DataFrame:
    """One row per result: schema, model identity, task key and the summary scores."""
    rows = []
    for r, task in zip(results, task_keys(results)):
        m = r["model"]
        rows.append({
            "schema": r["schema"], "model": m["id"], "revision": m["revision"],
            "adapter": m["adapter"], "family": m["spectrum"]["family"],
            "architecture": m.get("architecture"), "family_label": family_label(m),
            "alpha": m["spectrum"]["alpha"], "n_params": m["n_params"],
            "width": m.get("width"), "depth": m.get("depth"), "dtype": m["dtype"],
            "date": r["env"]["date"][:10], "task": task, "fingerprint": r["task"]["fingerprint"],
            "run_id": r["run_id"], **_scores(r),
        })
    schema = {**{c: pl.Float64 for c in FLOAT_COLUMNS}, **{c: pl.String for c in STRING_COLUMNS},
              "width": pl.Int64, "depth": pl.Int64}
    df = pl.DataFrame(rows, schema_overrides=schema, infer_schema_length=None)
    twice = df.filter(pl.struct("model", "revision", "task").is_duplicated())
    if len(twice):
        row = twice.row(0, named=True)
        raise ResultError(f"two results for {row['model']}@{row['revision']} on {row['task']}; "
                          "results with different identities are never merged")
    return df


def table(results: Sequence[dict[str, Any]]) -> pl.DataFrame:
    """One row per model (id and revision) and schema: `rank`, `schema`, identity, latest date,
    and per task the columns `<task>/<score>` for each of TASK_COLUMNS. Only /2 rows are
    ranked (1, 2, …: best world-model score over tasks, then selectivity); superseded /1 rows
    follow them with no rank."""
    df = records(results)
    models = (df.group_by("model", "revision", "schema", maintain_order=True)
              .agg(*[pl.col(c).first() for c in MODEL_COLUMNS[2:]], pl.col("date").max()))
    for task in sorted(df["task"].unique()):
        part = (df.filter(pl.col("task") == task)
                .select("model", "revision", "schema",
                        *[pl.col(c).alias(f"{task}/{c}") for c in TASK_COLUMNS]))
        models = models.join(part, on=["model", "revision", "schema"], how="left")
    best = [pl.max_horizontal(pl.col(f"^.*/{c}$")).alias(f"_{c}")
            for c in ("world_model_score", "selectivity")]
    ranked = pl.col("schema") == RANKED
    out = (models.with_columns(*best, (~ranked).alias("_superseded"))
           .sort("_superseded", "_world_model_score", "_selectivity", "model", "revision",
                 descending=[False, True, True, False, False], nulls_last=True)
           .drop("_world_model_score", "_selectivity", "_superseded"))
    rank = pl.when(ranked).then(ranked.cast(pl.UInt32).cum_sum()).otherwise(None)
    out = out.with_columns(rank.alias("rank"))
    return out.select("rank", "schema", *MODEL_COLUMNS, "date",
                      *[c for c in out.columns if "/" in c])


def curve(result: dict[str, Any]) -> dict[str, Any]:
    """Per layer (the order of `per_layer`): normalised decodability, mean over targets, through
    `probekit.record.layer_mean` — late test (`late`), every step (`pooled`), late control and
    late random-init twin — and the causal curve from `per_cell`: at each layer the best reachable
    `probe`-subspace cell at the headline's positions (`read` without a headline), its gain with
    interval, and the `random`-subspace control at the same cell. A layer with no reachable cell
    there has gain None and `reachable` False (untestable, never scored 0)."""
    rows = result["per_layer"]
    layers = list(dict.fromkeys(r["layer"] for r in rows))
    out: dict[str, Any] = {"layers": layers}
    for name, column, depth in (("late", "test", record.LATE), ("pooled", "test", record.POOLED),
                                ("control", "control", record.LATE),
                                ("random_init", "random_init", record.LATE)):
        values = [record.layer_mean(rows, layer, column, depth) for layer in layers]
        out[name] = None if all(v is None for v in values) else \
            [None if v is None else round(v, 6) for v in values]
    cells = result.get("per_cell") or []
    if result["schema"] != RANKED or not cells:
        out["causal"] = None
        return out
    headline = result["scores"].get("causality") or {}
    positions = headline.get("positions") or "read"
    for cell in cells:
        if cell["layer"] not in layers:
            layers.append(cell["layer"])
            for name in ("late", "pooled", "control", "random_init"):
                if out[name] is not None:
                    out[name].append(None)
    causal: dict[str, Any] = {"featurizer": "probe", "positions": positions,
                              "gain": [], "lo": [], "hi": [], "random": [], "scope": [],
                              "reachable": []}
    for layer in layers:
        here = [c for c in cells if c["layer"] == layer and c["positions"] == positions]
        probes = [c for c in here if c.get("featurizer") == "probe" and c.get("reachable")
                  and c.get("gain") is not None]
        best = max(probes, key=lambda c: c["gain"], default=None)
        random = None if best is None else next(
            (c.get("gain") for c in here if c.get("featurizer") == "random"
             and c.get("scope") == best.get("scope") and c.get("reachable")), None)
        interval = (best or {}).get("gain_ci95") or [None, None]
        causal["gain"].append(None if best is None else round(best["gain"], 6))
        causal["lo"].append(None if interval[0] is None else round(interval[0], 6))
        causal["hi"].append(None if interval[1] is None else round(interval[1], 6))
        causal["random"].append(None if random is None else round(random, 6))
        causal["scope"].append(None if best is None else best.get("scope"))
        causal["reachable"].append(best is not None)
    out["causal"] = causal
    return out


def _entry(r: dict[str, Any]) -> dict[str, Any]:
    """What the page shows of one /2 result."""
    s = r["scores"]
    d, c = s["decodability"], s.get("causality")
    site = None if c is None else {k: c.get(k) for k in ("layer", "positions", "scope",
                                                         "featurizer", "readout", "pairs")}
    return {
        "decodability": d["value"], "ci95": d["ci95"], "pooled": d["pooled"],
        "layer": d["layer"], "control": d["control"], "selectivity": d["selectivity"],
        "random_init": d.get("random_init"),
        "mdl": None if d.get("mdl") is None else {
            "compression": d["mdl"]["compression"],
            "random_init_compression": d["mdl"].get("random_init_compression")},
        "gain": None if c is None else c.get("gain"),
        "gain_ci95": None if c is None else c.get("ci95"),
        "random_control": None if c is None else c.get("random_control"),
        "vs_random_ci95": None if c is None else c.get("vs_random_ci95"),
        "full_upper_bound": None if c is None else c.get("full_upper_bound"),
        "iia": None if c is None else c.get("iia"), "site": site,
        "causality_reason": s.get("causality_reason"),
        "prediction": (s.get("prediction") or {}).get("voe"),
        "world_model_score": s.get("world_model_score"), "verdict": s.get("verdict"),
        "run_id": r["run_id"], "date": r["env"]["date"][:10], "curve": curve(r),
    }


def page_data(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Everything the page shows, as the JSON it inlines: the ranked /2 tasks, models and
    scores, and the superseded /1 results apart (`superseded`), never among the scores."""
    wide = table(results)
    df = records(results)
    keys = task_keys(results)
    ranked = df.filter(pl.col("schema") == RANKED)
    tasks = (ranked.group_by("task").agg(pl.len().alias("results"), pl.col("fingerprint").first())
             .sort("results", "task", descending=[True, False]))
    scores: dict[str, dict[str, Any]] = {}
    superseded = []
    for r, key in zip(results, keys):
        model = f"{r['model']['id']}@{r['model']['revision']}"
        if r["schema"] == RANKED:
            scores.setdefault(key, {})[model] = _entry(r)
            continue
        d, c = r["scores"]["decodability"], r["scores"].get("causality") or {}
        superseded.append({
            "key": model, "id": r["model"]["id"], "revision": r["model"]["revision"],
            "schema": r["schema"], "task": key, "family_label": family_label(r["model"]),
            "decodability": d["value"], "layer": d["layer"], "iia": c.get("iia"),
            "verdict": r["scores"].get("verdict"), "date": r["env"]["date"][:10]})
    superseded.sort(key=lambda e: (e["task"], e["id"], e["revision"]))
    model_fields = (*MODEL_COLUMNS[1:], "date")
    return {
        "generated": df["date"].max(),
        "schema": RANKED,
        "tasks": [{"key": t["task"], "fingerprint": t["fingerprint"], "results": t["results"]}
                  for t in tasks.iter_rows(named=True)],
        "models": [{"key": f"{m['model']}@{m['revision']}", "id": m["model"],
                    **{c: m[c] for c in model_fields}}
                   for m in wide.filter(pl.col("schema") == RANKED)
                   .select(*MODEL_COLUMNS, "date").iter_rows(named=True)],
        "scores": scores,
        "superseded": superseded,
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
