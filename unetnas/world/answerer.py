"""A pixel-reading answerer for the world's TIFA questions: hue segmenter + moment-based shape classifier.

It never sees a scene graph. ``parse`` finds objects: background = median of the border pixels; each pixel's
chroma (colour minus background, grey axis removed) is projected on the six palette hues; pixels with enough
chroma (relative to the image's peak, so faded generations still count) are labelled with the nearest hue and
grouped into 4-connected components. Mixing with a neutral background keeps hue, so blurred edges keep their
object's colour. Per component, alpha-weighted moments (alpha = chroma over the object's own opaque level) give
the centroid, the area (blur conserves it; fading does not change it) and two scale-free shape features: vertical
skewness (a triangle's is about -0.57) and the axis-minus-diagonal kurtosis of the mass (square < circle = 0 <
diamond). Shape prototypes are measured once per resolution on the renderer's own single-object images, clean
and blurred (a nearest-prototype classifier; the only use of scene graphs here is to make those renders).

``answer`` reads the question text for object references, picks the question kind from its choices, and returns
the choice that fits the detected objects best. When the referenced object is missing it relaxes the reference
(drop size, then colour or shape); with nothing left it falls back to a choice fixed by a hash of the question.
So an empty or noise image answers presence "no" and count "0" and is at chance elsewhere: it scores below chance.
"""

from __future__ import annotations

import functools
import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from unetnas.errors import UserError
from unetnas.world.captions import RELATIONS
from unetnas.world.questions import YES_NO, Ref, question_refs
from unetnas.world.render import check_resolution, gaussian_blur, render_batch
from unetnas.world.scene import BACKGROUND, COLOR_NAMES, COLORS, DIAMETER, SHAPES, SIZES, Scene, WorldObject

FG_REL = 0.35  # foreground: chroma along the best hue >= 35% of the image's peak chroma (capped at a palette colour's)
FG_MIN = 0.15  # ... and never below 15% of a palette colour's chroma (faint generations still count)
MIN_MASS = 0.35  # a component needs >= 35% of the smallest object's area (small triangle) in full-alpha pixels
AREA_FACTOR = {"circle": math.pi / 4, "square": 1.0, "diamond": 0.5, "triangle": 0.5}  # area / box side^2
SIZE_SPLIT = math.sqrt(DIAMETER["small"] * DIAMETER["large"])  # diameter threshold, geometric mean of the two
SHAPE_SCALE = 0.12  # feature spread for the shape softmax (about the clean-vs-blurred feature shift)
PROTO_BLURS = (0.0, 0.5, 1.0)  # prototype blur sigmas, in pixels at 32 px (scaled with resolution): blur shrinks
# the shape features towards 0 (a circle's), so blurred prototypes keep blurred squares from reading as circles
FLOPS_PER_PIXEL = 200  # see Answerer.flops_per_image
_DIRS = np.asarray([COLORS[c] for c in COLOR_NAMES], np.float32) - np.asarray(BACKGROUND, np.float32)
_DIRS -= _DIRS.mean(axis=1, keepdims=True)
_FULL = float(np.linalg.norm(_DIRS, axis=1).mean())  # chroma of a palette colour on the background (~147)
_DIRS /= np.linalg.norm(_DIRS, axis=1, keepdims=True)
_REL_VEC = {"left of": (1.0, 0.0), "right of": (-1.0, 0.0), "above": (0.0, 1.0), "below": (0.0, -1.0)}


@dataclass(frozen=True, slots=True)
class Detection:
    """An object found in the pixels. ``x, y``: centre of mass; ``diameter``: box side; image-side units."""

    color: str
    shape: str
    size: str
    x: float
    y: float
    diameter: float
    mass: float  # alpha-weighted area, image-side units squared
    color_scores: tuple[float, ...]  # cosine to each of COLOR_NAMES
    shape_scores: tuple[float, ...]  # probability of each of SHAPES


