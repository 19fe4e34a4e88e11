"""The text-blind-corrected alignment: zero for prompt-independent images, high for faithful ones, honest errors."""

from __future__ import annotations

import numpy as np
import pytest

from unetnas.proxies.alignment import foil_indices, paired_difference, score_alignment, standard_error
from unetnas.world import Answerer, fixed_set, prompt_set, render_batch

N = 48


@pytest.fixture(scope="module")
def prompts():
    return prompt_set(N, seed=3)


def _score(prompts, images_by_prompt, foils=None):
    return score_alignment(Answerer().answer_lists, prompts.questions_by_prompt(), images_by_prompt, foils=foils)


def test_faithful_renders_align(prompts) -> None:
    images = render_batch(prompts.scenes, 32)
    res = _score(prompts, [[im] for im in images])
    assert res.tifa > 0.97
    assert res.alignment > 0.5
    assert res.alignment > 10 * res.alignment_se


@pytest.mark.parametrize("kind", ["other-scenes", "one-image", "noise"])
def test_text_blind_images_score_zero(prompts, kind) -> None:
    """Images that ignore the prompt (renders of unrelated scenes, one image for all, noise) score ~0 corrected,
    although their raw TIFA is far above 0 (the shortcuts the correction removes)."""
    rng = np.random.default_rng(0)
    if kind == "other-scenes":
        images = render_batch(fixed_set("val", N, seed=11).scenes, 32)
    elif kind == "one-image":
        images = np.repeat(render_batch(fixed_set("val", 1, seed=5).scenes, 32), N, axis=0)
    else:
        images = rng.integers(0, 256, (N, 32, 32, 3), dtype=np.uint8)
    res = _score(prompts, [[im] for im in images])
    assert res.tifa > 0.1  # raw TIFA rewards priors
    assert abs(res.alignment) <= 3 * max(res.alignment_se, 0.01)


def test_one_image_for_all_prompts_is_exactly_zero(prompts) -> None:
    """With every other prompt as a foil, identical images give exactly zero (each prompt is own once, foil N-1
    times, averaged with weight 1/(N-1))."""
    image = render_batch(fixed_set("val", 1, seed=5).scenes, 32)[0]
    res = _score(prompts, [[image]] * N)
    assert res.alignment == pytest.approx(0.0, abs=1e-12)


def test_foils_are_balanced() -> None:
    for n, m in [(5, None), (8, 3), (2, 1)]:
        idx = foil_indices(n, m)
        counts = np.bincount([q for row in idx for q in row], minlength=n)
        assert len(set(counts)) == 1, "every prompt serves as a foil equally often"
        assert all(p not in row for p, row in enumerate(idx))
    with pytest.raises(ValueError):
        foil_indices(1)


def test_standard_errors() -> None:
    assert standard_error([1.0, 1.0, 1.0]) == 0.0
    assert standard_error([0.0, 2.0]) == pytest.approx(1.0)
    assert np.isnan(standard_error([1.0]))
    mean, se = paired_difference([0.5, 0.6, 0.7], [0.4, 0.5, 0.6])
    assert mean == pytest.approx(0.1) and se == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError):
        paired_difference([1.0], [1.0, 2.0])


def test_summary_is_json_ready(prompts) -> None:
    import json

    images = render_batch(prompts.scenes, 32)
    s = _score(prompts, [[im] for im in images], foils=4).summary()
    json.dumps(s)
    assert set(s) >= {"tifa", "tifa_se", "alignment", "alignment_se", "per_prompt_alignment", "by_category"}
    assert len(s["per_prompt_alignment"]) == N
