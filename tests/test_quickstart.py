"""The shipped quickstart checkpoint tracks the boxes world: its latents beat its random-init
twin's on the task it was trained for (fewer episodes than the registered task, same world)."""

from __future__ import annotations

from pathlib import Path

import yaml

import probekit
from probekit.tasks import load_task


def test_shipped_checkpoint_beats_its_random_twin(tmp_path: Path):
    spec = yaml.safe_load(Path(load_task("boxes").path).read_text())
    spec.update(name="boxes-quick", splits={"train": {"size": 300, "seed": 1},
                                            "val": {"size": 100, "seed": 2},
                                            "test": {"size": 100, "seed": 3}})
    (tmp_path / "boxes-quick.yaml").write_text(yaml.safe_dump(spec))
    (r,) = probekit.evaluate("boxes-gpt2-tiny", ["boxes-quick"], include=[tmp_path],
                             device="cpu", causal=False, progress=False).results
    d = r["scores"]["decodability"]
    assert d["ci95"][0] > d["random_init"] + 0.2, d
    assert d["selectivity"] > 0.5, d
