"""Does the TIFA proxy of the built-in world measure what it should? Score the renderer, degraded renders, noise.

``selftest`` answers the evaluation questions on the renderer's own images (should be ~1), on blurred and noisy
renders (the answerer must survive what small diffusion models produce), and on pure noise (should be near
chance). Scores use ``questions.tifa_summary``, the TIFA aggregation (mean accuracy per prompt, then over prompts);
``tifa_score`` is the same on parallel lists.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from unetnas.world.answerer import Answerer
from unetnas.world.dataset import prompt_set
from unetnas.world.questions import chance, tifa_summary
from unetnas.world.render import gaussian_blur, render_batch

BLUR_SIGMA = 0.7  # pixels: about the softness of a small diffusion model's samples at 32 px
NOISE_STD = 0.1  # additive gaussian noise, in [-1, 1] image units


def tifa_score(
    per_question_correct: Sequence[float],
    question_prompt_ids: Sequence[str],
    question_categories: Sequence[str] | None = None,
) -> tuple[float, dict[str, float], dict[str, float]]:
    """``tifa_summary`` (the one TIFA aggregation) on parallel lists, for callers without question dicts.

    Returns ``(score, per_prompt_scores, by_category)``; ``by_category`` is empty unless ``question_categories``
    is given. Lists of different lengths, or none, are a ``ValueError`` (a caller's bug, not bad input).
    """
    n = len(per_question_correct)
    if len(question_prompt_ids) != n or (question_categories is not None and len(question_categories) != n):
        raise ValueError("correct flags, prompt ids and categories must have one entry per question")
    cats = question_categories if question_categories is not None else [""] * n
    res = tifa_summary([{"id": i, "element_type": c} for i, c in zip(question_prompt_ids, cats)], per_question_correct)
    return res.score, res.per_prompt, res.by_category if question_categories is not None else {}


def _score(answerer: Answerer, images: np.ndarray, per_prompt_qs: list[list[dict[str, Any]]]) -> dict[str, Any]:
    answers = answerer.answer_batch(list(images), per_prompt_qs)
    flat = [q for qs in per_prompt_qs for q in qs]
    correct = [a == q["answer"] for a, q in zip((a for aa in answers for a in aa), flat, strict=True)]
    res = tifa_summary(flat, correct)
    return {"score": res.score, "by_category": res.by_category}


def selftest(n_prompts: int = 300, seed: int = 0, resolution: int = 32) -> dict[str, Any]:
    """Score the answerer on eval prompts rendered clean, blurred, noisy, and on pure noise.

    Defaults: 300 prompts (2,644 questions; >= 1,000 are needed for per-category figures), seed 0, at 32 px
    (the CPU trial size).
    Returns ``clean`` / ``blur`` / ``noise`` / ``pure_noise`` (category -> accuracy); TIFA scores
    ``renderer_score``, ``blur_score``, ``noisy_score`` (clean, blurred, noisy renders), ``noise_score`` (pure
    noise) and ``shuffled_score`` (renders of other prompts); ``chance`` (mean 1/len(choices) per question) and
    ``chance_score`` (the same aggregated like TIFA, per prompt first); ``n_questions``, ``n_prompts``.
    """
    prompts = prompt_set(n_prompts, seed)
    rng = np.random.default_rng([seed, 7])  # degradation noise, independent of the prompt streams
    clean = render_batch(prompts.scenes, resolution).astype(np.float32) / 127.5 - 1.0  # [-1, 1], (B, H, W, 3)
    variants = {
        "clean": clean,
        "blur": np.clip(gaussian_blur(clean, BLUR_SIGMA), -1.0, 1.0),
        "noise": np.clip(clean + NOISE_STD * rng.standard_normal(clean.shape, dtype=np.float32), -1.0, 1.0),
        "pure_noise": np.clip(rng.standard_normal(clean.shape, dtype=np.float32), -1.0, 1.0),  # an untrained model
        "shuffled": np.roll(clean, 1, axis=0),  # well-formed images of the wrong prompt
    }
    answerer, grouped = Answerer(), prompts.questions_by_prompt()
    res = {name: _score(answerer, imgs, grouped) for name, imgs in variants.items()}
    return {
        "clean": res["clean"]["by_category"],
        "blur": res["blur"]["by_category"],
        "noise": res["noise"]["by_category"],
        "pure_noise": res["pure_noise"]["by_category"],
        "renderer_score": res["clean"]["score"],
        "blur_score": res["blur"]["score"],
        "noisy_score": res["noise"]["score"],
        "noise_score": res["pure_noise"]["score"],
        "shuffled_score": res["shuffled"]["score"],
        "chance": chance(prompts.questions),
        "chance_score": tifa_summary(prompts.questions, [1.0 / len(q["choices"]) for q in prompts.questions]).score,
        "n_questions": len(prompts.questions),
        "n_prompts": n_prompts,
        "resolution": resolution,
    }
