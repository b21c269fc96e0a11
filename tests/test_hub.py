"""`probekit submit --repo`: one pull request on a dataset repo, against a local fake Hub that
speaks the two routes huggingface_hub's `create_commit` uses (preupload, then ndjson commit)."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from probekit import store
from probekit.cli import main
from probekit.io import write_json
from tests.result_factory import make

TOKEN = "hf_probekitTestTokenThatMustNeverBeShown"


class FakeHub(ThreadingHTTPServer):
    """Records every request; answers preupload and commit, 404 anything else (or `status`)."""

    def __init__(self):
        super().__init__(("127.0.0.1", 0), Handler)
        self.requests: list[dict] = []
        self.status = 200
        self.url = f"http://127.0.0.1:{self.server_address[1]}"


class Handler(BaseHTTPRequestHandler):
    server: FakeHub

    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_GET(self):
        self._record(b"")
        self._reply(404, {"error": "not served by the fake Hub"})

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        url = urlsplit(self.path)
        parts = url.path.split("/")  # '', api, {type}s, org, name, preupload|commit, revision
        self._record(body)
        if self.server.status != 200:
            return self._reply(self.server.status, {"error": "denied by the fake Hub"})
        if len(parts) == 7 and parts[5] == "preupload":
            files = json.loads(body)["files"]
            return self._reply(200, {"files": [{"path": f["path"], "uploadMode": "regular",
                                                "shouldIgnore": False} for f in files]})
        if len(parts) == 7 and parts[5] == "commit":
            n = sum(r["route"] == "commit" for r in self.server.requests)
            oid = f"{n:040x}"
            prefix = "" if parts[2] == "models" else f"{parts[2]}/"
            repo = f"{self.server.url}/{prefix}{parts[3]}/{parts[4]}"
            return self._reply(200, {"commitUrl": f"{repo}/commit/{oid}", "commitOid": oid,
                                     "pullRequestUrl": f"{repo}/discussions/{n}"})
        self._reply(404, {"error": "not served by the fake Hub"})

    def _record(self, body: bytes):
        url = urlsplit(self.path)
        parts = url.path.split("/")
        self.server.requests.append({
            "method": self.command, "path": url.path, "query": parse_qs(url.query),
            "route": parts[5] if len(parts) == 7 else url.path,
            "repo": f"{parts[2]}/{parts[3]}/{parts[4]}" if len(parts) == 7 else None,
            "revision": parts[6] if len(parts) == 7 else None,
            "auth": self.headers.get("Authorization"),
            "content_type": self.headers.get("Content-Type"), "body": body})

    def _reply(self, status: int, obj: dict):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def hub(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    server = FakeHub()
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def commit_lines(request: dict) -> list[dict]:
    return [json.loads(line) for line in request["body"].decode().splitlines()]


def committed_files(request: dict) -> dict[str, bytes]:
    return {line["value"]["path"]: base64.b64decode(line["value"]["content"])
            for line in commit_lines(request) if line["key"] == "file"}


@pytest.fixture
def two_results(tmp_path) -> list[Path]:
    return [write_json(tmp_path / "a.json", make()),
            write_json(tmp_path / "b.json", make(model="org/other", gain=None, family="jepa"))]


def test_results_are_one_pull_request_with_the_store_layout(hub, two_results, tmp_path, capsys):
    assert main(["submit", *map(str, two_results), "--repo", "org/board",
                 "--endpoint", hub.url]) == 0
    assert [(r["route"], r["repo"], r["revision"]) for r in hub.requests] == [
        ("preupload", "datasets/org/board", "main"), ("commit", "datasets/org/board", "main")]
    assert all(r["query"] == {"create_pr": ["1"]} for r in hub.requests)
    assert all(r["auth"] == f"Bearer {TOKEN}" for r in hub.requests)
    commit = hub.requests[1]
    assert commit["content_type"] == "application/x-ndjson"
    header = commit_lines(commit)[0]
    assert header["key"] == "header" and "2 probekit result(s)" in header["value"]["summary"]

    local = store.Store(tmp_path / "local")
    local.add(local.plan(store.read(two_results)))
    assert committed_files(commit) == {str(p.relative_to(local.root)): p.read_bytes()
                                       for p in local.files()}
    out, err = capsys.readouterr()
    assert f"opened {hub.url}/datasets/org/board/discussions/1" in out
    assert TOKEN not in out + err
    assert not any(TOKEN.encode() in data for data in committed_files(commit).values())


def test_model_pr_adds_eval_results_pointing_at_the_results_commit(hub, two_results):
    assert main(["submit", *map(str, two_results), "--repo", "org/board", "--model-pr",
                 "--endpoint", hub.url]) == 0
    commits = [r for r in hub.requests if r["route"] == "commit"]
    assert [c["repo"] for c in commits] == ["datasets/org/board", "models/probekit/spectrum-ntp"]
    assert commits[1]["query"] == {"create_pr": ["1"]}
    files = committed_files(commits[1])
    assert list(files) == [".eval_results/probekit-boxes.yaml"]
    r = make()
    assert yaml.safe_load(files[".eval_results/probekit-boxes.yaml"]) == [{
        "dataset": {"id": "org/board", "task_id": "boxes", "revision": f"{1:040x}"},
        "value": r["scores"]["world_model_score"], "date": r["env"]["date"],
        "source": {"url": f"{hub.url}/datasets/org/board", "name": "probekit leaderboard"},
        "notes": f"probekit 0.1.0, task boxes v{r['task']['version']} (fingerprint {r['task']['fingerprint']}), "
                 f"run {r['run_id']}, model revision {r['model']['revision']}",
    }]


def test_endpoint_comes_from_hf_endpoint_when_not_given(hub, two_results, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", hub.url)
    assert main(["submit", str(two_results[0]), "--repo", "org/board"]) == 0
    assert [r["route"] for r in hub.requests] == ["preupload", "commit"]


def test_dry_run_prints_the_operations_and_sends_nothing(hub, two_results, capsys):
    assert main(["submit", *map(str, two_results), "--repo", "org/board", "--model-pr",
                 "--endpoint", hub.url, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert hub.requests == []
    data = store.encode(make())
    assert (f"add results/probekit__spectrum-ntp/a41c2e9f07b3/boxes.json ({len(data)} bytes, "
            f"sha256 {hashlib.sha256(data).hexdigest()})") in out
    assert f"create_commit dataset org/board at {hub.url} (create_pr=True)" in out
    assert "create_commit model probekit/spectrum-ntp" in out
    assert "task_id: boxes" in out and "org/other" not in out.split("create_commit model")[1]


def test_offline_mode_is_a_clear_error(two_results, capsys, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    assert main(["submit", str(two_results[0]), "--repo", "org/board",
                 "--endpoint", "http://127.0.0.1:9"]) == 2
    assert "HF_HUB_OFFLINE is set" in capsys.readouterr().err


def test_a_refusal_by_the_hub_is_one_line(hub, two_results, capsys):
    hub.status = 403
    assert main(["submit", str(two_results[0]), "--repo", "org/board",
                 "--endpoint", hub.url]) == 2
    err = capsys.readouterr().err.strip()
    assert "not allowed to open a pull request on dataset repo org/board" in err
    assert "\n" not in err and TOKEN not in err


def test_nothing_is_sent_when_a_result_is_invalid(hub, two_results, tmp_path):
    bad = make()
    bad["scores"]["decodability"]["value"] = 0.1
    path = write_json(tmp_path / "bad.json", bad)
    assert main(["submit", str(two_results[0]), str(path), "--repo", "org/board",
                 "--endpoint", hub.url]) == 2
    assert hub.requests == []


def test_model_pr_refuses_local_checkpoints_before_sending(hub, tmp_path, capsys):
    path = write_json(tmp_path / "r.json", make(model="local/my-run"))
    assert main(["submit", str(path), "--repo", "org/board", "--model-pr",
                 "--endpoint", hub.url]) == 2
    assert "local checkpoint" in capsys.readouterr().err
    assert hub.requests == []
