"""Validate first, work second: every input in docs/reliability.md's preflight table gets its
exit code and one clear line before any model is loaded, any data is generated or any file is
written. `no_work` makes loading a model or generating a split fail the test outright."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

import probekit.adapters
from probekit.cli import main
from tests.micro import copy_checkpoint, error_line, eval_args, write_task


@pytest.fixture(scope="module")
def tasks(tmp_path_factory) -> Path:
    return write_task(tmp_path_factory.mktemp("micro"))


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("PROBEKIT_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def no_work(monkeypatch, cache):
    """Loading a model or generating a split is a test failure; afterwards nothing may have
    been written to the cache."""
    import probekit.evaluation  # imported before the patch: it binds load_model at import,
    from probekit.tasks import Task  # and would keep the forbidden one for later tests

    def forbidden(*args, **kwargs):
        raise AssertionError("the work started before the input was refused")

    monkeypatch.setattr(probekit.adapters, "load_model", forbidden)
    monkeypatch.setattr(probekit.evaluation, "load_model", forbidden)
    monkeypatch.setattr(Task, "_build", forbidden)
    yield
    assert not cache.exists() or not any(cache.rglob("*"))


def refused(argv: list[str], capsys, code: int, *needles: str) -> str:
    got = main(argv)
    captured = capsys.readouterr()
    line = error_line(captured.err)
    assert got == code, line
    for needle in needles:
        assert needle in line, line
    assert "add " not in captured.out and "wrote" not in captured.out
    return line


# --- eval -------------------------------------------------------------------------------------

def test_out_naming_a_file(tiny_gpt2, tasks, tmp_path, capsys, no_work):
    (tmp_path / "results").write_text("mine")
    refused(eval_args(tiny_gpt2, tasks, tmp_path / "results"), capsys, 2,
            "--out", "is a file, not a folder")
    refused(eval_args(tiny_gpt2, tasks, tmp_path / "results" / "sub"), capsys, 2,
            "cannot be created", "is a file, not a folder")
    assert (tmp_path / "results").read_text() == "mine"


def test_a_file_where_the_results_folder_goes(tiny_gpt2, tasks, tmp_path, capsys, no_work):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "local__tiny-gpt2").write_text("in the way")
    refused(eval_args(tiny_gpt2, tasks, tmp_path / "out"), capsys, 2,
            "local__tiny-gpt2' is a file where a folder of results will be")


@pytest.mark.parametrize("folder", ["模型", ".hidden", "a b", "-x"])
def test_model_folders_that_cannot_name_a_results_folder(tiny_gpt2, tasks, tmp_path, capsys,
                                                         no_work, folder):
    model = copy_checkpoint(tiny_gpt2, tmp_path / folder)
    line = refused(eval_args(model, tasks, tmp_path / "out"), capsys, 2,
                   f"model folder {str(model)!r} cannot name its results folder",
                   f"model name {folder!r} must be letters, digits, '.', '-' or '_' (ASCII "
                   "only), starting with a letter or digit", "rename the folder")
    assert line.count("must be") == 1  # the rule, once


def test_a_task_name_that_cannot_be_a_file_name(tiny_gpt2, tmp_path, capsys, no_work):
    """`bóxes` used to be evaluated, saved as b-xes.json, then refused by submit."""
    folder = write_task(tmp_path / "tasks", name="bóxes")
    line = refused(eval_args(tiny_gpt2, folder, tmp_path / "out", task="bóxes"), capsys, 2,
                   "name: 'bóxes' must be letters, digits, '-' or '_' (ASCII only), starting "
                   "with a letter or digit")
    assert line.count("must be") == 1
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("flag, value, needle", [
    ("--tasks", "micro,micro", "--tasks names task 'micro' twice; name each task once"),
    ("--tasks", "micro,", "has an empty task name between commas"),
    ("--tasks", " , ", "no task given; name at least one"),
    ("--layers", ",", "--layers ',' names no layer; name at least one (e.g. embed,block.0), "
                      "or leave the option out to probe every layer"),
    ("--layers", "", "--layers '' names no layer"),  # used to mean every layer, silently
    ("--layers", "embed,,block.1", "has an empty layer name between commas"),
    ("--layers", "embed,embed", "names layer 'embed' twice"),
    ("--batch-size", "0", "--batch-size must be at least 1, got 0"),
    ("--seed", "-1", "seed must be in [0, 2**32), got -1"),
])
def test_options_refused_before_the_model_loads(tiny_gpt2, tasks, tmp_path, capsys, no_work,
                                                flag, value, needle):
    args = eval_args(tiny_gpt2, tasks, tmp_path / "out")
    if flag == "--tasks":
        args[args.index("--tasks") + 1] = value
    else:
        args += [flag, value]
    refused(args, capsys, 2, needle)


def test_the_model_name_is_checked_before_anything(tasks, tmp_path, capsys, no_work):
    refused(eval_args("", tasks, tmp_path / "out"), capsys, 2, "no model given")


@pytest.mark.parametrize("size, needle", [
    (200_000_000, "train.size: 200,000,000 episodes is over the limit of 1,000,000 per split "
                  "(MAX_SPLIT_SIZE)"),
])
def test_split_sizes_are_bounded(tiny_gpt2, tmp_path, capsys, no_work, size, needle):
    folder = write_task(tmp_path / "tasks", splits={"train": {"size": size, "seed": 1},
                                                    "val": {"size": 4, "seed": 2},
                                                    "test": {"size": 4, "seed": 3}})
    refused(eval_args(tiny_gpt2, folder, tmp_path / "out"), capsys, 2, needle)
    refused(["data", "export", "micro", "--include-path", str(folder), "--out",
             str(tmp_path / "export")], capsys, 2, needle)


def test_the_data_a_split_would_make_is_bounded(tiny_gpt2, tmp_path, capsys, no_work):
    """Cellular automata of 128 cells × 512 rows hold about 350,000 numbers an episode:
    100,000 of them would not fit in memory."""
    folder = tmp_path / "tasks"
    folder.mkdir()
    (folder / "wide.yaml").write_text(
        "name: wide\nversion: 1\nworld: cellular\ndescription: d\nlicense: l\n"
        "knobs: {width: 128, steps: 512}\n"
        "splits: {train: {size: 100000, seed: 1}, val: {size: 4, seed: 2}, "
        "test: {size: 4, seed: 3}}\ntargets: [{name: cell, kind: class}]\n")
    refused(eval_args(tiny_gpt2, folder, tmp_path / "out", task="wide"), capsys, 2,
            "task wide, split train: 100,000 episodes of about", "over the limit of "
            "200,000,000 per split (MAX_SPLIT_VALUES)")


def test_episode_length_is_bounded(tiny_gpt2, tasks, tmp_path, capsys, no_work, monkeypatch):
    import probekit.tasks

    monkeypatch.setattr(probekit.tasks, "MAX_EPISODE_STEPS", 2)  # micro episodes have 3
    refused(eval_args(tiny_gpt2, tasks, tmp_path / "out"), capsys, 2,
            "task micro, split train: episodes have 3 steps, over the limit of 2 "
            "(MAX_EPISODE_STEPS)")


# --- the Hub ----------------------------------------------------------------------------------

def test_a_hub_id_with_hf_hub_offline_and_no_cached_copy(tasks, tmp_path, capsys, no_work):
    t0 = time.monotonic()
    refused(eval_args("org/name", tasks, tmp_path / "out"), capsys, 2,
            "model 'org/name' is not in the local Hugging Face cache and HF_HUB_OFFLINE is set")
    assert time.monotonic() - t0 < 5


def test_a_hub_id_when_the_network_is_down_fails_at_once(tasks, tmp_path, capsys, no_work,
                                                         monkeypatch):
    """It used to retry for 32 s, printing each retry, then exit 2; a network failure is a
    runtime error: exit 1, one line, no retry."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    t0 = time.monotonic()
    refused(eval_args("org/name", tasks, tmp_path / "out"), capsys, 1,
            "cannot reach http://127.0.0.1:9 for model 'org/name'", "check the network")
    assert time.monotonic() - t0 < 5


