"""`probekit models list`: the checkpoints that ship with probekit and the models in the local
Hugging Face cache, each a name `probekit eval` takes."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list the models probekit can evaluate without a download",
                       description="Models to evaluate: `list` shows the shipped checkpoints and "
                                   "the models in the local Hugging Face cache.")
    msub = p.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    ls = msub.add_parser("list", help="shipped checkpoints and models in the Hugging Face cache",
                         description="The checkpoints shipped inside probekit (probekit eval "
                                     "NAME) and the model repos in the local Hugging Face cache "
                                     "(probekit eval ORG/NAME; with HF_HUB_OFFLINE=1 they load "
                                     "without the network).")
    ls.add_argument("--shipped", action="store_true",
                    help="only the shipped checkpoints (not the Hugging Face cache)")
    ls.set_defaults(func=cmd_list)


def _json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def shipped_rows() -> list[list[str]]:
    """[name, kind, what it is, trained on] per shipped checkpoint (read from its JSON files,
    no weights loaded)."""
    from probekit.adapters import CHECKPOINTS, shipped_checkpoints
    from probekit.spectrum import checkpoint

    spectrum = set(checkpoint.shipped())
    rows = []
    for name in shipped_checkpoints():
        if name in spectrum:
            meta = _json(checkpoint.SHIPPED / name / "spectrum.json")
            config = _json(checkpoint.SHIPPED / name / "config.json")
            alpha = meta.get("alpha")
            alpha = f"{alpha:g}" if isinstance(alpha, (int, float)) else "?"
            what = (f"spectrum {meta.get('family', '?')} a={alpha}, {config.get('n_layers', '?')}"
                    f" blocks × {config.get('d_model', '?')}, {config.get('inputs', 'tokens')}")
            trained = f"{meta.get('task', '?')}, {meta.get('steps', '?')} steps"
        else:
            config = _json(CHECKPOINTS / name / "config.json")
            training = _json(CHECKPOINTS / name / "training.json")
            layers = config.get("n_layer", config.get("num_hidden_layers", "?"))
            width = config.get("n_embd", config.get("hidden_size", "?"))
            what = f"{config.get('model_type', '?')}, {layers} blocks × {width}"
            trained = (f"{training.get('task', '?')}, {training.get('steps', '?')} steps"
                       if training else "—")
        rows.append([name, what, trained])
    return rows


def cached_rows() -> tuple[str, list[list[str]]]:
    """(the cache folder, [repo id, revisions, size] per model repo in it)."""
    from huggingface_hub import constants, scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    folder = str(constants.HF_HUB_CACHE)
    try:
        info = scan_cache_dir(folder)
    except CacheNotFound:
        return folder, []
    rows = []
    for repo in sorted(info.repos, key=lambda r: r.repo_id):
        if repo.repo_type != "model":
            continue
        refs = sorted({ref for rev in repo.revisions for ref in rev.refs}) or \
            sorted(rev.commit_hash[:12] for rev in repo.revisions)
        rows.append([repo.repo_id, ", ".join(refs), size(repo.size_on_disk)])
    return folder, rows


def size(n: int) -> str:
    """Bytes as `512 B`, `3.4 MB`, `1.2 GB`."""
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"  # pragma: no cover


def cmd_list(args: argparse.Namespace) -> int:
    from probekit.cli.results import table

    rows = shipped_rows()
    print(f"shipped with probekit ({len(rows)}): probekit eval NAME")
    print(table(["name", "model", "trained on"], rows))
    if args.shipped:
        return 0
    folder, cached = cached_rows()
    print()
    if not cached:
        print(f"no models in the Hugging Face cache ({folder}); probekit eval ORG/NAME "
              "downloads one")
        return 0
    print(f"in the Hugging Face cache ({len(cached)}, {folder}): probekit eval ORG/NAME "
          "[--revision REV]")
    print(table(["model", "revisions", "size"], cached))
    return 0
