"""Group word problems: the tables obey the group (or monoid) laws and agree with an
independent definition, and the state is the product of the elements read from the text."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from probekit.worlds.groups import GROUPS, Groups, multiplication

CASES = [("parity", 2), ("cyclic", 2), ("cyclic", 7), ("cyclic", 64), ("s3", 5), ("s5", 5),
         ("flipflop", 5)]


def compose(group: str, m: int, a: str, b: str) -> str:
    """a·b ("a, then b") from the element names alone."""
    if group == "parity":
        return str(int(a) ^ int(b))
    if group == "cyclic":
        return str((int(a) + int(b)) % m)
    if group == "flipflop":
        return a if b == "ignore" else b
    return "".join(b[int(c) - 1] for c in a)  # one-line notation: position i -> b[a[i]]


@pytest.mark.parametrize("group, m", CASES)
def test_table_obeys_the_laws(group, m):
    names, t = multiplication(group, m)
    n = len(names)
    assert len(set(names)) == n == {"parity": 2, "cyclic": m, "s3": 6, "s5": 120,
                                    "flipflop": 3}[group]
    a = np.arange(n)
    assert (t[t[a[:, None, None], a[None, :, None]], a[None, None, :]]
            == t[a[:, None, None], t[a[None, :, None], a[None, None, :]]]).all()
    assert (t[0] == a).all() and (t[:, 0] == a).all()  # element 0 is the identity
    inverses = (t == 0).any(axis=1)
    assert inverses.all() == (group != "flipflop")  # the flip-flop is a monoid, not a group
    if group != "flipflop":
        assert ((t == 0).sum(axis=1) == 1).all() and (t[t.argmin(axis=1), a] == 0).all()
    for i in range(0, n, max(1, n // 12)):
        for j in range(0, n, max(1, n // 12)):
            assert names[t[i, j]] == compose(group, m, names[i], names[j])


@settings(max_examples=50, deadline=None)
@given(st.sampled_from(CASES), st.integers(1, 40), st.integers(0, 2**32 - 1))
def test_state_is_the_product_of_the_text(case, length, seed):
    group, m = case
    world = Groups(group=group, m=m, length=length)
    ep = world.episode(np.random.default_rng(seed))
    words = ep.text.split()
    assert words[-2] == "=" and len(words) == length + 2
    names = world.names
    acc = names[0]
    for s, w in enumerate(words[:length]):
        acc = compose(group, m, acc, w)
        assert names[ep.state[s, 0]] == acc == names[ep.labels["element"][s]]
        if world.degree:
            for k in range(world.degree):
                assert ep.labels[f"image.p{k + 1}"][s] == int(acc[k]) - 1
        assert ep.obs[s].argmax() == names.index(w) and ep.obs[s].sum() == 1
    assert ep.query_answer == acc == words[-1]


def test_every_group_is_listed():
    assert set(GROUPS) == {g for g, _ in CASES}
