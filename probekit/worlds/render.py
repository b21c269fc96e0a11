"""The `frames` view: an episode rendered as a short video, [T·F × C × H × W] uint8.

Decisions (issue #19):

- **Stored in the rows.** A task that declares `frames: {...}` (a `*-frames.yaml` task) gets a
  `frames` column in every table: the episodes, and each episode of a counterfactual pair
  (`source.frames`, `placebo.frames`) and of a violation pair (`possible.frames`,
  `impossible.frames`), so all three axes apply to video. Every consumer (extraction, the
  Parquet export, the Hub, an adapter reading `row["frames"]`) sees one plain column; nothing
  depends on a dataset transform that a `with_format` would silently drop. The cost is disk,
  so frames tasks are small (grayscale 32 × 32 by default, a thousand training episodes) and
  tasks without the field never carry frames.
- **Drawn from the observations**, the view a camera would give: an impossible episode shows
  its edit (a ball jumping, a ball leaving through the wall) exactly as its `obs` do, although
  its `state` is undefined from the edit on; a ball hidden by the occluder is not drawn (the
  band is). Where `obs` are actions (Othello's moves, boxes' operations), the renderer replays
  them to the scene they make, an impossible one as played (a disc on an occupied square, an
  object put in the box it is in), and marks the step's action (the square played; the
  source and destination containers), so the edit of a violation pair shows at its step.
- **Step alignment.** With F = `frames_per_step`, step s is frames s·F … (s+1)·F − 1; the last
  of them shows the step's own observation, the earlier ones the way there from step s − 1
  (positions interpolated linearly where an object is visible at both steps; held otherwise
  and at step 0; in Othello the new disc before the discs it turns over). No frame shows
  anything after its step.
- **Deterministic.** Frames are a pure function of the observations and the knobs (no
  randomness, numpy only, no display), so the same seed and spec give byte-identical frames;
  the knobs and `RENDER_VERSION` enter the task fingerprint.

One renderer per world in `RENDERERS` (bouncing balls, boxes, gridworld, Othello); a world
without one cannot declare frames.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from probekit.errors import SpecError
from probekit.worlds.base import Episode, Knob, World
from probekit.worlds.othello import DIRECTIONS, start_board

RENDER_VERSION = "1"  # bump when the pixels of any renderer change
CHUNK = 256  # episodes drawn at once (bounds the float buffer: CHUNK·T·F·C·H·W)

FRAME_KNOBS = (
    Knob("size", int, 32, "frame height and width in pixels", min=8, max=128),
    Knob("frames_per_step", int, 1, "frames per world step (step s is frames s·F … (s+1)·F−1; "
         "2 matches video models' tubelets of two frames)", min=1, max=4),
    Knob("channels", int, 1, "1: grayscale (each object its own brightness), 3: RGB (each "
         "object its own colour)", choices=(1, 3)),
    Knob("style", str, "smooth", "`smooth`: anti-aliased edges (sub-pixel positions show), "
         "`flat`: hard-edged shapes", choices=("smooth", "flat")),
)

# Object colours (RGB), distinct in hue and, in grayscale (their mean), in brightness.
PALETTE = np.array([[255, 255, 255], [255, 64, 64], [64, 160, 255], [255, 220, 0],
                    [0, 220, 120], [200, 90, 255], [255, 140, 0], [0, 200, 220]], dtype=np.float32)
GRAYS = np.array([255, 150, 205, 100, 230, 125, 180, 75], dtype=np.float32)
OCCLUDER = 60  # brightness of an occluding band


def frame_spec(raw: dict[str, Any], where: str, world: type[World]) -> dict[str, Any]:
    """The validated `frames` field of a task spec (defaults filled in); a world without a
    renderer is refused naming those that have one."""
    if world.name not in RENDERERS:
        raise SpecError(f"{where}: world {world.name!r} has no frames renderer; worlds with "
                        f"one: {', '.join(sorted(RENDERERS))} (remove the field)")
    return world.validate_knobs(raw, where, knobs=FRAME_KNOBS)


def render(world: World, episodes: Sequence[Episode], spec: dict[str, Any]) -> list[np.ndarray]:
    """Each episode's frames [T·F, C, H, W] uint8 (`spec`: validated `FRAME_KNOBS`)."""
    if not episodes:
        return []
    draw = RENDERERS[world.name]
    by_length: dict[int, list[int]] = {}
    for i, ep in enumerate(episodes):
        by_length.setdefault(len(ep.obs), []).append(i)
    frames: dict[int, np.ndarray] = {}
    for idx in by_length.values():
        for lo in range(0, len(idx), CHUNK):
            chunk = idx[lo:lo + CHUNK]
            obs = np.stack([np.asarray(episodes[i].obs, dtype=np.float64) for i in chunk])
            for i, f in zip(chunk, draw(world.params, obs, spec)):
                frames[i] = f
    return [frames[i] for i in range(len(episodes))]


