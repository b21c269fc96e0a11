"""`DecodabilityProbe`: scores by depth, one rule for constant targets, MDL, the result's shape,
reproducibility, and a second look with scikit-learn."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from probekit.decodability import DecodabilityProbe, Labels, depth_buckets
from probekit.errors import DataError, ProbekitWarning, UnknownNameError, UserError
from probekit.worlds import Target

ROW_KEYS = {"layer", "target", "depth", "metric", "chance", "train", "val", "test", "control",
            "random_init", "test_long", "mdl_bits"}
SCORE_KEYS = {"value", "pooled", "ci95", "layer", "control", "selectivity", "random_init", "mdl"}
MDL_KEYS = {"bits", "uniform_bits", "compression", "random_init_compression"}
SIZES = {"train": 240, "val": 80, "test": 80}
STATE = Target("state", "class", 3)


def episodes(n: int, steps: int, seed: int, readable: int | None = None, dim: int = 8,
             layers: int = 2, strength: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    """Latents [layers, n, steps, dim] and labels [n, steps, 1] of a 3-class state. Layer 0
    shows the state (one unit per class, plus noise) at steps < `readable` (every step by
    default), and nothing after; the other layers are noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, size=(n, steps, 1)).astype(np.float64)
    X = rng.normal(size=(layers, n, steps, dim)).astype(np.float32)
    shown = np.arange(steps) < (steps if readable is None else readable)
    for c in range(3):
        X[0, :, :, c] += strength * ((y[..., 0] == c) & shown)
    return X, y


def dataset(steps: int = 16, readable: int | None = None, long_steps: int | None = None,
            seed: int = 0, **kw) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    lat, ys = {}, {}
    for i, (split, n) in enumerate(SIZES.items()):
        lat[split], ys[split] = episodes(n, steps, seed + i, readable, **kw)
    if long_steps:
        lat["test_long"], ys["test_long"] = episodes(SIZES["test"], long_steps, seed + 9,
                                                     readable, **kw)
    return lat, ys


def quick(**kw) -> DecodabilityProbe:
    return DecodabilityProbe(**{"progress": False, "n_boot": 200, **kw})


def test_depth_buckets_put_the_last_step_in_the_last_quarter():
    buckets = dict(depth_buckets(16))
    assert [list(buckets[q]) for q in ("q1", "q4", "last")] == [[0, 1, 2, 3],
                                                                 [12, 13, 14, 15], [15]]
    assert list(buckets["all"]) == list(range(16))
    short = dict(depth_buckets(3))  # fewer steps than quarters: an early quarter is empty
    assert list(short["q4"]) == [2] and list(short["q1"]) == []