def test_a_hub_id_the_hub_does_not_have(tasks, tmp_path, capsys, no_work, monkeypatch):
    from tests.test_hub import FakeHub

    from huggingface_hub import constants

    hub = FakeHub()  # answers 404 for model info
    import threading

    threading.Thread(target=hub.serve_forever, daemon=True).start()
    try:
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(constants, "ENDPOINT", hub.url)
        refused(eval_args("org/name", tasks, tmp_path / "out"), capsys, 2,
                "model 'org/name' is not on", "check the id")
    finally:
        hub.shutdown()


@pytest.mark.parametrize("command", ["submit", "data push"])
def test_publishing_when_the_network_is_down_fails_at_once(tmp_path, capsys, monkeypatch,
                                                          tiny_task_dir, command):
    """`submit --repo` and `data push` used to retry for 30 s, printing every retry."""
    from huggingface_hub import constants

    from probekit.io import write_json
    from tests.result_factory import make

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    if command == "submit":
        argv = ["submit", str(write_json(tmp_path / "r.json", make())), "--repo", "org/board"]
    else:
        argv = ["data", "push", "boxes-tiny", "--include-path", str(tiny_task_dir), "--repo",
                "org/board"]
    t0 = time.monotonic()
    refused(argv + ["--endpoint", "http://127.0.0.1:9"], capsys, 1,
            "cannot reach http://127.0.0.1:9 (Connection refused); check the network")
    assert time.monotonic() - t0 < 10


