"""`probekit spectrum train|sweep|list|report`, and the spectrum figure's table."""

from __future__ import annotations

import json
import math

import polars as pl
import pytest
import torch

from probekit import results
from probekit.cli import main
from probekit.errors import ResultError
from probekit.spectrum import checkpoint
from probekit.spectrum.report import (collect, depth_contrast, markdown, regress, report, sizes,
                                      summarise)
from probekit.spectrum.reproduce import _first_difference
from tests.result_factory import make

SMALL = ["--d-model", "16", "--layers", "1", "--episodes", "100", "--batch-size", "8",
         "--quiet"]



def test_train_writes_a_checkpoint(tiny_task_dir, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["spectrum", "train", "--task", "boxes-tiny", "--include-path",
                 str(tiny_task_dir), "--alpha", "0.5", "--steps", "10", "--out", str(out),
                 *SMALL])
    assert code == 0
    text = capsys.readouterr().out
    assert "next-latent a=0.5" in text and "effective rank" in text
    _, meta = checkpoint.load(out)
    assert (meta.alpha, meta.steps, meta.task) == (0.5, 10, "boxes-tiny")


def test_sweep_trains_each_alpha_and_seed_once(tiny_task_dir, tmp_path, capsys):
    args = ["spectrum", "sweep", "--task", "boxes-tiny", "--include-path", str(tiny_task_dir),
            "--alphas", "0,1", "--seeds", "2", "--steps", "5", "--out", str(tmp_path), *SMALL]
    assert main(args) == 0
    names = sorted(p.name for p in tmp_path.iterdir() if p.is_dir())
    assert names == ["boxes-tiny-a0-s0", "boxes-tiny-a0-s1", "boxes-tiny-a1-s0",
                     "boxes-tiny-a1-s1"]
    assert checkpoint.load(tmp_path / "boxes-tiny-a1-s1")[1].family == "jepa"
    capsys.readouterr()
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out.count("kept (already trained, verified)") == 4 and "0 trained now" in out
    runs = pl.read_csv(tmp_path / "sweep.csv")
    assert runs.height == 4 and (runs["train_seconds"] > 0).all()
    assert set(runs["status"]) == {"kept"} and set(runs["device"]) == {"cpu"}
    assert "CPU hours of training in all" in out


def test_sweep_resumes_sizes_and_refuses_a_folder_of_another_run(tiny_task_dir, tmp_path, capsys):
    args = ["spectrum", "sweep", "--task", "boxes-tiny", "--include-path", str(tiny_task_dir),
            "--alphas", "0.5", "--seeds", "1", "--steps", "5", "--out", str(tmp_path), *SMALL,
            "--sizes", "16x1,32x2"]
    unfinished = tmp_path / "boxes-tiny-a0.5-d32x2-s0"
    unfinished.mkdir(parents=True)
    (unfinished / "config.json").write_text("{}")  # an interrupted run: no spectrum.json
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "unfinished (no spectrum.json); training it again" in out and "2 trained now" in out
    runs = pl.read_csv(tmp_path / "sweep.csv")
    assert runs["folder"].to_list() == ["boxes-tiny-a0.5-d16x1-s0", "boxes-tiny-a0.5-d32x2-s0"]
    assert runs["params"][1] > 2.5 * runs["params"][0] and runs["blocks"].to_list() == [1, 2]
    again = [a if a != "5" else "6" for a in args]  # the same folders, another step count
    assert main(again) == 2
    assert "holds another run: steps 5 (asked 6)" in capsys.readouterr().err
    assert main([*args[:-1], "32x"]) == 2
    assert "--sizes takes width x blocks" in capsys.readouterr().err


