"""`probekit leaderboard build`: the per-model table (polars, parquet) and the static page,
checked in headless Chromium: no network, every model row, sorting on a click, the plots."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import polars as pl
import pytest

from probekit import leaderboard
from probekit.cli import main
from probekit.errors import ResultError, UserError
from probekit.results import run_id, save
from tests.result_factory import make

CHROMIUM = Path("/usr/bin/chromium")
MODELS = [  # id, family, alpha, quality, iia
    ("probekit/spectrum-ntp", "ntp", 0.0, 1.0, 0.58),
    ("probekit/spectrum-mtp", "mtp", 0.25, 0.9, 0.41),
    ("probekit/spectrum-nextlat", "next-latent", 0.75, 0.95, 0.66),
    ("probekit/spectrum-jepa", "jepa", 1.0, 0.5, None),
    ("gpt2", None, None, 0.7, None),
]


def results() -> list[dict]:
    return [make(model=m, family=f, alpha=a, quality=q, gain=iia) for m, f, a, q, iia in MODELS]


@pytest.fixture
def site(tmp_path) -> Path:
    for r in results():
        save(r, tmp_path / "store" / "results")
    assert main(["leaderboard", "build", "--store", str(tmp_path / "store"),
                 "--out", str(tmp_path / "site")]) == 0
    return tmp_path / "site"


def test_table_has_one_row_per_model_with_per_task_columns():
    rs = results()
    other = make(model="probekit/spectrum-ntp", quality=0.6)
    other["task"].update(name="s5", fingerprint="0123456789abcdef")
    other["run_id"] = run_id(other)
    df = leaderboard.table([*rs, other])
    assert df.height == len(MODELS)
    assert {"boxes@v2/decodability", "boxes@v2/selectivity", "boxes@v2/iia",
            "boxes@v2/world_model_score", "s5@v2/decodability"} <= set(df.columns)
    ntp = df.row(by_predicate=pl.col("model") == "probekit/spectrum-ntp", named=True)
    assert ntp["s5@v2/decodability"] == pytest.approx(other["scores"]["decodability"]["value"])
    assert ntp["boxes@v2/iia"] == 0.58 and ntp["family"] == "ntp"
    assert df["model"][0] == "probekit/spectrum-nextlat"  # best world-model score first
    assert df.filter(pl.col("model") == "gpt2")["s5@v2/decodability"].to_list() == [None]


def test_one_task_version_with_two_fingerprints_becomes_two_tasks():
    a, b = make(model="org/a"), make(model="org/b")
    b["task"]["fingerprint"] = "0123456789abcdef"
    b["run_id"] = run_id(b)
    keys = leaderboard.task_keys([a, b])
    assert keys == [f"boxes@v2+{a['task']['fingerprint'][:8]}", "boxes@v2+01234567"]
    assert leaderboard.table([a, b]).filter(
        pl.col("model") == "org/a")[f"{keys[1]}/decodability"].to_list() == [None]


def test_the_same_model_and_task_twice_is_refused():
    with pytest.raises(ResultError, match="never merged"):
        leaderboard.records([make(seed=0), make(seed=1)])


def test_build_writes_parquet_and_a_self_contained_page(site):
    df = pl.read_parquet(site / "leaderboard.parquet")
    assert df.equals(leaderboard.table(results()))
    html = (site / "index.html").read_text()
    external = r"(src|href)\s*=|<link|@import|url\(|https?://(?!www\.w3\.org/2000/svg)"
    assert not re.search(external, html, re.I)
    blob = re.search(r'<script type="application/json" id="leaderboard-data">(.*?)</script>',
                     html, re.S).group(1)
    data = json.loads(blob)
    assert [m["id"] for m in data["models"]] == df["model"].to_list()
    curve = data["scores"]["boxes@v2"]["gpt2@a41c2e9f07b3"]["curve"]
    assert curve["layers"] == ["embed", "block.0", "block.1", "block.2"]
    chosen = curve["layers"].index(data["scores"]["boxes@v2"]["gpt2@a41c2e9f07b3"]["layer"])
    assert curve["test"][chosen] == pytest.approx(results()[4]["scores"]["decodability"]["value"])


def test_an_empty_store_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="holds no results"):
        leaderboard.build(tmp_path / "empty", tmp_path / "site")


def test_the_page_escapes_text_it_inlines():
    r = make(model="org/</script><b>x")
    page = leaderboard.render(leaderboard.page_data([r]))
    assert "</script><b>" not in page and "org/\\u003c/script>\\u003cb>x" in page


# --- headless Chromium ------------------------------------------------------------------------

REPORT = """
<script>
const report = { errors: window.__errors, resources: performance.getEntriesByType("resource")
  .map((e) => e.name) };