# --- once the model is loaded, before any latents -----------------------------------------

def _gpt2_with(folder: Path, words: list[str], normalize_digits: bool = False) -> Path:
    """A tiny GPT-2 whose word tokenizer knows only `words` (optionally reading every digit
    as 0)."""
    import torch
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    vocab = {"[PAD]": 0, "[UNK]": 1, **{w: i + 2 for i, w in enumerate(words)}}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    if normalize_digits:
        tok.normalizer = normalizers.Replace(Regex("[0-9]"), "0")
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]")
    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(vocab_size=len(vocab), n_positions=64, n_embd=16, n_layer=1,
                               n_head=2, bos_token_id=0, eos_token_id=0, pad_token_id=0)
                    ).save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder


@pytest.fixture
def no_latents(monkeypatch):
    import probekit.evaluation

    def forbidden(*args, **kwargs):
        raise AssertionError("latents were extracted before the tokenizer was checked")

    monkeypatch.setattr(probekit.evaluation, "evaluate_task", forbidden)


def test_a_tokenizer_that_loses_the_tasks_words(tasks, tmp_path, capsys, no_latents):
    """Every word becoming [UNK] used to give a result (decodability -0.07) that submit took."""
    model = _gpt2_with(tmp_path / "unk", ["put", "the", "in"])
    capsys.readouterr()  # the progress bar of saving it
    line = refused(eval_args(model, tasks, tmp_path / "out"), capsys, 2,
                   "the tokenizer of local/unk turns 14 of the 17 words of task micro into its "
                   "unknown token '[UNK]'", "'key'", "use a tokenizer that covers")
    assert "'put'" not in line
    assert not (tmp_path / "out").exists()


def test_a_tokenizer_that_merges_the_tasks_words(tasks, tmp_path, capsys, no_latents):
    from probekit.preflight import task_words
    from probekit.tasks import load_task

    words = task_words(load_task("micro", [tasks]))
    model = _gpt2_with(tmp_path / "digits", words, normalize_digits=True)
    capsys.readouterr()
    refused(eval_args(model, tasks, tmp_path / "out"), capsys, 2,
            "gives 16 distinct token sequences to the 17 words of task micro",
            "'0' = '1'", "cannot tell them apart")


def test_a_tokenizer_bigger_than_the_embedding_table(tiny_gpt2, tasks, tmp_path, capsys):
    from safetensors.torch import load_file, save_file

    folder = copy_checkpoint(tiny_gpt2, tmp_path / "small-vocab", vocab_size=8)
    weights = load_file(str(folder / "model.safetensors"))
    for key in ("transformer.wte.weight", "lm_head.weight"):
        if key in weights:
            weights[key] = weights[key][:8].clone()
    save_file(weights, str(folder / "model.safetensors"), metadata={"format": "pt"})
    capsys.readouterr()
    refused(eval_args(folder, tasks, tmp_path / "out"), capsys, 2,
            "the tokenizer of", "has token ids up to", "embedding table has 8 rows")


# --- submit, build, export, new ----------------------------------------------------------

def test_probekit_store_naming_a_file_fails_before_add(tmp_path, capsys, monkeypatch):
    from probekit.io import write_json
    from tests.result_factory import make

    (tmp_path / "store").write_text("not a folder")
    monkeypatch.setenv("PROBEKIT_STORE", str(tmp_path / "store"))
    r = write_json(tmp_path / "r.json", make())
    refused(["submit", str(r)], capsys, 2, "is a file, not a folder",
            "set PROBEKIT_STORE")
    refused(["submit", str(r), "--dry-run"], capsys, 2, "is a file, not a folder")


