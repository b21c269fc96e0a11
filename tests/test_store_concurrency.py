"""No filed result is ever lost or mixed: 200 rounds of two to four real processes running
`probekit submit` into one store at the same moment (a barrier releases them together), every
outcome checked against the store afterwards. Without the store lock and compare-and-swap, two
submitters of one new (model, task) both printed `add` and one result silently disappeared.

The submitters are four long-lived processes (started once; each round costs milliseconds, not
a process start): `Store.submit` for 200 rounds, then the whole `probekit submit` command
(`main(["submit", …])`) for 12."""

from __future__ import annotations

import functools
import multiprocessing as mp
import random
import re
import sys
from pathlib import Path

import pytest

from probekit import store
from probekit.io import write_json
from probekit.record import run_id
from tests import store_worker
from tests.result_factory import make

ROUNDS = 200
CLI_ROUNDS = 12
SUBMITTERS = 4
MODELS = ["org/m0", "org/m1", "org/m2", "org/x__y"]  # four store paths in play
SEEDS = range(5)
LINE = re.compile(r"^(add|keep \(same run\)|replace) (.+)$")


@functools.cache
def race_result(model: str, seed: int) -> dict:
    """A result of `model` on the unregistered task `race` (so submitting it skips loading the
    task registry); the seed makes a distinct run of the same (model, task). Shared: never
    modify it."""
    r = make(model=model, seed=seed)
    r["task"].update(name="race", fingerprint="0123456789abcdef")
    r["run_id"] = run_id(r)
    return r


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[tuple[str, int], str]:
    folder = tmp_path_factory.mktemp("race-inputs")
    return {(m, s): str(write_json(folder / f"{i}-{s}.json", race_result(m, s)))
            for i, m in enumerate(MODELS) for s in SEEDS}


@pytest.fixture(scope="module")
def workers():
    """Four submitter processes (started once for the module: forked on Linux, where they
    start at once with probekit already imported) and the queues to drive them."""
    ctx = mp.get_context("fork" if sys.platform == "linux" else "spawn")
    barrier = ctx.Barrier(SUBMITTERS)
    jobs = [ctx.Queue() for _ in range(SUBMITTERS)]
    outcomes = ctx.Queue()
    procs = [ctx.Process(target=store_worker.serve, daemon=True,
                         args=(i, barrier, jobs[i], outcomes)) for i in range(SUBMITTERS)]
    for p in procs:
        p.start()
    yield jobs, outcomes
    for q in jobs:
        q.put(None)
    for p in procs:
        p.join(timeout=10)
        if p.is_alive():
            p.kill()


def stored(root: Path) -> dict[str, dict]:
    """Store path → result, read straight from the files (every file must be a result at its
    own path: `Store.results` refuses anything else)."""
    results = store.Store(root).results()
    return {str(store.path_in_store(r)): r for r in results}


def run_rounds(root: Path, workers, inputs, rounds: int, mode: str, seed: int) -> int:
    """`rounds` rounds of 2-4 simultaneous submitters; after each, every outcome is checked
    against the store. Returns how many paths saw more than one submitter in a round."""
    jobs, outcomes = workers
    rng = random.Random(seed)
    expected: dict[str, dict] = stored(root)  # what the store must hold after each round
    races = 0
    for round_no in range(rounds):
        k = rng.randint(2, SUBMITTERS)
        who = rng.sample(range(SUBMITTERS), k)
        scenario = rng.choice(["race-new", "race-new", "same-run", "race-replace", "mixed",
                               "distinct"])
        model = rng.choice(MODELS)
        path = str(store.path_in_store(race_result(model, 0)))
        if scenario in ("race-new", "same-run") and path in expected:
            (root / path).unlink()  # make the path new again (between rounds: no writer runs)
            del expected[path]
        seeds = rng.sample(list(SEEDS), k)
        plan = {}
        for j, w in enumerate(who):
            m = MODELS[j % len(MODELS)] if scenario == "distinct" else model
            seed_j = seeds[0] if scenario == "same-run" else seeds[j]
            replace = {"race-new": False, "same-run": False, "race-replace": True,
                       "distinct": True, "mixed": rng.random() < 0.5}[scenario]
            plan[w] = (m, seed_j, replace)
        for w in range(SUBMITTERS):
            if w in plan:
                m, seed_j, replace = plan[w]
                jobs[w].put((round_no, mode, str(root), inputs[m, seed_j], replace))
            else:
                jobs[w].put((round_no, mode, str(root), None, False))
        got = [outcomes.get(timeout=120) for _ in range(SUBMITTERS)]
        before = dict(expected)
        touched: dict[str, list] = {}
        for round_seen, w, file, code, out, err in got:
            assert round_seen == round_no
            if file is None:
                continue
            m, seed_j, replace = plan[w]
            result = race_result(m, seed_j)
            p = str(store.path_in_store(result))
            if code == 0:
                action, where = LINE.match(out.splitlines()[0]).groups()
                assert where == str(root / p), out
            else:  # the only refusal: another run is there and --replace was not given
                assert code == 2 and not replace and "already holds run" in err, (code, err)
                action = "refused"
            touched.setdefault(p, []).append((action, result))
        now = stored(root)
        for p, attempts in touched.items():
            pre = before.get(p)
            actions = [a for a, _ in attempts]
            writers = [r for a, r in attempts if a in ("add", "replace")]
            if pre is None:  # the first to hold the lock adds; nobody else can
                assert actions.count("add") == 1, (scenario, actions)
            else:
                assert "add" not in actions, (scenario, actions)
            assert p in now, f"round {round_no}: {p} lost ({scenario}, {actions})"
            final = now[p]
            if writers:
                assert final["run_id"] in {r["run_id"] for r in writers}, (scenario, actions)
            else:
                assert final == pre, (scenario, actions)
            if not any(a == "replace" for a in actions):  # an add is never overwritten
                for a, r in attempts:
                    if a in ("add", "keep (same run)"):
                        assert final["run_id"] == r["run_id"], (scenario, actions)
            for a, r in attempts:  # a refusal means another run was there
                if a == "refused":
                    assert final["run_id"] != r["run_id"] or writers
            races += len(attempts) > 1
            expected[p] = final
        assert now == expected, f"round {round_no}: files appeared or changed outside " \
                                "the submitted paths"
        for p, r in now.items():  # nothing mixed: each file holds its own model's result
            assert str(store.path_in_store(r)) == p
    assert not [p for p in root.rglob("*") if p.name.startswith(".") and p.name != ".lock"]
    return races


def test_concurrent_submitters_never_lose_or_mix_a_result(workers, inputs, tmp_path):
    """200 rounds through `Store.submit` in four processes."""
    races = run_rounds(tmp_path / "store", workers, inputs, ROUNDS, "store", seed=16)
    assert races >= ROUNDS // 2


def test_concurrent_probekit_submit_commands(workers, inputs, tmp_path):
    """The same through the whole `probekit submit` command (reading and validating the
    result file, printing what it filed), for fewer rounds: each costs a command run."""
    races = run_rounds(tmp_path / "store", workers, inputs, CLI_ROUNDS, "cli", seed=61)
    assert races >= CLI_ROUNDS // 3
