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
  band is).
- **Step alignment.** With F = `frames_per_step`, step s is frames s·F … (s+1)·F − 1; the last
  of them shows the step's own observation, the earlier ones the way there from step s − 1
  (positions interpolated linearly where the ball is visible at both steps; held otherwise
  and at step 0). No frame shows anything after its step.
- **Deterministic.** Frames are a pure function of the observations and the knobs (no
  randomness, numpy only, no display), so the same seed and spec give byte-identical frames;
  the knobs and `RENDER_VERSION` enter the task fingerprint.

One renderer per world in `RENDERERS`; a world without one cannot declare frames.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from probekit.errors import SpecError
from probekit.worlds.base import Episode, Knob, World

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
    colors = PALETTE[:K] if C == 3 else GRAYS[:K, None]  # [K, C]
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


RENDERERS: dict[str, Callable[[dict[str, Any], np.ndarray, dict[str, Any]], np.ndarray]] = {
    "bouncing_balls": _balls,
}
