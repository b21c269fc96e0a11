"""Security: no one's code runs by accident (no remote code unless asked, no unpickling of
weights, caches or results), names never escape their folder, Hub tokens are never written,
and the leaderboard refuses a summary that does not follow from its own rows."""

from __future__ import annotations

import ast
import inspect
import json
import pickle
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from safetensors.torch import load_file

import probekit
from probekit.adapters import load_model
from probekit.cli import build_parser, main
from probekit.errors import ModelError, ResultError, SpecError
from probekit.results import model_dirname, relative_path, safe_component
from tests.micro import MICRO_TASK, copy_checkpoint, error_line, eval_args, write_task  # noqa: F401
from tests.result_factory import make

PACKAGE = Path(probekit.__file__).parent
TOKEN = "hf_probekitTestSecretDoNotLeak0123456789"


@pytest.fixture(scope="module")
def tasks(tmp_path_factory) -> Path:
    return write_task(tmp_path_factory.mktemp("micro"))


# --- the source itself ----------------------------------------------------------------------

UNPICKLERS = ("pickle.load", "pickle.loads", "pickle.Unpickler", "dill.load", "dill.loads",
              "joblib.load", "marshal.load", "marshal.loads", "shelve.open", "cloudpickle.load",
              "cloudpickle.loads")


def unsafe_calls(source: str) -> list[str]:
    """What can run someone else's code in `source`: unpickling (pickle, dill, joblib, marshal,
    shelve, pandas), torch.load without weights_only=True, numpy with allow_pickle, unsafe YAML,
    eval/exec, and remote code switched on."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            found += [f"from {node.module} import {a.name}" for a in node.names
                      if f"{node.module}.{a.name}" in UNPICKLERS]
        if not isinstance(node, ast.Call):
            continue
        func = ast.unparse(node.func)
        kwargs = {k.arg: ast.unparse(k.value) for k in node.keywords}
        if func in UNPICKLERS or func.endswith(("read_pickle", "to_pickle")):
            found.append(func)
        if func.endswith("torch.load") and kwargs.get("weights_only") != "True":
            found.append(f"{func} without weights_only=True")
        if func in ("np.load", "numpy.load") and kwargs.get("allow_pickle") not in (None, "False"):
            found.append(f"{func}(allow_pickle=...)")
        if func in ("yaml.load", "yaml.unsafe_load", "yaml.full_load", "eval", "exec"):
            found.append(func)
        if kwargs.get("trust_remote_code") == "True":
            found.append(f"{func}(trust_remote_code=True)")
    return found


def test_the_scanner_finds_what_it_looks_for():
    bad = ("from pickle import loads\npickle.load(f)\ntorch.load(f)\n"
           "torch.load(f, weights_only=False)\nnp.load(f, allow_pickle=True)\nyaml.load(s)\n"
           "eval(s)\njoblib.load(f)\ndf.to_pickle(p)\n"
           "AutoModel.from_pretrained(p, trust_remote_code=True)\n")
    assert len(unsafe_calls(bad)) == 10
    fine = ("import pickle\ntry:\n    pass\nexcept pickle.UnpicklingError:\n    pass\n"
            "torch.load(f, weights_only=True)\nyaml.safe_load(s)\n"
            "AutoModel.from_pretrained(p, trust_remote_code=trust_remote_code)\n")
    assert unsafe_calls(fine) == []


def test_no_pickle_torch_load_or_remote_code_in_the_package():
    problems = {str(p.relative_to(PACKAGE)): unsafe_calls(p.read_text(encoding="utf-8"))
                for p in PACKAGE.rglob("*.py")}
    assert {k: v for k, v in problems.items() if v} == {}


def test_remote_code_is_off_unless_asked():
    from probekit.adapters.hf import HFAdapter

    for fn in (probekit.evaluate, load_model, HFAdapter.from_pretrained):
        assert inspect.signature(fn).parameters["trust_remote_code"].default is False
    args = build_parser().parse_args(["eval", "some/model"])
    assert args.trust_remote_code is False


# --- checkpoints that would run code --------------------------------------------------------

class _Payload:
    """Unpickling this touches a marker file: proof that code ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_pickled_checkpoint_is_never_unpickled(tiny_gpt2, tasks, tmp_path, capsys):
    import torch

    marker = tmp_path / "code-ran"
    folder = copy_checkpoint(tiny_gpt2, tmp_path / "ckpt")
    weights = dict(load_file(str(folder / "model.safetensors")))
    (folder / "model.safetensors").unlink()
    torch.save({**weights, "payload": _Payload(marker)}, folder / "pytorch_model.bin")
    assert main(eval_args(folder, tasks, tmp_path / "out")) == 2
    line = error_line(capsys.readouterr().err)
    assert "holds Python objects besides tensors, which probekit never unpickles" in line
    assert not marker.exists()

    torch.save(weights, folder / "pytorch_model.bin")  # plain tensors load (weights_only=True)
    assert load_model(folder, device="cpu").identity.n_params > 0


