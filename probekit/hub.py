"""The Hub room: everything probekit sends to the Hugging Face Hub goes through here — repo-id
rules (`check_repo_id`), the offline and reachability checks, the translation of the Hub's
failures into one-line errors (`hub_errors`), and the uploads: `probekit submit` (results, one
commit to a dataset repo opened as a pull request with the store layout; optionally one
`.eval_results/` pull request per model repo) and `probekit data push` (`probekit.data.push`).

Tokens come from the usual huggingface_hub login (`HfApi()` finds them) and are never printed.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from probekit.errors import NetworkError, ProbekitError, UserError
from probekit.store import encode, path_in_store

CONNECT_TIMEOUT_S = 10.0  # the one attempt to reach the Hub before anything is sent
PROXY_VARIABLES = ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "https_proxy", "http_proxy",
                   "all_proxy")

SOURCE_NAME = "probekit leaderboard"


@dataclass(frozen=True)
class Commit:
    """One commit to open as a pull request: files by path in the repo."""

    repo_id: str
    repo_type: str
    files: dict[str, bytes]
    message: str
    description: str

    def describe(self, endpoint: str) -> str:
        """The exact operations, for `--dry-run`."""
        lines = [f"create_commit {self.repo_type} {self.repo_id} at {endpoint} "
                 f"(create_pr=True): {self.message}"]
        for path, data in self.files.items():
            digest = hashlib.sha256(data).hexdigest()
            lines.append(f"  add {path} ({len(data)} bytes, sha256 {digest})")
            if path.endswith(".yaml"):
                lines += [f"    {line}" for line in data.decode().splitlines()]
        return "\n".join(lines)


REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")
AUTH_HINT = "log in with `hf auth login` or set HF_TOKEN to a token with write access"


def check_repo_id(repo_id: str, what: str = "repo") -> str:
    """`repo_id` if it is a valid Hub id of the form ORG/NAME (`what`: "dataset repo", "model"
    ..., for the message), else a UserError saying why."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as e:
        raise UserError(f"{what} id {repo_id!r} is not valid: {e}") from None
    if "/" not in repo_id:
        raise UserError(f"{what} id {repo_id!r} is not valid: it has no organisation; write it "
                        "as ORG/NAME")
    if not REPO_ID.fullmatch(repo_id):
        raise UserError(f"{what} id {repo_id!r} is not valid: write it as ORG/NAME (letters, "
                        "digits, '-', '_' or '.')")
    return repo_id


def check_online(action: str, hint: str = "") -> None:
    """A UserError at once when HF_HUB_OFFLINE is set (`action`: what cannot be done)."""
    from huggingface_hub import constants

    if constants.is_offline_mode():
        raise _offline(action, hint)


def _offline(action: str, hint: str) -> UserError:
    return UserError(f"cannot {action} while HF_HUB_OFFLINE is set; unset it{hint}")


@contextlib.contextmanager
def hub_errors(action: str, where: str, endpoint: str, *, denied: str | None = None,
               offline_hint: str = "") -> Iterator[None]:
    """huggingface_hub's failures inside the block as one-line probekit errors that name no
    token: offline mode and refusals (401/403, a repo not found) are UserErrors, another
    refusal a ProbekitError with the Hub's first line, an unreachable endpoint a NetworkError.
    `action` is what was being done ("push", "publish"), `where` the repo as the user knows it,
    `denied` the start of the message on a 401/403 (default: "not allowed to ACTION to WHERE")."""
    import httpx2  # huggingface_hub's HTTP client
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled, RepositoryNotFoundError

    try:
        yield
    except OfflineModeIsEnabled:
        raise _offline(action, offline_hint) from None
    except RepositoryNotFoundError:
        raise UserError(f"{where} was not found or is not visible with your token; create it, "
                        "or log in with `hf auth login`") from None
    except HfHubHTTPError as e:
        status = e.response.status_code if e.response is not None else None
        if status in (401, 403):
            denied = denied or f"not allowed to {action} to {where}"
            raise UserError(f"{denied} (HTTP {status}): {AUTH_HINT}") from None
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ProbekitError(f"{action} to {where} failed: {first}") from None
    except (httpx2.TransportError, OSError) as e:
        raise NetworkError(f"cannot reach {endpoint} ({type(e).__name__}); check the network or "
                           "--endpoint") from None


def results_commit(results: Sequence[dict[str, Any]], repo_id: str) -> Commit:
    """The store files of `results` as one commit to the dataset repo `repo_id`."""
    check_repo_id(repo_id, "dataset repo")
    files = {str(path_in_store(r)): encode(r) for r in results}
    models = sorted({r["model"]["id"] for r in results})
    lines = [f"- `{path_in_store(r)}`: run {r['run_id']}, decodability "
             f"{r['scores']['decodability']['value']:.3f} at {r['scores']['decodability']['layer']}"
             for r in results]
    return Commit(repo_id, "dataset", files,
                  f"Add {len(results)} probekit result(s) for {', '.join(models)}",
                  "Submitted with `probekit submit`; every file passed `probekit.result/1` "
                  "validation.\n\n" + "\n".join(lines))


