"""Validate first, work second: everything an evaluation needs is checked before the first model
is loaded, any data is generated or any file is written.

`check_eval` checks names, options, task specs (and their size bounds), the model's name as a
results folder, the Hub's reachability for a Hub id and the output folder; `check_model` runs
once the model is loaded, before any latents are extracted: its layers, the result paths it
will write, and whether its tokenizer can read the tasks' words. `probekit eval` calls both;
`probekit.evaluate` can call them too.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from probekit.errors import ModelError, NetworkError, UserError
from probekit.results import model_dirname

TOKENIZER_SAMPLE = 16  # episodes per split whose words the tokenizer must read


@dataclass
class EvalPlan:
    """What `check_eval` validated: task names (each once), loaded tasks, layers (None: every
    layer), include folders and the output folder."""

    model: Any
    task_names: list[str]
    tasks: list[Any] = field(repr=False)
    layers: list[str] | None
    include: list[Path | str]
    out: Path | None


def names(value: str | Sequence[str] | None, flag: str, what: str) -> list[str] | None:
    """A comma-separated option (or a list) as names: None stays None (the default); empty
    names, an empty list and a name given twice are refused."""
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else list(value)
    if not all(isinstance(x, str) for x in items):
        raise UserError(f"{flag} must be {what} names (strings), got {value!r}")
    items = [x.strip() for x in items]
    if not any(items):
        if what == "task":
            raise UserError("no task given; name at least one (see `probekit tasks list`)")
        raise UserError(f"{flag} {value!r} names no {what}; name at least one (e.g. "
                        "embed,block.0), or leave the option out to probe every layer")
    if not all(items):
        raise UserError(f"{flag} {','.join(items)!r} has an empty {what} name between commas; "
                        f"separate {what} names with single commas")
    seen: set[str] = set()
    for x in items:
        if x in seen:
            raise UserError(f"{flag} names {what} {x!r} twice; name each {what} once")
        seen.add(x)
    return items


def model_id_guess(model: Any) -> str | None:
    """The id a model's results will be filed under, known before it is loaded (None when it
    can only be known after: a missing path, or an adapter-less object)."""
    from probekit.adapters import Adapter, shipped_checkpoints
    from probekit.adapters.hf import local_path, looks_like_hub_id
    from probekit.spectrum import checkpoint

    if isinstance(model, Adapter):
        return model.identity.id
    if not isinstance(model, (str, os.PathLike)):
        return None
    name = str(model)
    path = local_path(name)
    if path.is_dir():
        return f"local/{path.resolve().name}"
    if path.exists():
        return None  # load_model says what is wrong with it
    if name in checkpoint.shipped() or name in shipped_checkpoints():
        return f"probekit/{name}"
    return name if looks_like_hub_id(name) else None


def is_hub_id(model: Any) -> bool:
    from probekit.adapters import Adapter, shipped_checkpoints
    from probekit.adapters.hf import local_path, looks_like_hub_id

    if isinstance(model, Adapter) or not isinstance(model, (str, os.PathLike)):
        return False
    name = str(model)
    return (not local_path(name).exists() and looks_like_hub_id(name)
            and name not in shipped_checkpoints())


def check_model_name(model: Any) -> None:
    """The model's id must map to a results folder (`probekit.results.NAME_RULE`)."""
    ident = model_id_guess(model)
    if ident is None:
        return
    try:
        model_dirname(ident, ModelError)
    except ModelError as e:
        if ident.startswith("local/"):
            raise ModelError(f"model folder {str(model)!r} cannot name its results folder: {e}; "
                             "rename the folder (or copy it under such a name)") from None
        raise


def check_model_files(model: Any) -> None:
    """A local checkpoint folder's config.json, read with bounds before anything else parses
    it (`probekit.adapters.hf.check_config_file`). A spectrum checkpoint is left to its own
    strict loader (`probekit.spectrum.checkpoint.load`): its `vocab_size` is 0 where it reads
    observations or frames."""
    from probekit.adapters.hf import check_config_file, local_path
    from probekit.spectrum.checkpoint import is_checkpoint

    if not isinstance(model, (str, os.PathLike)):
        return
    config = local_path(str(model)) / "config.json"
    if config.is_file() and not is_checkpoint(config.parent):
        check_config_file(config)


