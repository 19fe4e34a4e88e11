"""Captions from scene graphs, and the small grammar that reads them back.

A caption names every object of the scene. Objects of the same (colour, shape, size) form one *mention* with a
count ("two small blue squares"); consecutive mentions are joined by a spatial relation when the layout makes it
unambiguous ("a red circle left of two small blue squares"), else by "and" / "with" / ",". Phrasing is drawn
from a seeded ``numpy.random.Generator``. ``parse_caption`` inverts ``describe`` exactly, so question generation
can start from caption text alone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from unetnas.errors import UserError
from unetnas.world.scene import COLOR_NAMES, SHAPES, SIZES, Scene, WorldObject

RELATIONS: tuple[str, ...] = ("left of", "right of", "above", "below")
"""Canonical relations; ``A <rel> B`` reads "A is <rel> B"."""
RELATION_PHRASES: dict[str, tuple[str, ...]] = {
    "left of": ("left of", "to the left of", "on the left of"),
    "right of": ("right of", "to the right of", "on the right of"),
    "above": ("above", "over"),
    "below": ("below", "under", "beneath"),
}
CONJUNCTIONS: tuple[str, ...] = ("and", "with", ",")  # links between mentions that carry no relation
PREFIXES: tuple[str, ...] = ("", "a picture of ", "an image of ", "a drawing of ", "a render of ")
COUNT_WORDS: dict[int, str] = {2: "two", 3: "three", 4: "four"}
SIZE_P = 0.6  # chance to name an object's size when nothing else forces it (the same colour+shape in two sizes)
RELATION_P = 0.75  # chance to use a spatial relation between consecutive mentions when one is unambiguous
ONE_P = 0.2  # chance to write a single object as "one ..." instead of "a ..."
REL_MIN = 0.15  # min distance between mention centroids along the relation axis (image-side units)
REL_RATIO = 1.3  # relation axis displacement must exceed the other axis' by this factor
REL_PAIR_MIN = 0.05  # every object pair of the two mentions must agree on the relation by this margin


@dataclass(frozen=True, slots=True)
class Mention:
    """A group of identical objects as the caption names it; ``size`` is None when the caption omits it."""

    color: str
    shape: str
    size: str | None
    count: int

    def phrase(self, drop: str | None = None, article: bool = True, one: bool = False) -> str:
        """Noun phrase, e.g. "two small blue squares".

        ``drop`` leaves out "color", "shape" (the noun becomes "object") or "size" (default None: all named);
        ``article`` leads with the count word (default True); ``one`` writes a single object as "one ..." rather
        than the default "a ...".
        """
        words = []
        if article:
            words.append(COUNT_WORDS.get(self.count, "one" if one else "a"))
        if self.size is not None and drop != "size":
            words.append(self.size)
        if drop != "color":
            words.append(self.color)
        noun = "object" if drop == "shape" else self.shape
        words.append(noun + ("s" if self.count > 1 else ""))
        return " ".join(words)


@dataclass(frozen=True, slots=True)
class Relation:
    """``mentions[a] <relation> mentions[b]``."""

    a: int
    b: int
    relation: str


@dataclass(frozen=True, slots=True)
class Caption:
    """Caption text and what it says: mentions in order, and relations between consecutive mentions."""

    text: str
    mentions: tuple[Mention, ...]
    relations: tuple[Relation, ...]


def _centroid(objs: list[WorldObject]) -> np.ndarray:
    return np.mean([o.centroid for o in objs], axis=0)


def relation_between(a: list[WorldObject], b: list[WorldObject]) -> str | None:
    """The relation ``a <rel> b`` if the layout makes it unambiguous (see ``REL_*``), else None."""
    d = _centroid(b) - _centroid(a)
    axis = int(abs(d[1]) > abs(d[0]))
    if abs(d[axis]) < REL_MIN or abs(d[axis]) < REL_RATIO * abs(d[1 - axis]):
        return None
    sign = 1.0 if d[axis] > 0 else -1.0
    if any(sign * (q.centroid[axis] - p.centroid[axis]) < REL_PAIR_MIN for p in a for q in b):
        return None
    return (("left of", "right of"), ("above", "below"))[axis][0 if sign > 0 else 1]


def describe(scene: Scene, rng: np.random.Generator) -> Caption:
    """Caption a scene: every object named once, grouped by kind, order and phrasing drawn from ``rng``."""
    groups: dict[tuple[str, str, str], list[WorldObject]] = {}
    for obj in scene.objects:
        groups.setdefault(obj.kind, []).append(obj)
    kinds = list(groups)
    kinds = [kinds[i] for i in rng.permutation(len(kinds))]
    mentions = []
    for color, shape, size in kinds:
        forced = any(k[:2] == (color, shape) and k[2] != size for k in kinds)  # same colour+shape, other size
        named = forced or rng.random() < SIZE_P
        mentions.append(Mention(color, shape, size if named else None, len(groups[(color, shape, size)])))
    text = PREFIXES[int(rng.integers(len(PREFIXES)))]
    relations = []
    for i, m in enumerate(mentions):
        text += m.phrase(one=bool(rng.random() < ONE_P))
        if i + 1 == len(mentions):
            break
        rel = relation_between(groups[kinds[i]], groups[kinds[i + 1]])
        if rel is not None and rng.random() < RELATION_P:
            relations.append(Relation(i, i + 1, rel))
            phrases = RELATION_PHRASES[rel]
            text += " " + phrases[int(rng.integers(len(phrases)))] + " "
        else:
            conj = CONJUNCTIONS[int(rng.integers(len(CONJUNCTIONS)))]
            text += ", " if conj == "," else f" {conj} "
    return Caption(text=text, mentions=tuple(mentions), relations=tuple(relations))


_COUNT_OF = {"a": 1, "one": 1, **{w: n for n, w in COUNT_WORDS.items()}}
_NP = re.compile(
    rf"\b({'|'.join(_COUNT_OF)}) (?:({'|'.join(SIZES)}) )?({'|'.join(COLOR_NAMES)}) ({'|'.join(SHAPES)})(s?)\b"
)
_LINKS: dict[str, str | None] = {f" {p} ": rel for rel, ps in RELATION_PHRASES.items() for p in ps}
_LINKS.update({" and ": None, " with ": None, ", ": None})


def parse_caption(text: str, source: str | None = None) -> Caption:
    """Read a caption written in ``describe``'s grammar back into mentions and relations (else ``UserError``).

    ``source`` (default None) names where the text came from, for the error message.
    """
    matches = list(_NP.finditer(text))
    if not matches:
        raise UserError(
            "names no object as '<count> [size] <color> <shape>'", source=source, field="caption", value=text
        )
    if text[: matches[0].start()] not in PREFIXES or matches[-1].end() != len(text):
        raise UserError(
            f"must be one of the prefixes {PREFIXES} then mentions, nothing after",
            source=source,
            field="caption",
            value=text,
        )
    mentions, relations = [], []
    for i, m in enumerate(matches):
        count = _COUNT_OF[m.group(1)]
        if (count > 1) != (m.group(5) == "s"):
            raise UserError("count and plural disagree", source=source, field="caption", value=m.group(0))
        mentions.append(Mention(m.group(3), m.group(4), m.group(2), count))
        if i + 1 < len(matches):
            link = text[m.end() : matches[i + 1].start()]
            if link not in _LINKS:
                raise UserError(
                    f"unknown link between mentions (known: {sorted(_LINKS)})",
                    source=source,
                    field="caption",
                    value=link,
                )
            if _LINKS[link] is not None:
                relations.append(Relation(i, i + 1, _LINKS[link]))
    return Caption(text=text, mentions=tuple(mentions), relations=tuple(relations))
