"""The `probekit.result/1` record: its run identity and where it lives in a results store."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from probekit.errors import ResultError
from probekit.io import stable_hash, write_json

SCHEMA = "probekit.result/1"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def run_id(result: dict[str, Any]) -> str:
    """Hash of model sha + task fingerprint + probe config + seeds + package versions."""
    env = result.get("env", {})
    return stable_hash({
        "model": result["model"]["sha256"],
        "task": result["task"]["fingerprint"],
        "probe": result["probe"],
        "packages": {k: env.get(k) for k in ("probekit", "torch", "transformers", "captum")},
    })


def safe_component(text: str, what: str) -> str:
    """One path component made from a model, revision or task name; refuses anything that could
    escape the store (`..`, separators, empty)."""
    clean = _UNSAFE.sub("-", text).strip("-")
    if not clean or clean in (".", "..") or clean.startswith("."):
        raise ResultError(f"{what} {text!r} cannot be used as a file name; use letters, digits, "
                          "'.', '-' or '_'")
    return clean


def model_dirname(model_id: str) -> str:
    """`org/name` → `org__name`; a name without an org gets `local__`."""
    org, _, name = model_id.rpartition("/")
    return f"{safe_component(org or 'local', 'model org')}__{safe_component(name, 'model name')}"


def relative_path(result: dict[str, Any]) -> Path:
    """`<org>__<model>/<revision>/<task>.json`, the store layout of DESIGN.md."""
    model = result["model"]
    return (Path(model_dirname(model["id"])) / safe_component(model.get("revision") or "main",
                                                              "revision")
            / f"{safe_component(result['task']['name'], 'task name')}.json")


def save(result: dict[str, Any], root: str | Path) -> Path:
    """Write `result` atomically under `root` at its store path; returns the path."""
    path = Path(root) / relative_path(result)
    write_json(path, result)
    return path