def attach(world: World, episodes: Sequence[Episode | None], spec: dict[str, Any]) -> None:
    """Render the episodes (None skipped) and set each one's `frames`."""
    todo = [ep for ep in episodes if ep is not None]
    for ep, f in zip(todo, render(world, todo, spec)):
        ep.frames = f


def _colors(k: int, channels: int) -> np.ndarray:
    """Object i's colour [k, C]: PALETTE (RGB) or GRAYS, repeating after eight objects."""
    i = np.arange(k) % len(GRAYS)
    return PALETTE[i] if channels == 3 else GRAYS[i, None]


def _grid(size: int) -> np.ndarray:
    """Pixel-centre coordinates in the unit box, [size]."""
    return (np.arange(size, dtype=np.float64) + 0.5) / size


def _subframes(pos: np.ndarray, seen: np.ndarray, fps: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions [N, T, K, 2] and visibility [N, T, K] at F frames per step: frame j of step s
    at (j + 1)/F of the way from step s − 1 to step s where the object is visible at both,
    else at step s."""
    if fps == 1:
        return pos, seen
    prev = np.concatenate([pos[:, :1], pos[:, :-1]], axis=1)
    both = seen & np.concatenate([seen[:, :1], seen[:, :-1]], axis=1)
    u = (np.arange(fps, dtype=np.float64) + 1) / fps  # [F]
    mid = prev[:, :, None] + u[None, None, :, None, None] * (pos - prev)[:, :, None]
    mid = np.where(both[:, :, None, :, None], mid, pos[:, :, None])
    N, T, K = seen.shape
    return (mid.reshape(N, T * fps, K, 2),
            np.repeat(seen[:, :, None], fps, axis=2).reshape(N, T * fps, K))


def _disks(pos: np.ndarray, seen: np.ndarray, radius: float, spec: dict[str, Any]
           ) -> np.ndarray:
    """Disks of `radius` (unit box) centred at `pos` [N, T, K, 2] (x → column, y → row from
    the bottom), object k in colour k, drawn where `seen` [N, T, K]: [N, T, C, H, W] float32
    over black (the brighter object wins where two overlap).

    Each disk is drawn in its own small window (a disk covers a few pixels of the frame), all
    windows at once, so the cost grows with the number of objects, not of pixels."""
    N, T, K, _ = pos.shape
    size, C = spec["size"], spec["channels"]
    r = radius * size
    w = int(np.ceil(2 * r + 2))  # window side: every pixel the disk (+ ½ pixel edge) touches
    n, t, k = np.nonzero(seen)
    centre = pos[n, t, k] * size  # [M, 2] in pixels, x right, y up
    centre[:, 1] = size - centre[:, 1]  # y down: row 0 is the top
    lo = np.floor(centre - w / 2).astype(np.int64)  # [M, 2] window corner (x, y)
    off = np.arange(w)
    cols = lo[:, 0:1] + off  # [M, w]
    rows = lo[:, 1:2] + off
    dx = cols + 0.5 - centre[:, 0:1]
    dy = rows + 0.5 - centre[:, 1:2]
    dist = np.sqrt(dy[:, :, None] ** 2 + dx[:, None, :] ** 2)  # [M, w, w]
    cover = (np.clip(r + 0.5 - dist, 0.0, 1.0) if spec["style"] == "smooth"
             else (dist <= r).astype(np.float64))
    inside = ((rows >= 0) & (rows < size))[:, :, None] & ((cols >= 0) & (cols < size))[:, None, :]
    cover = np.where(inside, cover, 0.0).astype(np.float32)
    yy = np.clip(rows, 0, size - 1)[:, :, None]
    xx = np.clip(cols, 0, size - 1)[:, None, :]
    colors = _colors(K, C)
    img = np.zeros((N, T, C, size, size), dtype=np.float32)
    for c in range(C):
        index = (((n * T + t) * C + c)[:, None, None] * size + yy) * size + xx
        np.maximum.at(img.reshape(-1), index.ravel(), (cover * colors[k, c][:, None, None]).ravel())
    return img


def _balls(params: dict[str, Any], obs: np.ndarray, spec: dict[str, Any]) -> np.ndarray:
    """Bouncing balls from `obs` [N, T, 3K] (x, y, visible per ball): ball i a disk of the
    world's radius in colour i, the occluding band a gray stripe drawn over them."""
    N, T, D = obs.shape
    K = D // 3
    view = obs.reshape(N, T, K, 3)
    pos, seen = _subframes(view[..., :2], view[..., 2] > 0.5, spec["frames_per_step"])
    img = _disks(pos, seen, params["radius"], spec)
    if params["occluder"] > 0:
        band = np.abs(_grid(spec["size"]) - 0.5) < params["occluder"] / 2
        img[..., band] = OCCLUDER
    return np.rint(img).astype(np.uint8)


def _shade(rgb: tuple[int, int, int], gray: int, channels: int) -> np.ndarray:
    """A colour [C] of something that is not an object (a board, a wall, a marker)."""
    return np.array(rgb if channels == 3 else (gray,), dtype=np.float32)


def _masks(centres: np.ndarray, radius: float, spec: dict[str, Any]) -> np.ndarray:
    """Coverage [M, H·W] of disks of `radius` at `centres` [M, 2] (unit box, x right, y up),
    each over the whole frame: for layouts fixed in advance (board squares, shelf slots)."""
    size = spec["size"]
    g = _grid(size)
    dx = g[None, None, :] - centres[:, 0, None, None]
    dy = g[::-1][None, :, None] - centres[:, 1, None, None]
    dist, r = np.hypot(dx, dy) * size, radius * size
    cover = (np.clip(r + 0.5 - dist, 0.0, 1.0) if spec["style"] == "smooth"
             else (dist <= r).astype(np.float64))
    return cover.reshape(len(centres), size * size).astype(np.float32)


def _steps(a: np.ndarray, fps: int) -> np.ndarray:
    """Per-step values [N, T, …] repeated for each of the step's F frames: [N, T·F, …]."""
    return np.repeat(a, fps, axis=1)


# --- Othello ---------------------------------------------------------------------------------

BOARD, GRID_LINE = ((0, 110, 50), 90), ((0, 50, 20), 40)
DISCS = (((0, 0, 0), 0), ((255, 255, 255), 255))  # black, white
MOVE_MARK = ((255, 64, 64), 170)  # a dot on the square played at the step


@functools.cache
def _rays(n: int) -> np.ndarray:
    """Per square (and the pass, n²) and direction, the squares outward from it to the edge,
    padded with n² (a square that is always empty): [n² + 1, 8, n − 1]."""
    out = np.full((n * n + 1, len(DIRECTIONS), n - 1), n * n, dtype=np.int64)
    for square in range(n * n):
        r, c = divmod(square, n)
        for d, (dr, dc) in enumerate(DIRECTIONS):
            for k in range(1, n):
                rr, cc = r + k * dr, c + k * dc
                if not (0 <= rr < n and 0 <= cc < n):
                    break
                out[square, d, k - 1] = rr * n + cc
    return out


def replay(n: int, moves: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Boards [N, T, n²] (0 empty, 1 black, 2 white) replayed from the opening by moves
    [N, T] (square index, n² a pass): with only each step's disc placed, and after it.

    A move puts the mover's disc (black at even steps) on its square and turns over every
    line of opponent discs it closes with one of the mover's, legal or not: an `occupied`
    square takes the mover's colour, an `unflanking` one turns nothing over."""
    N, T = moves.shape
    S, L = n * n, n - 1
    rays = _rays(n)
    board = np.zeros((N, S + 1), dtype=np.int8)
    black, white = start_board(n)
    board[:, [i for i in range(S) if black >> i & 1]] = 1
    board[:, [i for i in range(S) if white >> i & 1]] = 2
    placed = np.empty((N, T, S), dtype=np.int8)
    after = np.empty((N, T, S), dtype=np.int8)
    rows = np.arange(N)
    for t in range(T):
        me = 1 + t % 2
        m = moves[:, t]
        ray = rays[m]  # [N, 8, L]
        owner = board[rows[:, None, None], ray]
        run = np.cumprod(owner == 3 - me, axis=2).astype(bool)  # opponent discs from the move
        k = run.sum(axis=2)
        end = np.take_along_axis(owner, np.minimum(k, L - 1)[..., None], axis=2)[..., 0]
        closed = (k > 0) & (k < L) & (end == me)
        play = m < S
        board[rows[play], m[play]] = me
        placed[:, t] = board[:, :S]
        turn = run & closed[..., None]
        board[np.broadcast_to(rows[:, None, None], ray.shape)[turn], ray[turn]] = me
        after[:, t] = board[:, :S]
    return placed, after


def _othello(params: dict[str, Any], obs: np.ndarray, spec: dict[str, Any]) -> np.ndarray:
    """Othello from `obs` [N, T, n² + 1] (the step's move one-hot, the last column a pass):
    the board after each move (`replay`) seen from above, row 1 at the top: black and white
    discs on a green (grayscale: gray) board with grid lines, a red (gray) dot on the square
    played at the step. With F frames per step the earlier ones show the new disc before the
    discs it turns over."""
    n, F, C, size = params["size"], spec["frames_per_step"], spec["channels"], spec["size"]
    S = n * n
    N, T, _ = obs.shape
    moves = obs.argmax(axis=2)
    placed, after = replay(n, moves)
    boards = np.repeat(placed[:, :, None], F, axis=2)
    boards[:, :, -1] = after
    boards = boards.reshape(N, T * F, S)
    cells = (np.arange(n) + 0.5) / n
    centres = np.stack([np.tile(cells, n), np.repeat(1 - cells, n)], axis=1)  # a1, b1, …
    disc = _masks(centres, 0.35 / n, spec)  # [S, H·W]
    dot = np.concatenate([_masks(centres, 0.15 / n, spec), np.zeros((1, size * size),
                                                                     dtype=np.float32)])
    board = _shade(*BOARD, C)
    lift = np.stack([np.zeros(C, np.float32)] + [_shade(*d, C) - board for d in DISCS])  # [3, C]
    img = board[:, None] + np.swapaxes(lift[boards], 2, 3) @ disc  # [N, T·F, C, H·W]
    mark = dot[_steps(moves, F)][:, :, None]  # [N, T·F, 1, H·W]
    img = img * (1 - mark) + _shade(*MOVE_MARK, C)[:, None] * mark
    lines = np.zeros((size, size), dtype=bool)
    edges = np.rint(np.arange(1, n) * size / n).astype(np.int64)
    lines[edges, :] = lines[:, edges] = True
    img[..., lines.ravel()] = _shade(*GRID_LINE, C)[:, None]
    return np.rint(img).reshape(N, T * F, C, size, size).astype(np.uint8)


# --- boxes -----------------------------------------------------------------------------------

WALLS = (((110, 110, 110), 90), ((255, 140, 0), 150), ((0, 220, 120), 255))  # wall, source, dest


@functools.cache
def shelf(n_boxes: int, n_objects: int, size: int
          ) -> tuple[np.ndarray, np.ndarray, float]:
    """The boxes scene: the outline of each container [B + 1, H·W] (disjoint; box b, the last
    a tray along the top for objects in no box), each object's slot in each container
    [B + 1, K, 2] (unit box, y up: in a box up to four a column, in the tray one row) and
    the objects' radius."""
    B, K = n_boxes, n_objects
    rects = [(b / B, 0.0, (b + 1) / B, 0.68) for b in range(B)] + [(0.0, 0.72, 1.0, 1.0)]
    outline = np.zeros((B + 1, size, size), dtype=np.float32)
    slots = np.empty((B + 1, K, 2))
    cols = -(-K // 4)
    rows = -(-K // cols)
    fit = []
    for i, (x0, y0, x1, y1) in enumerate(rects):
        c0, c1 = round(x0 * size), round(x1 * size) - 1
        r0, r1 = round((1 - y1) * size), round((1 - y0) * size) - 1
        outline[i, [r0, r1], c0:c1 + 1] = outline[i, r0:r1 + 1, [c0, c1]] = 1
        ix, iy = (c0 + 1) / size, 1 - r1 / size  # inside the walls, unit box
        w, h = (c1 - c0 - 1) / size, (r1 - r0 - 1) / size
        k = np.arange(K)
        grid = (cols, rows) if i < B else (K, 1)
        sw, sh = w / grid[0], h / grid[1]
        slots[i, :, 0] = ix + (k % grid[0] + 0.5) * sw
        slots[i, :, 1] = iy + h - (k // grid[0] + 0.5) * sh
        fit.append(min(sw, sh))
    return outline.reshape(B + 1, size * size), slots, 0.4 * min(fit)


def _boxes(params: dict[str, Any], obs: np.ndarray, spec: dict[str, Any]) -> np.ndarray:
    """Boxes from `obs` [N, T, 3 + K + 2(B + 1)] (one-hot action, object, source and
    destination, each read as its largest entry): a shelf of B boxes and a tray along the top
    for objects in no box, object k a disk in colour k in its own slot of the container the
    operations so far put it in (replayed: each step puts its object in its destination).
    The step's source container is outlined in orange (grayscale: light gray) and its
    destination in green (white), so an impossible operation shows: `same_box` outlines one
    box as the destination and nothing moves, `absent_leave` the tray. With F frames per step
    the moved object glides there from where it was."""
    B, K, F = params["n_boxes"], params["n_objects"], spec["frames_per_step"]
    C, size = spec["channels"], spec["size"]
    N, T, _ = obs.shape
    obj = obs[..., 3:3 + K].argmax(axis=2)
    src = obs[..., 3 + K:4 + K + B].argmax(axis=2)
    dst = obs[..., 4 + K + B:].argmax(axis=2)
    rows = np.arange(N)
    where = np.full((N, K), B)
    loc = np.empty((N, T, K), dtype=np.int64)
    for t in range(T):
        where[rows, obj[:, t]] = dst[:, t]
        loc[:, t] = where
    outline, slots, radius = shelf(B, K, size)
    pos, seen = _subframes(slots[loc, np.arange(K)], np.ones((N, T, K), dtype=bool), F)
    img = _disks(pos, seen, radius, spec).reshape(N, T * F, C, size * size)
    role = np.zeros((N, T, B + 1), dtype=np.int64)  # 0 wall, 1 source, 2 destination
    ep, step = np.indices((N, T))
    role[ep, step, src] = 1
    role[ep, step, dst] = 2
    shades = np.stack([_shade(*w, C) for w in WALLS])  # [3, C]
    wall, owner = np.nonzero(outline.T)  # the outlines' pixels and their containers
    img.reshape(N, T, F, C, size * size)[..., wall] = np.swapaxes(
        shades[role[:, :, owner]], 2, 3)[:, :, None]  # [N, T, 1, C, pixels]
    return np.rint(img).reshape(N, T * F, C, size, size).astype(np.uint8)


# --- gridworld -------------------------------------------------------------------------------

MAZE_WALL = ((150, 150, 150), 110)  # the maze's walls
AGENT = ((255, 220, 0), 255)
BUMP_MARK = ((255, 64, 64), 190)  # the side of the agent's cell it reported bumping into


@functools.cache
def edges(n: int, size: int) -> np.ndarray:
    """The pixels of each side of each cell, [n, n, 4 (north, east, south, west), H·W] bool:
    a one-pixel line along the cell's border, inside it (so a wall between two cells is two
    lines, one per cell)."""
    out = np.zeros((n, n, 4, size, size), dtype=bool)
    cut = [round(i * size / n) for i in range(n + 1)]
    for y in range(n):
        for x in range(n):
            r0, r1, c0, c1 = cut[y], cut[y + 1] - 1, cut[x], cut[x + 1] - 1
            out[y, x, 0, r0, c0:c1 + 1] = True
            out[y, x, 1, r0:r1 + 1, c1] = True
            out[y, x, 2, r1, c0:c1 + 1] = True
            out[y, x, 3, r0:r1 + 1, c0] = True
    return out.reshape(n, n, 4, size * size)


def _gridworld(params: dict[str, Any], obs: np.ndarray, spec: dict[str, Any]) -> np.ndarray:
    """Gridworld from `obs` [N, T, 8] (start flag, one-hot compass move, bump, start x and y):
    the task's maze from above (its walls from the `layout` seed), the agent a disk in its
    cell, replayed from the start by the moves as reported (an `ok` moves it a cell, a `bump`
    keeps it: an impossible report shows as written, the agent through a wall or stopped at an
    opening), and the side it bumped into marked red at a bump step. With F frames per step
    the agent glides from cell to cell."""
    from probekit.worlds.gridworld import DX, DY, layout

    n, C, size, F = params["size"], spec["channels"], spec["size"], spec["frames_per_step"]
    N, T, _ = obs.shape
    x = np.rint(obs[:, 0, 6] * (n - 1)).astype(np.int64)
    y = np.rint(obs[:, 0, 7] * (n - 1)).astype(np.int64)
    move = obs[:, :, 1:5].argmax(axis=2)
    bump = obs[:, :, 5] > 0.5
    xs, ys = np.empty((N, T), dtype=np.int64), np.empty((N, T), dtype=np.int64)
    xs[:, 0], ys[:, 0] = x, y
    for t in range(1, T):
        go = ~bump[:, t]
        x = np.clip(x + go * np.take(DX, move[:, t]), 0, n - 1)
        y = np.clip(y + go * np.take(DY, move[:, t]), 0, n - 1)
        xs[:, t], ys[:, t] = x, y
    centre = np.stack([(xs + 0.5) / n, 1 - (ys + 0.5) / n], axis=-1)[:, :, None]  # [N, T, 1, 2]
    pos, seen = _subframes(centre, np.ones((N, T, 1), dtype=bool), F)
    side = edges(n, size)
    img = np.zeros((N, T * F, C, size * size), dtype=np.float32)
    walls = side[np.asarray(layout(n, params["loops"], params["layout"]))].any(axis=0)
    img[..., walls] = _shade(*MAZE_WALL, C)[:, None]
    # object 0 of `_disks` is drawn at full brightness (255): its value / 255 is the coverage
    weight = _disks(pos, seen, 0.3 / n, spec)[:, :, :1].reshape(N, T * F, 1, size * size) / 255
    img = img * (1 - weight) + _shade(*AGENT, C)[:, None] * weight
    hit = np.zeros((N, T, size * size), dtype=bool)
    ep, at = np.nonzero(bump)
    hit[ep, at] = side[ys[ep, at], xs[ep, at], move[ep, at]]
    mark = _steps(hit, F)  # [N, T·F, H·W]
    img = np.where(mark[:, :, None], _shade(*BUMP_MARK, C)[None, None, :, None], img)
    return np.rint(img).reshape(N, T * F, C, size, size).astype(np.uint8)


RENDERERS: dict[str, Callable[[dict[str, Any], np.ndarray, dict[str, Any]], np.ndarray]] = {
    "bouncing_balls": _balls,
    "boxes": _boxes,
    "gridworld": _gridworld,
    "othello": _othello,
}
