"""The bad-input matrix (docs/reliability.md): each bad input makes the CLI print one line that
says what is wrong and what would be valid, exit 2, and write no result. Missing model path,
folder without weights, unknown task, unknown layer and slow tokenizers are in
test_cli_errors.py; spec field errors in test_registry.py; result checks in test_schema.py."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from probekit.cli import main
from probekit.errors import UserError
from probekit.worlds.boxes import Boxes
from tests.micro import copy_checkpoint, error_line, eval_args, write_task  # noqa: F401
from tests.result_factory import make

VOCAB = len(Boxes().vocabulary()) + 2  # the word tokenizer adds [PAD] and [UNK]


@pytest.fixture(scope="module")
def tasks(tmp_path_factory) -> Path:
    return write_task(tmp_path_factory.mktemp("micro"))


def bad(args: list[str], capsys, *needles: str, out: Path | None = None) -> str:
    """Run the CLI, expect exit 2 with one error line holding `needles`; returns the line."""
    code = main(args)
    line = error_line(capsys.readouterr().err)
    assert code == 2, line
    for needle in needles:
        assert needle in line, line
    if out is not None:
        assert not out.exists() or not any(out.rglob("*.json"))
    return line


# --- models ---------------------------------------------------------------------------------

@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_corrupt_or_truncated_weights(tiny_gpt2, tasks, tmp_path, capsys, damage):
    folder = copy_checkpoint(tiny_gpt2, tmp_path / "ckpt")
    weights = folder / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes({"truncated": data[:len(data) // 2], "garbage": b"\x07" * 64,
                         "empty": b""}[damage])
    out = tmp_path / "out"
    bad(eval_args(folder, tasks, out), capsys, "model.safetensors", "is corrupt or truncated",
        out=out)


@pytest.mark.parametrize("config, needle", [
    ({"n_layer": 3}, "builds 3 blocks but its weights hold 2 (transformer.h.0 … transformer.h.1)"),
    ({"n_embd": 64}, "describes a model of"),
    ({"model_type": "llama"}, "builds 32 blocks but its weights hold 2"),  # billions of
    ({"model_type": "llama", "num_hidden_layers": 2}, "describes a model of"),  # parameters
    ({"n_layer": 1}, "builds 1 block but its weights hold 2"),
    ({"n_layer": 0}, "sets the number of blocks (n_layer) to 0; it must be in [1, 1024]"),
    ({"n_layer": 10 ** 12}, "(MAX_LAYERS)"),  # would build blocks for ever
    ({"vocab_size": 0}, "sets vocab_size to 0; it must be in [1, 16,777,216] (MAX_SIZE)"),
    ({"vocab_size": 20}, f"weight transformer.wte.weight is ({VOCAB}, 32) in the file"),
])
def test_config_and_weights_that_do_not_match(tiny_gpt2, tasks, tmp_path, capsys, config, needle):
    folder = copy_checkpoint(tiny_gpt2, tmp_path / "ckpt", **config)
    out = tmp_path / "out"
    line = bad(eval_args(folder, tasks, out), capsys, needle, out=out)
    assert "config" in line and "restore the config" in line


def test_weights_missing_from_the_file(tiny_gpt2, tasks, tmp_path, capsys):
    folder = copy_checkpoint(tiny_gpt2, tmp_path / "ckpt")
    weights = load_file(str(folder / "model.safetensors"))
    del weights["transformer.ln_f.weight"]
    save_file(weights, str(folder / "model.safetensors"), metadata={"format": "pt"})
    bad(eval_args(folder, tasks, tmp_path / "out"), capsys,
        "1 weights the config needs are not in the file (first: transformer.ln_f.weight)")


CONFIG = {"n_layer": 2, "n_embd": 32, "model_type": "gpt2", "vocab_size": VOCAB}


@pytest.mark.parametrize("text, needle", [
    (json.dumps({**CONFIG, "n_layer": "two"}), "config.json: n_layer is 'two'; it must be a whole"),
    (json.dumps({**CONFIG, "n_layer": 2.5}), "config.json: n_layer is 2.5; it must be a whole"),
    (json.dumps({**CONFIG, "n_embd": -5}), "sets n_embd to -5; it must be in [1, 16,777,216]"),
    ("[1, 2]", "config.json: expected a JSON object, got list"),
    ('{"a":' + "[" * 100_000 + "]" * 100_000 + "}", "(MAX_JSON_DEPTH)"),
    (b"\xff\xfe{}", "config.json: cannot read (not UTF-8 text"),
])
def test_config_files_refused_before_loading(tiny_gpt2, tasks, tmp_path, capsys, text, needle):
    """Found by fuzzing the checkpoint files: these used to end as `unexpected
    StrictDataclassFieldValidationError` or `RecursionError` (exit 1)."""
    folder = copy_checkpoint(tiny_gpt2, tmp_path / "ckpt")
    (folder / "config.json").write_bytes(text if isinstance(text, bytes) else text.encode())
    bad(eval_args(folder, tasks, tmp_path / "out"), capsys, needle, out=tmp_path / "out")


@pytest.mark.parametrize("file, text, needle", [
    ("tokenizer.json", "[]", "(TypeError: "),
    ("tokenizer_config.json", "[]", "(AttributeError: "),
    ("tokenizer_config.json", json.dumps({"pad_token": 5}), "(TypeError: Special token pad_token"),
])
def test_tokenizer_files_that_do_not_build(tiny_gpt2, tasks, tmp_path, capsys, file, text,
                                           needle):
    folder = copy_checkpoint(tiny_gpt2, tmp_path / "ckpt")
    (folder / file).write_text(text)
    bad(eval_args(folder, tasks, tmp_path / "out"), capsys,
        "the tokenizer files of", "cannot be loaded", needle,
        "save the tokenizer again with tokenizer.save_pretrained()", out=tmp_path / "out")


def test_config_that_is_not_json(tiny_gpt2, tasks, tmp_path, capsys):
    folder = copy_checkpoint(tiny_gpt2, tmp_path / "ckpt")
    (folder / "config.json").write_text("{not json")
    bad(eval_args(folder, tasks, tmp_path / "out"), capsys, "config.json: not valid JSON (")


def test_folder_without_tokenizer(tiny_gpt2, tasks, tmp_path, capsys):
    folder = copy_checkpoint(tiny_gpt2, tmp_path / "ckpt")
    for path in folder.glob("tokenizer*"):
        path.unlink()  # transformers would quietly build an empty tokenizer instead
    bad(eval_args(folder, tasks, tmp_path / "out"), capsys, "has no tokenizer files")


def test_tokenizer_without_a_pad_token(tiny_gpt2, tmp_path):
    from probekit.adapters import load_model

    folder = copy_checkpoint(tiny_gpt2, tmp_path / "ckpt")
    config = folder / "tokenizer_config.json"
    settings = json.loads(config.read_text())
    del settings["pad_token"]
    config.write_text(json.dumps({**settings, "eos_token": "."}))
    adapter = load_model(folder, device="cpu")  # GPT-2 style: pads with the eos token
    assert adapter.tokenizer.pad_token == "."
    config.write_text(json.dumps(settings))
    with pytest.raises(UserError, match="has neither a pad nor an end-of-sequence token"):
        load_model(folder, device="cpu")


def test_layer_typo_suggests_the_nearest(tiny_gpt2, tasks, tmp_path, capsys):
    bad(eval_args(tiny_gpt2, tasks, tmp_path / "out", "--layers", "block.l"), capsys,
        "unknown layer of model local/tiny-gpt2 'block.l'", "did you mean 'block.1'")


@pytest.mark.parametrize("device, needle", [
    ("bogus", "is not a device"), ("meta", "holds no data"),
    ("cuda:99", "is not available here"),
])
def test_device_that_does_not_exist(tiny_gpt2, tasks, tmp_path, capsys, device, needle):
    args = eval_args(tiny_gpt2, tasks, tmp_path / "out")
    args[args.index("cpu")] = device
    bad(args, capsys, f"device {device!r}", needle)


# --- task specs -----------------------------------------------------------------------------

def test_malformed_yaml_names_the_line(tmp_path, capsys):
    (tmp_path / "broken.yaml").write_text("name: broken\nsplits: {train: [unclosed\n")
    bad(["tasks", "show", "broken", "--include-path", str(tmp_path)], capsys,
        "broken.yaml: line", "is not valid YAML")


@pytest.mark.parametrize("changes, needles", [
    ({"colour": "red"}, ["unknown field 'colour'", "valid fields:"]),
    ({"version": "one"}, [".version: expected int, got 'one'"]),
    ({"targets": "location"}, [".targets: expected list"]),
    ({"knobs": {"n_boxes": 50}}, ["knobs.n_boxes: 50 is out of range; valid range [2, 10]"]),
    ({"knobs": {"p_remove": 1.5}}, ["p_remove: 1.5 is out of range; valid range [0.0, 1.0]"]),
    ({"knobs": {"n_boxes": "many"}}, ["n_boxes: expected int, got 'many'"]),
    ({"splits": {"train": {"size": 0, "seed": 1}, "val": {"size": 4, "seed": 2},
                 "test": {"size": 4, "seed": 3}}}, ["splits.train.size: must be at least 1"]),
    ({"splits": {"train": {"size": 4, "seed": 1}, "val": {"size": 4, "seed": 2}}},
     ["missing split 'test'"]),
    ({"splits": {"train": {"size": 4}, "val": {"size": 4, "seed": 2},
                 "test": {"size": 4, "seed": 3}}}, ["splits.train: missing required field 'seed'"]),
    ({"targets": []}, ["list at least one target"]),
    ({"splits": {"train": {"size": 4, "seed": -1}, "val": {"size": 4, "seed": 2},
                 "test": {"size": 4, "seed": 3}}}, ["splits.train.seed: must be in [0, 2**32), "
                                                    "got -1"]),
    ({"control": {"seed": 2 ** 40}}, ["control.seed: must be in [0, 2**32)"]),
    ({"control": {"feature": "colour"}}, ["control.feature: 'colour' is not valid; valid:"]),
])
def test_bad_spec_names_the_field_and_what_is_valid(tmp_path, capsys, changes, needles):
    write_task(tmp_path, **changes)
    bad(["tasks", "show", "micro", "--include-path", str(tmp_path)], capsys, *needles)


def test_empty_split_is_refused_before_any_data(tmp_path, tiny_gpt2, capsys):
    write_task(tmp_path / "tasks", splits={"train": {"size": 0, "seed": 1},
                                           "val": {"size": 4, "seed": 2},
                                           "test": {"size": 4, "seed": 3}})
    bad(eval_args(tiny_gpt2, tmp_path / "tasks", tmp_path / "out"), capsys,
        "train.size: must be at least 1, got 0", out=tmp_path / "out")


# --- data that cannot be probed -------------------------------------------------------------

def test_every_target_with_a_single_class(tiny_gpt2, tmp_path, capsys):
    write_task(tmp_path / "tasks", knobs={"n_boxes": 2, "n_objects": 1, "n_ops": 1},
               splits={"train": {"size": 1, "seed": 1}, "val": {"size": 4, "seed": 2},
                       "test": {"size": 4, "seed": 3}})
    out = tmp_path / "out"
    bad(eval_args(tiny_gpt2, tmp_path / "tasks", out, "--no-random-init", "--layers", "embed"),
        capsys, "every target has a single class or value on train; nothing to probe", out=out)


@pytest.mark.parametrize("weight, value, needle", [
    ("transformer.h.1.attn.c_attn.weight", float("nan"), "produced NaN or infinite latents"),
    ("transformer.h.1.mlp.c_proj.bias", float("inf"), "produced NaN or infinite latents"),
    ("transformer.h.1.mlp.c_proj.bias", 1e6, "beyond the float16 range"),
])
def test_non_finite_latents_name_the_layer(tiny_gpt2, tasks, tmp_path, capsys, weight, value,
                                           needle):
    folder = copy_checkpoint(tiny_gpt2, tmp_path / "ckpt")
    weights = load_file(str(folder / "model.safetensors"))
    weights[weight] = torch.full_like(weights[weight], value)
    save_file(weights, str(folder / "model.safetensors"), metadata={"format": "pt"})
    out = tmp_path / "out"
    bad(eval_args(folder, tasks, out, "--no-random-init"), capsys, "layer block.1 ", needle,
        "--layers", out=out)


def short_gpt2(folder: Path, n_positions: int) -> Path:
    """A tiny GPT-2 that reads at most `n_positions` tokens (micro episodes are 27-33 words,
    their last step at word 20-26)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from probekit.tokenizer import word_tokenizer
    from probekit.worlds.boxes import Boxes

    tok = word_tokenizer(Boxes().vocabulary())
    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_positions=n_positions, n_embd=16, n_layer=1,
                               n_head=2, bos_token_id=0, eos_token_id=0, pad_token_id=0)
                    ).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def test_inputs_longer_than_the_context(tasks, tmp_path, capsys):
    model = short_gpt2(tmp_path / "ctx24", 24)
    out = tmp_path / "out"
    bad(eval_args(model, tasks, out, "--no-random-init"), capsys,
        "tokens long but local/ctx24 reads at most 24", "--truncate", out=out)
    bad(eval_args(model, tasks, out, "--no-random-init", "--truncate"), capsys,
        "but local/ctx24 reads at most 24; truncation cuts only the text after the last step",
        out=out)


