"""Third-party worlds and tasks through the `probekit.tasks` entry-point group, using the example
package in tests/plugin_example as if it were pip-installed."""

from __future__ import annotations

import sys
import tomllib
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest

from probekit.cli import main
from probekit.data import card
from probekit.errors import UserError
from probekit.tasks import ENTRY_POINT_GROUP, list_tasks, load_task
from probekit.worlds import WORLDS

PLUGIN = Path(__file__).resolve().parent / "plugin_example"


def install(site: Path, monkeypatch, entry_points: dict[str, str]) -> None:
    """What pip leaves behind for the example package: its code importable and a dist-info
    folder whose entry_points.txt `importlib.metadata` reads."""
    dist = site / "probekit_plugin_example-0.1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: probekit-plugin-example\n"
                                   "Version: 0.1.0\n")
    (dist / "entry_points.txt").write_text(
        f"[{ENTRY_POINT_GROUP}]\n" + "".join(f"{k} = {v}\n" for k, v in entry_points.items()))
    monkeypatch.syspath_prepend(str(PLUGIN))
    monkeypatch.syspath_prepend(str(site))


@pytest.fixture
def isolated_registries(monkeypatch):
    """Worlds a plugin registers and its imported modules disappear after the test."""
    monkeypatch.setattr(WORLDS, "_loaders", dict(WORLDS._loaders))
    monkeypatch.setattr(WORLDS, "_loaded", dict(WORLDS._loaded))
    yield
    for name in [m for m in sys.modules if m.startswith("probekit_plugin_example")]:
        del sys.modules[name]


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch, isolated_registries) -> dict[str, str]:
    declared = tomllib.loads((PLUGIN / "pyproject.toml").read_text())
    entry_points = declared["project"]["entry-points"][ENTRY_POINT_GROUP]
    install(tmp_path / "site", monkeypatch, entry_points)
    return entry_points


def test_plugin_world_and_task_folder_are_registered(plugin: dict[str, str], capsys):
    found = metadata.entry_points(group=ENTRY_POINT_GROUP)
    assert set(plugin) <= set(found.names)
    assert "counter" not in WORLDS
    task = load_task("counter-mod5")
    assert "counter" in WORLDS and task.spec.world == "counter"
    train = task.dataset("train")
    assert len(train) == 60
    for row in train.select(range(5)):
        moves = np.array([1 if s.startswith("up") else -1 for s in row["surface"]])
        assert row["label.value"] == (np.cumsum(moves) % 5).tolist()
    assert "| `value` | class | 5 |" in card(task)
    assert main(["tasks", "list"]) == 0
    assert "counter-mod5" in capsys.readouterr().out


def test_tasks_new_on_a_plugin_world(plugin: dict[str, str], tmp_path: Path):
    assert main(["tasks", "new", "my-counter", "--world", "counter", "--out",
                 str(tmp_path / "mine")]) == 0
    task = load_task("my-counter", include=[tmp_path / "mine"])
    assert task.spec.splits["test_long"].knobs == {"length": 12}


def test_plugin_without_the_entry_point_is_not_found(isolated_registries):
    assert "counter-mod5" not in list_tasks()


def test_broken_plugin_is_named_in_one_clear_error(tmp_path: Path, monkeypatch,
                                                   isolated_registries):
    install(tmp_path / "site", monkeypatch, {"broken": "probekit_plugin_example.missing:World"})
    with pytest.raises(UserError, match="entry point 'broken' in group probekit.tasks failed"):
        list_tasks()
