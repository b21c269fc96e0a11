"""`probekit leaderboard build`: the per-model table (polars, parquet) and the static page from
`probekit.result/2` results, /1 results kept apart and never ranked; the page checked in headless
Chromium: no network, every model row, sorting on a click, the plots. (Layout at a laptop and a
phone width: tests/test_leaderboard_layout.py.)"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import polars as pl
import pytest

from probekit import leaderboard, record
from probekit.cli import main
from probekit.errors import ResultError, UserError
from probekit.record import run_id
from probekit.results import save
from tests.leaderboard_fixtures import CHROMIUM, Browser, superseded, untested
from tests.result_factory import make

TASK = "boxes@v3"
MODELS = [  # id, family, alpha, quality, causal gain
    ("probekit/spectrum-ntp", "ntp", 0.0, 1.0, 0.58),
    ("probekit/spectrum-mtp", "multi-token", 0.0, 0.9, 0.41),
    ("probekit/spectrum-nextlat", "next-latent", 0.75, 0.95, 0.66),
    ("probekit/spectrum-jepa", "jepa", 1.0, 0.5, None),
    ("gpt2", None, None, 0.7, None),
]
V1 = "probekit/spectrum-ntp@5e1f0c2d9a7b"  # the superseded result's model


def results() -> list[dict]:
    out = [make(model=m, family=f, alpha=a, quality=q, gain=g) for m, f, a, q, g in MODELS]
    out[4]["model"]["architecture"] = "gpt2"
    return out


def key(r: dict) -> str:
    return f"{r['model']['id']}@{r['model']['revision']}"


@pytest.fixture
def site(tmp_path) -> Path:
    for r in [*results(), superseded()]:
        save(r, tmp_path / "store" / "results")
    assert main(["leaderboard", "build", "--store", str(tmp_path / "store"),
                 "--out", str(tmp_path / "site")]) == 0
    return tmp_path / "site"


def test_table_has_one_row_per_model_with_the_result_2_scores_per_task():
    rs = results()
    other = make(model="probekit/spectrum-ntp", quality=0.6)
    other["task"].update(name="s5", fingerprint="0123456789abcdef")
    other["run_id"] = run_id(other)
    df = leaderboard.table([*rs, other])
    assert df.height == len(MODELS) and df["schema"].unique().to_list() == [record.SCHEMA]
    assert df["rank"].to_list() == [1, 2, 3, 4, 5]
    ntp = df.row(by_predicate=pl.col("model") == "probekit/spectrum-ntp", named=True)
    d, c = rs[0]["scores"]["decodability"], rs[0]["scores"]["causality"]
    assert ntp[f"{TASK}/decodability"] == pytest.approx(d["value"])  # late, the headline
    assert ntp[f"{TASK}/pooled"] == pytest.approx(d["pooled"]) != pytest.approx(d["value"])
    assert ntp[f"{TASK}/mdl_compression"] == pytest.approx(d["mdl"]["compression"])
    assert (ntp[f"{TASK}/causal_gain"], ntp[f"{TASK}/causal_gain_lo"],
            ntp[f"{TASK}/causal_gain_hi"]) == (0.58, *c["ci95"])
    assert (ntp[f"{TASK}/causal_layer"], ntp[f"{TASK}/causal_positions"],
            ntp[f"{TASK}/causal_featurizer"]) == (c["layer"], c["positions"], c["featurizer"])
    assert ntp[f"{TASK}/random_control"] == c["random_control"]
    assert ntp[f"{TASK}/verdict"] == "causal"
    assert ntp[f"{TASK}/prediction"] == pytest.approx(rs[0]["scores"]["prediction"]["voe"])
    assert ntp["s5@v3/decodability"] == pytest.approx(other["scores"]["decodability"]["value"])
    assert ntp["family"] == ntp["family_label"] == "ntp"
    assert df["model"][0] == "probekit/spectrum-nextlat"  # best world-model score first
    gpt2 = df.row(by_predicate=pl.col("model") == "gpt2", named=True)
    assert gpt2["s5@v3/decodability"] is None and gpt2[f"{TASK}/causal_gain"] is None
    assert gpt2["family"] is None and gpt2["family_label"] == "gpt2 (causal LM)"


def test_a_family_label_for_any_model():
    label = leaderboard.family_label
    assert label({"spectrum": {"family": "jepa", "alpha": 1.0}, "architecture": "gpt2",
                  "adapter": "spectrum"}) == "jepa"
    assert label({"spectrum": {"family": None}, "architecture": "gpt2", "adapter": "hf"}) \
        == "gpt2 (causal LM)"
    assert label({"spectrum": {"family": None}, "architecture": "bert", "adapter": "hf"}) \
        == "bert (encoder)"
    assert label({"spectrum": {"family": None}, "architecture": "BoxesLSTM",
                  "adapter": "module"}) == "BoxesLSTM (torch module)"
    assert label({"spectrum": {"family": None}, "architecture": "newthing", "adapter": "hf"}) \
        == "newthing (Hugging Face model)"
    assert label({"spectrum": {"family": None}, "adapter": "hf"}) == "Hugging Face model"
    assert label({"spectrum": {"family": None}, "adapter": "custom"}) == "custom adapter"


def test_result_1_rows_are_listed_after_every_ranked_row_without_a_rank():
    v1 = superseded()
    df = leaderboard.table([*results(), v1])
    assert df["schema"].to_list() == [record.SCHEMA] * 5 + ["probekit.result/1"]
    assert df["rank"].to_list() == [1, 2, 3, 4, 5, None]
    old = df.row(5, named=True)
    assert (old["model"], old["boxes@v2/iia"]) == ("probekit/spectrum-ntp", 0.58)
    assert old[f"{TASK}/decodability"] is None and old["boxes@v2/causal_gain"] is None
    # the same model on /2 is its own, ranked row
    ranked = df.filter((pl.col("model") == "probekit/spectrum-ntp") & pl.col("rank").is_not_null())
    assert ranked.height == 1 and ranked["boxes@v2/iia"].to_list() == [None]


def test_result_1_is_never_ranked_beside_result_2_even_on_the_same_task_key():
    """Task versions were bumped with /2, so /1 and /2 rows do not share a task key; should they
    (a store assembled by hand), the /1 result is still not ranked, however high its scores."""
    rs = results()
    v1 = superseded()
    v1["model"]["id"] = "org/old-but-high"
    v1["task"].update(version=rs[0]["task"]["version"], fingerprint=rs[0]["task"]["fingerprint"])
    v1["scores"]["world_model_score"] = v1["scores"]["decodability"]["selectivity"] = 0.99
    assert leaderboard.task_keys([*rs, v1])[-1] == TASK
    df = leaderboard.table([*rs, v1])
    assert df["model"].to_list()[-1] == "org/old-but-high" and df["rank"].to_list()[-1] is None
    assert df["rank"].drop_nulls().to_list() == [1, 2, 3, 4, 5]
    data = leaderboard.page_data([*rs, v1])
    assert set(data["scores"][TASK]) == {key(r) for r in rs}
    assert [m["id"] for m in data["models"]] == df["model"].to_list()[:5]
    assert data["tasks"] == [{"key": TASK, "fingerprint": rs[0]["task"]["fingerprint"],
                              "results": 5}]
    assert [(s["id"], s["task"], s["schema"]) for s in data["superseded"]] == [
        ("org/old-but-high", TASK, "probekit.result/1")]


def test_per_layer_curves_read_late_decodability_twin_and_the_causal_gain_per_layer():
    r = make(gain=0.58)
    c = r["scores"]["causality"]
    cv = leaderboard.curve(r)
    rows = r["per_layer"]
    assert cv["layers"] == ["embed", "block.0", "block.1", "block.2", "block.3"]
    for i, layer in enumerate(cv["layers"]):
        assert cv["late"][i] == pytest.approx(record.layer_mean(rows, layer, "test"), abs=1e-6)
        assert cv["pooled"][i] == pytest.approx(
            record.layer_mean(rows, layer, "test", record.POOLED), abs=1e-6)
        assert cv["random_init"][i] == pytest.approx(
            record.layer_mean(rows, layer, "random_init"), abs=1e-6)
    d = r["scores"]["decodability"]
    assert cv["late"][cv["layers"].index(d["layer"])] == pytest.approx(d["value"], abs=1e-6)
    causal = cv["causal"]
    assert (causal["featurizer"], causal["positions"]) == ("probe", c["positions"])
    at = cv["layers"].index(c["layer"])
    assert (causal["gain"][at], [causal["lo"][at], causal["hi"][at]]) == (0.58, c["ci95"])
    # block.3 is the last block: nothing patched there can reach the token readout
    assert causal["reachable"] == [True, True, True, True, False]
    assert causal["gain"][4] is None and causal["lo"][4] is None
    random = next(x["gain"] for x in r["per_cell"] if x["featurizer"] == "random"
                  and (x["layer"], x["positions"], x["scope"]) == (c["layer"], c["positions"],
                                                                   c["scope"]))
    assert causal["random"][at] == random
    # the best probe cell per layer at those positions, whichever scope it has
    row = next(x for x in r["per_cell"] if (x["layer"], x["positions"], x["scope"],
               x["featurizer"]) == ("embed", c["positions"], "onward", "probe"))
    row.update(gain=0.31, gain_ci95=[0.25, 0.37])
    again = leaderboard.curve(r)["causal"]
    assert (again["gain"][0], again["lo"][0], again["scope"][0]) == (0.31, 0.25, "onward")
    assert leaderboard.curve(make(gain=None))["causal"] is None  # causal probes not run
    assert leaderboard.curve(untested(r))["causal"]["reachable"] == [False] * 5


def test_one_task_version_with_two_fingerprints_becomes_two_tasks():
    a, b = make(model="org/a"), make(model="org/b")
    b["task"]["fingerprint"] = "0123456789abcdef"
    b["run_id"] = run_id(b)
    keys = leaderboard.task_keys([a, b])
    assert keys == [f"{TASK}+{a['task']['fingerprint'][:8]}", f"{TASK}+01234567"]
    assert leaderboard.table([a, b]).filter(
        pl.col("model") == "org/a")[f"{keys[1]}/decodability"].to_list() == [None]


def test_the_same_model_and_task_twice_is_refused():
    with pytest.raises(ResultError, match="never merged"):
        leaderboard.records([make(seed=0), make(seed=1)])


def test_build_writes_parquet_and_a_self_contained_page(site):
    df = pl.read_parquet(site / "leaderboard.parquet")
    rs = [*results(), superseded()]
    assert df.equals(leaderboard.table(rs))
    assert {"rank", "schema", "family_label", "architecture"} <= set(df.columns)
    html = (site / "index.html").read_text()
    external = r"(src|href)\s*=|<link|@import|url\(|https?://(?!www\.w3\.org/2000/svg)"
    assert not re.search(external, html, re.I)
    blob = re.search(r'<script type="application/json" id="leaderboard-data">(.*?)</script>',
                     html, re.S).group(1)
    data = json.loads(blob)
    assert [m["id"] for m in data["models"]] == df.filter(pl.col("rank").is_not_null())[
        "model"].to_list()
    assert [s["key"] for s in data["superseded"]] == [V1]
    assert V1 not in data["scores"][TASK] and list(data["scores"]) == [TASK]
    entry = data["scores"][TASK]["gpt2@a41c2e9f07b3"]
    assert entry["curve"]["layers"] == ["embed", "block.0", "block.1", "block.2", "block.3"]
    chosen = entry["curve"]["layers"].index(entry["layer"])
    assert entry["curve"]["late"][chosen] == pytest.approx(
        results()[4]["scores"]["decodability"]["value"])
    assert entry["gain"] is None and entry["curve"]["causal"] is None


def test_a_store_of_superseded_results_only_builds_a_page_that_ranks_nothing(tmp_path):
    save(superseded(), tmp_path / "store" / "results")
    leaderboard.build(tmp_path / "store", tmp_path / "site")
    df = pl.read_parquet(tmp_path / "site" / "leaderboard.parquet")
    assert df["rank"].to_list() == [None] and df["schema"].to_list() == ["probekit.result/1"]
    data = leaderboard.page_data([superseded()])
    assert data["tasks"] == [] and data["models"] == [] and len(data["superseded"]) == 1
    if CHROMIUM.exists():
        with Browser(tmp_path) as b:
            shown = b.open(tmp_path / "site" / "index.html", 1280, 800).evaluate(
                "({errors: window.__errors, rows: document.querySelectorAll('#rows tr').length,"
                " empty: document.getElementById('empty').textContent,"
                " figures: getComputedStyle(document.querySelector('.figures')).display,"
                " open: document.getElementById('superseded').open,"
                " old: [...document.querySelectorAll('#superseded-rows tr')]"
                ".map((tr) => tr.dataset.model)})")
        assert shown == {"errors": [], "rows": 0, "figures": "none", "open": True, "old": [V1],
                         "empty": "No probekit.result/2 results yet; the superseded results "
                                  "below are not ranked."}


def test_an_empty_store_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="holds no results"):
        leaderboard.build(tmp_path / "empty", tmp_path / "site")


def test_the_page_escapes_text_it_inlines():
    r = make(model="org/</script><b>x")
    page = leaderboard.render(leaderboard.page_data([r]))
    assert "</script><b>" not in page and "org/\\u003c/script>\\u003cb>x" in page


# --- headless Chromium ------------------------------------------------------------------------

needs_chromium = pytest.mark.skipif(not CHROMIUM.exists(),
                                    reason="headless Chromium not installed at /usr/bin/chromium "
                                           "(apt-get install chromium)")

STATE = """(() => {
  const order = () => [...document.querySelectorAll("#rows tr")].map((tr) => tr.dataset.model);
  return {
    errors: window.__errors,
    resources: performance.getEntriesByType("resource").map((e) => e.name),
    order: order(),
    points: [...document.querySelectorAll("#scatter .point")].map((p) => {
      const r = p.getBoundingClientRect();
      return [p.dataset.model, (r.left + r.right) / 2, (r.top + r.bottom) / 2,
              p.classList.contains("no-gain")];
    }),
    curves: [...document.querySelectorAll("#curves path.curve")].map((p) => [p.dataset.series,
      p.getAttribute("d").split(/[ML]/).filter((x) => x.trim()).length]),
    bands: document.querySelectorAll("#curves polygon.band").length,
    unreachable: document.querySelectorAll("#curves text.unreachable").length,
    curve_model: document.getElementById("model").value,
    superseded: [...document.querySelectorAll("#superseded-rows tr")].map((tr) => tr.dataset.model),
    superseded_open: document.getElementById("superseded").open,
    families: [...document.querySelectorAll("#rows td.model .sub")].map((s) => s.textContent),
    hash: location.hash,
  };
})()"""


def click(selector: str) -> str:
    return f"document.querySelector({json.dumps(selector)}).click(), 0"


@needs_chromium
def test_page_offline_shows_every_model_sorts_on_click_and_draws_plots(site, tmp_path):
    rs = results()
    with Browser(tmp_path) as b:
        b.open(site / "index.html", 1280, 800)
        first = b.evaluate(STATE)
        b.evaluate(click('#head th[data-key="decodability"]'))
        desc = b.evaluate(STATE)
        aria = b.evaluate('document.querySelector(\'#head th[data-key="decodability"]\')'
                          '.getAttribute("aria-sort")')
        b.evaluate(click('#head th[data-key="decodability"]'))
        asc = b.evaluate(STATE)
        b.evaluate(click('#rows tr[data-model="gpt2@a41c2e9f07b3"]'))
        chosen = b.evaluate(STATE)
    assert first["errors"] == [] and first["resources"] == []
    assert sorted(first["order"]) == sorted(key(r) for r in rs)  # /1 not among them
    assert first["order"][0] == key(rs[2])  # best world-model score
    by_value = sorted(rs, key=lambda r: -r["scores"]["decodability"]["value"])
    assert desc["order"] == [key(r) for r in by_value] and aria == "descending"
    assert asc["order"] == [key(r) for r in reversed(by_value)]
    points = {model: (x, y, hollow) for model, x, y, hollow in first["points"]}
    assert set(points) == {key(r) for r in rs}
    assert {m for m, p in points.items() if p[2]} == {key(rs[3]), key(rs[4])}  # no causal gain
    x = {k: v[0] for k, v in points.items()}
    assert sorted(x, key=x.get) == [key(r) for r in reversed(by_value)]  # x is decodability
    gains = {key(r): r["scores"]["causality"]["gain"] for r in rs[:3]}
    y = {k: points[k][1] for k in gains}
    assert sorted(y, key=y.get) == sorted(gains, key=lambda k: -gains[k])  # up is more gain
    assert all(points[key(r)][1] > max(y.values()) for r in rs[3:])  # the "none" row is lowest
    # top model's curves: late decodability, twin, causal gain with its band, random control
    assert sorted(first["curves"]) == sorted([["late", 5], ["random_init", 5], ["gain", 4],
                                              ["random", 4]])
    assert first["bands"] == 1 and first["unreachable"] == 1  # block.3 cannot reach the readout
    assert chosen["curve_model"] == "gpt2@a41c2e9f07b3"
    assert [c[0] for c in chosen["curves"]] == ["random_init", "late"]  # no causal run
    assert "sort=decodability" in chosen["hash"] and "dir=asc" in chosen["hash"]
    assert first["superseded"] == [V1] and first["superseded_open"] is False
    assert "gpt2 (causal LM)" in " ".join(first["families"])
    assert "unknown" not in " ".join(first["families"])


@needs_chromium
def test_page_filters_by_family_from_the_url(site, tmp_path):
    with Browser(tmp_path) as b:
        report = b.open(site / "index.html", 1280, 800, fragment="#family=jepa").evaluate(STATE)
        arch = b.open(site / "index.html", 1280, 800,
                      fragment="#family=gpt2%20(causal%20LM)").evaluate(STATE)
    assert report["errors"] == []
    assert report["order"] == ["probekit/spectrum-jepa@a41c2e9f07b3"]
    assert [p[0] for p in report["points"]] == ["probekit/spectrum-jepa@a41c2e9f07b3"]
    assert arch["order"] == ["gpt2@a41c2e9f07b3"]


def test_untested_helper_gives_the_untested_verdict():
    r = untested(make())
    assert r["scores"]["verdict"] == "untested" and r["scores"]["world_model_score"] is None
    assert copy.deepcopy(r)["per_cell"] and not any(c["reachable"] for c in r["per_cell"])


@needs_chromium
def test_a_prediction_column_appears_only_once_a_result_has_the_axis(tmp_path):
    plain, predicted = make(model="org/a", prediction=False), make(model="org/b")
    predicted["scores"]["prediction"] = {"voe": 0.41, "ci95": [0.3, 0.5], "auroc": 0.7,
                                         "legal_top1": 0.9, "random_init": 0.1}
    assert leaderboard.table([plain, predicted])[f"{TASK}/prediction"].to_list() == [None, 0.41]
    heads = "[...document.querySelectorAll('#head th')].map((th) => th.dataset.key)"
    cells = ("[...document.querySelectorAll('#rows tr')].map((tr) => [tr.dataset.model, "
             "tr.children[[...document.querySelectorAll('#head th')].findIndex("
             "(th) => th.dataset.key === 'prediction')]?.textContent])")
    pages = {}
    for name, rs in (("without", [plain]), ("with", [plain, predicted])):
        pages[name] = tmp_path / f"{name}.html"
        pages[name].write_text(leaderboard.render(leaderboard.page_data(rs)))
    with Browser(tmp_path) as b:
        without = b.open(pages["without"], 1280, 800).evaluate(heads)
        b.open(pages["with"], 1280, 800)
        with_heads, with_cells = b.evaluate(heads), dict(b.evaluate(cells))
    assert "prediction" not in without and "prediction" in with_heads
    assert with_cells == {key(predicted): "0.41", key(plain): "—"}


@needs_chromium
def test_a_model_without_a_result_on_the_chosen_task_is_left_out_and_counted(tmp_path):
    here, other = make(model="org/here"), make(model="org/elsewhere")
    other["task"].update(name="s5", fingerprint="0123456789abcdef")
    other["run_id"] = run_id(other)
    page = tmp_path / "index.html"
    page.write_text(leaderboard.render(leaderboard.page_data([here, other])))
    with Browser(tmp_path) as b:
        shown = b.open(page, 1280, 800).evaluate(
            "({rows: [...document.querySelectorAll('#rows tr')].map((tr) => tr.dataset.model),"
            " note: document.getElementById('elsewhere').textContent,"
            " hidden: document.getElementById('elsewhere').hidden,"
            " errors: window.__errors})")
    assert shown["errors"] == [] and shown["rows"] == [key(here)]
    assert not shown["hidden"] and shown["note"].startswith("1 more model has no result on ")