const order = () => [...document.querySelectorAll("#rows tr")].map((tr) => tr.dataset.model);
report.initial = order();
report.points = [...document.querySelectorAll("#scatter circle.point")]
  .map((c) => [c.dataset.model, Number(c.getAttribute("cx")), Number(c.getAttribute("cy"))]);
report.hollow = document.querySelectorAll("#scatter circle.point.no-iia").length;
report.curves = [...document.querySelectorAll("#curves path.curve")]
  .map((p) => [p.dataset.series, p.getAttribute("d").split(/[ML]/).filter((x) => x.trim()).length]);
document.querySelector('#head th[data-key="decodability"]').click();
report.decodability = order();
report.aria = document.querySelector('#head th[data-key="decodability"]').getAttribute("aria-sort");
document.querySelector('#head th[data-key="decodability"]').click();
report.decodability_asc = order();
document.querySelector('#rows tr[data-model="gpt2@a41c2e9f07b3"]')?.click();
report.curve_model = document.getElementById("model").value;
report.hash = location.hash;
const pre = document.createElement("pre");
pre.id = "test-report";
pre.textContent = JSON.stringify(report);
document.body.append(pre);
</script>
"""
ERRORS = ('<script>window.__errors = []; addEventListener("error", '
          '(e) => window.__errors.push(String(e.message)));</script>')


def chromium(page: Path, tmp_path: Path, fragment: str = "") -> dict:
    """Load `page` (with the test report script added) offline and return the report."""
    html = page.read_text()
    probe = page.with_name("probe.html")
    probe.write_text(html.replace("<head>", "<head>" + ERRORS, 1)
                     .replace("</body>", REPORT + "</body>", 1))
    out = subprocess.run(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-first-run", f"--user-data-dir={tmp_path / 'chromium'}",
         "--proxy-server=http://127.0.0.1:9", "--host-resolver-rules=MAP * ~NOTFOUND",
         "--dump-dom", probe.as_uri() + fragment],
        capture_output=True, text=True, timeout=60)
    found = re.search(r'<pre id="test-report">(.*?)</pre>', out.stdout, re.S)
    assert found, f"no report from Chromium: {out.stderr[-2000:]}"
    return json.loads(found.group(1).replace("&quot;", '"').replace("&lt;", "<")
                      .replace("&gt;", ">").replace("&amp;", "&"))


needs_chromium = pytest.mark.skipif(not CHROMIUM.exists(),
                                    reason="headless Chromium not installed at /usr/bin/chromium "
                                           "(apt-get install chromium)")


def key(r: dict) -> str:
    return f"{r['model']['id']}@{r['model']['revision']}"


@needs_chromium
def test_page_offline_shows_every_model_sorts_on_click_and_draws_plots(site, tmp_path):
    report = chromium(site / "index.html", tmp_path)
    assert report["errors"] == [] and report["resources"] == []
    rs = results()
    assert sorted(report["initial"]) == sorted(key(r) for r in rs)
    by_value = sorted(rs, key=lambda r: -r["scores"]["decodability"]["value"])
    assert report["decodability"] == [key(r) for r in by_value]
    assert report["aria"] == "descending"
    assert report["decodability_asc"] == [key(r) for r in reversed(by_value)]
    points = {model: (x, y) for model, x, y in report["points"]}
    assert set(points) == {key(r) for r in rs} and report["hollow"] == 2  # two without IIA
    x = {k: v[0] for k, v in points.items()}
    assert sorted(x, key=x.get) == [key(r) for r in reversed(by_value)]  # x is decodability
    assert all(0 < v < 520 for xy in points.values() for v in xy)
    assert report["curves"] == [["test", 4], ["control", 4], ["random_init", 4]]
    assert report["curve_model"] == "gpt2@a41c2e9f07b3"
    assert "sort=decodability" in report["hash"] and "dir=asc" in report["hash"]


@needs_chromium
def test_page_filters_by_spectrum_family_from_the_url(site, tmp_path):
    report = chromium(site / "index.html", tmp_path, "#family=jepa")
    assert report["errors"] == []
    assert report["initial"] == ["probekit/spectrum-jepa@a41c2e9f07b3"]
    assert [p[0] for p in report["points"]] == ["probekit/spectrum-jepa@a41c2e9f07b3"]
