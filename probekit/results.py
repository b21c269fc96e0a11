"""The `probekit.result/1` record: its run identity and where it lives in a results store.

Store paths are an injective, reversible mapping of (model id, revision, task):
`<org>__<name>/<revision>/<task>.json` (a bare Hub name such as `gpt2` keeps its own folder
name). Every component must already be a safe file name (`NAME_RULE`); nothing is rewritten,
so two different identities never share a path, and `identity_of_path` reads the identity
back. An org may not contain `__` (the separator) nor end with `_`, and a bare name may not
contain `__`, so a model folder always splits at its first `__`.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePath
from typing import Any

from probekit.errors import ResultError, UserError
from probekit.io import write_json

SCHEMA = "probekit.result/1"
MAX_NAME = 96
NAME = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._-]{{0,{MAX_NAME - 1}}}")
NAME_RULE = (f"letters, digits, '.', '-' or '_' (ASCII only), starting with a letter or digit, "
             f"at most {MAX_NAME} characters")
TASK_NAME = re.compile(rf"[A-Za-z0-9][A-Za-z0-9_-]{{0,{MAX_NAME - 1}}}")
TASK_NAME_RULE = (f"letters, digits, '-' or '_' (ASCII only), starting with a letter or digit, "
                  f"at most {MAX_NAME} characters")
SEPARATOR = "__"




def check_name(text: Any, what: str, error: type[UserError] = ResultError,
               task: bool = False) -> str:
    """`text` if it can be one path component as it is (`NAME_RULE`; `TASK_NAME_RULE` for a
    task name, which also names Hub splits and configs), else `error` stating the rule. Names
    are never rewritten: a rewrite could make two names one."""
    pattern, rule = (TASK_NAME, TASK_NAME_RULE) if task else (NAME, NAME_RULE)
    if not isinstance(text, str) or not pattern.fullmatch(text):
        shown = repr(text) if not isinstance(text, str) or len(text) <= 120 else \
            repr(text[:117] + "...")
        raise error(f"{what} {shown} must be {rule}, since it names a file")
    return text


def safe_component(text: str, what: str) -> str:
    """One path component made from a model, revision or task name: refused (never rewritten)
    unless it follows `NAME_RULE`, so it cannot escape the store (`..`, separators, empty)."""
    return check_name(text, what)


def split_model_id(model_id: Any, error: type[UserError] = ResultError) -> tuple[str, str]:
    """(org, name) of `ORG/NAME` (org "" for a bare Hub name such as `gpt2`), each checked;
    refuses ids that would not map one-to-one onto a store folder."""
    if not isinstance(model_id, str) or model_id.count("/") > 1:
        raise error(f"model id {model_id!r} cannot be used as a file name: write it as "
                    "ORG/NAME with one '/' (a local checkpoint is local/NAME)")
    org, _, name = model_id.rpartition("/")
    if org:
        check_name(org, "model org", error)
    check_name(name, "model name", error)
    dirname = f"{org}{SEPARATOR}{name}" if org else name
    if model_id_of_dirname(dirname) != model_id:
        rule = ("an org may not contain '__' or end with '_'" if org else
                "a model name without an org may not contain '__'")
        raise error(f"model id {model_id!r} cannot be filed: its store folder {dirname!r} "
                    f"would read back as {model_id_of_dirname(dirname)!r}, because "
                    f"'{SEPARATOR}' separates org from name there; {rule}")
    return org, name


def model_dirname(model_id: str, error: type[UserError] = ResultError) -> str:
    """`org/name` → `org__name`; a bare Hub name (`gpt2`) stays as it is. Reversed by
    `model_id_of_dirname`; ids that would not read back are refused."""
    org, name = split_model_id(model_id, error)
    return f"{org}{SEPARATOR}{name}" if org else name


def model_id_of_dirname(dirname: str) -> str:
    """The model id a store folder name stands for (`org__name` → `org/name`, split at the
    first `__`; a name without `__` is a bare Hub name)."""
    org, sep, name = dirname.partition(SEPARATOR)
    return f"{org}/{name}" if sep else dirname


def relative_path(result: dict[str, Any]) -> Path:
    """`<org>__<model>/<revision>/<task>.json`, the store layout of DESIGN.md."""
    model = result["model"]
    return (Path(model_dirname(model["id"])) / check_name(model.get("revision") or "main",
                                                          "revision")
            / f"{check_name(result['task']['name'], 'task name', task=True)}.json")


def identity_of_path(path: str | PurePath) -> tuple[str, str, str]:
    """(model id, revision, task) of a store path `<org>__<model>/<revision>/<task>.json`: the
    inverse of `relative_path`."""
    parts = PurePath(path).parts[-3:]
    if len(parts) != 3 or not parts[2].endswith(".json"):
        raise ResultError(f"{str(path)!r} is not <org>{SEPARATOR}<model>/<revision>/<task>.json")
    return model_id_of_dirname(parts[0]), parts[1], parts[2][:-len(".json")]


def identity(result: dict[str, Any]) -> tuple[str, str, str]:
    """(model id, revision, task) of a result, as its store path encodes them."""
    return (result["model"]["id"], result["model"].get("revision") or "main",
            result["task"]["name"])


def save(result: dict[str, Any], root: str | Path) -> Path:
    """Write `result` atomically under `root` at its store path; returns the path."""
    path = Path(root) / relative_path(result)
    write_json(path, result)
    return path