def eval_results_commits(results: Sequence[dict[str, Any]], dataset_id: str, endpoint: str,
                         revision: str | None = None) -> list[Commit]:
    """One commit per model repo adding `.eval_results/probekit-<task>.yaml` (dataset = the
    leaderboard repo, task_id = task name, value = world_model_score). Results without a
    world_model_score have no headline number and are left out."""
    by_model: dict[str, dict[str, bytes]] = {}
    for r in results:
        score = r["scores"].get("world_model_score")
        if score is None:
            continue
        model = check_repo_id(r["model"]["id"], "model")
        if model.startswith("local/"):
            raise UserError(f"model {model!r} is a local checkpoint, not a Hub repo; submit it "
                            "without --model-pr")
        dataset = {"id": dataset_id, "task_id": r["task"]["name"]}
        if revision is not None:
            dataset["revision"] = revision
        entry = {
            "dataset": dataset, "value": score, "date": r["env"]["date"],
            "source": {"url": f"{endpoint}/datasets/{dataset_id}", "name": SOURCE_NAME},
            "notes": (f"probekit {r['env']['probekit']}, task {r['task']['name']} "
                      f"v{r['task']['version']} (fingerprint {r['task']['fingerprint']}), "
                      f"run {r['run_id']}, model revision {r['model']['revision']}"),
        }
        text = yaml.safe_dump([entry], sort_keys=False, allow_unicode=True)
        by_model.setdefault(model, {})[f".eval_results/probekit-{r['task']['name']}.yaml"] = \
            text.encode()
    return [Commit(model, "model", files, "Add probekit evaluation results",
                   f"probekit results for this model, also submitted to the leaderboard dataset "
                   f"[{dataset_id}]({endpoint}/datasets/{dataset_id}).")
            for model, files in sorted(by_model.items())]


def check_reachable(endpoint: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """One TCP connection to the endpoint's host, so that an unreachable Hub fails at once
    (NetworkError, exit 1) instead of after huggingface_hub's retries (about 30 s of them).
    Nothing is sent; skipped behind a proxy, where only the proxy can reach the Hub."""
    import os
    import socket
    from urllib.parse import urlsplit

    if any(os.environ.get(v) for v in PROXY_VARIABLES):
        return
    url = urlsplit(endpoint)
    host, port = url.hostname, url.port or (443 if url.scheme == "https" else 80)
    if not host or url.scheme not in ("http", "https"):
        raise UserError(f"endpoint {endpoint!r} is not an http(s) URL; pass --endpoint "
                        "https://HOST")
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as e:
        reason = e.strerror or type(e).__name__
        raise NetworkError(f"cannot reach {endpoint} ({reason}); check the network or "
                           "--endpoint") from None


@contextlib.contextmanager
def quiet_hub():
    """huggingface_hub's own log lines (each retry, say) silenced: one line per failure."""
    from huggingface_hub.utils import logging as hf_logging

    before = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(before)


PUBLISH_OFFLINE_HINT = ", or use --dry-run to see the operations"


def open_pr(commit: Commit, endpoint: str | None = None):
    """Create `commit` on the Hub as a pull request; returns huggingface_hub's CommitInfo."""
    from huggingface_hub import CommitOperationAdd, HfApi

    check_online("publish", PUBLISH_OFFLINE_HINT)
    api = HfApi(endpoint=endpoint)
    where = f"{commit.repo_type} repo {commit.repo_id} at {api.endpoint}"
    with hub_errors("publish", where, api.endpoint, offline_hint=PUBLISH_OFFLINE_HINT,
                    denied=f"not allowed to open a pull request on {where}"):
        check_reachable(api.endpoint)
        with quiet_hub():
            return api.create_commit(
                commit.repo_id, repo_type=commit.repo_type, create_pr=True,
                operations=[CommitOperationAdd(path, data) for path, data in commit.files.items()],
                commit_message=commit.message, commit_description=commit.description)


def publish(results: Sequence[dict[str, Any]], repo_id: str, *, endpoint: str | None = None,
            model_prs: bool = False, dry_run: bool = False,
            echo: Callable[[str], None] = print) -> list[str]:
    """Open the results pull request on `repo_id` (and, with `model_prs`, one `.eval_results/`
    pull request per model repo, pointing at the results commit); returns the pull request URLs.
    With `dry_run`, print the operations and send nothing."""
    url = endpoint_url(endpoint)
    commit = results_commit(results, repo_id)
    model_commits = eval_results_commits(results, repo_id, url) if model_prs else []
    if dry_run:
        for c in [commit, *model_commits]:
            echo(c.describe(url))
        if model_commits:
            echo("(dataset.revision in each .eval_results entry is set to the results commit "
                 "once it exists)")
        return []
    info = open_pr(commit, endpoint)
    echo(f"opened {info.pr_url} ({len(commit.files)} file(s) on {repo_id})")
    urls = [info.pr_url]
    if model_commits:
        for c in eval_results_commits(results, repo_id, url, revision=info.oid):
            model_info = open_pr(c, endpoint)
            echo(f"opened {model_info.pr_url} (.eval_results on {c.repo_id})")
            urls.append(model_info.pr_url)
    return urls


def endpoint_url(endpoint: str | None) -> str:
    """The endpoint huggingface_hub will use (`--endpoint`, else HF_ENDPOINT, else the Hub)."""
    from huggingface_hub import constants

    return (endpoint or constants.ENDPOINT).rstrip("/")
