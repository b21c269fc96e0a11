"""`probekit data export` (Parquet + dataset card, atomic) and `data push` (one Hub commit),
the push checked against a local HTTP server speaking the Hub routes huggingface_hub uses."""

from __future__ import annotations

import base64
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
import yaml

from probekit.cli import main
from probekit.data import card, export, push, shard_path
from probekit.errors import UserError
from probekit.tasks import load_task

TOKEN = "hf_probekitTestSecret0123456789"
CARD_KEYS = {"license", "task_categories", "size_categories", "pretty_name", "tags", "configs",
             "dataset_info"}


def front_matter(text: str) -> dict:
    match = re.match(r"---\n(.*?)\n---\n", text, re.S)
    assert match, "the card must open with a YAML block"
    return yaml.safe_load(match.group(1))


def files_under(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


# --- export ---------------------------------------------------------------------------------

def test_export_round_trip_boxes(tmp_path: Path):
    import datasets

    task = load_task("boxes")
    out = export(task, tmp_path / "boxes")
    configs = ("episodes", "pairs", "violations")
    expected = {"README.md"} | {shard_path(c, s) for c in configs for s in task.splits}
    assert set(files_under(out)) == expected
    for split in task.splits:
        for config, original in (("episodes", task.dataset(split)), ("pairs", task.pairs(split)),
                                 ("violations", task.violations(split))):
            back = datasets.load_dataset("parquet", data_files=str(out / shard_path(config, split)),
                                         split="train")
            assert back.features == original.features
            assert back.to_list() == original.to_list()
    # The card's `configs` make the folder load like the Hub repo would.
    test_pairs = datasets.load_dataset(str(out), "pairs", split="test")
    assert test_pairs.to_list() == task.pairs("test").to_list()
    test_violations = datasets.load_dataset(str(out), "violations", split="test")
    assert test_violations.to_list() == task.violations("test").to_list()
    readme = (out / "README.md").read_text()
    assert readme == card(task)
    meta = front_matter(readme)
    assert CARD_KEYS <= set(meta)
    assert meta["license"] == "cc-by-4.0"
    by_name = {c["config_name"]: c for c in meta["configs"]}
    assert set(by_name) == set(configs) and by_name["episodes"].get("default") is True
    for config in ("pairs", "violations"):
        assert {f["split"]: f["path"] for f in by_name[config]["data_files"]} == {
            s: shard_path(config, s) for s in task.splits}
    infos = {i["config_name"]: i for i in meta["dataset_info"]}
    sizes = {s["name"]: s["num_examples"] for s in infos["pairs"]["splits"]}
    assert sizes == {s: len(task.pairs(s)) for s in task.splits}
    sizes = {s["name"]: s["num_examples"] for s in infos["violations"]["splits"]}
    assert sizes == {s: len(task.violations(s)) for s in task.splits}
    assert [f["name"] for f in infos["episodes"]["features"]] == list(
        task.dataset("train").features)
    assert "## Violation pairs" in readme and "pairs with a placebo" in readme


SMALL_TASK = """\
name: {name}
version: 1
world: {world}
description: A small task for the export tests.
license: cc-by-4.0
knobs: {knobs}
splits:
  train: {{size: 40, seed: 1}}
  val: {{size: 20, seed: 2}}
  test: {{size: 20, seed: 3}}
targets:
  - {{name: {target}, kind: class}}
counterfactual: {{variable: {variable}, step: random, readout: {readout}}}
{violations}"""


@pytest.mark.parametrize("world, knobs, target, variable, readout, violations", [
    ("othello", "{size: 4, length: 8}", "legal", "move", "mine",
     "violations: {kinds: [unflanking, occupied], step: random}"),
    ("groups", "{group: s3, length: 8}", "element", "element", "query", ""),
])
def test_export_round_trip_of_sparse_and_absent_placebos(tmp_path: Path, world, knobs, target,
                                                         variable, readout, violations):
    """Pairs without a placebo keep typed, empty placebo columns (the schema is the same
    whether a task has placebos in every pair, some or none), and Parquet keeps them."""
    import datasets

    name = f"small-{world}"
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / f"{name}.yaml").write_text(SMALL_TASK.format(
        name=name, world=world, knobs=knobs, target=target, variable=variable, readout=readout,
        violations=violations))
    task = load_task(name, [tmp_path / "tasks"])
    out = export(task, tmp_path / "out")
    pairs = task.pairs("train")
    episode_columns = list(task.dataset("train").features)
    assert [c for c in pairs.features if c.startswith("placebo.")] == [
        f"placebo.{c}" for c in episode_columns]
    assert pairs.features["placebo.tokens"] == task.dataset("train").features["tokens"]
    has = pairs["has_placebo"]
    for row in pairs.select([i for i, h in enumerate(has) if not h][:3]):
        assert row["placebo.text"] == "" and row["placebo.tokens"] == []
        assert row["placebo.query_span"] == [-1, -1] and row["placebo_step"] == -1
    if world == "groups":
        assert not any(has)
        assert not (out / "violations").exists()
        with pytest.raises(UserError, match="no violation pairs.*every word is possible"):
            task.violations("train")
    else:
        assert 0 < sum(has) < len(has)
        assert len(task.violations("train")) > 0
    for config in ("pairs",) + (("violations",) if violations else ()):
        original = getattr(task, config)("train")
        back = datasets.load_dataset("parquet", split="train",
                                     data_files=str(out / shard_path(config, "train")))
        assert back.features == original.features and back.to_list() == original.to_list()


