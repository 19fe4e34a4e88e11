"""Text-blind-corrected alignment: TIFA on a prompt's own questions minus TIFA on other prompts' questions.

TIFA-style scores have shortcuts that need no reading of the prompt: priors such as "is there a ...? yes",
typical counts and sizes, a colour the model always draws. To remove them, every image is also asked the questions
of *other* prompts of the same evaluation set ("foils"). For prompt ``p`` with images ``I_p``::

    own_p  = TIFA accuracy of p's questions on I_p            (mean over questions, then over p's images)
    foil_p = mean over foil prompts q of TIFA accuracy of q's questions on I_p
    d_p    = own_p - foil_p

    raw TIFA  = mean_p own_p                                   (Hu et al. 2023, the paper's metric)
    alignment = mean_p d_p                                     (this module)

Prompts are drawn i.i.d. and a text-blind model's images do not depend on the prompt, so own and foil questions
are exchangeable for it and ``E[alignment] = 0`` for *any* image distribution. This is the "mismatched pair"
control of retrieval metrics (e.g. CLIPScore's contrast with shuffled captions) applied to question answering.

Standard errors are analytic over prompts: images are nested within prompts, so the prompt is the independent
unit and ``SE = std(d_p, ddof=1) / sqrt(N)`` (likewise for raw TIFA). With common random numbers (the same prompts
and the same initial noise for every candidate), a difference between two candidates has the paired standard error
``std(d_p^A - d_p^B, ddof=1) / sqrt(N)`` (``paired_difference``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class AlignmentScore:
    """Per-prompt own and foil accuracies and their summaries; all values are accuracies in [0, 1] or differences.

    ``own[p]``, ``foil[p]``: shape (N,). ``by_category`` / ``foil_by_category``: plain mean accuracy per
    ``element_type`` over own / foil questions.
    """

    own: np.ndarray
    foil: np.ndarray
    by_category: dict[str, float] = field(default_factory=dict)
    foil_by_category: dict[str, float] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.own)

    @property
    def tifa(self) -> float:
        return float(self.own.mean())

    @property
    def tifa_se(self) -> float:
        return standard_error(self.own)

    @property
    def blind_tifa(self) -> float:
        """TIFA of foil questions: what the images score on prompts they were not made for."""
        return float(self.foil.mean())

    @property
    def per_prompt(self) -> np.ndarray:
        """``d_p``, shape (N,)."""
        return self.own - self.foil

    @property
    def alignment(self) -> float:
        return float(self.per_prompt.mean())

    @property
    def alignment_se(self) -> float:
        return standard_error(self.per_prompt)

    def summary(self) -> dict[str, object]:
        """JSON-ready figures (what a search records per rung)."""
        return {
            "tifa": self.tifa,
            "tifa_se": self.tifa_se,
            "alignment": self.alignment,
            "alignment_se": self.alignment_se,
            "blind_tifa": self.blind_tifa,
            "prompts": self.n,
            "by_category": self.by_category,
            "alignment_by_category": {k: v - self.foil_by_category.get(k, 0.0) for k, v in self.by_category.items()},
            "per_prompt_alignment": [round(float(x), 6) for x in self.per_prompt],
            "per_prompt_tifa": [round(float(x), 6) for x in self.own],
        }


def standard_error(values: Sequence[float] | np.ndarray) -> float:
    """Standard error of the mean, ``std(ddof=1) / sqrt(n)``; NaN for fewer than 2 values."""
    v = np.asarray(values, dtype=float)
    return float(v.std(ddof=1) / math.sqrt(len(v))) if len(v) > 1 else float("nan")


def paired_difference(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """Mean and standard error of ``a - b`` for per-prompt values scored on the same prompts and noise (CRN)."""
    a_, b_ = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a_.shape != b_.shape:
        raise ValueError(f"paired values need the same prompts, got {a_.shape} and {b_.shape}")
    d = a_ - b_
    return float(d.mean()), standard_error(d)


def foil_indices(n: int, foils: int | None = None) -> list[list[int]]:
    """For each of ``n`` prompts, the prompts whose questions serve as its foils: cyclic shifts 1..m of the index,
    ``m = foils`` (default: all ``n - 1`` others). Every prompt is a foil equally often, so foil questions have the
    same distribution as own questions."""
    if n < 2:
        raise ValueError("the text-blind correction needs at least 2 prompts")
    m = n - 1 if foils is None else max(1, min(foils, n - 1))
    return [[(p + s) % n for s in range(1, m + 1)] for p in range(n)]


def score_alignment(
    answer_image: AnswerFn,
    questions_by_prompt: Sequence[Sequence[dict]],
    images_by_prompt: Sequence[Sequence[object]],
    foils: int | None = None,
) -> AlignmentScore:
    """Score images against own and foil questions.

    ``answer_image(image, question_lists)`` answers each list of TIFA items about one image (returns one answer
    list per question list; it may parse the image once). ``questions_by_prompt[p]``: TIFA items of prompt ``p``
    (``answer`` holds the correct choice); ``images_by_prompt[p]``: that prompt's images (k >= 1 each).
    """
    n = len(questions_by_prompt)
    if len(images_by_prompt) != n:
        raise ValueError(f"need images for each of {n} prompts, got {len(images_by_prompt)}")
    shifts = foil_indices(n, foils)
    own, foil = np.zeros(n), np.zeros(n)
    cat_own: dict[str, list[float]] = {}
    cat_foil: dict[str, list[float]] = {}
    for p in range(n):
        asked = [p, *shifts[p]]
        acc = np.zeros(len(asked))  # per asked prompt: accuracy averaged over p's images, then questions
        for image in images_by_prompt[p]:
            answers = answer_image(image, [questions_by_prompt[q] for q in asked])
            for i, q in enumerate(asked):
                qs = questions_by_prompt[q]
                right = [a == item["answer"] for a, item in zip(answers[i], qs, strict=True)]
                acc[i] += np.mean(right) / len(images_by_prompt[p])
                bucket = cat_own if i == 0 else cat_foil
                for ok, item in zip(right, qs):
                    bucket.setdefault(item["element_type"], []).append(float(ok))
        own[p], foil[p] = acc[0], acc[1:].mean()
    mean = lambda d: {k: float(np.mean(v)) for k, v in sorted(d.items())}  # noqa: E731
    return AlignmentScore(own, foil, mean(cat_own), mean(cat_foil))


class AnswerFn:  # pragma: no cover - documentation of the callable's shape only
    def __call__(self, image: object, question_lists: Sequence[Sequence[dict]]) -> list[list[str]]: ...
