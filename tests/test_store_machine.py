"""A hypothesis state machine over store operations — submit, replace, simultaneous submits
(threads), ids that would collide, and leaderboard builds — checking after every step that no
filed result was lost, overwritten without --replace, or mixed with another model's."""

from __future__ import annotations

import itertools
import threading

import polars as pl
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from probekit import leaderboard, store
from probekit.errors import ResultError
from probekit.results import identity_of_path
from tests.test_store_concurrency import race_result

# Ids that are easy to confuse: `org/x__y` files as `org__x__y`, which `org__x/y` would too
# (refused); `Org/m` differs from `org/m` only in case (refused while the other is stored).
MODELS = ["org/m", "org/x__y", "Org/m", "o.rg/m-1"]
REFUSED_IDS = ["org__x/y", "org_/m", "a/b/c", "org/.m", "org/mödel", "../m"]
SEEDS = range(4)
submission = st.tuples(st.sampled_from(MODELS), st.sampled_from(SEEDS), st.booleans())


def path_of(model: str) -> str:
    return str(store.path_in_store(race_result(model, 0)))


class StoreMachine(RuleBasedStateMachine):
    """`expected` maps each store path to the run id it must hold."""

    @initialize()
    def start(self):
        import tempfile
        from pathlib import Path

        self.tmp = tempfile.TemporaryDirectory(prefix="probekit-store-machine-")
        self.root = Path(self.tmp.name) / "store"
        self.store = store.Store(self.root, lock_timeout=30)
        self.expected: dict[str, str] = {}

    def teardown(self):
        if hasattr(self, "tmp"):
            self.tmp.cleanup()

    def predict(self, state: dict[str, str], model: str, seed: int, replace: bool):
        """(outcome, new state) of one submit against `state`, serially."""
        result = race_result(model, seed)
        path = path_of(model)
        clash = [p for p in state if p != path and p.casefold() == path.casefold()]
        old = state.get(path)
        if old is None and clash:
            return "refused", state
        if old is None:
            return "new", {**state, path: result["run_id"]}
        if old == result["run_id"]:
            return "same", state
        if replace:
            return "replace", {**state, path: result["run_id"]}
        return "refused", state

    def submit_one(self, model: str, seed: int, replace: bool) -> str:
        try:
            (filing,), _ = self.store.submit([race_result(model, seed)], replace=replace)
            return filing.action
        except ResultError:
            return "refused"

    @rule(sub=submission)
    def submit(self, sub):
        model, seed, replace = sub
        want, self.expected = self.predict(self.expected, model, seed, replace)
        assert self.submit_one(model, seed, replace) == want

    @rule(subs=st.lists(submission, min_size=2, max_size=3))
    def submit_at_once(self, subs):
        """Threads submit together; the outcomes and the store must match one serial order."""
        barrier = threading.Barrier(len(subs))
        got: list[str | None] = [None] * len(subs)

        def run(i: int) -> None:
            barrier.wait()
            got[i] = self.submit_one(*subs[i])

        threads = [threading.Thread(target=run, args=(i,)) for i in range(len(subs))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        now = self.snapshot()
        for order in itertools.permutations(range(len(subs))):
            state, outcomes = dict(self.expected), [None] * len(subs)
            for i in order:
                outcomes[i], state = self.predict(state, *subs[i])
            if outcomes == got and state == now:
                self.expected = state
                return
        pytest.fail(f"no serial order of {subs} gives outcomes {got} and store {now}")

    @rule(model=st.sampled_from(REFUSED_IDS), seed=st.sampled_from(SEEDS),
          replace=st.booleans())
    def submit_a_colliding_id(self, model, seed, replace):
        result = dict(race_result("org/m", seed))
        result["model"] = {**result["model"], "id": model}
        with pytest.raises(ResultError):
            self.store.submit([result], replace=replace)

    @rule()
    def build(self):
        if not self.expected:
            return
        out = self.root.parent / "site"
        paths = leaderboard.build(self.root, out)
        table = pl.read_parquet(paths[0])
        # One row per stored model, each under the id its path reads back as.
        assert sorted(table["model"].to_list()) == sorted(identity_of_path(p)[0]
                                                          for p in self.expected)

    def snapshot(self) -> dict[str, str]:
        return {str(store.path_in_store(r)): r["run_id"] for r in self.store.results()}

    @invariant()
    def nothing_lost_or_mixed(self):
        if not hasattr(self, "store"):
            return
        assert self.snapshot() == self.expected
        for path in self.expected:  # each file at its own path (Store.results checks it too)
            assert (self.root / path).is_file()


StoreMachine.TestCase.settings = settings(
    max_examples=25, stateful_step_count=12, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])
test_store_operations_never_lose_or_mix_results = StoreMachine.TestCase