def check_hub(model_id: str, revision: str | None = None, timeout: float = 10.0) -> None:
    """A Hub id must be downloadable now: in the local cache when HF_HUB_OFFLINE is set
    (else ModelError, exit 2, as `submit --repo` and `data push` refuse offline mode), else the
    Hub must answer for it — once, with `timeout`, never retried (NetworkError, exit 1, when the
    network fails; ModelError, exit 2, when the Hub has no such model)."""
    from huggingface_hub import HfApi, constants, try_to_load_from_cache
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    cached = isinstance(try_to_load_from_cache(model_id, "config.json", revision=revision), str)
    if constants.is_offline_mode():  # the user's own setting forbids the download: exit 2
        if not cached:
            raise ModelError(f"model {model_id!r} is not in the local Hugging Face cache and "
                             "HF_HUB_OFFLINE is set; unset HF_HUB_OFFLINE to download it, or "
                             "pass a local checkpoint folder")
        return
    api = HfApi()
    try:
        api.model_info(model_id, revision=revision, timeout=timeout)
    except GatedRepoError:
        raise ModelError(f"model {model_id!r} on {api.endpoint} is gated; accept its terms on "
                         "its page and log in with `hf auth login`") from None
    except RepositoryNotFoundError:
        raise ModelError(f"model {model_id!r} is not on {api.endpoint} (or not visible with "
                         "your token); check the id, or log in with `hf auth login`") from None
    except RevisionNotFoundError:
        raise ModelError(f"model {model_id!r} has no revision {revision!r}") from None
    except HfHubHTTPError as e:
        status = e.response.status_code if e.response is not None else None
        if status in (401, 403, 404):
            raise ModelError(f"model {model_id!r} is not on {api.endpoint} or not visible with "
                             f"your token (HTTP {status}); check the id, or log in with "
                             "`hf auth login`") from None
        raise NetworkError(f"the Hub at {api.endpoint} answered HTTP {status} for model "
                           f"{model_id!r}; try again later") from None
    except Exception as e:  # httpx transport errors, OSError, timeouts: the network failed
        if not _is_network_error(e):
            raise
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        hint = ("it is in the local cache: set HF_HUB_OFFLINE=1 to use that copy" if cached
                else "check the network, or pass a local checkpoint folder")
        raise NetworkError(f"cannot reach {api.endpoint} for model {model_id!r} ({reason}); "
                           f"{hint}") from None


def _is_network_error(e: BaseException) -> bool:
    try:
        import httpx2

        if isinstance(e, httpx2.TransportError):
            return True
    except ImportError:  # pragma: no cover - huggingface_hub's client
        pass
    return isinstance(e, (OSError, TimeoutError))


def check_eval(model: Any, tasks: str | Sequence[str], *, layers: str | Sequence[str] | None = None,
               include: Iterable[str | os.PathLike] = (), out: str | os.PathLike | None = None,
               batch_size: int | str = 32, seed: int = 0, hub: bool = True,
               limit: int | None = None, revision: str | None = None) -> EvalPlan:
    """Everything `evaluate` and `eval --out` need that is known before the model is loaded:
    options, task names and specs (size bounds included; limited to `limit` episodes per split
    when given, see `Task.limited`), the model's name as a results folder, the Hub (for a Hub
    id, at `revision`) and the output folder. Raises the one error to print."""
    from probekit.io import check_output_dir
    from probekit.tasks import load_task

    task_names = names(tasks, "--tasks", "task")
    if not task_names:
        raise UserError("no task given; name at least one (see `probekit tasks list`)")
    layer_names = names(layers, "--layers", "layer")
    if batch_size != "auto" and (isinstance(batch_size, bool) or not isinstance(batch_size, int)
                                 or batch_size < 1):
        raise UserError(f"--batch-size must be at least 1, got {batch_size!r} (or pass auto)")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2 ** 32:
        raise UserError(f"seed must be in [0, 2**32), got {seed}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)
                              or limit < 1):
        raise UserError(f"--limit must be a whole number of episodes per split, at least 1; "
                        f"got {limit!r}")
    if isinstance(model, (str, os.PathLike)) and not str(model).strip():
        raise UserError("no model given; pass a checkpoint folder, a shipped checkpoint name or "
                        "a Hub id (org/name)")
    if revision is not None:
        if not isinstance(revision, str) or not revision.strip() or revision != revision.strip():
            raise UserError(f"--revision must be a branch, tag or commit of the Hub repo, got "
                            f"{revision!r}")
        if not is_hub_id(model):
            raise UserError(f"--revision {revision} applies to Hub ids only; {str(model)!r} is "
                            "a local folder, a shipped checkpoint or an adapter, which has one "
                            "version")
    include = list(include)
    check_model_files(model)
    loaded = [load_task(name, include).limited(limit) for name in task_names]
    for task in loaded:
        task.check_size()
    check_model_name(model)
    if out is not None:
        out = check_output_dir(out, "--out")
        ident = model_id_guess(model)
        if ident is not None:
            _check_result_folder(out, ident)
    if hub and is_hub_id(model):
        check_hub(str(model), revision)
    return EvalPlan(model, task_names, loaded, layer_names, include,
                    None if out is None else Path(out))


