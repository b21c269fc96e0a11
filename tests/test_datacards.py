"""The committed dataset cards in `datacards/` match what the specs and data generate now."""

from __future__ import annotations

from pathlib import Path

import pytest

from probekit.cli import main
from probekit.data import stale_cards, write_cards
from probekit.tasks import BUILTIN_TASKS, list_tasks

CARDS = Path(__file__).resolve().parent.parent / "datacards"
FIX = "probekit data cards --out datacards"


@pytest.mark.parametrize("name", sorted(p.stem for p in BUILTIN_TASKS.rglob("*.yaml")))
def test_committed_card_is_fresh(name: str, tmp_path: Path):
    [fresh] = write_cards(tmp_path, [name])
    committed = CARDS / f"{name}.md"
    assert committed.exists(), f"datacards/{name}.md is missing; run `{FIX}`"
    assert committed.read_text() == fresh.read_text(), (
        f"datacards/{name}.md is stale (its spec, world or data changed); run `{FIX}`")


def test_every_committed_card_has_a_task():
    orphans = sorted(p.name for p in CARDS.glob("*.md") if p.stem not in list_tasks())
    assert not orphans, f"cards without a registered task: {orphans}; delete them"


def test_check_names_stale_missing_and_orphan_cards(tmp_path: Path, tiny_task_dir: Path,
                                                    capsys):
    include = ["--include-path", str(tiny_task_dir)]
    assert main(["data", "cards", "--out", str(tmp_path), "--task", "boxes-tiny", *include]) == 0
    assert f"wrote {tmp_path / 'boxes-tiny.md'}" in capsys.readouterr().out
    check = ["data", "cards", "--check", "--out", str(tmp_path), "--task", "boxes-tiny", *include]
    assert main(check) == 0
    card = tmp_path / "boxes-tiny.md"
    card.write_text(card.read_text().replace("| train | 240 |", "| train | 241 |"))
    assert main(check) == 1
    assert f"{card} is stale" in capsys.readouterr().err
    (tmp_path / "gone.md").write_text("a card of a deleted task\n")
    problems = stale_cards(tmp_path, include=[tiny_task_dir])
    assert f"{tmp_path / 'gone.md'} has no registered task; delete it" in problems
    assert f"{tmp_path / 'boxes.md'} is missing; regenerate with `probekit data cards --out " \
           f"{tmp_path} --include-path {tiny_task_dir}`" in problems
    assert main(["data", "cards", "--check", "--task", "boxs"]) == 2
    assert "did you mean 'boxes'" in capsys.readouterr().err