def test_sweep_names_the_horizon_and_summary_variants(tiny_task_dir, tmp_path):
    """A variant's folders never share a name with the main line's (one store holds both)."""
    args = ["spectrum", "sweep", "--task", "boxes-tiny", "--include-path", str(tiny_task_dir),
            "--alphas", "0.5", "--seeds", "1", "--steps", "3", *SMALL]
    assert main([*args, "--horizon", "2", "--target", "summary", "--out", str(tmp_path)]) == 0
    assert main([*args, "--horizon", "2", "--out", str(tmp_path / "h2")]) == 0
    runs = pl.read_csv(tmp_path / "sweep.csv")
    assert runs.select("folder", "family", "horizon", "target").row(0) == \
        ("boxes-tiny-a0.5-h2sum-s0", "future-summary", 2, "summary")
    assert (tmp_path / "h2" / "boxes-tiny-a0.5-h2-s0" / "spectrum.json").is_file()


@pytest.mark.parametrize("extra, match", [
    (["--alpha", "1.5"], "alpha must be in [0, 1]"),
    (["--alpha", "0.5", "--inputs", "obs"], "continuous-only"),
    (["--alpha", "0.5", "--task", "boxez"], "did you mean 'boxes'"),
])
def test_bad_train_input_is_one_line(tmp_path, capsys, extra, match):
    args = ["spectrum", "train", "--task", "boxes", "--out", str(tmp_path / "x"), *extra]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert match in err and len(err.splitlines()) == 1 and not (tmp_path / "x").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_a_sweep_on_an_absent_gpu_is_refused_before_the_first_run(tmp_path, capsys):
    code = main(["spectrum", "sweep", "--task", "boxes", "--alphas", "0,1", "--device", "cuda",
                 "--out", str(tmp_path / "s")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "device 'cuda' is not available here" in err
    assert len(err.splitlines()) == 1 and not (tmp_path / "s").exists()


def test_a_checkpoint_trained_on_a_gpu_is_reproduced_where_one_is(tiny_task_dir, tmp_path,
                                                                 capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    inc = ["--include-path", str(tiny_task_dir)]
    assert main(["spectrum", "train", "--task", "boxes-tiny", *inc, "--alpha", "0.5", "--steps",
                 "2", "--out", str(tmp_path / "m"), "--quiet", *SMALL]) == 0
    meta = json.loads((tmp_path / "m" / "spectrum.json").read_text())
    assert meta["device"] == "cpu"
    meta["device"] = "cuda"
    (tmp_path / "m" / "spectrum.json").write_text(json.dumps(meta))
    capsys.readouterr()
    assert main(["spectrum", "reproduce", str(tmp_path / "m"), *inc, "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "was trained on cuda, and this machine has none" in err and len(err.splitlines()) == 1


def test_bad_sweep_alphas(tmp_path, capsys):
    for alphas, match in (("0,2", "alpha must be in"), ("0,x", "comma-separated numbers")):
        code = main(["spectrum", "sweep", "--task", "boxes", "--alphas", alphas, "--out",
                     str(tmp_path)])
        assert code == 2 and match in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_list_shows_the_shipped_references(capsys):
    assert main(["spectrum", "list"]) == 0
    out = capsys.readouterr().out
    for name in checkpoint.shipped():
        assert name in out


def _results(folder, seeds=(0, 1, 2), causal=True):
    for task in ("boxes", "othello-4"):
        for a, family in ((0.0, "ntp"), (0.5, "next-latent"), (1.0, "jepa")):
            for s in seeds:
                r = make(model=f"probekit/spectrum-{task}-a{a:g}-s{s}", family=family, alpha=a,
                         quality=0.5 + 0.4 * a + 0.02 * s,
                         gain=(0.3 + 0.1 * s) if causal else None)
                r["task"]["name"] = task
                results.save(r, folder)
    results.save(make(model="org/not-spectrum", family=None, alpha=None), folder)


def test_report_averages_seeds_with_intervals(tmp_path):
    _results(tmp_path)
    rows = collect(tmp_path)
    assert rows.height == 18 and "org/not-spectrum" not in rows["model"].to_list()
    summary = summarise(rows)
    assert summary.height == 6 and set(summary["seeds"]) == {3}
    r = summary.filter((pl.col("task") == "boxes") & (pl.col("alpha") == 0.5)).row(0, named=True)
    values = rows.filter((pl.col("task") == "boxes") & (pl.col("alpha") == 0.5))["decodability"]
    assert r["decodability"] == pytest.approx(values.mean())
    assert r["decodability_lo"] < r["decodability"] < r["decodability_hi"]
    assert r["causal_gain"] == pytest.approx(0.4) and r["causal_gain_lo"] < 0.4 < r["causal_gain_hi"]
    boxes = summary.filter(pl.col("task") == "boxes")["decodability"].to_list()
    assert boxes == sorted(boxes)  # quality rises with a in these made-up results


def test_report_refuses_two_revisions_of_one_model(tmp_path):
    """A retrained model evaluated into the same folder is not a fourth seed."""
    _results(tmp_path, seeds=(0,))
    r = make(model="probekit/spectrum-boxes-a0.5-s0", family="next-latent", alpha=0.5,
             revision="retrained00")
    r["task"]["name"] = "boxes"
    results.save(r, tmp_path)
    with pytest.raises(ResultError, match="two revisions of model probekit/spectrum-boxes-a0.5"):
        collect(tmp_path)


def test_report_with_one_seed_uses_the_bootstrap_interval_and_null_causality(tmp_path):
    _results(tmp_path, seeds=(0,), causal=False)
    summary, paths = report(tmp_path, tmp_path / "fig" / "spectrum.png")
    rows = collect(tmp_path)
    assert summary["causal_gain"].null_count() == summary.height
    assert summary["decodability_lo"].to_list() == rows["decodability_lo"].to_list()
    assert [p.name for p in paths] == ["spectrum.png", "spectrum.csv", "spectrum.md"]
    assert paths[0].read_bytes()[:4] == b"\x89PNG"
    assert "| boxes | 0.5 | next-latent | 237k | 64 × 4 | 1 |" in markdown(summary)
    assert regress(rows) is None  # one size: nothing separates a from size
    assert pl.read_csv(paths[1]).height == 6


def test_cli_report(tmp_path, capsys):
    _results(tmp_path, seeds=(0, 1))
    assert main(["spectrum", "report", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "| othello-4 | 1 | jepa | 237k | 64 × 4 | 2 |" in out
    assert (tmp_path / "spectrum.png").is_file()
    assert "one model size: nothing separates a from size" in out


def test_report_fits_a_and_size_and_says_which_explains_more(tmp_path, capsys):
    """Made-up results whose scores follow a (and the seed), not the size: the fit finds the a
    slope, a size slope whose interval holds 0, and says a explains more."""
    for size in (20_000, 80_000, 320_000):
        for a, family in ((0.0, "ntp"), (0.5, "next-latent"), (1.0, "jepa")):
            for seed in (0, 1, 2):
                r = make(model=f"probekit/spectrum-boxes-a{a:g}-{size}-s{seed}", family=family,
                         alpha=a, quality=0.4 + 0.4 * a + 0.03 * seed)
                r["task"]["name"] = "boxes"
                r["model"].update(n_params=size, width=size // 5000, depth=2)
                results.save(r, tmp_path)
    for size in (20_000, 80_000, 320_000):  # extra heads: 2.2× the backbone's count at 20k
        r = make(model=f"probekit/spectrum-boxes-a0.5-h4-{size}", family="multi-token",
                 alpha=0.5, quality=0.6)
        r["task"]["name"] = "boxes"
        r["model"].update(n_params=size + 24_000, width=size // 5000, depth=2)
        results.save(r, tmp_path)
    rows = collect(tmp_path)
    variant = rows.filter(pl.col("family") == "multi-token")
    assert sorted(variant["size"]) == [20_000, 80_000, 320_000]  # matched to the main line
    fits = regress(rows)
    dec = fits.filter(pl.col("score") == "decodability").row(0, named=True)
    assert dec["runs"] == 27 and dec["sizes"] == 3 and dec["explains"] == "a"
    assert dec["a_lo"] > 0 and dec["log2_params_lo"] < 0 < dec["log2_params_hi"]
    assert dec["r2_from_a"] > 0.5 > dec["r2_from_size"] + 0.4
    below = regress(rows, below_one=True).filter(pl.col("score") == "decodability")
    assert below["runs"][0] == 18  # a = 0 and 0.5 at three sizes, three seeds
    assert main(["spectrum", "report", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "score ~ a + log2(params)" in out and "| boxes | decodability | 27 | 3 |" in out
    assert "without the JEPA end (a < 1 only)" in out
    fits = pl.read_csv(tmp_path / "spectrum-regression.csv")
    assert set(fits["a_range"]) == {"0-1", "below 1"}


def test_sizes_chain_the_counts_of_one_backbone():
    """The study's boxes counts: heads and predictor move one backbone's count by up to 1.4×
    (5.2k at a = 1 to 8.1k at 0 < a < 1 on 8x2), the backbones lie ≥ 2.9× apart."""
    counts = [5216, 7697, 8105, 24096, 28593, 32121, 116673, 120576, 141441]
    named = sizes(pl.Series(counts))
    assert len(set(named.values())) == 3
    assert named[5216] == named[8105] < named[24096] == named[32121] < named[116673] == \
        named[141441]


def test_cli_report_without_spectrum_results(tmp_path, capsys):
    results.save(make(model="org/not-spectrum", family=None, alpha=None), tmp_path)
    assert main(["spectrum", "report", str(tmp_path)]) == 2
    assert "no probekit.result/2 results of spectrum models" in capsys.readouterr().err
    assert main(["spectrum", "report", str(tmp_path / "missing")]) == 2


def _cell_and_result(tiny_task_dir, tmp_path, causal=True):
    """A tiny sweep cell (boxes-tiny, a = 0.5, 16x2, 4 steps) and its stored result."""
    import probekit

    assert main(["spectrum", "sweep", "--task", "boxes-tiny", "--include-path",
                 str(tiny_task_dir), "--alphas", "0.5", "--seeds", "1", "--steps", "4", "--out",
                 str(tmp_path), *SMALL, "--sizes", "16x2"]) == 0
    cell = tmp_path / "boxes-tiny-a0.5-d16x2-s0"
    report = probekit.evaluate(str(cell), ["boxes-tiny"], device="cpu", progress=False,
                               include=[str(tiny_task_dir)], causal=causal)
    return cell, report.save(tmp_path / "results", plots=False)[0]


def test_reproduce_retrains_a_cell_bit_for_bit_and_rescores_it(tiny_task_dir, tmp_path, capsys):
    """A grid cell rerun from its own spectrum.json and config.json gives the same weights and,
    evaluated again, the same result; a changed weight is caught (exit 1), and a result of
    another task is refused before any training (exit 2)."""
    inc = ["--include-path", str(tiny_task_dir)]
    cell, stored = _cell_and_result(tiny_task_dir, tmp_path)
    capsys.readouterr()
    assert main(["spectrum", "reproduce", str(cell), "--result", str(stored), *inc,
                 "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "weights reproduced bit for bit" in out and "scores identical" in out

    import json
    tampered = json.loads(stored.read_text())
    fresh = json.loads(stored.read_text())
    tampered["scores"]["decodability"]["value"] += 1e-9
    assert _first_difference(tampered["scores"], fresh["scores"]).startswith(
        ": at .decodability.value: ")

    model, meta = checkpoint.load(cell)
    with torch.no_grad():
        next(iter(model.parameters())).add_(1e-6)
    checkpoint.save(cell, model, meta)
    assert main(["spectrum", "reproduce", str(cell), *inc, "--quiet"]) == 1
    assert "weights differ from the checkpoint's" in capsys.readouterr().err

    tampered["run_id"] = "0" * 16  # a file edited after the run: refused, nothing trained
    stored.write_text(json.dumps(tampered))
    assert main(["spectrum", "reproduce", str(cell), "--result", str(stored), *inc]) == 2
    err = capsys.readouterr().err.strip()
    assert "does not match its content" in err and len(err.splitlines()) == 1

    from probekit.record import run_id
    tampered = json.loads(json.dumps(fresh))
    tampered["task"]["name"] = "othello-4"
    tampered["run_id"] = run_id(tampered)
    stored.write_text(json.dumps(tampered))
    assert main(["spectrum", "reproduce", str(cell), "--result", str(stored), *inc]) == 2
    err = capsys.readouterr().err.strip()
    assert "is on task othello-4" in err and len(err.splitlines()) == 1


def _sized(folder, task, shape, n_params, family="next-latent", alpha=0.5, seed=0,
           known=True):
    width, depth = shape
    r = make(model=f"local/{task}-a{alpha:g}-{family}-d{width}x{depth}-s{seed}", family=family,
             alpha=alpha, quality=0.5)
    r["task"]["name"] = task
    r["model"].update(n_params=n_params, width=width if known else None,
                      depth=depth if known else None)
    results.save(r, folder)


def test_sizes_are_backbones_where_results_record_them(tmp_path):
    """The study's boxes counts of 16x4 (17.7k-23.2k) and 24x2 (24.1k-28.6k) lie within 1.5×:
    by parameters they would be one size; by recorded backbone they are two, and a variant's
    heads (52.7k on 24x2) keep it on its backbone."""
    for (shape, counts) in (((16, 4), (17_700, 23_200)), ((24, 2), (24_100, 28_600))):
        for seed, (family, alpha, n) in enumerate((("jepa", 1.0, counts[0]),
                                                   ("next-latent", 0.5, counts[1]))):
            _sized(tmp_path, "boxes", shape, n, family, alpha, seed)
    _sized(tmp_path, "boxes", (24, 2), 52_668, "multi-token")
    rows = collect(tmp_path)
    by_shape = dict(rows.select("shape", "size").unique().iter_rows())
    assert by_shape == {"16x4": 20_264, "24x2": 26_254}  # geometric means of the main line
    assert rows.filter(pl.col("family") == "multi-token")["size"].to_list() == [26_254]
    summary = summarise(rows)
    assert summary.filter(pl.col("family") == "multi-token")["shape"].to_list() == ["24x2"]
    assert "| boxes | 0.5 | multi-token | 26k | 24 × 2 | 1 |" in markdown(summary)


def test_a_task_without_recorded_backbones_falls_back_to_parameter_chains(tmp_path):
    """Results filed before the shape was recorded: sizes by parameter count, no shape."""
    for shape, n in (((16, 4), 17_700), ((24, 2), 24_100), ((64, 2), 120_000)):
        _sized(tmp_path, "boxes", shape, n, known=False)
    _sized(tmp_path, "othello-4", (8, 2), 2_000)  # another task, with its shape
    rows = collect(tmp_path)
    boxes = rows.filter(pl.col("task") == "boxes")
    assert boxes["shape"].null_count() == 3 and boxes["size"].n_unique() == 2
    assert rows.filter(pl.col("task") == "othello-4")["shape"].to_list() == ["8x2"]


def test_depth_at_a_fixed_width_is_contrasted_cell_by_cell(tmp_path):
    """24x2 and 24x4 (and 64x2): the report gives, per score, deeper − shallower over the main
    line's cells (a), here what the made-up qualities put there, with a t interval; a width run
    at one depth gives no row."""
    shapes = {(24, 2): (28_000, 0.5), (24, 4): (42_000, 0.7), (64, 2): (126_000, 0.9)}
    for (width, depth), (n, quality) in shapes.items():
        for a, family in ((0.0, "ntp"), (0.5, "next-latent"), (1.0, "jepa")):
            for seed in (0, 1):
                r = make(model=f"local/boxes-a{a:g}-d{width}x{depth}-s{seed}", family=family,
                         alpha=a, quality=quality + 0.1 * a + 0.01 * seed)
                r["task"]["name"] = "boxes"
                r["model"].update(n_params=n, width=width, depth=depth)
                results.save(r, tmp_path)
    rows = collect(tmp_path)
    contrast = depth_contrast(rows)
    dec = contrast.filter(pl.col("score") == "decodability").row(0, named=True)
    assert (dec["width"], dec["shallow"], dec["deep"], dec["cells"]) == (24, 2, 4, 3)
    assert dec["params_ratio"] == pytest.approx(1.5)
    per_cell = (rows.filter(pl.col("width") == 24).group_by("alpha", "depth")
                .agg(pl.col("decodability").mean()).sort("alpha", "depth"))
    deltas = [b - a for a, b in zip(per_cell["decodability"][::2], per_cell["decodability"][1::2])]
    assert dec["delta"] == pytest.approx(sum(deltas) / 3) and dec["delta"] > 0
    assert dec["delta_lo"] <= dec["delta"] <= dec["delta_hi"]
    assert contrast["width"].unique().to_list() == [24]  # 64 was run at one depth only
    fits = regress(rows)
    fit = fits.filter(pl.col("score") == "decodability").row(0, named=True)
    slope = [fit["log2_params"] + fit["a_x_log2_params"] * a for a in (0.0, 0.5, 1.0)]
    with_fit = depth_contrast(rows, fits).filter(pl.col("score") == "decodability")
    assert with_fit["fit_predicts"][0] == pytest.approx(sum(slope) / 3 * math.log2(1.5))
    assert dec["fit_predicts"] is None  # no fits given
    _, paths = report(tmp_path, tmp_path / "spectrum.png")
    assert (tmp_path / "spectrum-depth.csv") in paths
    assert "Depth at a fixed width" in paths[-1].read_text()
    assert depth_contrast(rows.filter(pl.col("width") != 24)) is None
    # a score the deeper backbone never has (here: dropped) gives no row, not an error
    no_deep_voe = rows.with_columns(voe=pl.when(pl.col("depth") == 4).then(None)
                                    .otherwise(pl.col("voe")))
    assert "voe" not in depth_contrast(no_deep_voe)["score"].to_list()


def test_record_shapes_gives_an_old_result_what_an_evaluation_writes(tiny_task_dir, tmp_path):
    """scripts/spectrum_study.py's migration: a result filed before the shape was recorded
    gets exactly the model block a fresh evaluation writes; only where the stored block is the
    checkpoint's identity less the shape (a result of another checkpoint is refused)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    from spectrum_study import record_shapes

    cell, stored = _cell_and_result(tiny_task_dir, tmp_path, causal=False)
    fresh = stored.read_text()
    assert json.loads(fresh)["model"]["width"] == 16 and json.loads(fresh)["model"]["depth"] == 2
    old = json.loads(fresh)
    for key in ("width", "depth"):
        del old["model"][key]
    stored.write_text(json.dumps(old, indent=2) + "\n")
    assert record_shapes([cell], [tmp_path / "results"]) == 1
    assert stored.read_text() == fresh  # byte for byte what the evaluation wrote
    assert record_shapes([cell], [tmp_path / "results"]) == 0  # nothing left to do

    old["model"]["sha256"] = "0" * 64  # another checkpoint's result under this id
    stored.write_text(json.dumps(old))
    with pytest.raises(SystemExit, match="is not the checkpoint's"):
        record_shapes([cell], [tmp_path / "results"])
    old["model"]["id"] = "local/someone-else"
    stored.write_text(json.dumps(old))
    with pytest.raises(SystemExit, match="no checkpoint of local/someone-else"):
        record_shapes([cell], [tmp_path / "results"])