def test_early_readable_late_unreadable_state_scores_high_pooled_and_low_late(tmp_path):
    lat, ys = dataset(readable=8, layers=1)  # readable in the first half only
    result = quick(control=False, mdl=False).run(lat, Labels("early", (STATE,), ys))
    s = result.scores()
    assert s["layer"] == "layer.0"
    assert s["pooled"] > 0.4, s
    assert abs(s["value"]) < 0.1, s
    assert s["ci95"][0] <= s["value"] <= s["ci95"][1]
    by_depth = {r["depth"]: r["test"] for r in result.rows() if r["layer"] == "layer.0"}
    assert by_depth["q1"] > 0.9 and by_depth["q2"] > 0.9
    assert by_depth["q3"] < 0.45 and by_depth["q4"] < 0.45 and by_depth["last"] < 0.5
    path = result.plot_depth(tmp_path / "depth.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_state_readable_throughout_scores_high_late():
    lat, ys = dataset()
    s = quick(control=False, mdl=False).run(lat, Labels("always", (STATE,), ys)).scores()
    assert s["value"] > 0.9 and s["pooled"] > 0.9


def test_test_long_is_bucketed_by_its_own_length():
    lat, ys = dataset(readable=8, long_steps=32)  # readable for 8 steps: 1/4 of test_long
    result = quick(control=False, mdl=False).run(lat, Labels("long", (STATE,), ys))
    long = {r["depth"]: r["test_long"] for r in result.rows() if r["layer"] == "layer.0"}
    assert long["q1"] > 0.9 and long["q2"] < 0.45 and long["last"] < 0.5
    assert result.n_episodes == {**SIZES, "test_long": SIZES["test"]}


def constant_labels() -> Labels:
    """The readable state, a class target with one class and a constant regression target."""
    lat, ys = dataset()
    targets = (STATE, Target("lid", "class", 2), Target("mass", "regress"))
    y = {s: np.concatenate([v, np.zeros_like(v), np.full_like(v, 2.5)], axis=-1)
         for s, v in ys.items()}
    return lat, Labels("edge", targets, y)


def test_single_class_and_constant_targets_are_skipped_with_one_warning():
    lat, labels = constant_labels()
    with pytest.warns(ProbekitWarning) as caught:
        result = quick(control=False, mdl=False).run(lat, labels)
    skips = [w for w in caught if "skipping" in str(w.message)]
    assert len(skips) == 1
    assert "lid" in str(skips[0].message) and "mass" in str(skips[0].message)
    assert result.skipped == ["lid", "mass"] and result.targets == ["state"]
    assert {r["target"] for r in result.rows()} == {"state"}

    only_constant = Labels("edge", labels.targets[1:],
                           {s: y[..., 1:] for s, y in labels.y.items()})
    with pytest.warns(ProbekitWarning), pytest.raises(DataError, match="nothing to probe"):
        quick(control=False, mdl=False).run(lat, only_constant)


def test_the_spectrum_quick_probe_follows_the_same_rule():
    from probekit.spectrum.model import init_model
    from probekit.spectrum.train import Episodes, SpectrumTrainer, draw, quick_probe
    from probekit.tasks import load_task

    task = load_task("boxes")
    world = task.spec.world_for("train")
    probe = {s: draw(task, world, n, 0, i + 1, "tokens")
             for i, (s, n) in enumerate({"train": 40, "val": 20, "test": 20}.items())}
    lid = task.targets[0].name
    probe = {s: Episodes(e.batch, np.concatenate([np.zeros_like(e.labels[..., :1]),
                                                   e.labels[..., 1:]], -1))
             for s, e in probe.items()}  # the first target made single-class
    config = SpectrumTrainer(d_model=16, n_layers=1, n_heads=2, d_ff=32)._config(
        world, probe["train"])
    with pytest.warns(ProbekitWarning, match=rf"skipping \d+ target\(s\).*{lid}"):
        score = quick_probe(init_model(config, 0), task, probe)
    assert math.isfinite(score)


def test_mdl_compresses_labels_a_representation_encodes_and_not_noise():
    lat, ys = dataset(strength=4.0)
    result = quick(control=False).run(lat, Labels("mdl", (STATE,), ys))
    bits = result.mdl_bits[:, 0]
    n = SIZES["train"] * 16
    assert result.uniform_bits[0] == pytest.approx(n * math.log2(3))
    encoded, noise = result.uniform_bits[0] / bits
    assert encoded > 3.0, encoded
    assert 0.85 < noise < 1.1, noise  # noise cannot be compressed (and costs little more)
    m = result.scores()["mdl"]
    assert set(m) == MDL_KEYS and m["compression"] == pytest.approx(encoded)


def test_a_twin_and_a_control_task_are_scored_beside_the_model():
    lat, ys = dataset(seed=0)
    noise, _ = dataset(seed=5, strength=0.0)
    keys = {s: np.array([[f"{i}:{k}" for k in range(y.shape[1])] for i in range(len(y))])
            for s, y in ys.items()}  # every step its own type: a control nothing can learn
    labels = Labels("twin", (STATE,), ys, keys)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ProbekitWarning)  # a control feature of few types
        result = quick().run(lat, labels, twin=noise)
    s = result.scores()
    assert s["value"] > 0.9 and abs(s["random_init"]) < 0.15
    assert abs(s["control"]) < 0.15 and s["selectivity"] == pytest.approx(s["value"] -
                                                                          s["control"])
    assert s["mdl"]["compression"] > 3 * s["mdl"]["random_init_compression"]
    rows = result.rows()
    assert all(r["random_init"] is not None and r["control"] is not None for r in rows)


