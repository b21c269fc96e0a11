"""The leaderboard page as a reader sees it, in headless Chromium at a laptop screen (1280 × 800)
and a phone (390 × 844), on a realistic store (31 ranked models of twelve families, one
superseded /1 result; tests/leaderboard_fixtures.py): the table fits the laptop's width with
every main column in view, legends lie outside the plots, scatter labels overlap neither points
nor each other, every model has a family label, and the /1 result is listed apart, unranked.
Geometry comes from the DOM (getBoundingClientRect of table cells, SVG marks and labels)."""

from __future__ import annotations

from pathlib import Path

import pytest

from probekit import leaderboard, schema
from tests.leaderboard_fixtures import CHROMIUM, Browser, realistic

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason="headless Chromium not installed at /usr/bin/chromium "
                                       "(apt-get install chromium)")

SIZES = {"laptop": (1280, 800, False), "phone": (390, 844, True)}
MAIN_COLUMNS = ("rank", "model", "world_model_score", "verdict", "decodability", "pooled",
                "random_init", "mdl", "layer", "gain", "random_control", "site")

GEOMETRY = """(() => {
  const box = (e) => { const r = e.getBoundingClientRect();
                       return [r.left, r.top, r.right, r.bottom]; };
  const all = (s) => [...document.querySelectorAll(s)];
  const scroll = document.getElementById("board-scroll");
  const figure = (id) => ({ svg: box(document.getElementById(id)),
    plot: box(document.querySelector(`#${id} .plot-area`)),
    legend: box(document.getElementById(`${id}-legend`)),
    items: all(`#${id}-legend li`).map((li) => li.textContent) });
  const details = document.getElementById("superseded");
  return {
    errors: window.__errors,
    viewport: [innerWidth, innerHeight], clientWidth: document.documentElement.clientWidth,
    pageWidth: document.documentElement.scrollWidth,
    table: { scrollWidth: scroll.scrollWidth, clientWidth: scroll.clientWidth,
             box: box(document.getElementById("board")),
             heads: all("#head th").map((th) => [th.dataset.key, box(th)]) },
    hint: !document.getElementById("scroll-hint").hidden,
    rows: all("#rows tr").map((tr) => [tr.dataset.model,
      tr.querySelector("td.rank").textContent, tr.querySelector("td.model .sub").textContent]),
    scatter: figure("scatter"), curves: figure("curves"),
    points: all("#scatter .point").map((p) => [p.dataset.model, box(p)]),
    labels: all("#scatter text.label").map((t) => [t.dataset.model, box(t), t.textContent]),
    selected: document.getElementById("model").value,
    series: all("#curves path.curve").map((p) => p.dataset.series),
    superseded: { hidden: details.hidden, open: details.open, box: box(details),
                  summary: details.querySelector("summary").textContent,
                  heads: all("#superseded-table th").map((th) => th.textContent),
                  rows: all("#superseded-rows tr").map((tr) => tr.dataset.model) },
  };
})()"""


@pytest.fixture(scope="module")
def store_results() -> list[dict]:
    return realistic()


@pytest.fixture(scope="module")
def pages(store_results, tmp_path_factory) -> dict[str, dict]:
    """The page's geometry at each size in SIZES."""
    tmp = tmp_path_factory.mktemp("layout")
    page = tmp / "index.html"
    page.write_text(leaderboard.render(leaderboard.page_data(store_results)))
    out = {}
    with Browser(tmp) as browser:
        for name, (width, height, mobile) in SIZES.items():
            out[name] = browser.open(page, width, height, mobile=mobile).evaluate(GEOMETRY)
    return out


def overlap(a: list[float], b: list[float], tol: float = 0.5) -> bool:
    """Boxes [left, top, right, bottom] share more than a hairline."""
    return (min(a[2], b[2]) - max(a[0], b[0]) > tol) and (min(a[3], b[3]) - max(a[1], b[1]) > tol)


def inside(a: list[float], b: list[float], tol: float = 0.5) -> bool:
    return a[0] >= b[0] - tol and a[1] >= b[1] - tol and a[2] <= b[2] + tol and a[3] <= b[3] + tol


def test_the_realistic_store_is_valid_and_varied(store_results):
    ranked = [r for r in store_results if r["schema"] == "probekit.result/2"]
    assert len(ranked) == 31 and len(store_results) == 32
    assert {r["scores"]["verdict"] for r in ranked} == {"causal", "decodable-not-causal",
                                                          "neither", "untested", None}
    assert len({leaderboard.family_label(r["model"]) for r in ranked}) >= 12
    picks = [store_results[i] for i in (0, 5, 12, 16, 30, 31)]  # kinds: spectrum, no causal,
    for r in picks:                                               # untested, hf, bare adapter, /1
        schema.validate(r, r["model"]["id"])


