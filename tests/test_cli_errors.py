"""Bad input: one clear line on stderr, exit code 2, no traceback, no results written."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from probekit.cli import main


def run(args: list[str], capsys) -> tuple[int, str]:
    code = main(args)
    err = capsys.readouterr().err
    return code, err


@pytest.fixture
def out(tmp_path) -> Path:
    return tmp_path / "results"


def assert_clean(code: int, err: str, out: Path, *needles: str) -> None:
    assert code == 2
    lines = [line for line in err.strip().splitlines() if line]
    assert len(lines) == 1 and lines[0].startswith("probekit: error: "), err
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], lines[0]
    assert not out.exists() or not any(out.rglob("*.json"))


def test_missing_model_path(out, capsys, tmp_path):
    code, err = run(["eval", str(tmp_path / "no-such-model"), "--out", str(out)], capsys)
    assert_clean(code, err, out, "does not exist")


def test_folder_without_weights(tiny_gpt2, tmp_path, out, capsys):
    folder = tmp_path / "noweights"
    shutil.copytree(tiny_gpt2, folder)
    (folder / "model.safetensors").unlink()
    code, err = run(["eval", str(folder), "--out", str(out)], capsys)
    assert_clean(code, err, out, "has no weights")


def test_unknown_task(tiny_gpt2, out, capsys):
    code, err = run(["eval", str(tiny_gpt2), "--tasks", "boxs", "--out", str(out)], capsys)
    assert_clean(code, err, out, "unknown task 'boxs'", "did you mean 'boxes'")


def test_unknown_layer(tiny_gpt2, out, capsys):
    code, err = run(["eval", str(tiny_gpt2), "--layers", "block.7", "--out", str(out)], capsys)
    assert_clean(code, err, out, "unknown layer", "block.0")


def test_tokenizer_without_offsets(tiny_gpt2, out, capsys, monkeypatch):
    import transformers

    class SlowTokenizer:
        is_fast = False  # like a pure-Python tokenizer: no offset mapping

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained",
                        lambda *a, **k: SlowTokenizer())
    code, err = run(["eval", str(tiny_gpt2), "--out", str(out)], capsys)
    assert_clean(code, err, out, "no offset mapping", "fast tokenizer")


def test_cli_process_exit_code_and_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "probekit", "tasks", "show", "boxs"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "probekit: error: unknown task 'boxs': did you mean 'boxes', 'boxes-text', 'boxes-frames'?"
