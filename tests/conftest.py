"""Shared fixtures: offline Hugging Face, temporary caches, a small task and tiny models."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

TINY_TASK = """\
name: boxes-tiny
version: 1
world: boxes
description: A small boxes task for tests.
license: cc-by-4.0
knobs: {n_boxes: 3, n_objects: 3, n_ops: 5, style: sentences}
splits:
  train: {size: 240, seed: 1}
  val: {size: 80, seed: 2}
  test: {size: 80, seed: 3}
targets:
  - {name: location, kind: class}
control: {feature: step_text_and_index, seed: 0}
counterfactual: {variable: destination, step: last_touch, readout: query}
"""


@pytest.fixture(autouse=True, scope="session")
def _offline(tmp_path_factory: pytest.TempPathFactory):
    """No test downloads: the Hub is offline and every cache lives in a temporary folder."""
    root = tmp_path_factory.mktemp("env")
    saved = {k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "HF_HOME", "PROBEKIT_CACHE",
                                            "PROBEKIT_TASKS_PATH", "HF_DATASETS_OFFLINE")}
    os.environ.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", HF_HOME=str(root / "hf"),
                      PROBEKIT_CACHE=str(root / "probekit"))
    os.environ.pop("PROBEKIT_TASKS_PATH", None)
    yield
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """Tiny models run an order of magnitude faster on one torch thread on a shared CPU."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_task_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding `boxes-tiny.yaml` (pass it as an include path)."""
    folder = tmp_path_factory.mktemp("tasks")
    (folder / "boxes-tiny.yaml").write_text(TINY_TASK)
    return folder


def save_tiny_gpt2(folder: Path, vocabulary: list[str], seed: int = 0, n_layer: int = 2,
                   n_embd: int = 32) -> Path:
    """A random tiny GPT-2 with a word-level tokenizer, saved like any checkpoint."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from probekit.tokenizer import word_tokenizer

    tok = word_tokenizer(vocabulary)
    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=len(tok), n_positions=128, n_embd=n_embd, n_layer=n_layer,
                        n_head=2, bos_token_id=0, eos_token_id=0, pad_token_id=0)
    GPT2LMHeadModel(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_gpt2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from probekit.worlds.boxes import Boxes

    return save_tiny_gpt2(tmp_path_factory.mktemp("gpt2") / "tiny-gpt2", Boxes().vocabulary())