def test_a_control_task_whose_types_drew_one_label_predicts_that_label():
    lat, ys = dataset()
    keys = {s: np.full(y.shape[:2], "same") for s, y in ys.items()}  # one surface type
    with pytest.warns(ProbekitWarning, match="only 1 types"):
        result = quick(mdl=False).run(lat, Labels("one-type", (STATE,), ys, keys))
    controls = [r["control"] for r in result.rows() if r["depth"] == "all"]
    label = ys["train"][..., 0].reshape(-1)
    # every step gets the one control label, so the control probe is right everywhere
    assert controls == [1.0, 1.0] and len(np.unique(label)) == 3


def test_rows_and_scores_have_the_exact_keys_and_repeat_exactly():
    lat, ys = dataset(readable=12)
    keys = {s: np.array([[f"{k}" for k in range(y.shape[1])] for _ in range(len(y))])
            for s, y in ys.items()}
    labels = Labels("keys", (STATE, Target("size", "regress")),
                    {s: np.concatenate([y, y * 0.5 + 0.1], -1) for s, y in ys.items()}, keys)
    runs = []
    for cache in (False, True):  # a second fit, not a cache hit: the fit itself repeats
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ProbekitWarning)
            runs.append(quick(cache=cache).run(lat, labels, twin=dataset(seed=7)[0]))
    a, b = runs
    rows = a.rows()
    assert len(rows) == 2 * 2 * 6 and all(set(r) == ROW_KEYS for r in rows)
    assert {r["depth"] for r in rows} == {"q1", "q2", "q3", "q4", "last", "all"}
    assert {r["metric"] for r in rows} == {"accuracy", "r2"}
    for r in rows:
        has_bits = r["depth"] == "all" and r["metric"] == "accuracy"
        assert (r["mdl_bits"] is not None) == has_bits
        assert r["test_long"] is None
    s = a.scores()
    assert set(s) == SCORE_KEYS and set(s["mdl"]) == MDL_KEYS and len(s["ci95"]) == 2
    assert rows == b.rows() and s == b.scores()
    assert set(a.timings) == {"extract_s", "probe_s"} and a.n_episodes == SIZES
    other = DecodabilityProbe(seed=1, progress=False, n_boot=200)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ProbekitWarning)
        c = other.run(lat, labels, twin=dataset(seed=7)[0])
    assert c.scores()["mdl"]["bits"] != s["mdl"]["bits"]  # the seed orders the MDL blocks
    assert c.scores()["value"] == s["value"]  # and nothing else but the interval


def test_the_probe_cache_returns_what_a_fit_gives_and_misses_on_any_change(monkeypatch):
    import probekit.decodability.probe as module
    from sklearn.exceptions import ConvergenceWarning

    lat, ys = dataset(layers=1, dim=4)
    labels = Labels("cached", (STATE,), ys)
    fits = []
    real = module.fit_linear_probes
    monkeypatch.setattr(module, "fit_linear_probes", lambda *a, **k: fits.append(1) or real(*a, **k))
    fresh = quick(cache=False, control=False).run(lat, labels)
    n_fits = len(fits)
    stored = quick(control=False).run(lat, labels)  # a miss: fits, then stores
    hit = quick(control=False).run(lat, labels)
    assert len(fits) == 2 * n_fits  # the hit fitted nothing
    assert fresh.rows() == stored.rows() == hit.rows() and fresh.scores() == hit.scores()
    moved = {**lat, "val": lat["val"].copy()}
    moved["val"][0, 0, 0, 0] += 1.0  # one latent of one split
    quick(control=False).run(moved, labels)
    assert len(fits) == 3 * n_fits
    for _ in range(2):  # a hit shows the fit's warnings again
        with pytest.warns(ConvergenceWarning, match="max_iter=1"):
            quick(control=False, mdl=False, max_iter=1).run(lat, labels)