@pytest.mark.parametrize("size", SIZES)
def test_no_page_errors_and_no_sideways_scroll_of_the_page(pages, size):
    g = pages[size]
    assert g["errors"] == []
    assert g["viewport"][0] == SIZES[size][0]
    assert g["pageWidth"] <= g["viewport"][0]  # wide content scrolls inside its own box
    for fig in ("scatter", "curves"):
        assert g[fig]["svg"][2] <= g["clientWidth"] and g[fig]["svg"][0] >= 0


def test_the_table_fits_a_laptop_screen(pages):
    g = pages["laptop"]
    table = g["table"]
    assert table["scrollWidth"] <= table["clientWidth"], "the table scrolls sideways at 1280 px"
    assert table["box"][2] <= g["clientWidth"]
    heads = dict(table["heads"])
    assert set(MAIN_COLUMNS) <= set(heads)
    for column in MAIN_COLUMNS:
        assert heads[column][2] <= g["clientWidth"], f"{column} is cut off at 1280 px"
    assert not g["hint"]


def test_on_a_phone_the_table_scrolls_in_its_box_and_says_so(pages):
    g = pages["phone"]
    assert g["table"]["scrollWidth"] > g["table"]["clientWidth"] and g["hint"]
    assert g["table"]["clientWidth"] <= g["clientWidth"]


@pytest.mark.parametrize("size", SIZES)
def test_legends_lie_outside_the_plot_area(pages, size):
    g = pages[size]
    for fig in ("scatter", "curves"):
        plot, legend = g[fig]["plot"], g[fig]["legend"]
        assert legend[3] - legend[1] > 10 and g[fig]["items"], f"{fig}: no legend"
        assert not overlap(plot, legend, tol=0), f"{fig}: the legend overlaps the plot"
        assert legend[0] >= 0 and legend[2] <= g["clientWidth"]
    families = [i for i in g["scatter"]["items"] if "(" in i or i in ("ntp", "jepa")]
    assert "gpt2 (causal LM)" in families and "bert (encoder)" in families


@pytest.mark.parametrize("size", SIZES)
def test_scatter_labels_overlap_no_point_and_no_other_label(pages, size):
    g = pages[size]
    points, labels = g["points"], g["labels"]
    assert len(points) == 31
    assert len(labels) >= (15 if size == "laptop" else 6), "too few labels placed"
    plot = g["scatter"]["plot"]
    for i, (model, a, text) in enumerate(labels):
        assert inside(a, plot), f"label {text!r} leaves the plot"
        for other, b, other_text in labels[i + 1:]:
            assert not overlap(a, b), f"labels {text!r} and {other_text!r} overlap"
        for owner, p in points:
            assert not overlap(a, p), f"label {text!r} covers the point of {owner}"
    by_model = {model: box for model, box, _ in labels}
    assert g["selected"] in by_model, "the selected model has no label"
    own = dict(points)[g["selected"]]
    label = by_model[g["selected"]]
    gap = max(label[0] - own[2], own[0] - label[2], label[1] - own[3], own[1] - label[3])
    assert gap < 60, "the selected model's label is far from its point"


@pytest.mark.parametrize("size", SIZES)
def test_every_ranked_model_has_a_family_label_and_result_1_is_not_ranked(pages, size,
                                                                         store_results):
    g = pages[size]
    ranked = [r for r in store_results if r["schema"] == "probekit.result/2"]
    old = [r for r in store_results if r["schema"] != "probekit.result/2"]
    keys = {f"{r['model']['id']}@{r['model']['revision']}": r for r in ranked}
    rows = g["rows"]
    assert sorted(m for m, _, _ in rows) == sorted(keys)
    assert [rank for _, rank, _ in rows] == [str(i) for i in range(1, 32)]
    for model, _, sub in rows:
        assert sub.startswith(leaderboard.family_label(keys[model]["model"]))
        assert "unknown" not in sub
        m = keys[model]["model"]
        if m.get("width") and m.get("depth"):  # the backbone beside the parameters
            assert f" · {m['width']} × {m['depth']} · " in sub, sub
    old_keys = [f"{r['model']['id']}@{r['model']['revision']}" for r in old]
    assert not set(old_keys) & {m for m, _, _ in rows}
    assert not set(old_keys) & {m for m, _ in g["points"]}
    s = g["superseded"]
    assert not s["hidden"] and not s["open"] and "not ranked" in s["summary"]
    assert s["rows"] == old_keys and "#" not in s["heads"]
    assert s["box"][1] > g["table"]["box"][3]  # below the ranking, apart from it


@pytest.mark.parametrize("size", SIZES)
def test_per_layer_curves_show_decodability_twin_and_causal_gain(pages, size):
    g = pages[size]
    assert {"late", "random_init", "gain", "random"} <= set(g["series"])
    items = " | ".join(g["curves"]["items"])
    assert "95% interval" in items and "random-init twin" in items and "causal gain" in items