def test_leaderboard_build_checks_its_outputs_first(tmp_path, capsys):
    from probekit.io import write_json
    from tests.result_factory import make

    store = tmp_path / "store"
    assert main(["submit", str(write_json(tmp_path / "r.json", make())), "--store",
                 str(store)]) == 0
    site = tmp_path / "site"
    (site / "index.html").mkdir(parents=True)
    (site / "leaderboard.parquet").write_bytes(b"the old table")
    capsys.readouterr()
    refused(["leaderboard", "build", "--store", str(store), "--out", str(site)], capsys, 2,
            "index.html' is a folder where the leaderboard writes a file")
    assert (site / "leaderboard.parquet").read_bytes() == b"the old table"
    (tmp_path / "file").write_text("x")
    refused(["leaderboard", "build", "--store", str(store), "--out", str(tmp_path / "file")],
            capsys, 2, "is a file, not a folder")
    refused(["leaderboard", "build", "--store", str(tmp_path / "file"), "--out",
             str(tmp_path / "site2")], capsys, 2, "is a file, not a folder")
    assert not (tmp_path / "site2").exists()


def test_leaderboard_build_writes_both_files_or_neither(tmp_path, capsys, monkeypatch):
    """A failure while the second file is renamed into place restores the first."""
    import os

    from probekit.io import write_json
    from tests.result_factory import make

    store, site = tmp_path / "store", tmp_path / "site"
    assert main(["submit", str(write_json(tmp_path / "r.json", make())), "--store",
                 str(store)]) == 0
    site.mkdir()
    (site / "leaderboard.parquet").write_bytes(b"the old table")
    replace = os.replace

    def failing(src, dst):
        if str(dst).endswith("index.html"):
            raise OSError(28, "No space left on device")
        return replace(src, dst)

    monkeypatch.setattr(os, "replace", failing)
    capsys.readouterr()
    refused(["leaderboard", "build", "--store", str(store), "--out", str(site)], capsys, 1,
            "index.html", "No space left on device; free some space", "nothing was written")
    assert (site / "leaderboard.parquet").read_bytes() == b"the old table"
    assert sorted(p.name for p in site.iterdir()) == ["leaderboard.parquet"]


def test_data_export_checks_its_folder_first(tasks, tmp_path, capsys, no_work):
    (tmp_path / "file").write_text("x")
    refused(["data", "export", "micro", "--include-path", str(tasks), "--out",
             str(tmp_path / "file")], capsys, 2, "is a file")
    refused(["data", "export", "micro", "--include-path", str(tasks), "--out",
             str(tmp_path / "file" / "sub")], capsys, 2, "is a file, not a folder")


def test_tasks_new_checks_name_and_folder_first(tmp_path, capsys):
    refused(["tasks", "new", "bóxes", "--world", "boxes", "--out", str(tmp_path / "new")], capsys,
            2, "task name 'bóxes' must be letters, digits, '-' or '_' (ASCII only)")
    (tmp_path / "file").write_text("x")
    refused(["tasks", "new", "mine", "--world", "boxes", "--out", str(tmp_path / "file")], capsys,
            2, "--out", "is a file, not a folder")
    assert not (tmp_path / "new").exists()
    assert (tmp_path / "file").read_text() == "x"


def test_file_exists_is_not_a_full_disk(tmp_path):
    """An OSError for a file in the way names it; only a full disk says to free space."""
    from probekit.errors import StorageError
    from probekit.io import write_json

    (tmp_path / "a").write_text("x")
    with pytest.raises(StorageError) as caught:
        write_json(tmp_path / "a" / "b" / "r.json", {})
    message = str(caught.value)
    assert "free some space" not in message
    assert f"{str(tmp_path / 'a')!r} is a file where a folder is needed" in message


# --- JSON and YAML bounds ---------------------------------------------------------------

