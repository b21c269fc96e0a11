"""Mini-Othello: random legal games on 4x4 or 6x6 boards (Li et al. 2023 used 8x8).

Black moves first; a player with no legal move passes (a `pass` step), and a game where
neither player can move is over. Boards are bitboards (bit row·N + col); squares are named by
column letter and row number, `a1` top left. The probing targets follow Nanda et al. (2023):
every square as empty / mine / theirs relative to the player to move next, which linear probes
read far better than empty / black / white (also provided, as `color`).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from probekit.errors import SpecError
from probekit.worlds.base import (
    Counterfactual,
    Episode,
    Knob,
    Target,
    Violation,
    World,
    build_text,
    undefined_from,
)

SIZES = (4, 6)
PASS = -1
DIRECTIONS = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))
MAX_TRIES = 1000  # games drawn before giving up on one that lasts `length` steps
PLACEBO_TRIES = 32  # alternative moves replayed in search of a placebo before giving up


@functools.cache
def geometry(n: int) -> tuple[tuple[tuple[int, int], ...], int, tuple[str, ...]]:
    """Per direction (shift, mask of the squares a shift may land on without wrapping a row),
    the full-board mask and the square names."""
    full = (1 << n * n) - 1
    col = [sum(1 << (r * n + c) for r in range(n)) for c in range(n)]
    shifts = []
    for dr, dc in DIRECTIONS:
        mask = full & ~(col[0] if dc == 1 else col[n - 1] if dc == -1 else 0)
        shifts.append((dr * n + dc, mask))
    names = tuple(f"{chr(ord('a') + c)}{r + 1}" for r in range(n) for c in range(n))
    return tuple(shifts), full, names


def legal_moves(n: int, me: int, opp: int) -> int:
    """Bitboard of the squares where `me` may play (Kogge-Stone style fills per direction)."""
    shifts, full, _ = geometry(n)
    empty = full & ~(me | opp)
    moves = 0
    for s, mask in shifts:
        o, e = opp & mask, empty & mask
        if s > 0:
            x = (me << s) & o
            for _ in range(n - 3):
                x |= (x << s) & o
            moves |= (x << s) & e
        else:
            x = (me >> -s) & o
            for _ in range(n - 3):
                x |= (x >> -s) & o
            moves |= (x >> -s) & e
    return moves


def flips(n: int, me: int, opp: int, square: int) -> int:
    """Bitboard of the opponent discs that playing `square` turns over (0: not a legal move
    when the square is empty)."""
    shifts, _, _ = geometry(n)
    out = 0
    for s, mask in shifts:
        run = 0
        x = ((1 << square << s) if s > 0 else (1 << square >> -s)) & mask
        while x & opp:
            run |= x
            x = ((x << s) if s > 0 else (x >> -s)) & mask
        if x & me:
            out |= run
    return out


def start_board(n: int) -> tuple[int, int]:
    """Black and white bitboards of the opening position (black on the anti-diagonal)."""
    c = n // 2
    black = (1 << ((c - 1) * n + c)) | (1 << (c * n + c - 1))
    white = (1 << ((c - 1) * n + c - 1)) | (1 << (c * n + c))
    return black, white


@functools.cache
def _vocab(n: int) -> dict[str, int]:
    return {w: i for i, w in enumerate([*geometry(n)[2], "pass"])}


def _bits(x: int) -> list[int]:
    out, i = [], 0
    while x:
        if x & 1:
            out.append(i)
        x >>= 1
        i += 1
    return out


class Othello(World):
    """Board-state tracking from a move list."""

    name = "othello"
    version = "2"
    description = ("Random legal Othello games on a small board, one move (or pass) per step; "
                   "the state is the board: every square empty, black or white.")
    knobs = (
        Knob("size", int, 6, "board side", choices=SIZES),
        Knob("length", int, 20, "steps (moves and passes) per game; games that end sooner are "
             "redrawn", min=1, max=32),
    )
    counterfactual_knobs = (
        Knob("variable", str, "move", "what the intervention changes: one move",
             choices=("move",)),
        Knob("step", str, "random", "which step: a uniformly drawn one, or the last",
             choices=("random", "last")),
        Knob("readout", str, "mine", "what must follow: one square that differs at the last "
             "step, as empty/mine/theirs or as empty/black/white", choices=("mine", "color")),
    )
    violation_knobs = (
        Knob("kinds", tuple, ("unflanking", "occupied"), "which illegal move the impossible "
             "edit plays: `unflanking` (an empty square that turns nothing over), `occupied` (a "
             "square that already holds a disc)", choices=("unflanking", "occupied")),
        Knob("step", str, "random", "which step: a uniformly drawn one among those that admit "
             "the edit, or the last", choices=("random", "last")),
    )

    @classmethod
    def check_knobs(cls, params: dict[str, Any], where: str) -> None:
        most = params["size"] ** 2 - 4
        if params["length"] > most:
            raise SpecError(f"{where}.length: {params['length']} is out of range for size "
                            f"{params['size']}; valid range [1, {most}] (one square per move)")

    @property
    def squares(self) -> tuple[str, ...]:
        return geometry(self.params["size"])[2]

    def vocabulary(self) -> list[str]:
        return list(_vocab(self.params["size"]))

    def targets(self) -> list[Target]:
        sq = self.squares
        return ([Target(f"mine.{s}", "class", 3) for s in sq]
                + [Target(f"color.{s}", "class", 3) for s in sq]
                + [Target(f"legal.{s}", "class", 2) for s in sq])

    def play(self, moves: list[int], t: int = 0,
             before: tuple[int, int] | None = None) -> list[tuple[int, int, int]] | None:
        """Black, white and the next player's legal moves after each of `moves` (squares or
        PASS), played from step `t` on board `before` (the opening by default), or None where
        one is not legal: a pass is legal only when the mover has no move and the game is not
        over."""
        n = self.params["size"]
        board = list(before or start_board(n))
        player = t % 2
        legal = legal_moves(n, board[player], board[1 - player])
        out = []
        for m in moves:
            me, opp = board[player], board[1 - player]
            if m == PASS:
                if legal or not legal_moves(n, opp, me):
                    return None
            else:
                if not legal >> m & 1:
                    return None
                f = flips(n, me, opp, m)
                board[player], board[1 - player] = me | f | (1 << m), opp & ~f
            player = 1 - player
            legal = legal_moves(n, board[player], board[1 - player])
            out.append((board[0], board[1], legal))
        return out

    def _game(self, rng: np.random.Generator
              ) -> tuple[list[int], list[tuple[int, int, int]]] | None:
        """A random legal game of `length` steps and its boards (as `play` gives them), or
        None if the game ends sooner."""
        n = self.params["size"]
        board = list(start_board(n))
        player = 0
        legal = legal_moves(n, board[0], board[1])
        moves, boards = [], []
        for _ in range(self.params["length"]):
            me, opp = board[player], board[1 - player]
            if legal:
                options = _bits(legal)
                m = options[int(rng.integers(len(options)))]
                f = flips(n, me, opp, m)
                board[player], board[1 - player] = me | f | (1 << m), opp & ~f
            elif legal_moves(n, opp, me):
                m = PASS
            else:
                return None
            player = 1 - player
            legal = legal_moves(n, board[player], board[1 - player])
            moves.append(m)
            boards.append((board[0], board[1], legal))
        return moves, boards

    def _render(self, moves: list[int], boards: list[tuple[int, int, int]]) -> Episode:
        n = self.params["size"]
        sq = self.squares
        T, S = len(moves), n * n
        arr = np.array(boards, dtype=np.int64)  # [T, 3]: black, white, legal
        bit = (arr[:, :, None] >> np.arange(S)) & 1  # [T, 3, S]
        color = bit[:, 0] + 2 * bit[:, 1]  # 0 empty, 1 black, 2 white
        after = np.arange(1, T + 1) % 2  # player to move after each step: 0 black, 1 white
        mine = np.where(color == 0, 0, np.where(color == after[:, None] + 1, 1, 2))
        steps = [["pass" if m == PASS else sq[m]] for m in moves]
        text, spans, tokens, token_steps, _, _ = build_text(
            steps, _vocab(n))
        obs = np.zeros((T, S + 1), dtype=np.float32)
        obs[np.arange(T), np.array(moves)] = 1  # PASS (-1) is the last column
        labels = {}
        for i, s in enumerate(sq):
            labels[f"mine.{s}"] = mine[:, i]
        for i, s in enumerate(sq):
            labels[f"color.{s}"] = color[:, i]
        for i, s in enumerate(sq):
            labels[f"legal.{s}"] = bit[:, 2, i]
        state = np.concatenate([color, after[:, None]], axis=1)
        return Episode(text, spans, tokens, token_steps, obs, state, [s[0] for s in steps],
                       labels)

    def episode(self, rng: np.random.Generator) -> Episode:
        for _ in range(MAX_TRIES):
            game = self._game(rng)
            if game is not None:
                break
        else:
            raise SpecError(f"othello: no game of {self.params['length']} steps on a "
                            f"{self.params['size']}x{self.params['size']} board in {MAX_TRIES} "
                            "draws; use a smaller length")
        moves, boards = game
        ep = self._render(moves, boards)
        ep._moves, ep._boards = moves, boards  # for counterfactuals; not part of the row
        return ep

    def _legal_before(self, base: Episode) -> list[int]:
        """The mover's legal moves before each step of `base`."""
        n = self.params["size"]
        return [legal_moves(n, *start_board(n))] + [b[2] for b in base._boards[:-1]]

    def _replace(self, base: Episode, t: int, move: int
                 ) -> tuple[list[int], list[tuple[int, int, int]]] | None:
        """The moves and boards of `base` with `move` played at step t and every later step
        kept, or None if a later step is no longer legal."""
        moves, boards = base._moves, base._boards
        new = moves[:t] + [move] + moves[t + 1:]
        after = self.play(new[t:], t, boards[t - 1][:2] if t else None)
        return None if after is None else (new, boards[:t] + after)

    def _episode(self, moves: list[int], boards: list[tuple[int, int, int]]) -> Episode:
        ep = self._render(moves, boards)
        ep._moves, ep._boards = moves, boards
        return ep

    def counterfactual(self, base: Episode, rng: np.random.Generator,
                       settings: dict[str, Any]) -> Counterfactual | None:
        """Play another legal move at step t and keep every later step as it was.

        Rule: an alternative is accepted only if every later move (and pass) of the base game
        stays legal after it, so base and source texts differ in the one word at step t; steps
        and alternatives are tried in random order (`step: random` draws t among the steps
        where such an alternative exists). The readout is one square, drawn among those that
        differ at the last step (the square base played at t is one: nothing fills it later
        in the source)."""
        moves = base._moves
        T = len(moves)
        legal_at = self._legal_before(base)
        family = settings["readout"]
        steps = [T - 1] if settings["step"] == "last" else list(range(T))
        for i in rng.permutation(len(steps)).tolist():
            t = steps[i]
            if moves[t] == PASS:
                continue
            options = [m for m in _bits(legal_at[t]) if m != moves[t]]
            for j in rng.permutation(len(options)).tolist():
                if self._final(base, t, options[j]) is None:
                    continue
                source = self._episode(*self._replace(base, t, options[j]))
                differ = [s for s in self.squares if base.labels[f"{family}.{s}"][-1]
                          != source.labels[f"{family}.{s}"][-1]]
                target = f"{family}.{differ[int(rng.integers(len(differ)))]}"
                return Counterfactual(source=source, step=t, variable="move",
                                      readout_target=target,
                                      base_label=int(base.labels[target][-1]),
                                      counterfactual_label=int(source.labels[target][-1]))
        return None

    def _final(self, base: Episode, t: int, move: int) -> tuple[int, int, int] | None:
        """Black, white and the legal moves after the last step of `base` with `move` played
        at step t and every later step kept, or None if a later step is no longer legal (a
        faster `_replace` for searches: legality from the flips alone, no per-step legal
        moves, and the base's end as soon as the boards meet the base's again)."""
        n = self.params["size"]
        moves, boards = base._moves, base._boards
        board = list(boards[t - 1][:2] if t else start_board(n))
        player = t % 2
        for s, m in enumerate([move] + moves[t + 1:], start=t):
            me, opp = board[player], board[1 - player]
            if m == PASS:
                if legal_moves(n, me, opp) or not legal_moves(n, opp, me):
                    return None
            else:
                f = flips(n, me, opp, m)
                if not f or (me | opp) >> m & 1:
                    return None
                board[player], board[1 - player] = me | f | (1 << m), opp & ~f
            player = 1 - player
            if (board[0], board[1]) == boards[s][:2]:
                return boards[-1]
        return board[0], board[1], legal_moves(n, board[player], board[1 - player])

    def placebo(self, base: Episode, pair: Counterfactual, rng: np.random.Generator,
                settings: dict[str, Any]) -> Counterfactual | None:
        """Play another legal move at some step, every later step kept and still legal, such
        that at the last step the readout square holds the same disc and the set of legal
        moves is the same as in the base (the board differs along the way). Steps and moves
        are tried in random order, at most PLACEBO_TRIES (32) of them (a move the base may
        play at the end is never one: it would be filled); such moves are rare, and the card
        reports the share of pairs that have one."""
        moves, boards = base._moves, base._boards
        square = self.squares.index(pair.readout_target.split(".", 1)[1])
        bit = 1 << square
        black, white, legal = boards[-1]
        want = (black & bit, white & bit, legal)
        legal_at = self._legal_before(base)
        candidates = [(t, m) for t, here in enumerate(moves) if here != PASS
                      for m in _bits(legal_at[t] & ~legal) if m != here]
        for i in rng.permutation(len(candidates))[:PLACEBO_TRIES].tolist():
            t, m = candidates[i]
            end = self._final(base, t, m)
            if end is not None and (end[0] & bit, end[1] & bit, end[2]) == want:
                return Counterfactual(source=self._episode(*self._replace(base, t, m)),
                                      step=t, variable="move",
                                      readout_target=pair.readout_target,
                                      base_label=pair.base_label,
                                      counterfactual_label=pair.base_label)
        return None

    def violation(self, base: Episode, rng: np.random.Generator,
                  settings: dict[str, Any]) -> Violation | None:
        """At a step where the mover had a choice, the impossible episode plays an illegal
        square (`unflanking`: an empty square that turns nothing over; `occupied`: a square
        that holds a disc) and the possible twin another legal move after which every later
        step stays legal (as a counterfactual does); both keep the base's later steps. The
        board after an illegal move is undefined, so the impossible episode's labels are too.
        The kind is drawn among the declared ones this episode admits, then the step."""
        n = self.params["size"]
        moves, boards = base._moves, base._boards
        T = len(moves)
        full = (1 << n * n) - 1
        legal_at = self._legal_before(base)
        steps = [T - 1] if settings["step"] == "last" else list(range(T))
        kinds = list(settings["kinds"])
        for kind in (kinds[i] for i in rng.permutation(len(kinds)).tolist()):
            for t in (steps[i] for i in rng.permutation(len(steps)).tolist()):
                if moves[t] == PASS:
                    continue
                black, white = boards[t - 1][:2] if t else start_board(n)
                taken = black | white
                bad = _bits(taken if kind == "occupied" else full & ~taken & ~legal_at[t])
                legal = [m for m in _bits(legal_at[t]) if m != moves[t]]
                if not bad or not legal:
                    continue
                good = next((legal[j] for j in rng.permutation(len(legal)).tolist()
                             if self._final(base, t, legal[j]) is not None), None)
                if good is None:
                    continue
                square = bad[int(rng.integers(len(bad)))]
                new = moves[:t] + [square] + moves[t + 1:]
                impossible = undefined_from(self._episode(new, boards), t, base)
                return Violation(possible=self._episode(*self._replace(base, t, good)),
                                 impossible=impossible, step=t, kind=kind, variable="move")
        return None
