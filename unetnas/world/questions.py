"""TIFA v1.0-style multiple-choice questions about what a caption says, and the JSON file format.

Like TIFA (Hu et al. 2023), questions come from the caption alone: every mention gets a presence and a counting
question, plus colour / shape / size questions when the mention can be referred to without that attribute
unambiguously, and every stated relation gets a spatial question. Question items are plain dicts
``{id, caption, question, choices, answer, element_type, element}``; ``id`` is the prompt id, shared by all the
questions of one caption (as in TIFA v1.0). ``element_type`` follows TIFA's names where TIFA has one.

Also the TIFA v1.0 file format, shared by every caller: ``load_tifa_questions`` is the one reader of question files
(strict schema, one-line ``UserError`` on a violation), and ``tifa_summary`` the one TIFA aggregation.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StrictStr, TypeAdapter, ValidationError, field_validator

from unetnas.errors import UserError, from_validation_error
from unetnas.text import first_line
from unetnas.world.captions import RELATIONS, Caption, Mention, parse_caption
from unetnas.world.scene import COLOR_NAMES, MAX_OBJECTS, SHAPES, SIZES

CATEGORIES: tuple[str, ...] = ("object", "counting", "color", "shape", "size", "spatial")
"""``element_type`` values produced here (TIFA's presence category is "object", its count category "counting")."""
YES_NO: tuple[str, ...] = ("yes", "no")
COUNT_CHOICES: tuple[str, ...] = tuple(str(n) for n in range(MAX_OBJECTS + 1))  # "0" lets an empty image answer
N_COLOR_CHOICES = 4  # the answer plus 3 distractors, as TIFA's multiple choice usually offers


@dataclass(frozen=True, slots=True)
class Ref:
    """An object reference in a question: attributes it names (None = not named)."""

    color: str | None
    shape: str | None
    size: str | None


_REF = re.compile(rf"\b(?:({'|'.join(SIZES)}) )?(?:({'|'.join(COLOR_NAMES)}) )?({'|'.join(SHAPES)}|object)s?\b")


def question_refs(question: str) -> list[Ref]:
    """Object references of a question in reading order ("the small red circle" -> Ref("red", "circle", "small"))."""
    return [
        Ref(m.group(2), None if m.group(3) == "object" else m.group(3), m.group(1)) for m in _REF.finditer(question)
    ]


def _may_match(other: Mention, ref: Mention, drop: str) -> bool:
    """Could objects of ``other`` answer to ``ref`` with attribute ``drop`` left out? (unnamed size: maybe)."""
    return all(
        getattr(ref, f) is None or getattr(other, f) is None or getattr(other, f) == getattr(ref, f)
        for f in ("color", "shape", "size")
        if f != drop
    )


def _item(
    prompt_id: str, caption: str, question: str, choices: list[str], answer: str, etype: str, element: str
) -> dict[str, Any]:
    return {
        "id": prompt_id,
        "caption": caption,
        "question": question,
        "choices": choices,
        "answer": answer,
        "element_type": etype,
        "element": element,
    }


def make_questions(caption: Caption | str, prompt_id: str, rng: np.random.Generator) -> list[dict[str, Any]]:
    """Questions for one caption (text in the world's grammar, or a ``Caption``); distractors drawn from ``rng``."""
    cap = parse_caption(caption) if isinstance(caption, str) else caption
    ms, text, out = cap.mentions, cap.text, []
    for i, m in enumerate(ms):
        be, full = ("are" if m.count > 1 else "is"), m.phrase(article=False)
        exists = f"Are there {full}?" if m.count > 1 else f"Is there {m.phrase()}?"
        out.append(_item(prompt_id, text, exists, list(YES_NO), "yes", "object", full))
        plural = replace(m, count=2).phrase(article=False)
        out.append(
            _item(
                prompt_id,
                text,
                f"How many {plural} are there?",
                list(COUNT_CHOICES),
                str(m.count),
                "counting",
                str(m.count),
            )
        )
        others = [o for j, o in enumerate(ms) if j != i]
        unique = {d: not any(_may_match(o, m, d) for o in others) for d in ("color", "shape", "size")}
        if unique["color"]:
            wrong = [c for c in COLOR_NAMES if c != m.color]
            picks = [wrong[k] for k in rng.choice(len(wrong), N_COLOR_CHOICES - 1, replace=False)]
            choices = [m.color, *picks]
            choices = [choices[k] for k in rng.permutation(len(choices))]
            out.append(
                _item(
                    prompt_id,
                    text,
                    f"What color {be} the {m.phrase('color', article=False)}?",
                    choices,
                    m.color,
                    "color",
                    m.color,
                )
            )
        if unique["shape"]:
            out.append(
                _item(
                    prompt_id,
                    text,
                    f"What shape {be} the {m.phrase('shape', article=False)}?",
                    [SHAPES[k] for k in rng.permutation(len(SHAPES))],
                    m.shape,
                    "shape",
                    m.shape,
                )
            )
        if m.size is not None and unique["size"]:
            q = f"{be.capitalize()} the {m.phrase('size', article=False)} small or large?"
            out.append(_item(prompt_id, text, q, list(SIZES), m.size, "size", m.size))
    for r in cap.relations:
        a, b = ms[r.a], ms[r.b]
        be = "are" if a.count > 1 else "is"
        q = f"Where {be} the {a.phrase(article=False)} relative to the {b.phrase(article=False)}?"
        out.append(_item(prompt_id, text, q, list(RELATIONS), r.relation, "spatial", r.relation))
    return out


def chance(questions: list[dict[str, Any]]) -> float:
    """Expected accuracy of answering every question with a uniformly random choice."""
    return float(np.mean([1.0 / len(q["choices"]) for q in questions])) if questions else 0.0


class TifaQuestion(BaseModel):
    """One TIFA v1.0 question item (the schema ``load_tifa_questions`` enforces).

    The seven fields are required and typed strictly. What the official ``tifa_v1.0_question_answers.json`` may
    also carry is accepted: extra keys are kept as they are, an integer ``id`` is read as its decimal string, and a
    choice listed twice is kept once (first occurrence, order preserved).
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    id: StrictStr = Field(min_length=1)
    caption: StrictStr = Field(min_length=1)
    question: StrictStr = Field(min_length=1)
    choices: list[StrictStr]
    answer: StrictStr
    element_type: StrictStr = Field(min_length=1)
    element: StrictStr

    @field_validator("id", mode="before")
    @classmethod
    def _numeric_id(cls, v: Any) -> Any:
        return str(v) if isinstance(v, int) and not isinstance(v, bool) else v

    @field_validator("choices", mode="before")
    @classmethod
    def _drop_repeats(cls, v: Any) -> Any:
        if isinstance(v, list) and all(isinstance(c, str) for c in v):
            return list(dict.fromkeys(v))
        return v

    @field_validator("choices")
    @classmethod
    def _two_non_empty(cls, v: list[str]) -> list[str]:
        if len(v) < 2 or any(not c for c in v):
            raise ValueError("choices must be at least 2 distinct non-empty strings")
        return v

    @field_validator("answer")
    @classmethod
    def _answer_in_choices(cls, v: str, info: Any) -> str:
        if "choices" in info.data and v not in info.data["choices"]:
            raise ValueError("answer must be one of the choices")
        return v


_ITEMS = TypeAdapter(list[TifaQuestion])


def validate_tifa_questions(items: Any, source: str | Path | None = None) -> list[dict[str, Any]]:
    """Check ``items`` against the TIFA v1.0 schema (``TifaQuestion``; also: one ``id`` has one caption); a
    violation is a one-line ``UserError`` naming ``source`` (default None: no file), the item index and field, the
    value and the rule. Returns plain dicts (extra keys kept, ids as strings)."""
    try:
        out = [q.model_dump() for q in _ITEMS.validate_python(items)]
    except ValidationError as err:
        raise from_validation_error(err, source=source) from None
    first: dict[str, int] = {}  # prompt id -> index of its first item
    for i, q in enumerate(out):
        j = first.setdefault(q["id"], i)
        if out[j]["caption"] != q["caption"]:
            rule = f"one id must have one caption (item {j} has another)"
            raise UserError(rule, source=source, field=f"{i}.id", value=q["id"])
    return out


def load_tifa_questions(path: str | Path) -> list[dict[str, Any]]:
    """Read a TIFA v1.0 question file (a non-empty JSON list of question items) and validate it: the one reader
    of question files, for the built-in world's files and the official ``tifa_v1.0_question_answers.json`` alike."""
    from unetnas.io import parse_json

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError("file not found; expected a TIFA v1.0 question file (JSON)", source=path) from None
    except UnicodeDecodeError as err:
        raise UserError(f"is not valid JSON ({err})", source=path) from None
    except OSError as err:
        raise UserError(f"is not a readable file ({first_line(err)})", source=path) from None
    items = parse_json(text, path)  # a key given twice in an item is refused
    if isinstance(items, list) and not items:
        raise UserError("holds no question items; expected a non-empty JSON list", source=path)
    return validate_tifa_questions(items, source=path)


def save_tifa_questions(path: str | Path, questions: list[dict[str, Any]]) -> None:
    """Validate and write questions as a TIFA v1.0 JSON file."""
    items = validate_tifa_questions(questions, source=path)
    Path(path).write_text(json.dumps(items, indent=1) + "\n", encoding="utf-8")


@dataclass(frozen=True)
class TifaResult:
    """TIFA score (mean over prompts), per-prompt scores (id -> accuracy, first-seen order), accuracy per
    ``element_type`` (sorted), the number of questions, and the FLOPs spent getting the answers."""

    score: float
    per_prompt: dict[str, float]
    by_category: dict[str, float]
    n_questions: int
    flops: int = 0


def tifa_summary(questions: Sequence[Mapping[str, Any]], correct: Sequence[float], flops: int = 0) -> TifaResult:
    """The TIFA aggregation (Hu et al. 2023), the one every scorer here uses: ``correct[i]`` in [0, 1] is the
    accuracy of ``questions[i]`` (averaged over the prompt's images); mean over each prompt's (``id``) questions,
    then mean over prompts; by category, the plain mean over that ``element_type``'s questions."""
    if len(questions) != len(correct) or not questions:
        raise ValueError(f"need one accuracy per question, got {len(correct)} for {len(questions)}")
    by_id: dict[str, list[float]] = {}
    by_cat: dict[str, list[float]] = {}
    for q, c in zip(questions, correct):
        by_id.setdefault(q["id"], []).append(float(c))
        by_cat.setdefault(q["element_type"], []).append(float(c))
    per_prompt = {k: float(np.mean(v)) for k, v in by_id.items()}
    return TifaResult(
        float(np.mean(list(per_prompt.values()))),
        per_prompt,
        {k: float(np.mean(v)) for k, v in sorted(by_cat.items())},
        len(questions),
        flops,
    )