def test_a_huge_result_file_is_refused_unread(tmp_path, capsys):
    import tracemalloc

    big = tmp_path / "huge.json"
    with open(big, "wb") as fh:  # 200 MB, sparse: costs no disk
        fh.truncate(200 * 2 ** 20)
    tracemalloc.start()
    refused(["submit", str(big), "--store", str(tmp_path / "store")], capsys, 2,
            "200.0 MB is over the 32.0 MB limit for this file (MAX_JSON_BYTES)")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 20 * 2 ** 20  # it was never read (it used to take 5.4 GB)
    refused(["leaderboard", "build", "--store", str(_store_with(tmp_path, big)), "--out",
             str(tmp_path / "site")], capsys, 2, "(MAX_JSON_BYTES)")


def _store_with(tmp_path: Path, file: Path) -> Path:
    folder = tmp_path / "bigstore" / "results" / "org__m" / "main"
    folder.mkdir(parents=True)
    file.rename(folder / "boxes.json")
    return tmp_path / "bigstore"


@pytest.mark.parametrize("text, needle", [
    ("[" * 100_000 + "]" * 100_000, "nest deeper than Python can parse; the limit is 32 levels "
                                    "(MAX_JSON_DEPTH)"),
    ('{"a":' + "[" * 40 + "]" * 40 + "}", "nest 41 levels deep; the limit is 32 (MAX_JSON_DEPTH)"),
])
def test_deeply_nested_json_is_refused(tmp_path, capsys, text, needle):
    path = tmp_path / "deep.json"
    path.write_text(text)
    refused(["submit", str(path), "--store", str(tmp_path / "store")], capsys, 2, needle)


@pytest.mark.parametrize("text, needle", [
    ("name: micro\nversion: 1\nname: other\n", "line 3: key 'name' appears twice in one mapping "
                                               "(first on line 1)"),
    ("name: micro\n1: x\n", "line 2: key 1 is not a string; quote it"),
    ("name: micro\nyes: x\n", "line 2: key True is not a string"),
    ("a: &a [x, x]\nb: &b [*a, *a]\nc: [*b, *b]\n", "line 2: alias *a is not allowed"),
    ("a: " + "[" * 50 + "]" * 50 + "\n", "nest deeper than 16 levels (MAX_SPEC_DEPTH)"),
    ("description: '" + "x" * 300_000 + "'\n", "is over the 256.0 KB limit"),
])
def test_yaml_that_a_strict_spec_refuses(tmp_path, capsys, text, needle):
    (tmp_path / "micro.yaml").write_text(text)
    refused(["tasks", "show", "micro", "--include-path", str(tmp_path)], capsys, 2, needle)


def test_include_paths_are_read_one_folder_deep(tmp_path, capsys):
    """A CI workflow in a subfolder used to be read as a task and break every command."""
    write_task(tmp_path / "tasks")
    workflows = tmp_path / "tasks" / ".github" / "workflows"
    workflows.mkdir(parents=True)
    (workflows / "ci.yml").write_text("on: [push]\njobs: {test: {runs-on: ubuntu-latest}}\n")
    write_task(tmp_path / "tasks" / "more", name="deeper")
    assert main(["tasks", "list", "--include-path", str(tmp_path / "tasks")]) == 0
    listed = capsys.readouterr().out
    assert "micro" in listed and "deeper" not in listed and "ci" not in listed.split()
    assert main(["tasks", "list", "--include-path", str(tmp_path / "tasks"), "--recursive"]) == 0
    listed = capsys.readouterr().out
    assert "micro" in listed and "deeper" in listed  # hidden folders stay unread
    assert main(["tasks", "show", "deeper", "--include-path", str(tmp_path / "tasks")]) == 2
    assert "unknown task 'deeper'" in capsys.readouterr().err


# --- results that cannot be true ----------------------------------------------------------

def _with(change) -> dict:
    from probekit.record import run_id
    from tests.result_factory import make

    r = make()
    change(r)
    r["run_id"] = run_id(r)
    return r


