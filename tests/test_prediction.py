"""The prediction axis: surprise per step, violation of expectation, legality, its checks, and
its place in results, reports and the CLI."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import probekit
from probekit import record, schema
from probekit.adapters import ModuleAdapter, load_model
from probekit.errors import CheckError, ModelError, ResultError, UnknownNameError, UserError
from probekit.prediction import PredictionProbe
from probekit.prediction.probe import _check_pair, _legal_hits
from probekit.adapters.surprise import per_step, step_index, token_predictions
from probekit.tasks import load_task
from tests.prediction_models import (OPS_TASK, BlindModel, LookAhead, Noisy, RuleModel,
                                     rule_predict)

GROUPS_TASK = """\
name: parity-vio-tiny
version: 1
world: groups
description: Parity for the prediction tests (no violation pairs).
license: cc-by-4.0
knobs: {group: parity, length: 6}
splits:
  train: {size: 40, seed: 1}
  val: {size: 20, seed: 2}
  test: {size: 20, seed: 3}
targets:
  - {name: element, kind: class}
control: {feature: step_text_and_index, seed: 0}
"""


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("prediction_tasks")
    (folder / "boxes-vio-tiny.yaml").write_text(OPS_TASK)
    (folder / "parity-vio-tiny.yaml").write_text(GROUPS_TASK)
    return folder


@pytest.fixture(scope="module")
def ops_task(task_dir: Path):
    return load_task("boxes-vio-tiny", [task_dir])


def adapter(module: torch.nn.Module, **kw) -> ModuleAdapter:
    return ModuleAdapter(module, {"embed": "embed"}, "tokens", device="cpu", **kw)


# --- surprise per step ------------------------------------------------------------------------

def test_steps_own_the_positions_after_the_previous_step():
    positions = torch.tensor([[1, 3, 4], [0, 2, 5]])
    idx = step_index(positions, 7)
    assert idx.tolist() == [[-1, 0, 1, 1, 2, -1, -1], [-1, 1, 1, 2, 2, 2, -1]]
    values = torch.arange(7.0)[None].expand(2, -1)
    assert per_step(values, positions).tolist() == [[1.0, 5.0, 4.0], [0.0, 3.0, 12.0]]


def test_token_surprise_is_the_summed_surprisal_in_nats():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 6, 5, generator=g)
    ids = torch.randint(5, (2, 6), generator=g)
    positions = torch.tensor([[1, 3, 5], [2, 4, 5]])
    out = token_predictions(logits, ids, positions)
    logp = torch.log_softmax(logits, -1)
    for b in range(2):
        for s, last in enumerate(positions[b].tolist()):
            first = 1 if s == 0 else int(positions[b, s - 1]) + 1  # position 0: unpredicted
            want = -sum(float(logp[b, j - 1, ids[b, j]]) for j in range(first, last + 1))
            assert math.isclose(float(out.surprise[b, s]), want, rel_tol=1e-5)
    assert out.top1.tolist() == logits[torch.arange(2)[:, None], positions].argmax(-1).tolist()


def test_hf_surprise_covers_every_token_of_a_multi_token_step(tmp_path: Path):
    from tests.conftest import save_tiny_gpt2

    vocab = ["put", "the", "key", "in", "box", "0", "1", "."]
    save_tiny_gpt2(tmp_path / "m", vocab)
    a = load_model(str(tmp_path / "m"), device="cpu")
    text = "put the key in box 0 . put the key in box 1 ."
    row = {"text": text, "step_spans": [[0, 22], [23, 45]], "query_span": [-1, -1]}
    batch = a.batch([row])
    assert batch.positions.tolist() == [[6, 13]]
    got = a.surprise(batch)
    with torch.no_grad():
        logits = a.forward(batch)
    ids = batch.inputs["input_ids"][0]
    nll = -torch.log_softmax(logits[0], -1)[:-1].gather(-1, ids[1:, None])[:, 0]
    assert torch.allclose(got[0], torch.stack([nll[:6].sum(), nll[6:13].sum()]).double(),
                          rtol=1e-5)
    assert a.surprise_kinds() == ("token",)


# --- violation of expectation -----------------------------------------------------------------

def test_a_model_that_knows_the_rule_scores_voe_one(ops_task):
    found = PredictionProbe().run(adapter(RuleModel(), token_head=True), ops_task)
    p = found.scores()
    assert p["surprise"] == "token" and p["unit"] == "nats"
    # an edit of the first step is at position 0, which nothing predicts: dropped, counted
    steps = np.asarray(ops_task.violations("test")["step"])
    assert p["dropped"] == {"first_position": int((steps == 0).sum())} and (steps == 0).any()
    assert p["pairs"] + p["dropped"]["first_position"] == p["drawn"] >= 100
    assert p["voe"] == 1.0 and p["voe_step"] == 1.0 and p["auroc"] > 0.9, p
    assert p["ci95"][0] > 0.95 and p["ci95"][1] == 1.0
    assert p["random_init"] is None and p["also"] is None
    assert p["legal_top1"] is None and "declares no next-step legality" in p["legal_reason"]
    assert set(p["by_kind"]) == {"same_box", "absent_leave"}
    zero = [r for r in found.rows() if r["offset"] == 0][0]
    assert zero["impossible"] - zero["possible"] > 10  # e^-12 against a legal choice
    assert found.meta()["checks"]["model.token.max_prefix_diff"] == 0.0


def test_the_rule_as_a_latent_predictor_scores_voe_one_beside_the_token_surprise(ops_task):
    model = adapter(RuleModel(), token_head=True, predict=rule_predict)
    assert model.surprise_kinds() == ("token", "latent")
    p = PredictionProbe().run(model, ops_task).scores()
    assert p["surprise"] == "token" and set(p["also"]) == {"latent"}
    latent = p["also"]["latent"]
    assert latent["unit"] == "L1/d" and latent["voe"] == 1.0 and latent["voe_step"] == 1.0
    assert latent["legal_top1"] is None and "latents" in latent["legal_reason"]
    only = PredictionProbe(surprise="latent").run(model, ops_task).scores()
    assert only["surprise"] == "latent" and only["also"] is None and only["voe"] == 1.0


def test_a_model_blind_to_the_state_scores_one_half(ops_task):
    p = PredictionProbe().run(adapter(BlindModel(), token_head=True), ops_task).scores()
    assert p["ties"] == p["pairs"] and p["voe"] == 0.5 and p["auroc"] == 0.5, p
    assert p["ci95"][0] < 0.5 < p["ci95"][1]


def test_the_twin_sits_beside_the_model(ops_task):
    model = adapter(RuleModel(), token_head=True)
    p = PredictionProbe(max_pairs=40).run(
        model, ops_task, twin=adapter(BlindModel(), token_head=True)).scores()
    assert p["pairs"] + sum(p["dropped"].values()) == 40 and p["voe"] == 1.0
    assert p["random_init"]["voe"] == 0.5 and p["random_init"]["pairs"] == p["pairs"]


# --- its own checks ---------------------------------------------------------------------------

def test_a_model_that_reads_later_inputs_is_stopped(ops_task):
    with pytest.raises(CheckError, match="reads later inputs"):
        PredictionProbe(max_pairs=20).run(adapter(LookAhead(), token_head=True), ops_task)


def test_a_model_that_is_not_deterministic_is_stopped(ops_task):
    with pytest.raises(CheckError, match="two runs of the same batch"):
        PredictionProbe(max_pairs=20).run(adapter(Noisy(), token_head=True), ops_task)


def test_a_pair_must_differ_only_from_its_step_on(ops_task):
    row = ops_task.violations("test")[0]
    p = {k[9:]: v for k, v in row.items() if k.startswith("possible.")}
    q = {k[11:]: v for k, v in row.items() if k.startswith("impossible.")}
    step = int(row["step"])
    _check_pair("t", "test", 0, step, p, q)  # as generated: fine
    with pytest.raises(CheckError, match="are the same at the violating step"):
        _check_pair("t", "test", 0, step, p, p)
    if step > 0:
        early = dict(q, tokens=[q["tokens"][0] + 1] + q["tokens"][1:])
        with pytest.raises(CheckError, match="world tokens differ before"):
            _check_pair("t", "test", 0, step, p, early)


def test_pairs_are_scorable_only_where_the_model_inputs_differ_after_position_0():
    from probekit.prediction.probe import _first_difference

    ids = torch.tensor([[5, 1, 2], [5, 1, 2], [4, 1, 2], [4, 1, 2],   # possible: 4 pairs
                        [5, 1, 3], [5, 1, 2], [5, 1, 2], [5, 1, 3]])  # impossible
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    first, later = _first_difference(inputs, 4)
    assert first.tolist() == [2, -1, 0, 0] and later.tolist() == [True, False, False, True]
    # the fourth pair differs after position 0 only after its violating step (position 0)
    first, later = _first_difference(inputs, 4, np.array([2, 2, 2, 0]))
    assert first.tolist() == [2, -1, 0, 0] and later.tolist() == [True, False, False, False]


def test_legality_counts_top1_steps_among_the_legal_ones():
    rows = [{"label.legal.a": [1, 0, 0], "label.legal.b": [1, 1, 0]}]
    legal = {"words": ["a", "b"], "ids": torch.tensor([7, 9])}
    top1 = torch.tensor([[9, 7, 7]])  # legal, illegal, unscored (no legal step)
    assert _legal_hits(top1, rows, legal) == (1, 2)


# --- settings ---------------------------------------------------------------------------------

@pytest.mark.parametrize("kw,error", [
    ({"surprise": "bits"}, UnknownNameError), ({"max_pairs": 1}, UserError),
    ({"batch_size": 0}, UserError), ({"tolerance": 2}, UserError),
    ({"legality": "yes"}, UserError)])
def test_bad_settings_fail_before_any_work(kw, error):
    with pytest.raises(error):
        PredictionProbe(**kw).validate()


def test_a_surprise_the_model_lacks_is_a_model_error(ops_task):
    with pytest.raises(ModelError, match="defines no latent surprise"):
        PredictionProbe(surprise="latent").run(adapter(RuleModel(), token_head=True), ops_task)


def test_evaluate_refuses_a_bad_prediction_argument():
    with pytest.raises(UserError, match="prediction must be"):
        probekit.evaluate("boxes-gpt2-tiny", ["boxes"], prediction="yes")


def test_no_violations_and_no_surprise_are_null_with_a_reason(task_dir, ops_task):
    groups = load_task("parity-vio-tiny", [task_dir])
    found = PredictionProbe().run(adapter(RuleModel(), token_head=True), groups)
    assert found.scores() is None and found.rows() == []
    assert "no violation pairs" in found.reason() and "every word is possible" in found.reason()
    mute = PredictionProbe().run(adapter(RuleModel()), ops_task)
    assert mute.scores() is None and "defines no surprise" in mute.reason()


# --- results, reports, CLI --------------------------------------------------------------------

def test_a_result_carries_the_axis_and_the_schema_checks_it(tmp_path: Path, task_dir: Path):
    from tests.conftest import save_tiny_gpt2

    words = [w for t in ("boxes-vio-tiny", "parity-vio-tiny")
             for w in load_task(t, [task_dir]).spec.world_for().vocabulary()]
    save_tiny_gpt2(tmp_path / "m", list(dict.fromkeys(words)))
    report = probekit.evaluate(str(tmp_path / "m"), ["boxes-vio-tiny", "parity-vio-tiny"],
                               include=[task_dir], device="cpu", causal=False, progress=False)
    boxes, parity = report.results
    p = boxes["scores"]["prediction"]
    assert boxes["probe"]["prediction"]["surprise"] == "auto"
    assert p["random_init"] is not None and boxes["per_offset"]
    assert boxes["timings"]["prediction_s"] >= 0
    assert parity["scores"]["prediction"] is None and parity["per_offset"] == []
    assert "no violation pairs" in parity["scores"]["prediction_reason"]
    for r in report.results:
        schema.validate(r)
    summary = report.summary
    assert summary["voe"][0] == p["voe"] and summary["voe"][1] is None
    assert "VoE" in str(report)
    paths = report.save(tmp_path / "out")
    assert paths[0].with_suffix(".prediction.png").is_file()
    assert not paths[1].with_suffix(".prediction.png").exists()

    def broken(edit) -> dict:
        r = json.loads(json.dumps(boxes))
        edit(r)
        r["run_id"] = record.run_id(r)
        return r

    for edit, match in [
        (lambda r: r["scores"]["prediction"].update(voe=0.99 if p["voe"] != 0.99 else 0.98),
         "its counts give"),
        (lambda r: r["scores"]["prediction"].update(wins=p["wins"] - 1), "its counts give"),
        (lambda r: r["scores"]["prediction"]["random_init"].update(auroc=1.5), "auroc"),
        (lambda r: r["per_offset"].pop(next(i for i, x in enumerate(r["per_offset"])
                                            if x["offset"] == 0)), "offset 0"),
        (lambda r: r["scores"].update(prediction=None), "per_offset has rows"),
        (lambda r: r["scores"].update(prediction_reason="x"), "prediction_reason must be null"),
    ]:
        with pytest.raises(ResultError, match=match):
            schema.validate(broken(edit))
    none = probekit.evaluate(str(tmp_path / "m"), ["boxes-vio-tiny"], include=[task_dir],
                             device="cpu", causal=False, prediction=False, progress=False)
    r = none.results[0]
    assert r["scores"]["prediction"] is None and "--no-prediction" in \
        r["scores"]["prediction_reason"]
    schema.validate(r)


def test_cli_no_prediction(tmp_path: Path, task_dir: Path, capsys):
    from probekit.cli import main
    from tests.conftest import save_tiny_gpt2
    from probekit.worlds.boxes import Boxes

    save_tiny_gpt2(tmp_path / "m", Boxes().vocabulary())
    code = main(["eval", str(tmp_path / "m"), "--tasks", "boxes-vio-tiny", "--include-path",
                 str(task_dir), "--device", "cpu", "--no-causal", "--no-prediction",
                 "--out", str(tmp_path / "out")])
    assert code == 0
    (path,) = (tmp_path / "out").rglob("boxes-vio-tiny.json")
    r = json.loads(path.read_text())
    assert r["scores"]["prediction"] is None and r["probe"]["prediction"] is None


# --- shipped models ---------------------------------------------------------------------------

def test_the_quickstart_expects_its_world_and_beats_its_random_twin():
    task = load_task("boxes")
    model = load_model("boxes-gpt2-tiny", device="cpu")
    found = PredictionProbe().run(model, task, twin=model.random_init(0))
    p = found.scores()
    twin = p["random_init"]
    assert p["pairs"] + sum(p["dropped"].values()) == p["drawn"] == 500 and p["pairs"] > 490
    assert p["ci95"][0] > twin["ci95"][1], (p["voe"], p["ci95"], twin["voe"], twin["ci95"])
    assert p["voe_step_ci95"][0] > twin["voe_step_ci95"][1]
    assert p["auroc"] > twin["auroc"] + 0.2
    assert twin["ci95"][0] < 0.5 < twin["ci95"][1]  # the twin knows nothing: chance
    # boxes declares no legality labels: null, with the reason, for model and twin alike
    assert p["legal_top1"] is None and twin["legal_top1"] is None
    assert "no legal.* labels" in p["legal_reason"]


def test_a_spectrum_reference_on_othello_reports_voe_and_legality():
    task = load_task("othello-4")
    model = load_model("spectrum-othello-4-a0", device="cpu")
    p = PredictionProbe(max_pairs=200).run(model, task, twin=model.random_init(0)).scores()
    twin = p["random_init"]
    assert p["legal_top1"] is not None and p["legal_steps"] > 1000
    assert p["legal_ci95"][0] > twin["legal_ci95"][1], (p["legal_top1"], twin["legal_top1"])
    assert p["ci95"][0] > twin["ci95"][1], (p["voe"], twin["voe"])


def test_a_mixed_spectrum_reference_reports_both_surprises_token_first():
    task = load_task("boxes")
    model = load_model("spectrum-boxes-a0.5", device="cpu")
    assert model.surprise_kinds() == ("token", "latent")  # both heads: token is the headline
    p = PredictionProbe(max_pairs=200).run(model, task, twin=model.random_init(0)).scores()
    assert p["surprise"] == "token" and set(p["also"]) == {"latent"}
    assert p["ci95"][0] > p["random_init"]["ci95"][1], (p["voe"], p["random_init"]["voe"])


def test_a_jepa_reference_reports_its_latent_surprise_against_its_twin():
    """The a = 1 reference has no token head: its VoE is its latent prediction error."""
    task = load_task("othello-4")
    model = load_model("spectrum-othello-4-a1", device="cpu")
    assert model.surprise_kinds() == ("latent",)
    p = PredictionProbe(max_pairs=200).run(model, task, twin=model.random_init(0)).scores()
    assert p["surprise"] == "latent" and p["legal_top1"] is None
    assert p["ci95"][0] > p["random_init"]["ci95"][1], (p["voe"], p["random_init"]["voe"])


def test_a_jepa_checkpoint_without_its_predictor_is_null_with_the_reason(tmp_path: Path):
    """A checkpoint saved before the predictor was kept defines no surprise: null, and why."""
    from safetensors.torch import load_file, save_file

    from probekit.spectrum import checkpoint

    folder = tmp_path / "old-a1"
    shutil.copytree(checkpoint.SHIPPED / "spectrum-boxes-a1", folder)
    config = json.loads((folder / "config.json").read_text())
    config.pop("predictor")
    (folder / "config.json").write_text(json.dumps(config))
    weights = load_file(str(folder / "model.safetensors"))
    save_file({k: v for k, v in weights.items() if not k.startswith("predictor.")},
              str(folder / "model.safetensors"))
    model = load_model(folder, device="cpu")
    found = PredictionProbe().run(model, load_task("boxes"), twin=model.random_init(0))
    assert found.scores() is None and "keeps no latent predictor" in found.reason()


def test_surprise_is_deterministic_across_batch_sizes(ops_task):
    model = adapter(RuleModel(), token_head=True)
    a = PredictionProbe(batch_size=4, max_pairs=30).run(model, ops_task)
    b = PredictionProbe(batch_size=64, max_pairs=30).run(model, ops_task)
    for x, y in zip(a.rows(), b.rows()):
        assert x["offset"] == y["offset"] and np.isclose(x["impossible"], y["impossible"])


def test_the_spectrum_report_gains_a_voe_panel(tmp_path: Path):
    from probekit import results
    from probekit.spectrum.report import markdown, report
    from tests.result_factory import make

    for a, family in ((0.0, "ntp"), (0.5, "next-latent"), (1.0, "jepa")):
        r = make(model=f"probekit/spectrum-boxes-a{a:g}", family=family, alpha=a)
        assert r["scores"]["prediction"] is not None  # the example carries the axis
        if a == 1.0:  # a JEPA checkpoint without its predictor: null, with the reason
            r["scores"].update(prediction=None, prediction_reason="no surprise")
            r["per_offset"], r["probe"]["prediction"] = [], None
            r["run_id"] = record.run_id(r)
        results.save(r, tmp_path)
    summary, paths = report(tmp_path, tmp_path / "spectrum.png")
    voe = dict(zip(summary["alpha"].to_list(), summary["voe"].to_list()))
    p = make()["scores"]["prediction"]
    assert voe[0.0] == pytest.approx(p["voe"]) and voe[1.0] is None
    assert summary["voe_random_init"].to_list()[0] == pytest.approx(p["random_init"]["voe"])
    table = markdown(summary)
    assert "| VoE | VoE random init |" in table and f"{p['voe']:.3f}" in table
    assert paths[0].read_bytes()[:4] == b"\x89PNG"