def test_depth_scores_agree_with_scikit_learn():
    """The second look: an independent scikit-learn fit on the same latents at the same penalty,
    scored on the first and the last quarter of the test episodes (the state fades with depth,
    so the two differ)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    steps, dim = 16, 8
    fade = np.linspace(2.5, 0.4, steps)[None, :]
    lat, ys = {}, {}
    for i, (split, n) in enumerate(SIZES.items()):
        rng = np.random.default_rng(20 + i)
        ys[split] = rng.integers(0, 3, size=(n, steps, 1)).astype(np.float64)
        x = rng.normal(size=(1, n, steps, dim)).astype(np.float32)
        for c in range(3):
            x[0, :, :, c] += fade * (ys[split][..., 0] == c)
        lat[split] = x
    result = quick(control=False, mdl=False).run(lat, Labels("sk", (STATE,), ys))
    X = {s: x[0].reshape(-1, dim) for s, x in lat.items()}
    scaler = StandardScaler().fit(X["train"])
    ref = LogisticRegression(C=1 / float(result.penalties[0, 0]), max_iter=2000, tol=1e-8).fit(
        scaler.transform(X["train"]), ys["train"].reshape(-1))
    rows = {r["depth"]: r["test"] for r in result.rows()}
    expected = {}
    for q in (1, 4):
        at = np.array([s for s in range(steps) if math.ceil(4 * (s + 1) / steps) == q])
        pred = ref.predict(scaler.transform(lat["test"][0][:, at].reshape(-1, dim)))
        expected[f"q{q}"] = float((pred == ys["test"][:, at, 0].reshape(-1)).mean())
    assert expected["q1"] > expected["q4"] + 0.2 and 0.4 < expected["q4"] < 0.9, expected
    for depth, value in expected.items():
        assert rows[depth] == pytest.approx(value, abs=0.01), (depth, rows, expected)


@pytest.mark.parametrize("kwargs, match", [
    ({"depths": 1}, "depths must be 'quartiles' or a number"),
    ({"depths": "halves"}, "depths must be"),
    ({"penalties": []}, "penalties must be a non-empty list"),
    ({"penalties": [1.0, -2.0]}, "penalties must be"),
    ({"max_iter": 0}, "max_iter must be"),
    ({"tol": 0}, "tol must be"),
    ({"batch_size": 0}, "batch_size must be"),
    ({"seed": -1}, "seed must be"),
    ({"n_boot": 0}, "n_boot must be"),
    ({"control": "yes"}, "control must be True or False"),
])
def test_bad_parameters_fail_at_run_with_one_line(kwargs, match):
    lat, ys = dataset()
    probe = DecodabilityProbe(**kwargs)  # nothing is checked or computed here
    with pytest.raises(UserError, match=match) as info:
        probe.run(lat, Labels("bad", (STATE,), ys))
    assert "\n" not in str(info.value)


def test_bad_inputs_name_the_fix():
    lat, ys = dataset()
    labels = Labels("bad", (STATE,), ys)
    with pytest.raises(UnknownNameError):
        quick(autocast="bf61").run(lat, labels)
    with pytest.raises(UserError, match="lack split 'val'"):
        quick(control=False).run({"train": lat["train"], "test": lat["test"]}, labels)
    with pytest.raises(UserError, match="not probed"):
        quick(control=False).run({**lat, "tset_long": lat["test"]}, labels)
    with pytest.raises(UserError, match="needs the surface keys"):
        quick().run(lat, labels)
    with pytest.raises(UserError, match="hold 40 episodes × 16 steps; the labels 80 × 16"):
        quick(control=False).run({**lat, "val": lat["val"][:, :40]}, labels)
    with pytest.raises(UserError, match="must be an Adapter or a dict"):
        quick(control=False).run([1, 2], labels)


@pytest.mark.slow
def test_on_the_quickstart_mdl_ranks_the_model_above_its_random_init_twin():
    """The shipped quickstart at its last block (one layer, one penalty, no control: the MDL
    ranking is what is tested here)."""
    from probekit.adapters import load_model
    from probekit.tasks import load_task

    adapter = load_model("boxes-gpt2-tiny", device="cpu")
    task = load_task("boxes")
    probe = DecodabilityProbe(control=False, penalties=[10.0], n_boot=200, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the probes' convergence at max_iter is not tested here
        result = probe.run(adapter, task, ["block.3"], twin=adapter.random_init(0))
    assert DecodabilityProbe.splits_of(task) == ["train", "val", "test", "test_long"]
    assert result.n_episodes == {"train": 2000, "val": 500, "test": 500, "test_long": 500}
    s = result.scores()
    assert s["mdl"]["compression"] > 2 * s["mdl"]["random_init_compression"], s["mdl"]
    assert s["mdl"]["random_init_compression"] > 1  # the twin is not useless either
    assert s["value"] > s["random_init"] + 0.3
    assert s["pooled"] > s["value"]  # the last quarter is harder than the episode on average
    late_long = [r["test_long"] for r in result.rows() if r["depth"] == "q4"]
    assert len(late_long) == len(result.targets) and None not in late_long


def test_test_long_is_left_out_with_a_warning_where_the_model_cannot_read_it():
    """gridworld-5x5's test_long episodes (132 positions) are longer than its spectrum
    references read (128): the headline splits are probed, test_long is left out and said so."""
    from probekit.adapters import load_model
    from probekit.errors import ProbekitWarning
    from probekit.tasks import load_task

    adapter = load_model("spectrum-gridworld-5x5-a0", device="cpu")
    task = load_task("gridworld-5x5").limited(24)
    with pytest.warns(ProbekitWarning, match="test_long left out .* reads at most 128"):
        result = DecodabilityProbe(control=False, mdl=False, progress=False).run(
            adapter, task, ["block.1"])
    rows = result.rows()
    assert rows and all(r["test_long"] is None for r in rows)
    assert all(r["test"] is not None for r in rows)


def test_control_labels_of_all_targets_at_once_equal_one_target_at_a_time():
    """The control task's labels, with the keys made unique once for every target, are each
    target's `ControlTask.labels` of its keys; a key keeps its label in every split."""
    from probekit.decodability.probe import _control_labels
    from probekit.probes.control import ControlTask
    from probekit.worlds import Target

    rng = np.random.default_rng(0)
    words = np.array([f"w{i}" for i in range(150)], dtype=object)
    keys = {s: words[rng.integers(0, 150, n)] for s, n in (("train", 600), ("test", 200))}
    Y = {s: rng.integers(0, 3, (len(k), 2)) for s, k in keys.items()}
    targets = [Target(name, "class", n_classes=3) for name in ("a", "b")]
    got = _control_labels(5, targets, keys, Y)
    for j, t in enumerate(targets):
        task = ControlTask(5).fit(keys["train"], Y["train"][:, j], t.name)
        for s in ("train", "test"):
            assert np.array_equal(got[s][:, j], task.labels(keys[s]))
    for s in ("train", "test"):  # one label per key type, the same across splits
        for w in set(keys["train"]) & set(keys[s]):
            seen = set(got[s][keys[s] == w, 0]) | set(got["train"][keys["train"] == w, 0])
            assert len(seen) == 1
    assert not np.array_equal(got["train"][:, 0], got["train"][:, 1])  # a draw per target
