"""Fuzzing: generated task specs, spec files, result JSON and command lines either work or fail
with a probekit error (CLI: exit 2 and one line) — never another exception, never a partial
file. Only cheap paths run inside the loops (parsing, validation, one episode, `tasks show`,
`submit`, and `eval` up to the point where probing would start)."""

from __future__ import annotations

import argparse
import copy
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from probekit import schema
from probekit.cli import build_parser, main
from probekit.errors import ProbekitError
from probekit.record import run_id
from probekit.tasks import REQUIRED_SPLITS, BUILTIN_TASKS, Task, TaskSpec
from tests.micro import MICRO_TASK, error_line, write_task
from tests.result_factory import make

FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])

SCALARS = (st.none() | st.booleans() | st.integers(-5, 300) | st.integers()
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=10)
           | st.sampled_from(["boxes", "location", "class", "regress", "train", "step_text",
                              "../x", "", "destination", "last_touch", "query"]))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=6)


def paths(obj: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path in a JSON-like object (dict keys and list indexes)."""
    out = [prefix] if prefix else []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += paths(v, prefix + (i,))
    return out


@st.composite
def mutated(draw, base: Any, max_edits: int = 3) -> Any:
    """`base` with up to `max_edits` edits: a value replaced, a key deleted or one added."""
    obj = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, max_edits))):
        where = draw(st.sampled_from(paths(obj) or [()]))
        if not where:
            continue
        parent = obj
        for key in where[:-1]:
            parent = parent[key]
        action = draw(st.sampled_from(["set", "set", "delete", "add"]))
        if action == "set":
            parent[where[-1]] = draw(VALUES)
        elif action == "delete":
            del parent[where[-1]]
        elif isinstance(parent, dict):
            parent[draw(st.text(max_size=8))] = draw(VALUES)
    return obj


# --- task specs -------------------------------------------------------------------------------

BASES = [yaml.safe_load(MICRO_TASK)] + [yaml.safe_load(p.read_text())
                                        for p in sorted(BUILTIN_TASKS.glob("*.yaml"))]


@FUZZ
@given(st.sampled_from(BASES).flatmap(mutated))
def test_generated_specs_parse_or_fail_with_a_spec_error(raw):
    try:
        spec = TaskSpec.parse(raw)
    except ProbekitError as e:
        event(type(e).__name__)
        return
    event("valid")
    task = Task(spec)  # a spec that parses must also make data
    for split in REQUIRED_SPLITS:
        episode, pair = task.generate(split, 0)
        assert episode.n_steps == len(episode.step_spans) > 0
        assert pair is None or spec.counterfactual is not None  # some episodes have no pair


def knob_values(knobs) -> st.SearchStrategy[dict[str, Any]]:
    """Values inside each knob's declared range, for a random subset of `knobs`; integers at
    most 32 above their minimum (at the maxima some worlds take seconds per episode)."""
    def one(k):
        if k.choices is not None:
            pick = st.sampled_from(k.choices)
            return st.lists(pick, min_size=1, max_size=3, unique=True) if k.type is tuple else pick
        if k.type is bool:
            return st.booleans()
        if k.type is int:
            low = int(k.min if k.min is not None else -32)
            return st.integers(low, int(min(low + 32, k.max if k.max is not None else low + 32)))
        return st.floats(k.min if k.min is not None else -50.0,
                         k.max if k.max is not None else 50.0)

    return st.fixed_dictionaries({}, optional={k.name: one(k) for k in knobs})


@st.composite
def in_range_specs(draw) -> dict[str, Any]:
    """A built-in spec with its knobs, split knobs and counterfactual settings drawn inside
    their declared ranges: the parser accepts most, so the worlds' edges get exercised."""
    from probekit.worlds import WORLDS

    raw = copy.deepcopy(draw(st.sampled_from(BASES)))
    world = WORLDS.get(raw["world"])
    raw["knobs"] = draw(knob_values(world.knobs))
    raw["splits"]["test"]["knobs"] = draw(knob_values(world.knobs))
    if raw.get("counterfactual") is not None:
        raw["counterfactual"] = draw(knob_values(world.counterfactual_knobs))
    return raw


@FUZZ
@given(in_range_specs())
def test_specs_inside_the_declared_ranges_make_data(raw):
    test_generated_specs_parse_or_fail_with_a_spec_error.hypothesis.inner_test(raw)


@pytest.fixture(scope="module")
def spec_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzzed-specs")


YAML_TEXT = st.one_of(
    st.text(max_size=200),
    st.sampled_from(BASES).flatmap(mutated).map(lambda raw: yaml.safe_dump(raw)),
    st.lists(st.sampled_from(MICRO_TASK.splitlines(keepends=True) + [
        "  - [", "{", "knobs: {n_boxes: 9999}\n", "splits: null\n", ":\n", "\t", "- -\n",
        "name: t\n", "&a [*a]\n", "!!python/object:os.system\n"]), max_size=20).map("".join),
)


@FUZZ
@given(YAML_TEXT)
def test_spec_files_through_tasks_show(spec_dir, capsys, text):
    (spec_dir / "t.yaml").write_text(text, encoding="utf-8")
    code = main(["tasks", "show", "t", "--include-path", str(spec_dir)])
    err = capsys.readouterr().err
    event(f"exit {code}")
    assert code in (0, 2), err
    if code == 2:
        error_line(err)


# --- result JSON ------------------------------------------------------------------------------

RESULTS = st.builds(make, quality=st.floats(0, 1), gain=st.none() | st.floats(-0.5, 1),
                    alpha=st.none() | st.floats(0, 1), seed=st.integers(0, 3))


@st.composite
def results(draw) -> Any:
    result = draw(RESULTS.flatmap(mutated))
    if isinstance(result, dict) and draw(st.booleans()):
        try:  # a careful forger: the identity matches whatever the content became
            result["run_id"] = run_id(result)
        except (KeyError, TypeError, AttributeError):
            pass
    return result


@FUZZ
@given(results())
def test_generated_results_validate_or_fail_with_a_result_error(result):
    try:
        text = json.dumps(result)
    except ValueError:  # NaN and infinities are not JSON; loads() refuses their tokens
        text = json.dumps(result, allow_nan=True)
    for check in (lambda: schema.validate(result), lambda: schema.loads(text)):
        try:
            check()
            event("valid")
        except ProbekitError as e:
            event(str(e).split(": ")[1][:30])


@FUZZ
@given(st.text(max_size=300) | st.binary(max_size=300).map(lambda b: b.decode("latin-1")))
def test_arbitrary_text_is_not_a_result(text):
    with pytest.raises(ProbekitError):
        schema.loads(text)


@pytest.fixture(scope="module")
def submit_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzzed-results")


@settings(FUZZ, max_examples=100)
@given(results())
def test_submit_files_everything_or_nothing(submit_dir, capsys, result):
    path, store = submit_dir / "r.json", submit_dir / "store"
    shutil.rmtree(store, ignore_errors=True)
    path.write_text(json.dumps(result, allow_nan=True))
    code = main(["submit", str(path), "--store", str(store), "--allow-unregistered"])
    err = capsys.readouterr().err
    assert code in (0, 2), err
    if code == 2:
        error_line(err)
        assert not store.exists()
    else:
        (filed,) = store.rglob("*.json")
        assert schema.load(filed) == result
        from probekit.store import LOCK_FILE

        assert not [p for p in store.rglob("*") if p.name.startswith(".")
                    and p != store / LOCK_FILE]  # no temporary file left; the lock stays


# --- command lines ----------------------------------------------------------------------------

def commands(parser: argparse.ArgumentParser, prefix: tuple = ()) -> dict[tuple, list[str]]:
    """Every (sub)command path of the CLI and its option strings, read from the parser."""
    out = {}
    options = [s for a in parser._actions for s in a.option_strings]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out.update(commands(sub, prefix + (name,)))
    out[prefix] = options
    return out


COMMANDS = commands(build_parser())
WORDS = st.sampled_from(["boxes", "micro", "boxs", "0", "-1", "1e9", "x", "", ",", "cpu",
                         "cuda", "block.1", "org/name", "../up", "--", "-", "nan", "1.5"])


@st.composite
def command_lines(draw) -> list[str]:
    path = draw(st.sampled_from(sorted(COMMANDS)))
    options = COMMANDS[path] or ["--help"]
    tail = draw(st.lists(st.sampled_from(options) | WORDS | st.text(max_size=6), max_size=6))
    return list(path) + tail


@settings(FUZZ, max_examples=200)
@given(command_lines())
def test_any_command_line_parses_or_is_a_usage_error(argv):
    try:
        build_parser().parse_args(argv)
    except ProbekitError as e:
        assert e.exit_code == 2 and "\n" not in str(e)
    except SystemExit as e:  # --help, --version
        assert e.code == 0


@pytest.fixture(scope="module")
def fast_eval(tiny_gpt2, tmp_path_factory):
    """`eval` up to the point where probing would start: the model loads once (errors are not
    memoised) and evaluate_task returns a stored result instead of probing."""
    import functools

    import probekit.evaluation
    from probekit.adapters.hf import HFAdapter

    mp = pytest.MonkeyPatch()
    load = functools.lru_cache(HFAdapter.from_pretrained.__func__)
    mp.setattr(HFAdapter, "from_pretrained", classmethod(
        lambda cls, name, **kw: load(cls, name, **{k: v for k, v in sorted(kw.items())})))
    mp.setattr(probekit.evaluation, "evaluate_task",
               lambda adapter, twin, task, layers, **kw: make(gain=None))
    mp.setattr("probekit.decodability.plot_depth", lambda result, path: path)
    mp.setattr("probekit.causal.heatmap.plot_causal", lambda result, path: path)
    yield write_task(tmp_path_factory.mktemp("tasks")), tmp_path_factory.mktemp("out")
    mp.undo()


EVAL_OPTIONS = {
    "--tasks": ["micro", "boxs", "", ",", "micro,micro", "micro,nope", "micro,", "bóxes",
                " micro ", "../micro"],
    "--layers": ["embed", "block.1,embed", "block.9", "", ",", "block.l", "embed,embed",
                 "embed,,block.1", " "],
    "--device": ["cpu", "auto", "bogus", "meta", "cuda:7", ""],
    "--batch-size": ["1", "0", "-3", "32", "x"],
    "--seed": ["0", "-1", "7", str(2 ** 64), "1e3"],
}


@st.composite
def eval_lines(draw, model: str, tasks: Path, out: Path) -> list[str]:
    outs = [str(out)] * 4 + [str(out.parent / "a-file"), str(out.parent / "a-file" / "sub")]
    argv = ["eval", draw(st.sampled_from([model] * 4 + [model + "-missing", "org/name", "",
                                                      "org__x/y", "a/b/c", "boxes-gpt2-tiny"])
                         | st.text(max_size=8)),
            "--out", draw(st.sampled_from(outs)), "--include-path", str(tasks)]
    for flag, values in EVAL_OPTIONS.items():
        if draw(st.booleans()):
            argv += [flag, draw(st.sampled_from(values) | st.text(max_size=5))]
    argv += draw(st.lists(st.sampled_from(["--truncate", "--no-random-init"]), max_size=2,
                          unique=True))
    return argv


@settings(FUZZ, max_examples=120)
@given(st.data())
def test_eval_arguments_work_or_fail_with_one_line(tiny_gpt2, fast_eval, capsys, data):
    tasks, out = fast_eval
    (out.parent / "a-file").write_text("not a folder")
    argv = data.draw(eval_lines(str(tiny_gpt2), tasks, out))
    code = main(argv)
    err = capsys.readouterr().err
    event(f"exit {code}")
    assert code in (0, 2), (argv, err)
    if code == 2:
        error_line(err)
    assert not [p for p in out.rglob("*") if p.name.startswith(".")]


# --- commands on files: submit, leaderboard, data, tasks --------------------------------------

@pytest.fixture(scope="module")
def file_world(tmp_path_factory) -> Path:
    """A folder of things a command line can name: a task folder, a result, a file, an empty
    folder, a store with one result, a folder that is in the way."""
    from probekit.io import write_json

    root = tmp_path_factory.mktemp("file-commands")
    write_task(root / "tasks")
    write_json(root / "r.json", make())
    write_json(root / "a__b.json", make(model="a__b/c"))
    (root / "deep.json").write_text("[" * 5000 + "]" * 5000)
    (root / "afile").write_text("x")
    (root / "empty").mkdir()
    assert main(["submit", str(root / "r.json"), "--store", str(root / "store")]) == 0
    (root / "site" / "index.html").mkdir(parents=True)
    return root


FILE_COMMANDS = [["submit"], ["leaderboard", "build"], ["data", "export"], ["tasks", "new"],
                 ["tasks", "show"], ["tasks", "list"], ["data", "push"]]


@st.composite
def file_lines(draw, root: Path) -> list[str]:
    places = [str(root / p) for p in ("tasks", "r.json", "a__b.json", "deep.json", "afile",
                                      "empty", "store", "site", "nope", "afile/sub")]
    words = st.sampled_from(places + ["micro", "bóxes", "", "..", "org/name",
                                      "a__b/c", "--replace", "--dry-run", "--recursive",
                                      "--allow-unregistered", "--world", "--out", "--store",
                                      "--repo", "--task", "--include-path"]) | st.text(max_size=5)
    return list(draw(st.sampled_from(FILE_COMMANDS))) + draw(st.lists(words, max_size=6))


@settings(FUZZ, max_examples=150)
@given(st.data())
def test_file_commands_work_or_fail_with_one_line(file_world, capsys, monkeypatch, data):
    """`data export` is given a micro task (cheap to generate); `data push` stays offline."""
    monkeypatch.chdir(file_world)
    argv = data.draw(file_lines(file_world))
    before = sorted(p for p in (file_world / "store").rglob("*.json"))
    code = main(argv)
    err = capsys.readouterr().err
    event(f"{argv[0]} exit {code}")
    assert code in (0, 2), (argv, err)
    if code == 2:
        error_line(err)
        assert sorted(p for p in (file_world / "store").rglob("*.json")) == before