def _check_result_folder(out: Path, model_id: str, revision: str | None = None,
                         tasks: Sequence[str] = ()) -> None:
    """Nothing may stand where the results of this model will be written."""
    from probekit.results import relative_path

    for task in tasks or ["x"]:
        stub = {"model": {"id": model_id, "revision": revision or "main"},
                "task": {"name": task}}
        rel = relative_path(stub)
        parts = rel.parts if tasks else rel.parts[:1]
        here = out
        for i, part in enumerate(parts):
            here = here / part
            last = tasks and i == len(parts) - 1
            if last and here.is_dir():
                raise UserError(f"--out: {str(here)!r} is a folder where a result file will be "
                                "written; move it or pass another --out")
            if not last and here.exists() and not here.is_dir():
                raise UserError(f"--out: {str(here)!r} is a file where a folder of results "
                                "will be; move it or pass another --out")


def check_model(plan: EvalPlan, adapter: Any) -> list[str]:
    """Once the model is loaded, before any latents: its layers (returned), the result paths
    it will write, and its tokenizer against the tasks' words."""
    layers = adapter.check_layers(plan.layers)
    ident = adapter.identity
    model_dirname(ident.id, ModelError)
    if plan.out is not None:
        _check_result_folder(plan.out, ident.id, ident.revision, [t.name for t in plan.tasks])
    check_tokenizer(adapter, plan.tasks)
    return layers


def task_words(task: Any, n: int = TOKENIZER_SAMPLE) -> list[str]:
    """The words of the first `n` episodes of every split (and of their counterfactual
    sources), in first-seen order: what a text model must be able to read."""
    words: dict[str, None] = {}
    for split in task.splits:
        for i in range(min(n, task.spec.splits[split].size)):
            episode, pair = task.generate(split, i)
            for ep in (episode, None if pair is None else pair.source):
                if ep is not None:
                    words.update(dict.fromkeys(ep.text.split()))
    return list(words)


def check_tokenizer(adapter: Any, tasks: Sequence[Any]) -> None:
    """A text model's tokenizer must give every word of each task its own tokens: words that
    become the unknown token, or words that become the same tokens as other words, make a
    task the model cannot read (DataError naming the words, exit 2)."""
    from probekit.adapters.hf import HFAdapter
    from probekit.errors import DataError

    if not isinstance(adapter, HFAdapter):
        return
    tok = adapter.tokenizer
    unk = tok.unk_token_id
    for task in tasks:
        words = task_words(task)
        if not words:
            continue
        text = " ".join(words)
        enc = tok(text, return_offsets_mapping=True, add_special_tokens=False)
        ids, offsets = enc["input_ids"], enc["offset_mapping"]
        spans, pos = [], 0
        for w in words:
            spans.append((pos, pos + len(w)))
            pos += len(w) + 1
        tokens_of: dict[str, tuple[int, ...]] = {}
        for w, (lo, hi) in zip(words, spans):
            tokens_of[w] = tuple(i for i, (a, b) in zip(ids, offsets) if a < hi and b > lo)
        lost = [w for w, t in tokens_of.items()
                if not t or (unk is not None and unk in t and w != tok.unk_token)]
        where = f"the tokenizer of {adapter.identity.id}"
        if lost:
            shown = ", ".join(repr(w) for w in lost[:8]) + (", …" if len(lost) > 8 else "")
            raise DataError(f"{where} turns {len(lost)} of the {len(words)} words of task "
                            f"{task.name} into its unknown token {tok.unk_token!r} or into "
                            f"nothing ({shown}): the model cannot read them; use a tokenizer "
                            "that covers the task's words")
        by_tokens: dict[tuple[int, ...], list[str]] = {}
        for w, t in tokens_of.items():
            by_tokens.setdefault(t, []).append(w)
        merged = [ws for ws in by_tokens.values() if len(ws) > 1]
        if merged:
            shown = "; ".join(" = ".join(repr(w) for w in sorted(ws)[:4]) for ws in merged[:3])
            raise DataError(f"{where} gives {len(by_tokens)} distinct token sequences to the "
                            f"{len(words)} words of task {task.name}: some words become the "
                            f"same tokens ({shown}), so the model cannot tell them apart; use "
                            "a tokenizer that keeps the task's words apart")