@pytest.mark.parametrize("change, needle", [
    (lambda r: r["env"].update(date="9999-99-99"), "env.date '9999-99-99' is not a date"),
    (lambda r: r["env"].update(date="2999-01-01"), "env.date 2999-01-01 is in the future"),
    (lambda r: r["env"].update(date="1999-01-01"), "is before 2020-01-01 (MIN_DATE)"),
    (lambda r: r["env"].update(date="2026-02-30"), "is not a date"),
    (lambda r: r["task"].update(n_test=10 ** 9), "task.n_test is 1000000000; it must be a whole "
                                                 "number in [1, 1,000,000] (MAX_SPLIT_SIZE)"),
    (lambda r: r["model"].update(n_params=10 ** 15), "(MAX_PARAMS)"),
    (lambda r: r["scores"].update(world_model_score=1.5), "scores.world_model_score: 1.5 is "
                                                          "greater than the maximum of 1"),
    (lambda r: r["model"]["spectrum"].update(alpha=-0.5), "model.spectrum.alpha is -0.5"),
    (lambda r: r["scores"]["decodability"].update(value=1.7), "scores.decodability.value is "
                                                              "1.7; a normalised score is at "
                                                              "most 1"),
    (lambda r: r["per_layer"][0].update(metric="r2", test=3.0), "per_layer[0].test"),
    (lambda r: r["per_cell"][0].update(iia=2.0), "per_cell[0].iia"),
    (lambda r: r["scores"]["causality"].update(ci95=[0.5, 1.2]), "scores.causality.ci95[1] is "
                                                                 "1.2"),
    (lambda r: r["probe"].update(seed=-3), "probe.seed is -3"),
])
def test_results_that_cannot_be_true_are_refused(tmp_path, capsys, change, needle):
    from probekit.io import write_json

    path = write_json(tmp_path / "r.json", _with(change))
    refused(["submit", str(path), "--store", str(tmp_path / "store")], capsys, 2, needle)
    assert not (tmp_path / "store").exists()


def test_a_result_dated_today_is_accepted(tmp_path):
    import datetime as dt

    from probekit.io import write_json

    today = dt.datetime.now(dt.timezone.utc).date().isoformat()
    path = write_json(tmp_path / "r.json", _with(lambda r: r["env"].update(date=today)))
    assert main(["submit", str(path), "--store", str(tmp_path / "store")]) == 0


def test_misfiled_results_are_named_not_mixed(tmp_path, capsys):
    from probekit.io import write_json
    from tests.result_factory import make

    store = tmp_path / "store"
    path = write_json(tmp_path / "r.json", make(model="org/a"))
    assert main(["submit", str(path), "--store", str(store)]) == 0
    (store / "results" / "org__b").mkdir()
    (store / "results" / "org__a" / make()["model"]["revision"]).rename(
        store / "results" / "org__b" / make()["model"]["revision"])
    capsys.readouterr()
    refused(["submit", str(write_json(tmp_path / "b.json", make(model="org/b"))), "--store",
             str(store)], capsys, 2, "holds the result of org/a", "whose place is",
            "move or delete that file")


def test_colliding_model_ids_and_replace(tmp_path, capsys):
    """`a__b/c` and `a/b__c` used to share a folder, and --replace overwrote the other's."""
    from probekit.io import write_json
    from tests.result_factory import make

    store = tmp_path / "store"
    mine = write_json(tmp_path / "mine.json", make(model="a/b__c"))
    assert main(["submit", str(mine), "--store", str(store)]) == 0
    before = {p: p.read_bytes() for p in store.rglob("*.json")}
    capsys.readouterr()
    other = tmp_path / "other.json"
    r = make(model="a__b/c")
    other.write_text(json.dumps(r))
    for extra in ([], ["--replace"]):
        refused(["submit", str(other), "--store", str(store), *extra], capsys, 2,
                "model id 'a__b/c' cannot be filed: its store folder 'a__b__c' would read back "
                "as 'a/b__c'")
    assert {p: p.read_bytes() for p in store.rglob("*.json")} == before


def test_a_store_locked_too_long_fails_with_its_holder(tmp_path, capsys, monkeypatch):
    import os
    import threading

    from probekit import store as stores
    from probekit.io import write_json
    from tests.result_factory import make

    monkeypatch.setattr(stores, "LOCK_TIMEOUT_S", 0.3)
    root = tmp_path / "store"
    held, release = threading.Event(), threading.Event()

    def holder():
        with stores.Store(root).lock():
            held.set()
            release.wait(10)

    t = threading.Thread(target=holder)
    t.start()
    held.wait(10)
    try:
        refused(["submit", str(write_json(tmp_path / "r.json", make())), "--store", str(root)],
                capsys, 1, f"store {str(root)!r} is locked by another probekit process (pid "
                f"{os.getpid()} since", "for 0.3 s (LOCK_TIMEOUT_S)")
    finally:
        release.set()
        t.join()
    assert not list(root.rglob("*.json"))
