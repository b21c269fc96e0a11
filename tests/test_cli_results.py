"""`probekit results list|show`, `probekit models list`, `submit` and `leaderboard build`
naming the store they use, a readable `tasks show` (issue 15)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from probekit import results as layout
from probekit.cli import main
from probekit.io import write_json
from tests.result_factory import example_v1, make


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """An `eval --out` folder with two /2 results and a superseded /1 one."""
    out = tmp_path / "results"
    layout.save(make(), out)
    layout.save(make(model="org/jepa", revision="v2", family="jepa", alpha=1.0, gain=None,
                     quality=0.5), out)
    v1 = example_v1()
    write_json(out / "old" / "boxes.json", v1)  # listed wherever it lies
    return out


def test_results_list_makes_one_row_per_result(folder, capsys):
    assert main(["results", "list", str(folder)]) == 0
    out = lines(capsys.readouterr().out)
    assert out[0] == f"3 result(s) in {folder} (normalised scores: chance 0, perfect 1)"
    header = out[1].split()
    assert header[:3] == ["model", "revision", "task"] and "verdict" in header
    body = out[3:]
    assert len(body) == 3
    row = next(r for r in body if r.startswith("org/jepa"))
    assert " v2 " in row and " boxes " in row and "—" in row  # no causal gain: causal not run
    (old,) = [r for r in body if "old/boxes.json" in r]
    assert "superseded schema probekit.result/1" in old and "IIA " in old, old
    ntp = next(r for r in body if r.startswith("probekit/spectrum-ntp") and r != old)
    assert "0.580 [0.53, 0.63]" in ntp, ntp  # the causal gain with its interval


def test_results_list_reads_a_store_and_skips_a_bad_file(folder, tmp_path, capsys,
                                                         monkeypatch):
    store = tmp_path / "store"
    assert main(["submit", str(folder / "probekit__spectrum-ntp"), "--store", str(store)]) == 0
    (store / "results" / "broken.json").write_text("{")
    capsys.readouterr()
    monkeypatch.setenv("PROBEKIT_STORE", str(store))
    assert main(["results", "list", "--store"]) == 0
    captured = capsys.readouterr()
    assert lines(captured.out)[0] == f"1 result(s) in {store} (normalised scores: chance 0, " \
                                     "perfect 1)"
    (warning,) = lines(captured.err)
    assert warning.startswith("probekit: warning: skipped ") and "broken.json" in warning


def test_results_list_of_nothing(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["results", "list", str(tmp_path / "empty")]) == 0
    assert capsys.readouterr().out.strip() == f"no results in {tmp_path / 'empty'}"
    assert main(["results", "list", str(tmp_path / "nope")]) == 2
    (line,) = lines(capsys.readouterr().err)
    assert "results folder" in line and "does not exist" in line


def test_results_show_prints_the_summary_and_the_tables(folder, capsys):
    (path,) = (folder / "probekit__spectrum-ntp").rglob("*.json")
    assert main(["results", "show", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("probekit/spectrum-ntp @ a41c2e9f07b3 on boxes v")
    assert "ntp a=0, 4 blocks × 64, 237,120 parameters" in out  # the shape the result records
    for needle in ("scores (normalised: chance 0, perfect 1)", "decodability (late steps)",
                   "causal gain                   0.580 [0.53, 0.63] at ",
                   "world-model score", "verdict",
                   "decodability by layer and depth (test; * the layer chosen on val)",
                   "causal cells (test;"):
        assert needle in out, (needle, out)
    layer_rows = [x for x in lines(out) if x.startswith(("embed", "block."))]
    assert sum(" * " in x or x.split()[0].endswith("*") or " *" in x[:12]
               for x in layer_rows) >= 1
    assert main(["results", "show", str(folder)]) == 2
    assert "is a folder" in capsys.readouterr().err


def test_models_list_shows_shipped_and_cached_models(tmp_path, capsys, monkeypatch):
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    snap = cache / "models--some-org--tiny" / "snapshots" / ("a" * 40)
    snap.mkdir(parents=True)
    (snap / "config.json").write_text("{}")
    (cache / "models--some-org--tiny" / "refs").mkdir()
    (cache / "models--some-org--tiny" / "refs" / "main").write_text("a" * 40)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert "boxes-gpt2-tiny" in out and "gpt2, 4 blocks × 64" in out and "boxes, 12000 steps" \
        in out
    assert "spectrum-boxes-a0.5" in out and "next-latent a=0.5" in out
    assert "in the Hugging Face cache (1, " in out
    assert any(x.startswith("some-org/tiny") and "main" in x for x in lines(out)), out
    assert main(["models", "list", "--shipped"]) == 0
    assert "Hugging Face cache" not in capsys.readouterr().out
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "none"))
    assert main(["models", "list"]) == 0
    assert "no models in the Hugging Face cache" in capsys.readouterr().out


def test_submit_without_store_says_where_it_files(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("PROBEKIT_STORE", raising=False)
    monkeypatch.setenv("PROBEKIT_CACHE", str(tmp_path / "cache"))
    r = str(write_json(tmp_path / "r.json", make()))
    assert main(["submit", r, "--dry-run"]) == 0
    first = lines(capsys.readouterr().out)[0]
    assert first == (f"would file into the default store in the probekit cache, "
                     f"{tmp_path / 'cache' / 'store'} (pass --store DIR to file elsewhere)")
    monkeypatch.setenv("PROBEKIT_STORE", str(tmp_path / "mine"))
    assert main(["submit", r]) == 0
    out = lines(capsys.readouterr().out)
    assert out[0] == (f"filing into the store set by PROBEKIT_STORE, {tmp_path / 'mine'} "
                      "(pass --store DIR to file elsewhere)")
    assert out[-1] == f"filed 1 result(s) in {tmp_path / 'mine'}"
    assert main(["submit", r, "--store", str(tmp_path / "given")]) == 0
    assert "filing into" not in capsys.readouterr().out  # the user named it


def test_leaderboard_build_says_which_store_it_reads(tmp_path, capsys, monkeypatch):
    store = tmp_path / "mine"
    monkeypatch.setenv("PROBEKIT_STORE", str(store))
    assert main(["submit", str(write_json(tmp_path / "r.json", make()))]) == 0
    capsys.readouterr()
    assert main(["leaderboard", "build", "--out", str(tmp_path / "site")]) == 0
    out = lines(capsys.readouterr().out)
    assert out[0] == f"reading the store set by PROBEKIT_STORE, {store} (pass --store DIR to " \
                     "read another)"


def test_tasks_show_is_readable(capsys, monkeypatch):
    from probekit.cli.tasks import show_text
    from probekit.tasks import load_task

    assert main(["tasks", "show", "boxes"]) == 0
    out = capsys.readouterr().out
    assert "- - " not in out and "null" not in out
    assert "- name: location\n  kind: class\n  columns: [location.obj0, location.obj1, " \
           "location.obj2, location.obj3]" in out
    assert "  train: {size: 2000, seed: 1}" in out
    assert out.index("train:") < out.index("val:") < out.index("test:")  # the spec's order
    assert lines(out)[-1].startswith("  ") and "description: Entity tracking" in out
    task = load_task("boxes")
    task.spec = dataclasses.replace(task.spec, knobs={**task.spec.knobs, "label": "clé ü"})
    assert "label: clé ü" in show_text(task)  # not "\xE9"
