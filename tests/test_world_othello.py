"""Mini-Othello: every move in the text is legal and flips what a slow reference board says,
passes happen exactly when forced, and the labels describe the reference board."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from probekit.worlds.othello import Othello

EMPTY, BLACK, WHITE = 0, 1, 2
DIRS = [(dr, dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1) if dr or dc]


class Board:
    """A plain 2-D Othello board, written independently of the bitboard implementation."""

    def __init__(self, n: int):
        self.n = n
        self.cells = [[EMPTY] * n for _ in range(n)]
        c = n // 2
        self.cells[c - 1][c - 1] = self.cells[c][c] = WHITE
        self.cells[c - 1][c] = self.cells[c][c - 1] = BLACK

    def captures(self, r: int, c: int, me: int) -> list[tuple[int, int]]:
        if self.cells[r][c] != EMPTY:
            return []
        out = []
        for dr, dc in DIRS:
            run, rr, cc = [], r + dr, c + dc
            while 0 <= rr < self.n and 0 <= cc < self.n and self.cells[rr][cc] == 3 - me:
                run.append((rr, cc))
                rr, cc = rr + dr, cc + dc
            if run and 0 <= rr < self.n and 0 <= cc < self.n and self.cells[rr][cc] == me:
                out += run
        return out

    def legal(self, me: int) -> set[tuple[int, int]]:
        return {(r, c) for r in range(self.n) for c in range(self.n) if self.captures(r, c, me)}

    def play(self, r: int, c: int, me: int) -> None:
        for rr, cc in self.captures(r, c, me):
            self.cells[rr][cc] = me
        self.cells[r][c] = me


def square(word: str) -> tuple[int, int]:
    return int(word[1:]) - 1, ord(word[0]) - ord("a")


def replay(n: int, words: list[str]) -> list[Board]:
    """Boards after each step, asserting every move is legal and every pass forced."""
    board, me, out = Board(n), BLACK, []
    for w in words:
        if w == "pass":
            assert not board.legal(me) and board.legal(3 - me)
        else:
            r, c = square(w)
            assert (r, c) in board.legal(me), w
            board.play(r, c, me)
        snapshot = Board(n)
        snapshot.cells = [row[:] for row in board.cells]
        out.append(snapshot)
        me = 3 - me
    return out


games = st.sampled_from([4, 6]).flatmap(
    lambda n: st.tuples(st.just(n), st.integers(1, n * n - 4 if n == 4 else 24)))


@settings(max_examples=40, deadline=None)
@given(games, st.integers(0, 2**32 - 1))
def test_games_are_legal_and_labels_match_the_reference(game, seed):
    n, length = game
    world = Othello(size=n, length=length)
    ep = world.episode(np.random.default_rng(seed))
    words = ep.text.split()
    assert len(words) == ep.n_steps == length
    boards = replay(n, words)
    for s, board in enumerate(boards):
        mover_next = WHITE if s % 2 == 0 else BLACK
        legal = board.legal(mover_next)
        assert ep.state[s, -1] == mover_next - 1
        for r in range(n):
            for c in range(n):
                sq = f"{chr(ord('a') + c)}{r + 1}"
                v = board.cells[r][c]
                assert ep.labels[f"color.{sq}"][s] == v == ep.state[s, r * n + c]
                mine = EMPTY if v == EMPTY else (1 if v == mover_next else 2)
                assert ep.labels[f"mine.{sq}"][s] == mine
                assert ep.labels[f"legal.{sq}"][s] == ((r, c) in legal)


def test_passes_happen():
    world = Othello(size=4, length=12)
    passes = sum("pass" in world.episode(np.random.default_rng(s)).text.split()
                 for s in range(200))
    assert passes > 0


@settings(max_examples=30, deadline=None)
@given(games, st.sampled_from(["random", "last"]), st.sampled_from(["mine", "color"]),
       st.integers(0, 2**32 - 1))
def test_counterfactual_changes_one_move_and_keeps_the_rest_legal(game, step, readout, seed):
    n, length = game
    world = Othello(size=n, length=length)
    rng = np.random.default_rng(seed)
    base = world.episode(rng)
    pair = world.counterfactual(base, rng, {"variable": "move", "step": step,
                                            "readout": readout})
    if pair is None:
        return
    b, s = base.text.split(), pair.source.text.split()
    assert [i for i in range(length) if b[i] != s[i]] == [pair.step]
    replay(n, s)  # every later move and pass is still legal
    assert pair.readout_target.startswith(readout + ".")


@pytest.mark.parametrize("size, length", [(4, 13), (6, 33)])
def test_length_beyond_the_board_is_refused(size, length):
    from probekit.errors import SpecError

    with pytest.raises(SpecError, match="length"):
        Othello(size=size, length=length)
