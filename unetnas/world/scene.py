"""Scene graphs of the built-in world: 1 to 4 flat coloured shapes on a plain grey background.

Coordinates are in units of the image side (0 = left/top, 1 = right/bottom), so one scene renders at any
resolution. Every object fits in an axis-aligned ``d x d`` box centred on ``(x, y)`` where ``d`` is its diameter;
boxes never overlap and keep a gap, so objects stay separate after blur.

Some (colour, shape) pairs never occur in the ``train`` split (``HELD_OUT``); ``val`` and ``eval`` draw from
all pairs, so compositional generalisation shows up as the gap between held-out and seen pairs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from unetnas.errors import UserError

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond")
"""Shape kinds; chosen so their moments differ even at 7 px (see ``answerer``)."""

# Six hues 60 degrees apart, equal chroma (channel spread 180): the farthest-apart set a neutral background allows.
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "yellow": (220, 220, 40),
    "green": (40, 220, 40),
    "cyan": (40, 220, 220),
    "blue": (40, 40, 220),
    "magenta": (220, 40, 220),
}
COLOR_NAMES: tuple[str, ...] = tuple(COLORS)

BACKGROUND: tuple[int, int, int] = (128, 128, 128)  # neutral grey: zero chroma, so blur keeps object hues
SIZES: tuple[str, ...] = ("small", "large")
DIAMETER: dict[str, float] = {"small": 0.22, "large": 0.34}  # fraction of the image side (7 and 11 px at 32)
MAX_OBJECTS = 4  # a scene has 1..MAX_OBJECTS objects
SCENE_OBJECTS = MAX_OBJECTS  # sampled scenes have 1..SCENE_OBJECTS objects
SPLITS: tuple[str, ...] = ("train", "val", "eval")

# Held out of `train`: one pair per shape, four distinct colours, so every colour and shape is still seen in train.
HELD_OUT: frozenset[tuple[str, str]] = frozenset(
    {("red", "square"), ("green", "circle"), ("blue", "triangle"), ("magenta", "diamond")}
)
ALL_COMBOS: tuple[tuple[str, str], ...] = tuple((c, s) for c in COLOR_NAMES for s in SHAPES)
TRAIN_COMBOS: tuple[tuple[str, str], ...] = tuple(p for p in ALL_COMBOS if p not in HELD_OUT)

MARGIN = 0.04  # min distance from an object's box to the image border (1.3 px at 32)
GAP = 0.07  # min gap between two boxes along x or y (2.2 px at 32: blur sigma 0.7 px does not bridge it)
REPEAT_P = 0.35  # chance that a new object copies an earlier one's (colour, shape, size): makes counts >= 2
_PLACE_GRID = 24  # candidate centres per axis per object (a jittered lattice), all tested at once


@dataclass(frozen=True, slots=True)
class WorldObject:
    """One shape. ``x, y``: centre of its bounding box, in image-side units."""

    shape: str
    color: str
    size: str
    x: float
    y: float

    def __post_init__(self) -> None:
        for field, value, allowed in (
            ("shape", self.shape, SHAPES),
            ("color", self.color, COLOR_NAMES),
            ("size", self.size, SIZES),
        ):
            if value not in allowed:
                raise UserError(f"must be one of {', '.join(allowed)}", field=field, value=value)
        h = self.half
        for field, value in (("x", self.x), ("y", self.y)):
            if not (h <= value <= 1.0 - h):
                raise UserError(
                    f"object must lie inside the image ({h:.2f} <= centre <= {1 - h:.2f})", field=field, value=value
                )

    @property
    def diameter(self) -> float:
        """Box side in image-side units."""
        return DIAMETER[self.size]

    @property
    def half(self) -> float:
        """Half the box side."""
        return DIAMETER[self.size] / 2

    @property
    def centroid(self) -> tuple[float, float]:
        """Centre of mass (a triangle's sits a third of the half-height below its box centre)."""
        return self.x, self.y + (self.half / 3 if self.shape == "triangle" else 0.0)

    @property
    def kind(self) -> tuple[str, str, str]:
        """``(color, shape, size)``: objects of the same kind are counted together in captions."""
        return self.color, self.shape, self.size


@dataclass(frozen=True, slots=True)
class Scene:
    """A scene graph: the objects, in no particular order."""

    objects: tuple[WorldObject, ...]

    def __post_init__(self) -> None:
        if not 1 <= len(self.objects) <= MAX_OBJECTS:
            raise UserError(f"a scene has 1..{MAX_OBJECTS} objects", field="objects", value=len(self.objects))

    @property
    def held_out(self) -> bool:
        """True if some object is a ``HELD_OUT`` (colour, shape) pair (never the case in ``train``)."""
        return any((o.color, o.shape) in HELD_OUT for o in self.objects)


def check_split(split: str, source: str | None = None) -> int:
    """Index of ``split`` in ``SPLITS``; anything else is a ``UserError`` naming ``source`` (default None)."""
    if split not in SPLITS:
        raise UserError(f"split must be one of {', '.join(SPLITS)}", source=source, field="split", value=split)
    return SPLITS.index(split)


def boxes_clear(a: tuple[float, float, float], b: tuple[float, float, float], gap: float = GAP) -> bool:
    """True if boxes ``(x, y, half)`` ``a`` and ``b`` are separated by at least ``gap`` (default: the layout rule
    ``GAP``) along x or y."""
    reach = a[2] + b[2] + gap
    return abs(a[0] - b[0]) >= reach or abs(a[1] - b[1]) >= reach


_LATTICE = (np.arange(_PLACE_GRID) + 0.5) / _PLACE_GRID  # candidate centres, as a fraction of the free range


def _place(rng: np.random.Generator, halves: list[float]) -> list[tuple[float, float]] | None:
    """Place boxes one by one, each uniformly among jittered lattice positions clear of the boxes placed so far.

    Returns None when an earlier placement left no room (the caller redraws the layout).
    """
    placed: list[tuple[float, float, float]] = []
    for h in halves:
        lo, span = MARGIN + h, 1.0 - 2 * (MARGIN + h)
        u = rng.random(3)  # x jitter, y jitter, which free lattice point
        xs = lo + span * (_LATTICE + (u[0] - 0.5) / _PLACE_GRID)
        ys = lo + span * (_LATTICE + (u[1] - 0.5) / _PLACE_GRID)
        if placed:
            p = np.array(placed)
            reach = p[:, 2] + h + GAP
            free_x = np.abs(xs[:, None] - p[:, 0]) >= reach  # (grid, placed)
            free_y = np.abs(ys[:, None] - p[:, 1]) >= reach
            idx = np.flatnonzero((free_x[:, None, :] | free_y[None, :, :]).all(axis=2))  # over (x, y)
            if idx.size == 0:
                return None
            ix, iy = divmod(int(idx[int(u[2] * idx.size)]), _PLACE_GRID)
        else:
            ix, iy = divmod(int(u[2] * _PLACE_GRID**2), _PLACE_GRID)
        placed.append((float(xs[ix]), float(ys[iy]), h))
    return [(x, y) for x, y, _ in placed]


def sample_scene(rng: np.random.Generator, split: str = "train") -> Scene:
    """Draw a scene: 1..4 objects, (colour, shape) pairs allowed in ``split`` (default "train", which excludes
    ``HELD_OUT``), boxes apart by ``GAP``."""
    combos = TRAIN_COMBOS if check_split(split) == 0 else ALL_COMBOS
    u = rng.random(1 + 3 * MAX_OBJECTS).tolist()  # one draw per scene: count, then (repeat?, which, size) each
    n = 1 + int(u[0] * SCENE_OBJECTS)
    kinds: list[tuple[str, str, str]] = []
    for i in range(n):
        rep, which, size = u[1 + 3 * i : 4 + 3 * i]
        if i > 0 and rep < REPEAT_P:
            kinds.append(kinds[int(which * i)])
        else:
            color, shape = combos[int(which * len(combos))]
            kinds.append((color, shape, SIZES[int(size * len(SIZES))]))
    order = sorted(range(n), key=lambda i: -DIAMETER[kinds[i][2]])  # big boxes first: far fewer redraws
    halves = [DIAMETER[kinds[i][2]] / 2 for i in order]
    while (pos := _place(rng, halves)) is None:
        pass  # a crowded draw; 4 large boxes fit with room to spare, so this ends after a few tries
    objects: list[WorldObject] = [None] * n  # type: ignore[list-item]
    for slot, i in enumerate(order):
        c, s, z = kinds[i]
        objects[i] = WorldObject(shape=s, color=c, size=z, x=pos[slot][0], y=pos[slot][1])
    return Scene(objects=tuple(objects))
