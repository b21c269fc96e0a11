"""`probekit tasks new` and task discovery from a user's own folder."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from probekit.authoring import new_task_spec
from probekit.cli import main
from probekit.errors import UnknownNameError
from probekit.tasks import load_task
from probekit.worlds import WORLDS


@pytest.mark.parametrize("world", WORLDS.names())
def test_new_spec_loads_with_every_knob_at_its_default(world: str, tmp_path: Path):
    (tmp_path / "fresh.yaml").write_text(new_task_spec("fresh", world))
    task = load_task("fresh", include=[tmp_path])
    world_cls = WORLDS.get(world)
    assert task.spec.knobs == {k.name: k.default for k in world_cls.knobs}
    assert {t.name for t in task.spec.targets} == {t.family for t in world_cls().targets()}
    assert (task.spec.counterfactual is not None) == bool(world_cls.counterfactual_knobs)
    assert (task.spec.violations is not None) == bool(world_cls.violation_knobs)
    if task.spec.violations is not None:
        assert task.spec.violations == {k.name: k.default for k in world_cls.violation_knobs}
        assert task.generate("train", 0, violation=True)[2] is not None
    else:  # the spec says why there are none
        reason = f"# no violations: {world_cls.no_violations}"
        assert reason in (tmp_path / "fresh.yaml").read_text()
    text = (tmp_path / "fresh.yaml").read_text()
    for k in world_cls.knobs:
        assert f"  {k.name}: " in text and k.range_text() in text
    assert list(task.splits)[:3] == ["train", "val", "test"]
    if "test_long" in task.splits:
        long, _ = task.generate("test_long", 0)
        short, _ = task.generate("train", 0)
        assert long.n_steps > short.n_steps


def test_tasks_new_writes_a_spec_and_card_stub_and_refuses_to_overwrite(tmp_path: Path,
                                                                         capsys):
    assert main(["tasks", "new", "my-boxes", "--world", "boxes", "--out", str(tmp_path)]) == 0
    assert f"probekit tasks show my-boxes --include-path {tmp_path}" in capsys.readouterr().out
    spec, stub = tmp_path / "my-boxes.yaml", tmp_path / "my-boxes.md"
    task = load_task("my-boxes", include=[tmp_path])
    assert dict(task.spec.splits["test_long"].knobs) == {"n_ops": 32}
    meta = yaml.safe_load(stub.read_text().split("---\n")[1])
    assert meta["pretty_name"] == "probekit my-boxes (v1)" and "dataset_info" not in meta
    assert "Stub written from the spec alone" in stub.read_text()
    before = spec.read_text(), stub.read_text()

    spec.write_text(before[0] + "# my edits\n")
    assert main(["tasks", "new", "my-boxes", "--world", "boxes", "--out", str(tmp_path)]) == 2
    assert "refusing to overwrite" in capsys.readouterr().err
    assert spec.read_text().endswith("# my edits\n") and stub.read_text() == before[1]


@pytest.mark.parametrize("args, message", [
    (["boxes", "--world", "boxes"], "task 'boxes' already exists"),
    (["mine", "--world", "boxs"], "did you mean 'boxes'"),
    (["my task", "--world", "boxes"], "must be letters, digits"),
])
def test_tasks_new_rejects_bad_input(args: list[str], message: str, tmp_path: Path, capsys):
    assert main(["tasks", "new", *args, "--out", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_a_name_yaml_would_misread_is_quoted(tmp_path: Path):
    (tmp_path / "2024.yaml").write_text(new_task_spec("2024", "boxes"))
    assert load_task("2024", include=[tmp_path]).name == "2024"


def test_user_task_found_through_include_path_and_environment(tmp_path: Path, monkeypatch,
                                                              capsys):
    mine = tmp_path / "mine"
    assert main(["tasks", "new", "small-boxes", "--world", "boxes", "--out", str(mine)]) == 0
    with pytest.raises(UnknownNameError):
        load_task("small-boxes")
    assert load_task("small-boxes", include=[mine]).path == mine / "small-boxes.yaml"
    monkeypatch.setenv("PROBEKIT_TASKS_PATH", str(mine))
    assert load_task("small-boxes").path == mine / "small-boxes.yaml"
    capsys.readouterr()
    assert main(["tasks", "show", "small-boxes"]) == 0
    assert "small-boxes v1" in capsys.readouterr().out
