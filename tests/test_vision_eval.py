"""`probekit eval` of random tiny V-JEPA 2 and I-JEPA checkpoints on a small frames task, on
every axis: decodability from pooled step latents, causality (the ceiling reproduced by
swapping the differing patch tokens at `embed`), prediction (V-JEPA 2's latent surprise;
none for I-JEPA, with the reason)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from probekit.cli import main
from tests.test_vision import save_ijepa, save_vjepa2

TASK = """\
name: balls-frames-vision-test
version: 1
world: bouncing_balls
description: A tiny balls-2-frames for the vision adapter tests (jump violations only).
license: cc-by-4.0
knobs: {n_balls: 2, length: 5}
frames: {size: 16, frames_per_step: 2, channels: 1, style: smooth}
splits:
  train: {size: 24, seed: 1}
  val: {size: 12, seed: 2}
  test: {size: 12, seed: 3}
targets:
  - {name: x, kind: regress}
control: {feature: step_text_and_index, seed: 0}
counterfactual: {variable: velocity, step: random, readout: position}
violations: {kinds: [jump], step: random}
"""


@pytest.mark.slow
def test_eval_runs_vision_models_on_frames_on_every_axis(tmp_path: Path, capsys):
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "balls-frames-vision-test.yaml").write_text(TASK)
    out = tmp_path / "results"
    results = {}
    for name, folder in (("vjepa2", save_vjepa2(tmp_path / "tiny-vjepa2", crop_size=32)),
                         ("ijepa", save_ijepa(tmp_path / "tiny-ijepa", image_size=16))):
        assert main(["eval", str(folder), "--tasks", "balls-frames-vision-test",
                     "--include-path", str(tmp_path / "tasks"), "--out", str(out),
                     "--max-pairs", "6", "--no-steering", "--no-attribution", "--device", "cpu",
                     "-q"]) == 0
        path, = out.glob(f"local__tiny-{name}/*/balls-frames-vision-test.json")
        results[name] = json.loads(path.read_text())
    for name, r in results.items():
        assert r["model"]["adapter"] == "vision" and r["model"]["architecture"] == name
        dec = r["scores"]["decodability"]
        assert dec["layer"] in ("embed", "block.0", "block.1") and dec["random_init"] is not None
        assert {row["layer"] for row in r["per_layer"]} == {"embed", "block.0", "block.1"}
        causal = r["causal"]
        assert causal["readout"] == {"readout": "probe", "layer": "block.1", "classes": 2}
        ceiling = causal["ceiling"]  # the differing patch tokens swapped at embed
        assert ceiling["layer"] == "embed" and ceiling["pairs"] >= 4
        assert ceiling["max_abs_diff"] < 1e-3
        assert r["per_cell"] and all(c["readout"] == "probe" for c in r["per_cell"])
        assert (r["scores"]["causality"] is None) == bool(r["scores"]["causality_reason"])
    voe = results["vjepa2"]["scores"]["prediction"]
    assert voe["surprise"] == "latent" and voe["pairs"] >= 6 and 0 <= voe["voe"] <= 1
    assert voe["random_init"] is not None
    assert results["ijepa"]["scores"]["prediction"] is None
    assert "neither a token head nor a latent predictor" in \
        results["ijepa"]["scores"]["prediction_reason"]


def test_eval_refuses_a_vision_model_on_a_task_without_frames(tmp_path: Path, capsys):
    folder = save_ijepa(tmp_path / "tiny-ijepa")
    assert main(["eval", str(folder), "--tasks", "boxes", "--limit", "8", "--no-causal",
                 "--out", str(tmp_path / "results"), "--device", "cpu", "-q"]) == 2
    err = capsys.readouterr().err
    assert "task boxes-limit8 has no frames view" in err and "[extract]" not in err
