"""End to end: a tiny random GPT-2 built here, evaluated through the API and the CLI on every
axis (result/2)."""

from __future__ import annotations

import json

import polars as pl
import pytest

import probekit
from probekit.cli import main
from probekit import record, schema
from probekit.record import SCHEMA, run_id


@pytest.fixture(scope="module")
def report(tiny_gpt2, tiny_task_dir):
    return probekit.evaluate(tiny_gpt2, tasks=["boxes-tiny"], include=[tiny_task_dir],
                             device="cpu", progress=False)


def test_result_record(report, tiny_task_dir):
    (r,) = report.results
    assert r["schema"] == SCHEMA and r["run_id"] == run_id(r)
    assert r["model"]["adapter"] == "hf" and r["model"]["n_params"] > 0
    assert (r["model"]["width"], r["model"]["depth"]) == (32, 2)  # GPT-2's n_embd, n_layer
    assert r["task"]["n_train"] == 240 and r["task"]["n_test"] == 80
    assert r["task"]["fingerprint"] == probekit.load_task("boxes-tiny", [tiny_task_dir]).fingerprint
    d = r["scores"]["decodability"]
    assert d["layer"] in ("embed", "block.0", "block.1")
    assert d["ci95"][0] <= d["value"] <= d["ci95"][1]
    assert d["selectivity"] == pytest.approx(d["value"] - d["control"])
    assert d["random_init"] is not None and d["mdl"]["compression"] > 0
    late = [x for x in r["per_layer"] if x["layer"] == d["layer"] and x["depth"] == "q4"]
    assert len(late) == 3  # one per object
    norm = [(x["test"] - x["chance"]) / (1 - x["chance"]) for x in late]
    assert d["value"] == pytest.approx(sum(norm) / len(norm))
    assert d["pooled"] == pytest.approx(record.layer_mean(r["per_layer"], d["layer"], "test",
                                                          "all"))
    # causal probes ran on the pairs: a random model is neither; its ceiling still holds
    assert r["per_cell"] and r["causal"]["ceiling"]["max_abs_diff"] < 1e-3
    assert r["scores"]["verdict"] in ("neither", "untested", "decodable-not-causal")
    schema.validate(r)


def test_table_and_save(report, tmp_path):
    assert isinstance(report.table, pl.DataFrame)
    assert set(report.table.columns) >= {"model", "task", "layer", "target", "test", "control"}
    assert report.table.height == 3 * 3 * 6  # layers × targets × depths
    assert report.cells.height == len(report.results[0]["per_cell"])
    (path,) = report.save(tmp_path)
    assert path.relative_to(tmp_path).parts[0] == "local__tiny-gpt2"
    assert path.name == "boxes-tiny.json" and path.with_suffix(".depth.png").stat().st_size
    assert path.with_suffix(".causal.png").stat().st_size
    assert json.loads(path.read_text()) == report.results[0]
    assert "decodability" in str(report)


def test_same_seed_same_scores(report, tiny_gpt2, tiny_task_dir):
    again = probekit.evaluate(tiny_gpt2, tasks=["boxes-tiny"], include=[tiny_task_dir],
                              device="cpu", progress=False)
    a, b = report.results[0], again.results[0]
    assert a["run_id"] == b["run_id"]
    assert a["scores"] == b["scores"] and a["per_layer"] == b["per_layer"]


def test_cli_eval_writes_results(tiny_gpt2, tiny_task_dir, tmp_path, capsys):
    code = main(["eval", str(tiny_gpt2), "--tasks", "boxes-tiny", "--include-path",
                 str(tiny_task_dir), "--out", str(tmp_path), "--layers", "block.1",
                 "--device", "cpu"])
    assert code == 0
    (path,) = tmp_path.rglob("*.json")
    result = json.loads(path.read_text())
    assert {r["layer"] for r in result["per_layer"]} == {"block.1"}
    assert "wrote" in capsys.readouterr().out
