"""Rasterise scene graphs: signed distance per shape, one-pixel anti-aliasing, all objects of a batch at once.

Each shape's coverage is ``clip(0.5 - sdf, 0, 1)`` with ``sdf`` in pixels, evaluated on a small window around
the object; windows of the whole batch are computed in one numpy call per shape kind and summed into the images
with ``np.bincount`` as offsets from the background. Objects never overlap, so compositing is a sum.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from unetnas.errors import UserError
from unetnas.world.scene import BACKGROUND, COLORS, DIAMETER, SHAPES, Scene

MIN_RESOLUTION = 16  # below this a small object is under 4 px and shapes stop being shapes
MAX_RESOLUTION = 64  # the world is for CPU-sized trials; larger costs time and adds nothing
_BG = np.asarray(BACKGROUND, dtype=np.float32)
_RGB = {name: np.asarray(rgb, dtype=np.float32) for name, rgb in COLORS.items()}


def check_resolution(resolution: int, source: str | None = None) -> int:
    """Return ``resolution`` if it is an int in ``[MIN_RESOLUTION, MAX_RESOLUTION]``, else raise ``UserError``
    naming ``source`` (default None)."""
    if (
        isinstance(resolution, bool)
        or not isinstance(resolution, (int, np.integer))
        or not (MIN_RESOLUTION <= resolution <= MAX_RESOLUTION)
    ):
        raise UserError(
            f"must be an integer in {MIN_RESOLUTION}..{MAX_RESOLUTION}",
            source=source,
            field="resolution",
            value=resolution,
        )
    return int(resolution)


def _sdf(shape: str, dx: np.ndarray, dy: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Signed distance (pixels, negative inside) of a shape of half-size ``r`` centred at ``dx = dy = 0``."""
    if shape == "circle":
        return np.sqrt(dx * dx + dy * dy) - r
    ax, ay = np.abs(dx), np.abs(dy)
    if shape == "square":
        return np.maximum(ax, ay) - r
    if shape == "diamond":  # corners on the axes, diagonal = box side
        return (ax + ay - r) * (1 / math.sqrt(2))
    # triangle, apex up: apex (0, -r), base corners (+-r, r) in image coordinates (y grows downwards)
    return np.maximum((2 * ax - dy - r) * (1 / math.sqrt(5)), dy - r)


def render_batch(scenes: Sequence[Scene], resolution: int = 32) -> np.ndarray:
    """Render scenes to a uint8 array ``(B, H, W, 3)``; ``resolution`` 16..64 (default 32, the CPU trial size)."""
    res = check_resolution(resolution)
    win = math.ceil(DIAMETER["large"] * res) + 3  # window side: largest box plus anti-aliasing fringe
    items = [(b, o) for b, s in enumerate(scenes) for o in s.objects]
    steps = np.arange(win, dtype=np.float32) + 0.5
    flat_idx, flat_cov, flat_rgb = [], [], []
    for shape in SHAPES:
        group = [(b, o) for b, o in items if o.shape == shape]
        if not group:
            continue
        b = np.array([b for b, _ in group], dtype=np.int64)
        geo = np.array([(o.x * res, o.y * res, o.half * res) for _, o in group], dtype=np.float32)
        cx, cy, r = geo[:, 0], geo[:, 1], geo[:, 2, None, None]
        ox = np.floor(cx).astype(np.int64) - win // 2  # window origin in image pixels
        oy = np.floor(cy).astype(np.int64) - win // 2
        dx = (ox - cx)[:, None, None] + steps[None, None, :]
        dy = (oy - cy)[:, None, None] + steps[None, :, None]
        cov = np.clip(0.5 - _sdf(shape, dx, dy, r), 0.0, 1.0)
        rows, cols = oy[:, None] + np.arange(win), ox[:, None] + np.arange(win)  # image pixels of each window
        cov *= ((rows >= 0) & (rows < res))[:, :, None] & ((cols >= 0) & (cols < res))[:, None, :]  # off-image: 0
        rows, cols = rows.clip(0, res - 1), cols.clip(0, res - 1)
        flat_cov.append(cov.reshape(len(group), -1))
        flat_idx.append(((b[:, None, None] * res + rows[:, :, None]) * res + cols[:, None, :]).reshape(len(group), -1))
        flat_rgb.append(np.stack([_RGB[o.color] for _, o in group]))
    n = len(scenes) * res * res
    out = np.empty((n, 3), dtype=np.uint8)
    idx = np.concatenate(flat_idx).ravel() if flat_idx else np.zeros(0, np.int64)
    cov = np.concatenate(flat_cov) if flat_cov else np.zeros((0, 1), np.float32)
    delta = (np.concatenate(flat_rgb) if flat_rgb else np.zeros((0, 3), np.float32)) - _BG  # colour minus background
    for c in range(3):  # image = background + sum of coverage x (colour - background); windows may overlap: add
        chan = np.bincount(idx, weights=(cov * delta[:, c, None]).ravel(), minlength=n)
        chan += float(_BG[c]) + 0.5  # + 0.5: round to nearest in the uint8 cast below
        out[:, c] = np.clip(chan, 0, 255)
    return out.reshape(len(scenes), res, res, 3)


def render(scene: Scene, resolution: int = 32) -> np.ndarray:
    """Render one scene to a uint8 ``(H, W, 3)`` array (see ``render_batch``)."""
    return render_batch([scene], resolution)[0]


def gaussian_blur(images: np.ndarray, sigma: float) -> np.ndarray:
    """Separable gaussian blur of float ``(B, H, W, C)`` images, reflect padding, kernel radius ``ceil(3 sigma)``."""
    r = max(1, int(np.ceil(3 * sigma)))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k /= k.sum()
    out = np.pad(images, ((0, 0), (r, r), (r, r), (0, 0)), mode="reflect")
    out = sum(k[i] * out[:, i : i + out.shape[1] - 2 * r] for i in range(2 * r + 1))
    return sum(k[i] * out[:, :, i : i + out.shape[2] - 2 * r] for i in range(2 * r + 1))
