"""A submitter process for tests/test_store_concurrency.py: waits at a barrier with the other
submitters, then files one result into the shared store and reports what happened.

Two ways to submit, both real code in a real process: `store` calls `Store.submit` (what
`probekit submit` runs once the result files are read and validated; cheap enough for hundreds
of rounds), `cli` runs the command itself, `main(["submit", FILE, "--store", ROOT, …])`."""

from __future__ import annotations

import contextlib
import io
import os


def serve(index: int, barrier, jobs, outcomes) -> None:
    """Run jobs until None: each is (round, mode, store root, result file or None, replace).
    Every
    submitter waits at the barrier each round, so those with a file submit at the same
    moment. Outcomes are (round, index, file, exit code, stdout, stderr)."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from probekit import store
    from probekit.cli import main
    from probekit.errors import ProbekitError

    inputs: dict[str, dict] = {}
    while True:
        job = jobs.get()
        if job is None:
            return
        round_no, mode, root, path, replace = job
        local = store.Store(root)
        if path is not None and mode == "store" and path not in inputs:
            inputs[path] = store.read([path], allow_unregistered=True)[0]  # validated once
        barrier.wait()
        if path is None:
            outcomes.put((round_no, index, None, 0, "", ""))
            continue
        out, err = io.StringIO(), io.StringIO()
        if mode == "cli":
            argv = ["submit", path, "--store", root, "--allow-unregistered"]
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                code = main(argv + (["--replace"] if replace else []))
        else:
            verbs = {"new": "add", "same": "keep (same run)", "replace": "replace"}
            try:
                filings, _ = local.submit([inputs[path]], replace=replace,
                                          echo=lambda f: out.write(
                                              f"{verbs[f.action]} {local.root / f.path}\n"))
                code = 0
            except ProbekitError as e:
                err.write(f"probekit: error: {e}\n")
                code = e.exit_code
        outcomes.put((round_no, index, path, code, out.getvalue(), err.getvalue()))
