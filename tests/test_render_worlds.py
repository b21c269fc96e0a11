"""Frames of Othello and boxes (`probekit.worlds.render`): pixels against a per-pixel
reference, each step's frame showing the world's state, pairs and violation pairs rendered
with their edit visible at the step, determinism and the fingerprint."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from probekit.tasks import BUILTIN_TASKS, Task, TaskSpec, load_task
from probekit.worlds.othello import PASS, flips, start_board
from probekit.worlds.render import (
    AGENT,
    BOARD,
    BUMP_MARK,
    DISCS,
    GRID_LINE,
    MOVE_MARK,
    PALETTE,
    WALLS,
    edges,
    render,
    shelf,
)

TASKS = ("othello-4-frames", "boxes-frames")
ALL = (*TASKS, "gridworld-5x5-frames")


def frames_task(name: str, **frames) -> Task:
    """The registered task, built afresh from its YAML, with some frame knobs changed."""
    raw = yaml.safe_load((BUILTIN_TASKS / f"{name}.yaml").read_text())
    raw["frames"] = {**raw["frames"], **frames}
    return Task(TaskSpec.parse(raw))


def cover(size: int, x: float, y: float, r: float, style: str) -> np.ndarray:
    """A disk's coverage of every pixel, [size, size] (unit box, y up)."""
    c = (np.arange(size) + 0.5) / size
    d = np.hypot(c[None, :] - x, c[::-1][:, None] - y) * size
    return np.clip(r * size + 0.5 - d, 0, 1) if style == "smooth" else (d <= r * size) * 1.0


def shade(pair: tuple, channels: int) -> np.ndarray:
    rgb, gray = pair
    return np.array(rgb if channels == 3 else (gray,), dtype=float)[:, None, None]


def othello_reference(n: int, moves: list[int], frames: dict) -> np.ndarray:
    """One frame per step: the board replayed with the world's own `flips` on bitboards (an
    illegal move too: the mover's disc on its square, what it closes turned over)."""
    size, C = frames["size"], frames["channels"]
    board = list(start_board(n))
    out = []
    for t, m in enumerate(moves):
        me = t % 2
        if m != PASS:
            f = flips(n, board[me], board[1 - me], m) | 1 << m
            board[me], board[1 - me] = board[me] | f, board[1 - me] & ~f
        img = np.zeros((C, size, size)) + shade(BOARD, C)
        for sq in range(n * n):
            r, c = divmod(sq, n)
            x, y = (c + 0.5) / n, 1 - (r + 0.5) / n
            for who in (0, 1):
                if board[who] >> sq & 1:
                    k = cover(size, x, y, 0.35 / n, frames["style"])
                    img = img * (1 - k) + shade(DISCS[who], C) * k
            if sq == m:
                k = cover(size, x, y, 0.15 / n, frames["style"])
                img = img * (1 - k) + shade(MOVE_MARK, C) * k
        for e in range(1, n):
            p = round(e * size / n)
            img[:, p, :] = img[:, :, p] = shade(GRID_LINE, C)[:, 0]
        out.append(img)
    return np.rint(np.stack(out)).astype(np.uint8)


def boxes_reference(params: dict, ops: list[tuple], frames: dict) -> np.ndarray:
    """One frame per step: objects where the operations put them, the step's containers
    outlined, pixel by pixel from `shelf`'s layout."""
    B, K, size, C = params["n_boxes"], params["n_objects"], frames["size"], frames["channels"]
    outline, slots, radius = shelf(B, K, size)
    loc = [B] * K
    out = []
    for _, o, src, dst, _ in ops:
        loc[o] = dst
        img = np.zeros((C, size, size))
        for k in range(K):
            col = PALETTE[k][:, None, None] if C == 3 else np.full((1, 1, 1), [255, 150, 205,
                                                                                100][k])
            img = np.maximum(img, cover(size, *slots[loc[k], k], radius, frames["style"]) * col)
        for j in range(B + 1):
            wall = WALLS[2 if j == dst else 1 if j == src else 0]
            on = outline[j].reshape(size, size) > 0
            img[:, on] = shade(wall, C)[:, 0]
        out.append(img)
    return np.rint(np.stack(out)).astype(np.uint8)


@pytest.mark.parametrize("name", TASKS)
@pytest.mark.parametrize("frames", [{"frames_per_step": 1},
                                    {"frames_per_step": 1, "size": 24, "channels": 1,
                                     "style": "flat"}])
def test_pixels_match_a_per_pixel_reference(name: str, frames: dict):
    t = frames_task(name, **frames)
    world = t.spec.world_for("test")
    examples = [t.generate("test", i, violation=True) for i in range(3)]
    episodes = [e for ep, _, vio in examples for e in (ep, vio.impossible if vio else None) if e]
    assert any(e.labels[next(iter(e.labels))][-1] == -1 for e in episodes)  # an impossible one
    for ep, got in zip(episodes, render(world, episodes, t.spec.frames)):
        if name.startswith("othello"):
            moves = [PASS if m == world.params["size"] ** 2 else int(m)
                     for m in ep.obs.argmax(axis=1)]
            want = othello_reference(world.params["size"], moves, t.spec.frames)
        else:
            ops = [(0, int(o[3:3 + 4].argmax()), int(o[7:12].argmax()), int(o[12:].argmax()), 0)
                   for o in ep.obs]
            want = boxes_reference(world.params, ops, t.spec.frames)
        np.testing.assert_array_equal(got, want)