def to_pixels(image: Any) -> np.ndarray:
    """Image as float32 ``(H, W, 3)`` in 0..255: uint8 ``HxWx3``, or float in [-1, 1] as ``3xHxW`` or ``HxWx3``."""
    arr = image.detach().cpu().float().numpy() if hasattr(image, "detach") else np.asarray(image)
    if arr.ndim == 3 and arr.shape[0] == 3 and arr.shape[-1] != 3:
        arr = arr.transpose(1, 2, 0)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] != arr.shape[1]:
        raise UserError("must be one square RGB image, HxWx3 or 3xHxW", field="image", value=tuple(arr.shape))
    if arr.dtype == np.uint8:
        return arr.astype(np.float32)
    return ((arr.astype(np.float32) + 1.0) * 127.5).clip(0.0, 255.0)


def _components(fg: np.ndarray, label: np.ndarray) -> np.ndarray:
    """4-connected components of equal ``label`` within ``fg``: min-label propagation with pointer jumping."""
    h, w = fg.shape
    big = h * w
    ids = np.where(fg, np.arange(big).reshape(h, w), big)
    link_h = fg[:, 1:] & fg[:, :-1] & (label[:, 1:] == label[:, :-1])
    link_v = fg[1:, :] & fg[:-1, :] & (label[1:, :] == label[:-1, :])
    while True:
        new = ids.copy()
        np.minimum(new[:, 1:], np.where(link_h, ids[:, :-1], big), out=new[:, 1:])
        np.minimum(new[:, :-1], np.where(link_h, ids[:, 1:], big), out=new[:, :-1])
        np.minimum(new[1:, :], np.where(link_v, ids[:-1, :], big), out=new[1:, :])
        np.minimum(new[:-1, :], np.where(link_v, ids[1:, :], big), out=new[:-1, :])
        flat = new.ravel()
        inside = flat < big
        flat[inside] = np.minimum(flat[inside], flat[flat[inside]])  # jump: take the label's label
        if np.array_equal(new, ids):
            return ids
        ids = new


