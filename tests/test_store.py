"""`probekit submit` into a local store: layout, all-or-nothing validation, run identities."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from probekit import store
from probekit.cli import main
from probekit.errors import ResultError
from probekit.io import write_json
from probekit.record import run_id
from tests.result_factory import example, make

STORED = Path("results/probekit__spectrum-ntp/a41c2e9f07b3/boxes.json")


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file of a store but its lock file (written by every filing)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != store.LOCK_FILE} if root.exists() else {}


def write(folder: Path, name: str, result: dict) -> Path:
    return write_json(folder / name, result)


def test_submit_files_results_in_the_store_layout(tmp_path, capsys):
    a = write(tmp_path / "in", "a.json", make())
    b = write(tmp_path / "in", "b.json", make(model="org/other", revision="v2", family="jepa"))
    assert main(["submit", str(a), str(b), "--store", str(tmp_path / "s")]) == 0
    assert snapshot(tmp_path / "s") == {
        str(STORED): store.encode(make()),
        "results/org__other/v2/boxes.json": store.encode(make(model="org/other", revision="v2",
                                                              family="jepa")),
    }
    assert "filed 2 result(s)" in capsys.readouterr().out
    assert [r["model"]["id"] for r in store.Store(tmp_path / "s").results()] == [
        "org/other", "probekit/spectrum-ntp"]


def test_a_folder_argument_submits_every_result_in_it(tmp_path):
    for i in range(3):
        write(tmp_path / "in" / f"m{i}", "boxes.json", make(model=f"org/m{i}"))
    assert main(["submit", str(tmp_path / "in"), "--store", str(tmp_path / "s")]) == 0
    assert len(store.Store(tmp_path / "s").files()) == 3


def test_default_store_is_embedded_and_overridable(tmp_path, monkeypatch):
    monkeypatch.delenv("PROBEKIT_STORE", raising=False)
    monkeypatch.setenv("PROBEKIT_CACHE", str(tmp_path / "cache"))
    assert store.default_root() == tmp_path / "cache" / "store"
    monkeypatch.setenv("PROBEKIT_STORE", str(tmp_path / "elsewhere"))
    assert main(["submit", str(write(tmp_path, "r.json", make()))]) == 0
    assert (tmp_path / "elsewhere" / STORED).is_file()


def test_dry_run_writes_nothing(tmp_path, capsys):
    r = write(tmp_path, "r.json", make())
    assert main(["submit", str(r), "--store", str(tmp_path / "s"), "--dry-run"]) == 0
    assert f"would add {tmp_path / 's' / STORED}" in capsys.readouterr().out
    assert not (tmp_path / "s").exists()


def _bad(kind: str) -> str:
    r = example()
    if kind == "schema version":
        r["schema"] = "probekit.result/0"
    elif kind == "missing field":
        del r["task"]["n_test"]
    elif kind == "fingerprint":
        r["task"]["fingerprint"] = "ffffffffffffffff"
        r["run_id"] = run_id(r)
    elif kind == "per_layer":
        r["per_layer"][0]["test"] = 0.31
        r["scores"]["decodability"]["layer"] = "embed"
        r["run_id"] = run_id(r)
    elif kind == "escape":
        r["model"]["id"] = "../../x"
    text = json.dumps(r, indent=2)
    score = json.dumps(r["scores"]["world_model_score"])
    return text.replace(f'"world_model_score": {score}', '"world_model_score": NaN') \
        if kind == "NaN" else text


REJECTED = {"schema version": "schema 'probekit.result/0' is not supported",
            "missing field": "'n_test' is a required property",
            "NaN": "not valid JSON (NaN is not a number JSON allows",
            "fingerprint": "does not match boxes v3 here",
            "per_layer": "decodability.value is",
            "escape": "model id '../../x' cannot be used as a file name"}


@pytest.mark.parametrize("kind", REJECTED)
def test_one_bad_file_rejects_the_whole_submission_and_leaves_the_store_unchanged(
        tmp_path, capsys, kind):
    root = tmp_path / "s"
    assert main(["submit", str(write(tmp_path, "old.json", make(model="org/old"))),
                 "--store", str(root)]) == 0
    before = snapshot(root)
    good = write(tmp_path, "good.json", make(model="org/new"))
    bad = tmp_path / "bad.json"
    bad.write_text(_bad(kind))
    capsys.readouterr()
    assert main(["submit", str(good), str(bad), "--store", str(root)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"probekit: error: {bad}: ") and REJECTED[kind] in err
    assert "\n" not in err
    assert snapshot(root) == before


def test_a_different_run_needs_replace(tmp_path, capsys):
    root = tmp_path / "s"
    first, second = make(seed=0), make(seed=1)
    assert first["run_id"] != second["run_id"]
    assert main(["submit", str(write(tmp_path, "a.json", first)), "--store", str(root)]) == 0
    assert main(["submit", str(write(tmp_path, "a.json", first)), "--store", str(root)]) == 0
    assert "keep (same run)" in capsys.readouterr().out
    path = write(tmp_path, "b.json", second)
    assert main(["submit", str(path), "--store", str(root)]) == 2
    assert f"already holds run {first['run_id']}" in capsys.readouterr().err
    assert json.loads((root / STORED).read_text())["run_id"] == first["run_id"]
    assert main(["submit", str(path), "--store", str(root), "--replace"]) == 0
    assert json.loads((root / STORED).read_text())["run_id"] == second["run_id"]


def _unregistered(fingerprint: str, model: str) -> dict:
    r = make(model=model)
    r["task"].update(name="maze", fingerprint=fingerprint)
    r["run_id"] = run_id(r)
    return r


def test_one_task_version_keeps_one_fingerprint(tmp_path, capsys):
    root = tmp_path / "s"
    a = write(tmp_path, "a.json", _unregistered("aaaaaaaaaaaaaaaa", "org/a"))
    assert main(["submit", str(a), "--store", str(root)]) == 2
    assert "--allow-unregistered" in capsys.readouterr().err
    assert main(["submit", str(a), "--store", str(root), "--allow-unregistered"]) == 0
    b = write(tmp_path, "b.json", _unregistered("bbbbbbbbbbbbbbbb", "org/b"))
    assert main(["submit", str(b), "--store", str(root), "--allow-unregistered"]) == 2
    assert "task maze v3 has results with fingerprints" in capsys.readouterr().err
    assert len(store.Store(root).files()) == 1


def test_two_results_for_one_store_path_are_refused(tmp_path):
    a = write(tmp_path, "a.json", make(seed=0))
    b = write(tmp_path, "b.json", make(seed=1))
    with pytest.raises(ResultError, match=f"{b} and {a} both file as {STORED}"):
        store.read([a, b])


def test_flags_that_need_the_hub_need_repo(tmp_path, capsys):
    r = str(write(tmp_path, "r.json", make()))
    assert main(["submit", r, "--model-pr"]) == 2
    assert "add --repo" in capsys.readouterr().err
    assert main(["submit", r, "--repo", "org/board", "--store", str(tmp_path)]) == 2


def test_missing_file_and_empty_folder_are_user_errors(tmp_path, capsys):
    assert main(["submit", str(tmp_path / "nope.json")]) == 2
    (tmp_path / "empty").mkdir()
    assert main(["submit", str(tmp_path / "empty")]) == 2
    assert "holds no *.json" in capsys.readouterr().err



def test_a_file_that_changed_after_the_plan_is_not_overwritten(tmp_path):
    """Compare-and-swap: a writer that bypassed the lock (or a hand edit) between plan and
    write makes the whole batch fail; neither its file nor the batch's other files change."""
    from probekit.errors import StorageError

    s = store.Store(tmp_path / "s")
    first, other = make(model="org/a"), make(model="org/b")
    plan = s.plan([first, other])
    sneaky = tmp_path / "s" / store.path_in_store(make(model="org/a", seed=3))
    write(sneaky.parent, sneaky.name, make(model="org/a", seed=3))
    with pytest.raises(StorageError, match="changed after it was planned .no file was there"):
        s.add(plan)
    assert [r["run_id"] for r in s.results()] == [make(model="org/a", seed=3)["run_id"]]
    replace = s.plan([make(model="org/a", seed=4)], replace=True)
    write(sneaky.parent, sneaky.name, make(model="org/a", seed=5))
    with pytest.raises(StorageError, match="another result was there then"):
        s.add(replace)
    assert [r["run_id"] for r in s.results()] == [make(model="org/a", seed=5)["run_id"]]


def test_a_file_system_without_hard_links_still_files(tmp_path, monkeypatch):
    import errno
    import os

    def no_links(src, dst):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    a = write(tmp_path, "a.json", make())
    assert main(["submit", str(a), "--store", str(tmp_path / "s")]) == 0
    assert store.Store(tmp_path / "s").results() == [make()]
    assert not [p for p in (tmp_path / "s").rglob(".*.tmp")]


def test_store_paths_read_back_as_their_identity():
    from probekit.results import identity_of_path, model_dirname

    for model in ("org/m", "org/x__y", "gpt2", "o.rg/m-1", "local/tiny"):
        result = make(model=model, revision="v1.0")
        assert identity_of_path(store.path_in_store(result)) == (model, "v1.0", "boxes")
    assert model_dirname("gpt2") == "gpt2" and model_dirname("local/tiny") == "local__tiny"
    for model in ("a__b/c", "a_/b", "x__y", "a/b/c", "", "org/", "/m"):
        with pytest.raises(ResultError):
            model_dirname(model)