def test_truncation_only_when_asked(tasks, tmp_path, capsys):
    model = short_gpt2(tmp_path / "ctx28", 28)  # every step fits; some questions do not
    out = tmp_path / "out"
    bad(eval_args(model, tasks, out, "--no-random-init"), capsys, "reads at most 28", out=out)
    assert main(eval_args(model, tasks, out, "--no-random-init", "--truncate")) == 0
    (path,) = out.rglob("micro.json")
    assert json.loads(path.read_text())["task"]["n_test"] == 16


# --- results --------------------------------------------------------------------------------

def _edited(text: str) -> str:
    result = json.loads(text)
    result["scores"]["decodability"]["value"] = 0.99
    return json.dumps(result)


@pytest.mark.parametrize("damage, needle", [
    (lambda t: t[:len(t) // 2], "not valid JSON"),
    (lambda t: "", "not valid JSON"),
    (lambda t: "[1, 2]", "expected a JSON object, got list"),
    (lambda t: t.replace('"probekit.result/2"', '"probekit.result/9"'),
     "schema 'probekit.result/9' is not supported"),
    (lambda t: re.sub(r'"pairs": [0-9]+', '"pairs": "many"', t, count=1), "causality"),
    (lambda t: re.sub(r'"iia": [0-9.]+', '"iia": Infinity', t, count=1),
     "Infinity is not a number JSON allows"),
    (lambda t: t.replace('"task": {', '"task": {"extra": 1, ', 1), "task"),
    (_edited, "decodability.value is 0.99 but per_layer gives"),
    (lambda t: b"\xff\xfe\x00 not UTF-8", "cannot read"),
])
def test_malformed_results_are_refused_and_the_store_is_untouched(tmp_path, capsys, damage,
                                                                  needle):
    damaged = damage(json.dumps(make(), indent=2))
    path = tmp_path / "result.json"
    path.write_bytes(damaged if isinstance(damaged, bytes) else damaged.encode())
    store = tmp_path / "store"
    bad(["submit", str(path), "--store", str(store), "--allow-unregistered"], capsys, needle,
        str(path))
    assert not store.exists()


# --- the command line itself ----------------------------------------------------------------

@pytest.mark.parametrize("args, needles", [
    (["eval"], ["the following arguments are required: model", "probekit eval --help"]),
    (["eval", "m", "--batch-size", "x"], ["argument --batch-size: invalid int value: 'x'"]),
    (["evaluate"], ["invalid choice: 'evaluate'"]),
    (["tasks"], ["required: ACTION"]),
    (["eval", "m", "--no-such-flag"], ["unrecognized arguments: --no-such-flag"]),
])
def test_usage_errors_are_one_line(capsys, args, needles):
    bad(args, capsys, *needles)


@pytest.mark.parametrize("extra, needle", [
    (["--batch-size", "0"], "--batch-size must be at least 1, got 0"),
    (["--seed", "-1"], "seed must be in [0, 2**32), got -1"),
    (["--seed", str(2 ** 64)], f"seed must be in [0, 2**32), got {2 ** 64}"),
    (["--tasks", ","], "no task given; name at least one"),
])
def test_eval_settings_out_of_range(tiny_gpt2, tasks, tmp_path, capsys, extra, needle):
    bad(eval_args(tiny_gpt2, tasks, tmp_path / "out", *extra), capsys, needle)


def test_an_unexpected_exception_is_one_line_exit_1_unless_debug(monkeypatch, capsys):
    import probekit.tasks

    def broken(*args, **kwargs):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(probekit.tasks, "load_task", broken)
    assert main(["tasks", "show", "boxes"]) == 1
    line = error_line(capsys.readouterr().err)
    assert line == ("probekit: error: unexpected ZeroDivisionError: division by zero (rerun with "
                    "--debug for the traceback, and please report it)")
    with pytest.raises(ZeroDivisionError):
        main(["--debug", "tasks", "show", "boxes"])
    with pytest.raises(UserError, match="invalid choice: 'shw'"):  # usage errors too
        main(["--debug", "tasks", "shw"])


def test_debug_shows_the_traceback_of_a_probekit_error(capsys):
    from probekit.errors import UnknownNameError

    with pytest.raises(UnknownNameError, match="did you mean 'boxes'"):
        main(["--debug", "tasks", "show", "boxs"])
    assert main(["tasks", "show", "boxs"]) == 2
    assert error_line(capsys.readouterr().err).endswith("did you mean 'boxes', 'boxes-text', 'boxes-frames'?")