def _shape_features(wt: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> tuple[float, float, float, float, float]:
    """``(mass, cx, cy)`` in pixels, then the shape features ``skew_y`` and ``kurt_axis - kurt_diag``."""
    m = wt.sum()
    cx, cy = (wt * xs).sum() / m, (wt * ys).sum() / m
    dx, dy = xs - cx, ys - cy

    def kurt(p: np.ndarray) -> float:
        var = (wt * p * p).sum() / m
        return float((wt * p**4).sum() / m / max(var * var, 1e-9))

    var_y = (wt * dy * dy).sum() / m
    skew = float((wt * dy**3).sum() / m / max(var_y, 1e-9) ** 1.5)
    u, v = (dx + dy) / math.sqrt(2), (dx - dy) / math.sqrt(2)
    return float(m), float(cx), float(cy), skew, (kurt(dx) + kurt(dy) - kurt(u) - kurt(v)) / 2


@functools.cache
def _prototypes(res: int) -> tuple[np.ndarray, np.ndarray]:
    """Shape features ``(P, 2)`` and shape indices ``(P,)`` of single-object renders: every shape and size, at
    each of ``PROTO_BLURS``, averaged over four sub-pixel offsets. A pure function of ``res``, hence cached."""
    offsets = ((0.5, 0.5), (0.513, 0.507), (0.527, 0.521), (0.54, 0.535))  # fractions of a pixel apart at 32 px
    scenes = [Scene((WorldObject(s, "red", z, x, y),)) for s in SHAPES for z in SIZES for x, y in offsets]
    clean = render_batch(scenes, res).astype(np.float32) / 127.5 - 1.0
    feats = []
    for sigma in PROTO_BLURS:
        imgs = gaussian_blur(clean, sigma * res / 32) if sigma else clean
        f = np.array([_parse(to_pixels(im), None)[0][1] for im in imgs])
        feats.append(f.reshape(len(SHAPES) * len(SIZES), len(offsets), 2).mean(axis=1))
    labels = np.repeat(np.arange(len(SHAPES)), len(SIZES))
    return np.concatenate(feats), np.tile(labels, len(PROTO_BLURS))


def _shape_scores(feat: np.ndarray, protos: tuple[np.ndarray, np.ndarray] | None) -> np.ndarray:
    """Probability per shape: softmax over shapes of the best (nearest-prototype) log-likelihood."""
    if protos is None:
        return np.full(len(SHAPES), 1.0 / len(SHAPES))
    centers, labels = protos
    logit = -(((feat - centers) / SHAPE_SCALE) ** 2).sum(axis=1) / 2
    best = np.array([logit[labels == i].max() for i in range(len(SHAPES))])
    p = np.exp(best - best.max())
    return p / p.sum()


def _parse(px: np.ndarray, protos: tuple[np.ndarray, np.ndarray] | None) -> list[tuple[Detection, np.ndarray]]:
    """Detections of a float ``(H, W, 3)`` 0..255 image, each with its shape feature vector."""
    h, w, _ = px.shape
    border = np.concatenate([px[0], px[-1], px[:, 0], px[:, -1]])
    chroma = px - np.median(border, axis=0)
    chroma -= chroma.mean(axis=2, keepdims=True)
    proj = chroma @ _DIRS.T  # (H, W, 6)
    label, best = proj.argmax(axis=2), proj.max(axis=2)
    peak = min(float(np.percentile(best, 99)), _FULL)
    fg = best >= max(FG_MIN * _FULL, FG_REL * peak)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32) + 0.5
    comp = _components(fg, label)
    min_mass = MIN_MASS * AREA_FACTOR["triangle"] * (DIAMETER["small"] * w) ** 2  # in pixels
    ids, counts = np.unique(comp[fg], return_counts=True)
    out = []
    for cid in ids[counts >= min_mass / 2]:  # cheap pre-filter: speckle (noise) never gets this far
        mask = comp == cid
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        win = np.s_[max(rows[0] - 1, 0) : rows[-1] + 2, max(cols[0] - 1, 0) : cols[-1] + 2]  # box + 1 px
        mask, cfg = mask[win], fg[win]
        grow = mask.copy()
        grow[1:] |= mask[:-1]
        grow[:-1] |= mask[1:]
        grow[:, 1:] |= mask[:, :-1]
        grow[:, :-1] |= mask[:, 1:]
        grow &= ~cfg | mask  # the one-pixel fringe, minus other objects
        along = proj[win][..., int(label.flat[cid])]
        full = min(_FULL, max(float(np.percentile(along[mask], 90)), FG_MIN * _FULL))  # this object's "opaque"
        wt = np.clip(along / full, 0.0, 1.0) * grow
        mass, cx, cy, skew, dkurt = _shape_features(wt, xs[win], ys[win])
        if mass < min_mass:
            continue
        feat = np.array([skew, dkurt])
        scores = _shape_scores(feat, protos)
        shape = SHAPES[int(scores.argmax())]
        cvec = (chroma[win] * wt[..., None]).sum(axis=(0, 1))
        cos = _DIRS @ cvec / max(float(np.linalg.norm(cvec)), 1e-9)
        diameter = math.sqrt(mass / AREA_FACTOR[shape]) / w
        det = Detection(
            COLOR_NAMES[int(cos.argmax())],
            shape,
            SIZES[int(diameter > SIZE_SPLIT)],
            cx / w,
            cy / h,
            diameter,
            mass / (w * h),
            tuple(map(float, cos)),
            tuple(map(float, scores)),
        )
        out.append((det, feat))
    return out