def test_othello_frames_show_the_board_of_the_labels():
    t = load_task("othello-4-frames")
    n, size = 4, t.spec.frames["size"]
    colours = [shade(BOARD, 3)[:, 0, 0]] + [shade(d, 3)[:, 0, 0] for d in DISCS]
    for i in range(5):
        ep = t.generate("train", i)[0]
        assert ep.frames.shape == (ep.n_steps, 3, size, size)
        for s in range(ep.n_steps):
            for sq, name in enumerate(t.spec.world_for("train").squares):
                r, c = divmod(sq, n)  # a pixel inside the disc, off its centre's move dot
                y, x = int((r + 0.25) / n * size), int((c + 0.25) / n * size)
                got = ep.frames[s, :, y, x]
                np.testing.assert_array_equal(got, colours[ep.labels[f"color.{name}"][s]])


def test_boxes_frames_show_every_object_where_the_labels_put_it():
    t = load_task("boxes-frames")
    F, size = t.frames_per_step, t.spec.frames["size"]
    params = t.spec.world_for("train").params
    _, slots, _ = shelf(params["n_boxes"], params["n_objects"], size)
    px = np.floor(slots * size).astype(int)  # [B + 1, K, 2] (x, y up) → the centre pixel
    for i in range(5):
        ep = t.generate("train", i)[0]
        assert ep.frames.shape == (ep.n_steps * F, 3, size, size)
        for s in range(ep.n_steps):
            img = ep.frames[s * F + F - 1]
            for k in range(params["n_objects"]):
                for j in range(params["n_boxes"] + 1):
                    x, y = px[j, k]
                    here = (img[:, size - 1 - y, x] == PALETTE[k]).all()
                    assert here == (ep.labels[f"location.obj{k}"][s] == j), (i, s, k, j)


@pytest.mark.parametrize("name", ALL)
def test_pairs_and_violations_show_their_edit_from_the_step(name: str):
    t = load_task(name)
    F = t.frames_per_step
    kinds = set()
    for i in range(12):
        ep, pair, vio = t.generate("test", i, violation=True)
        edited = [(ep, vio.possible, vio.step), (ep, vio.impossible, vio.step),
                  (vio.possible, vio.impossible, vio.step)] if vio else []
        if pair is not None:
            edited.append((ep, pair.source, pair.step))
            if pair.placebo is not None:
                edited.append((ep, pair.placebo.source, pair.placebo.step))
        for a, b, s in edited:
            assert a.frames.shape == b.frames.shape
            np.testing.assert_array_equal(a.frames[:s * F], b.frames[:s * F])
            assert not np.array_equal(a.frames[s * F:(s + 1) * F], b.frames[s * F:(s + 1) * F])
        kinds.add(vio and vio.kind)
    assert kinds >= set(t.spec.violations["kinds"])


@pytest.mark.parametrize("name", ALL)
def test_same_seed_same_bytes_and_the_fingerprint_follows_the_knobs(name: str):
    a, b = load_task(name), frames_task(name)
    assert a.generate("val", 0)[0].frames.tobytes() == b.generate("val", 0)[0].frames.tobytes()
    prints = {a.fingerprint} | {frames_task(name, **change).fingerprint for change in (
        {"size": 16}, {"frames_per_step": 3}, {"channels": 1}, {"style": "flat"})}
    assert len(prints) == 5


@pytest.mark.parametrize("name", ALL)
def test_each_step_ends_on_its_own_frame_at_any_frames_per_step(name: str):
    one, three = frames_task(name, frames_per_step=1), frames_task(name, frames_per_step=3)
    world = one.spec.world_for("val")
    episodes = [one.generate("val", i)[0] for i in range(3)]
    for a, b in zip(render(world, episodes, one.spec.frames),
                    render(world, episodes, three.spec.frames)):
        assert b.shape[0] == 3 * a.shape[0]
        np.testing.assert_array_equal(b[2::3], a)  # frame s·F + F − 1 shows step s
        assert not np.array_equal(b[0::3], a)  # the earlier ones show the way there


def test_gridworld_frames_show_the_agent_in_its_cell_the_maze_and_each_bump():
    """The agent's disk is centred on the cell the labels give (and on no other cell centre),
    the task's maze walls are drawn, and a bump step marks the side bumped into."""
    t = load_task("gridworld-5x5-frames")
    world = t.spec.world_for("train")
    n, size = world.params["size"], t.spec.frames["size"]
    agent, red = shade(AGENT, 3)[:, 0, 0], shade(BUMP_MARK, 3)[:, 0, 0]
    centre = [int((i + 0.5) * size / n) for i in range(n)]
    side = edges(n, size)
    maze = side[world.walls()].any(axis=0).reshape(size, size)
    bumps = 0
    for i in range(40):  # bumps are rare (p_bump 0.02): enough episodes to meet some
        ep = t.generate("train", i)[0]
        for s in range(ep.n_steps):
            img = ep.frames[s]
            at = [(x, y) for y in range(n) for x in range(n)
                  if (img[:, centre[y], centre[x]] == agent).all()]
            assert at == [(ep.labels["x"][s], ep.labels["y"][s])], (i, s)
            drawn = (img != 0).any(axis=0)
            assert drawn[maze].mean() > 0.9  # walls (the agent and a mark may cover a few)
            if s and ep.obs[s, 5] > 0.5:
                bumps += 1
                move = int(ep.obs[s, 1:5].argmax())
                pixels = side[ep.labels["y"][s], ep.labels["x"][s], move].reshape(size, size)
                assert (img[:, pixels] == red[:, None]).all(axis=0).mean() > 0.5
    assert bumps > 0