def test_card_reports_chance_and_knob_ranges(tiny_task_dir: Path):
    task = load_task("boxes-tiny", [tiny_task_dir])
    text = card(task)
    labels = task.dataset("train")["label.location.obj0"]
    flat = [v for row in labels for v in row]
    majority = max(flat.count(v) for v in set(flat)) / len(flat)
    assert f"| `location.obj0` | class | 4 | {majority:.3f} |" in text
    assert "| `n_boxes` | 3 | 4 | [2, 10] | number of boxes |" in text
    assert f"`{task.fingerprint}`" in text
    assert card(task) == text  # deterministic


def test_export_refuses_a_non_empty_folder(tmp_path: Path, tiny_task_dir: Path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(UserError, match="not empty"):
        export(load_task("boxes-tiny", [tiny_task_dir]), out)
    assert files_under(out) == {"keep.txt": b"mine"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_export_leaves_nothing_when_it_fails(tmp_path: Path, tiny_task_dir: Path, monkeypatch):
    import probekit.data

    def broken(task, repo=None):
        raise RuntimeError("disk full")

    monkeypatch.setattr(probekit.data, "card", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        export(load_task("boxes-tiny", [tiny_task_dir]), tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_export_cli(tmp_path: Path, tiny_task_dir: Path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["data", "export", "boxes-tiny", "--out", str(empty),
                 "--include-path", str(tiny_task_dir)]) == 0
    assert "exported boxes-tiny" in capsys.readouterr().out
    assert (empty / "data" / "train-00000-of-00001.parquet").exists()
    assert main(["data", "export", "boxes-tiny", "--out", str(empty),
                 "--include-path", str(tiny_task_dir)]) == 2
    assert main(["data", "export", "boxs", "--out", str(tmp_path / "new")]) == 2
    err = capsys.readouterr().err
    assert "not empty" in err and "did you mean 'boxes'" in err
    assert not (tmp_path / "new").exists()


# --- push against a local Hub ---------------------------------------------------------------

class FakeHub:
    """The Hub routes `create_repo` + `create_commit` use: repo creation (409 if it exists),
    README metadata validation, preupload (every file 'regular') and the ndjson commit."""

    def __init__(self):
        self.requests: list[tuple[str, dict[str, list[str]], dict[str, str]]] = []
        self.repos: dict[str, dict] = {}
        self.commits: list[dict] = []
        self.refuse_commits = False
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def reply(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):
                url = urlparse(self.path)
                query = parse_qs(url.query)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                hub.requests.append((url.path, query, dict(self.headers)))
                repo_route = re.fullmatch(r"/api/datasets/([^/]+/[^/]+)/(preupload|commit)/(.+)",
                                          url.path)
                if url.path == "/api/repos/create":
                    payload = json.loads(body)
                    repo = f"{payload['organization']}/{payload['name']}"
                    repo_url = f"{hub.url}/datasets/{repo}"
                    if repo in hub.repos:  # the Hub's 409 names the existing repo too
                        return self.reply(409, {"error": "You already created this dataset repo",
                                                "url": repo_url})
                    hub.repos[repo] = payload
                    return self.reply(200, {"url": repo_url})
                if url.path == "/api/validate-yaml":
                    yaml.safe_load(json.loads(body)["content"].split("---")[1])
                    return self.reply(200, {"errors": [], "warnings": []})
                if repo_route and repo_route.group(1) in hub.repos:
                    repo, action, revision = repo_route.groups()
                    if action == "preupload":
                        files = json.loads(body)["files"]
                        return self.reply(200, {"files": [
                            {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False,
                             "oid": None} for f in files]})
                    if hub.refuse_commits:
                        return self.reply(401, {"error": "Invalid credentials"})
                    lines = [json.loads(line) for line in body.decode().splitlines()]
                    files = {ln["value"]["path"]: base64.b64decode(ln["value"]["content"])
                             for ln in lines[1:] if ln["key"] == "file"}
                    hub.commits.append({"repo": repo, "revision": revision, "query": query,
                                        "header": lines[0], "files": files,
                                        "keys": [ln["key"] for ln in lines[1:]]})
                    n = len(hub.commits)
                    pr = "create_pr" in query
                    return self.reply(200, {
                        "commitUrl": f"{hub.url}/datasets/{repo}/commit/{n:040x}",
                        "commitOid": f"{n:040x}",
                        "pullRequestUrl": f"{hub.url}/datasets/{repo}/discussions/{n}" if pr
                        else None})
                return self.reply(404, {"error": f"no route {url.path}"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)


@pytest.fixture
def hub(monkeypatch):
    """A local Hub, reachable: offline mode off for this test only, no proxies, a token set."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy",
                "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    server = FakeHub()
    server.thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()


def test_push_uploads_every_file_in_one_commit(hub: FakeHub, tiny_task_dir: Path,
                                               tmp_path: Path, capsys):
    args = ["data", "push", "boxes-tiny", "--repo", "probekit-org/boxes-tiny", "--endpoint",
            hub.url, "--private", "--include-path", str(tiny_task_dir)]
    assert main(args) == 0
    out, err = capsys.readouterr()
    assert f"{hub.url}/datasets/probekit-org/boxes-tiny/commit/" in out
    assert [r[0] for r in hub.requests] == [
        "/api/repos/create", "/api/validate-yaml",
        "/api/datasets/probekit-org/boxes-tiny/preupload/main",
        "/api/datasets/probekit-org/boxes-tiny/commit/main"]
    assert all(r[2].get("authorization") == f"Bearer {TOKEN}" for r in hub.requests)
    assert hub.repos["probekit-org/boxes-tiny"] == {
        "name": "boxes-tiny", "organization": "probekit-org", "visibility": "private",
        "type": "dataset"}
    [commit] = hub.commits
    assert commit["revision"] == "main" and "create_pr" not in commit["query"]
    assert commit["header"]["value"]["summary"] == "probekit task boxes-tiny v1"
    task = load_task("boxes-tiny", [tiny_task_dir])
    assert commit["files"] == files_under(export(task, tmp_path / "local",
                                                 repo="probekit-org/boxes-tiny"))
    assert len(commit["keys"]) == 7  # README + 3 splits x (episodes, pairs)
    assert 'load_dataset("probekit-org/boxes-tiny", "episodes")' in (
        commit["files"]["README.md"].decode())
    assert TOKEN not in out + err

    # Pushing again to the existing repo (409 on create) opens one pull request.
    args = ["data", "push", "boxes-tiny", "--repo", "probekit-org/boxes-tiny", "--endpoint",
            hub.url, "--create-pr", "--include-path", str(tiny_task_dir)]
    assert main(args) == 0
    assert f"{hub.url}/datasets/probekit-org/boxes-tiny/discussions/2" in capsys.readouterr().out
    assert len(hub.commits) == 2 and hub.commits[1]["query"] == {"create_pr": ["1"]}


def test_push_refused_by_the_hub_is_one_clear_line(hub: FakeHub, tiny_task_dir: Path, capsys):
    hub.refuse_commits = True
    assert main(["data", "push", "boxes-tiny", "--repo", "org/name", "--endpoint", hub.url,
                 "--include-path", str(tiny_task_dir)]) == 2
    err = capsys.readouterr().err
    [line] = [ln for ln in err.splitlines() if "error" in ln]
    assert line.startswith("probekit: error: the Hub refused 'org/name' (HTTP 401)")
    assert "HF_TOKEN" in line and TOKEN not in err


@pytest.mark.parametrize("repo", ["name-only", "a/b/c", "org/-bad", "org/na..me", "org/x.git"])
def test_push_rejects_malformed_repo_ids(repo: str, hub: FakeHub, capsys):
    assert main(["data", "push", "boxes", "--repo", repo, "--endpoint", hub.url]) == 2
    assert "is not valid" in capsys.readouterr().err
    assert hub.requests == []


def test_push_fails_at_once_offline(tiny_task_dir: Path):
    with pytest.raises(UserError, match="HF_HUB_OFFLINE"):
        push(load_task("boxes-tiny", [tiny_task_dir]), "org/name", endpoint="http://127.0.0.1:9")