class Answerer:
    """Answers world questions from pixels (stateless; shape prototypes are cached per resolution)."""

    def flops_per_image(self, resolution: int = 32) -> int:
        """Estimated FLOPs to parse one image (answering from the parse is negligible), rounded up.

        Per pixel: input scaling 2, chroma 9, projection on 6 hues 30, argmax/max 12, percentile ~10, connected
        components 6 + 5 rounds (measured mean 4.4 at 32 px, 5.3 at 64 px) x 14, component masks ~3; moments,
        weights and dilation ~60 per pixel of each object's crop (crops cover ~1/3 of the image): ~165 -> 200.
        """
        return FLOPS_PER_PIXEL * check_resolution(resolution) ** 2

    def parse(self, image: Any) -> list[Detection]:
        """Objects in ``image`` (uint8 HxWx3 or float [-1, 1] 3xHxW), largest first."""
        px = to_pixels(image)
        dets = [d for d, _ in _parse(px, protos=_prototypes(check_resolution(px.shape[0])))]
        return sorted(dets, key=lambda d: -d.mass)

    def answer(self, image: Any, question: dict[str, Any]) -> str:
        """The choice of ``question`` (a TIFA item) that best fits ``image``."""
        return self._answer(self.parse(image), question)

    def answer_batch(self, images: Sequence[Any], questions: Sequence[Sequence[dict[str, Any]]]) -> list[list[str]]:
        """Answers per image: ``questions[i]`` are asked about ``images[i]``; each image is parsed once."""
        if len(images) != len(questions):
            raise UserError("needs one question list per image", field="questions", value=len(questions))
        return [[self._answer(dets, q) for q in qs] for dets, qs in zip(map(self.parse, images), questions)]

    def answer_lists(self, image: Any, question_lists: Sequence[Sequence[dict[str, Any]]]) -> list[list[str]]:
        """Answers to several question lists about one image (parsed once): own and foil questions alike."""
        dets = self.parse(image)
        memo: dict[tuple[str, tuple[str, ...]], str] = {}  # one image's answers: foil lists repeat questions
        out = []
        for qs in question_lists:
            answers = []
            for q in qs:
                key = q["question"], tuple(q["choices"])
                if key not in memo:
                    memo[key] = self._answer(dets, q)
                answers.append(memo[key])
            out.append(answers)
        return out

    @staticmethod
    def _answer(dets: list[Detection], q: dict[str, Any]) -> str:
        choices, refs = list(q["choices"]), _refs(q["question"])
        guess = choices[zlib.crc32(q["question"].encode()) % len(choices)]  # chance-level fallback, deterministic
        kind = _kind(tuple(choices))
        if kind is None or not refs:
            return guess
        if kind in ("yes/no", "count"):
            n = len(_match(dets, refs[0]))
            return ("yes" if n else "no") if kind == "yes/no" else min(choices, key=lambda c: abs(int(c) - n))
        if kind == "spatial":
            if len(refs) < 2:
                return guess
            a, b = (_relaxed(dets, r, ("size", "shape")) for r in refs[:2])  # stop at colour-only matches
            if not a or not b:
                return guess
            d = _center(b) - _center(a)
            return max(choices, key=lambda c: float(np.dot(d, _REL_VEC[c])))
        drop = {
            "color": ("color", "size", "shape"),
            "shape": ("shape", "size", "color"),
            "size": ("size", "shape", "color"),
        }[kind]  # first ignore the attribute asked about, if named
        found = _relaxed(dets, refs[0], drop)
        if not found:
            return guess
        mass = np.array([d.mass for d in found])
        if kind == "size":
            size = SIZES[int(float(np.dot(mass, [d.diameter for d in found]) / mass.sum()) > SIZE_SPLIT)]
            return size if size in choices else guess
        names, attr = (COLOR_NAMES, "color_scores") if kind == "color" else (SHAPES, "shape_scores")
        votes = mass @ np.array([getattr(d, attr) for d in found])
        return max(choices, key=lambda c: votes[names.index(c)])


@functools.lru_cache(maxsize=4096)
def _refs(question: str) -> tuple[Ref, ...]:
    """``question_refs``, cached: the judge asks the same questions of every image."""
    return tuple(question_refs(question))


@functools.lru_cache(maxsize=256)
def _kind(choices: tuple[str, ...]) -> str | None:
    """Question kind from its choice set (works for any question with these answer vocabularies)."""
    if all(c.isdigit() for c in choices):
        return "count"
    for kind, vocab in (
        ("yes/no", YES_NO),
        ("color", COLOR_NAMES),
        ("shape", SHAPES),
        ("size", SIZES),
        ("spatial", RELATIONS),
    ):
        if set(choices) <= set(vocab):
            return kind
    return None


def _match(dets: list[Detection], ref: Ref) -> list[Detection]:
    c, s, z = ref.color, ref.shape, ref.size
    return [
        d for d in dets if (c is None or c == d.color) and (s is None or s == d.shape) and (z is None or z == d.size)
    ]


def _relaxed(dets: list[Detection], ref: Ref, drops: tuple[str, ...]) -> list[Detection]:
    """Matches of ``ref``; if none, of ``ref`` without each attribute of ``drops`` in turn (cumulatively)."""
    for f in (None, *drops):
        if f is not None:
            ref = replace(ref, **{f: None})
        if found := _match(dets, ref):
            return found
    return []


def _center(dets: list[Detection]) -> np.ndarray:
    mass = np.array([d.mass for d in dets])
    return np.array([[d.x, d.y] for d in dets]).T @ mass / mass.sum()
