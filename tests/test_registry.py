"""Task registry: strict specs, discovery through folders and the environment, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from probekit.errors import SpecError, UnknownNameError, UserError
from probekit.tasks import list_tasks, load_task
from tests.conftest import TINY_TASK


def write(folder: Path, name: str, **changes) -> Path:
    spec = yaml.safe_load(TINY_TASK)
    spec["name"] = name
    for key, value in changes.items():
        if value is None:
            spec.pop(key)
        else:
            spec[key] = value
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_builtin_task_loads_with_fingerprint():
    task = load_task("boxes")
    assert task.name == "boxes" and len(task.fingerprint) == 16
    assert {t.family for t in task.targets} == {"location", "count"}
    assert "boxes" in list_tasks()


def test_unknown_task_suggests_closest():
    with pytest.raises(UnknownNameError, match="did you mean 'boxes'"):
        load_task("boxs")


def test_include_path_and_environment(tmp_path, monkeypatch):
    write(tmp_path, "mine")
    assert load_task("mine", [tmp_path]).spec.knobs["n_boxes"] == 3
    with pytest.raises(UnknownNameError):
        load_task("mine")
    monkeypatch.setenv("PROBEKIT_TASKS_PATH", str(tmp_path))
    assert "mine" in list_tasks()


def test_fingerprint_ignores_prose_but_not_knobs(tmp_path):
    def fingerprint(sub: str, **changes) -> str:
        (tmp_path / sub).mkdir()
        write(tmp_path / sub, "t1", **changes)
        return load_task("t1", [tmp_path / sub]).fingerprint

    plain = fingerprint("a")
    assert fingerprint("b", description="other words") == plain
    assert fingerprint("c", knobs={"n_boxes": 4, "n_objects": 3, "n_ops": 5}) != plain


@pytest.mark.parametrize("changes, message", [
    ({"colour": "red"}, r"unknown field 'colour'"),
    ({"version": "one"}, r"\.version: expected int"),
    ({"knobs": {"n_boxes": 0}}, r"knobs\.n_boxes: 0 is out of range; valid range \[2, 10\]"),
    ({"knobs": {"n_box": 3}}, r"unknown knob 'n_box'; valid knobs: .*n_boxes"),
    ({"knobs": {"n_ops": -1}}, r"n_ops: -1 is out of range"),
    ({"knobs": {"n_boxes": True}}, r"n_boxes: expected int"),
    ({"splits": {"train": {"size": 5, "seed": 1}, "val": {"size": 5, "seed": 1}}},
     r"missing split 'test'"),
    ({"targets": [{"name": "colour", "kind": "class"}]}, r"target 'colour' is not provided"),
    ({"targets": [{"name": "location", "kind": "regress"}]}, r"is kind 'class', not 'regress'"),
    ({"control": {"feature": "nope"}}, r"control\.feature: 'nope' is not valid"),
    ({"world": "boxez"}, r"unknown world 'boxez': did you mean 'boxes'"),
    ({"license": None}, r"missing required field 'license'"),
])
def test_bad_specs_name_the_field(tmp_path, changes, message):
    write(tmp_path, "bad", **changes)
    with pytest.raises(UserError, match=message):
        load_task("bad", [tmp_path])


def test_malformed_yaml_and_name_mismatch(tmp_path):
    (tmp_path / "broken.yaml").write_text("name: [unclosed\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_task("broken", [tmp_path])
    path = write(tmp_path, "other")
    path.rename(tmp_path / "renamed.yaml")
    with pytest.raises(SpecError, match="must match the file name"):
        load_task("renamed", [tmp_path])


def test_missing_include_folder(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_task("boxes", [tmp_path / "nowhere"])


def test_invalid_spec_caches_nothing(tmp_path):
    from probekit.tasks import cache_root

    before = set(cache_root().rglob("*")) if cache_root().exists() else set()
    write(tmp_path, "bad", knobs={"n_boxes": 99})
    with pytest.raises(SpecError):
        load_task("bad", [tmp_path]).dataset("train")
    after = set(cache_root().rglob("*")) if cache_root().exists() else set()
    assert after == before


def test_dataset_is_cached_and_identical(tiny_task_dir):
    task = load_task("boxes-tiny", [tiny_task_dir])
    ds = task.dataset("val")
    assert len(ds) == 80 and ds[0]["text"] == task.generate("val", 0)[0].text
    assert task.dataset("val")[:] == ds[:]
    pairs = task.pairs("val")
    assert 0 < len(pairs) <= 80
    with pytest.raises(UserError, match="has no split 'dev'"):
        task.dataset("dev")