def test_safetensors_win_over_a_pickle_beside_them(tiny_gpt2, tmp_path):
    import torch

    marker = tmp_path / "code-ran"
    folder = copy_checkpoint(tiny_gpt2, tmp_path / "ckpt")
    torch.save({"payload": _Payload(marker)}, folder / "pytorch_model.bin")
    load_model(folder, device="cpu")
    assert not marker.exists()


REMOTE_CONFIG = """\
from pathlib import Path
from transformers import GPT2Config

Path({marker!r}).touch()


class EvilConfig(GPT2Config):
    model_type = "evil"
"""
REMOTE_MODEL = """\
from transformers import GPT2LMHeadModel

from .evil_config import EvilConfig


class EvilModel(GPT2LMHeadModel):
    config_class = EvilConfig
"""


def test_remote_code_runs_only_with_the_flag(tiny_gpt2, tasks, tmp_path, capsys):
    marker = tmp_path / "code-ran"
    folder = copy_checkpoint(tiny_gpt2, tmp_path / "ckpt", model_type="evil", auto_map={
        "AutoConfig": "evil_config.EvilConfig", "AutoModelForCausalLM": "evil_model.EvilModel"})
    (folder / "evil_config.py").write_text(REMOTE_CONFIG.format(marker=str(marker)))
    (folder / "evil_model.py").write_text(REMOTE_MODEL)
    assert main(eval_args(folder, tasks, tmp_path / "out")) == 2
    line = error_line(capsys.readouterr().err)
    assert "ships its own Python code, which probekit runs only with --trust-remote-code" in line
    assert not marker.exists()
    with pytest.raises(ModelError):
        load_model(folder, device="cpu")
    assert not marker.exists()
    load_model(folder, device="cpu", trust_remote_code=True)
    assert marker.exists()


# --- names that become paths ----------------------------------------------------------------

@given(st.text(max_size=40))
def test_safe_component_never_leaves_its_folder(text):
    try:
        name = safe_component(text, "name")
    except ResultError:
        return
    assert name and "/" not in name and "\\" not in name and not name.startswith(".")
    assert Path("/store", name).resolve().parent == Path("/store")


@given(st.text(max_size=30), st.text(max_size=30), st.text(max_size=20))
def test_store_paths_stay_inside_the_store(model_id, revision, task):
    result = make()
    result["model"].update(id=model_id, revision=revision)
    result["task"]["name"] = task
    try:
        rel = relative_path(result)
    except ResultError:
        return
    assert not rel.is_absolute() and ".." not in rel.parts and len(rel.parts) == 3
    assert (Path("/store") / rel).resolve().is_relative_to(Path("/store"))
    assert rel.parts[0] == model_dirname(model_id)


@pytest.mark.parametrize("changes, needle", [
    ({"name": "../escape"}, "task.name: '../escape' must be letters, digits"),
    ({"name": "a/b"}, "task.name: 'a/b' must be letters, digits"),
    ({"splits": {"train": {"size": 4, "seed": 1}, "val": {"size": 4, "seed": 2},
                 "test": {"size": 4, "seed": 3}, "../../x": {"size": 4, "seed": 4}}},
     "split name '../../x' must be letters, digits and '_'"),
])
def test_task_and_split_names_cannot_escape_the_cache(changes, needle):
    import yaml

    from probekit.tasks import TaskSpec

    with pytest.raises(SpecError) as caught:
        TaskSpec.parse({**yaml.safe_load(MICRO_TASK), **changes})
    assert needle in str(caught.value)


# --- tokens and stored files ----------------------------------------------------------------

def test_hub_tokens_are_never_written_and_nothing_is_pickled(tiny_gpt2, tasks, tmp_path,
                                                             monkeypatch, capsys):
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setenv("HUGGING_FACE_HUB_TOKEN", TOKEN)
    cache = tmp_path / "cache"
    monkeypatch.setenv("PROBEKIT_CACHE", str(cache))
    out, store = tmp_path / "out", tmp_path / "store"
    assert main(eval_args(tiny_gpt2, tasks, out)) == 0
    (result,) = out.rglob("micro.json")
    assert main(["submit", str(result), "--store", str(store), "--include-path",
                 str(tasks)]) == 0
    assert main(["submit", str(result), "--repo", "org/board", "--dry-run", "--include-path",
                 str(tasks)]) == 0
    assert main(["submit", str(result), "--repo", "org/board", "--include-path",
                 str(tasks)]) == 2  # offline: refused, and the message holds no token
    printed = capsys.readouterr()
    assert TOKEN not in printed.out + printed.err
    files = [p for root in (cache, out, store) for p in root.rglob("*") if p.is_file()]
    assert len(files) > 20
    for path in files:
        data = path.read_bytes()
        assert TOKEN.encode() not in data, path
        assert path.suffix not in (".pkl", ".pickle", ".pt", ".pth", ".bin", ".npy", ".npz")
        assert not looks_pickled(data), path
        if path.suffix == ".json":
            json.loads(data)


def looks_pickled(data: bytes) -> bool:
    """A pickle of protocol 2 or later starts with PROTO (0x80) and its version."""
    return len(data) > 1 and data[0] == 0x80 and 2 <= data[1] <= 5


def test_the_pickle_check_detects_pickles():
    assert all(looks_pickled(pickle.dumps({"a": 1}, protocol=p)) for p in (2, 3, 4, 5))
    assert not looks_pickled(b'{"a": 1}')


# --- submissions whose summary does not follow from their rows ------------------------------

@pytest.mark.parametrize("edit, needle", [
    (lambda s: s["decodability"].update(value=0.99), "decodability.value is 0.99 but per_layer"),
    (lambda s: s["decodability"].update(control=0.0), "decodability.control is 0.0"),
    (lambda s: s["decodability"].update(selectivity=0.9), "decodability.selectivity is 0.9"),
    (lambda s: s["decodability"].update(layer="block.9"), "block.9' has no per_layer rows"),
    (lambda s: s["decodability"].update(random_init=0.0), "random_init 0.0 is not the"),
    (lambda s: s.update(world_model_score=0.99), "world_model_score is 0.99 but"),
    (lambda s: s.update(verdict="neither"), "verdict is 'neither' but"),
])
def test_a_submission_whose_summary_does_not_follow_is_refused(tmp_path, capsys, edit, needle):
    from probekit.record import run_id

    result = make(gain=0.3)
    edit(result["scores"])
    result["run_id"] = run_id(result)  # a careful forger recomputes the identity too
    path = tmp_path / "forged.json"
    path.write_text(json.dumps(result))
    store = tmp_path / "store"
    assert main(["submit", str(path), "--store", str(store), "--allow-unregistered"]) == 2
    line = error_line(capsys.readouterr().err)
    assert needle in line, line
    assert not store.exists()


def test_the_honest_submission_is_filed(tmp_path, capsys):
    path = tmp_path / "honest.json"
    path.write_text(json.dumps(make(gain=0.3)))  # make() derives every summary from the rows
    assert main(["submit", str(path), "--store", str(tmp_path / "store"),
                 "--allow-unregistered"]) == 0
    assert len(list((tmp_path / "store").rglob("*.json"))) == 1
    assert "filed 1 result(s)" in capsys.readouterr().out
