"""The pixel-reading answerer and the selftest of the TIFA proxy: real renders, seeded, small."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import tifa_question
from unetnas.errors import UserError
from unetnas.world import Answerer, Scene, WorldObject, fixed_set, gaussian_blur, render, selftest, tifa_score
from unetnas.world.dataset import to_tensor
from unetnas.world.questions import TifaResult, tifa_summary


@pytest.fixture(scope="module")
def answerer() -> Answerer:
    return Answerer()


def test_parse_recovers_the_scene_from_pixels(answerer: Answerer) -> None:
    batch = fixed_set("eval", 40, seed=2)
    for scene, image in zip(batch.scenes, batch.images, strict=True):
        found = sorted((d.color, d.shape, d.size) for d in answerer.parse(image))
        assert found == sorted(o.kind for o in scene.objects)
        for o in scene.objects:  # every object has a detection at its centre of mass
            assert any(np.hypot(d.x - o.centroid[0], d.y - o.centroid[1]) < 0.02 for d in answerer.parse(image))


def test_parse_takes_uint8_and_float_layouts_alike(answerer: Answerer) -> None:
    scene = Scene(
        (WorldObject("triangle", "cyan", "small", 0.3, 0.6), WorldObject("diamond", "red", "large", 0.7, 0.3))
    )
    img = render(scene, 32)
    tensor = to_tensor(img[None])[0]
    parses = [answerer.parse(x) for x in (img, tensor, tensor.numpy().transpose(1, 2, 0))]
    kinds = [(d.color, d.shape, d.size) for d in parses[0]]
    assert kinds == [("red", "diamond", "large"), ("cyan", "triangle", "small")]  # largest first
    for p in parses[1:]:  # the same up to float rounding of the [-1, 1] round trip
        assert [(d.color, d.shape, d.size) for d in p] == kinds
        assert np.allclose([(d.x, d.y, d.mass) for d in p], [(d.x, d.y, d.mass) for d in parses[0]], atol=1e-5)
    with pytest.raises(UserError, match="square RGB"):
        answerer.parse(np.zeros((32, 30, 3), np.uint8))
    with pytest.raises(UserError, match="resolution"):
        answerer.parse(np.zeros((8, 8, 3), np.uint8))


def _q(question: str, choices: list[str], answer: str, etype: str) -> dict:
    return tifa_question("p", "c", question, choices, answer, etype)


def test_answers_follow_the_pixels_not_the_question(answerer: Answerer) -> None:
    scene = Scene(
        (
            WorldObject("square", "green", "large", 0.25, 0.5),
            WorldObject("circle", "blue", "small", 0.75, 0.5),
            WorldObject("circle", "blue", "small", 0.75, 0.2),
        )
    )
    img = render(scene, 32)
    colors = ["red", "green", "blue", "yellow"]
    asked = {
        "Is there a green square?": (["yes", "no"], "yes"),
        "Is there a red square?": (["yes", "no"], "no"),
        "Is there a small green square?": (["yes", "no"], "no"),
        "How many small blue circles are there?": (["0", "1", "2", "3", "4"], "2"),
        "How many triangles are there?": (["0", "1", "2", "3", "4"], "0"),
        "What color is the square?": (colors, "green"),
        "What color is the red square?": (colors, "green"),  # wrong colour in the question: relaxed to the shape
        "What shape is the green object?": (["circle", "square", "triangle", "diamond"], "square"),
        "Is the green square small or large?": (["small", "large"], "large"),
        "Where is the green square relative to the blue circles?": (
            ["left of", "right of", "above", "below"],
            "left of",
        ),
    }
    qs = [_q(text, choices, ans, "x") for text, (choices, ans) in asked.items()]
    assert answerer.answer_batch([img], [qs]) == [[q["answer"] for q in qs]]
    assert answerer.answer(img, qs[1]) == "no"


def test_empty_image_degrades_to_no_zero_and_a_valid_choice(answerer: Answerer) -> None:
    blank = np.full((32, 32, 3), 128, np.uint8)
    assert answerer.parse(blank) == []
    assert answerer.answer(blank, _q("Is there a red circle?", ["yes", "no"], "yes", "object")) == "no"
    assert answerer.answer(blank, _q("How many red circles are there?", ["0", "1", "2"], "1", "counting")) == "0"
    odd = _q("What is the mood of the red circle?", ["happy", "sad"], "happy", "other")
    assert answerer.answer(blank, odd) in ("happy", "sad")
    with pytest.raises(UserError, match="one question list per image"):
        answerer.answer_batch([blank, blank], [[odd]])


def test_blur_keeps_colour_and_size(answerer: Answerer) -> None:
    scene = Scene(
        (WorldObject("circle", "yellow", "small", 0.3, 0.3), WorldObject("square", "magenta", "large", 0.7, 0.7))
    )
    img = render(scene, 32).astype(np.float32)[None] / 127.5 - 1
    found = answerer.parse(gaussian_blur(img, 1.0)[0])
    assert sorted((d.color, d.shape, d.size) for d in found) == [
        ("magenta", "square", "large"),
        ("yellow", "circle", "small"),
    ]


def test_flops_estimate(answerer: Answerer) -> None:
    assert answerer.flops_per_image(64) == 4 * answerer.flops_per_image(32) > 0
    with pytest.raises(UserError):
        answerer.flops_per_image(8)


def test_tifa_score_averages_per_prompt_first() -> None:
    score, per_prompt, by_cat = tifa_score([1, 0, 1], ["a", "a", "b"], ["color", "shape", "color"])
    assert score == pytest.approx(0.75)  # (0.5 + 1) / 2, not 2/3
    assert per_prompt == {"a": 0.5, "b": 1.0} and by_cat == {"color": 1.0, "shape": 0.0}
    qs = [{"id": i, "element_type": c} for i, c in zip("aab", ["color", "shape", "color"])]
    assert tifa_summary(qs, [1, 0, 1]) == TifaResult(score, per_prompt, by_cat, 3)  # one aggregation
    assert tifa_score([1], ["a"])[2] == {}
    with pytest.raises(ValueError, match="one entry per question"):
        tifa_score([1, 0], ["a"])
    with pytest.raises(ValueError, match="one accuracy per question"):
        tifa_summary(qs, [1])


def test_selftest_meets_its_thresholds() -> None:
    r = selftest(n_prompts=120, seed=1)
    assert r["n_questions"] >= 1000 and r["n_prompts"] == 120
    assert min(r["clean"].values()) >= 0.98 and r["renderer_score"] >= 0.98
    assert min(r["blur"].values()) >= 0.95 and min(r["noise"].values()) >= 0.95
    # pure noise: nothing is found, so presence/counting fail and the rest is at chance -> at or below chance
    assert r["noise_score"] <= r["chance_score"] + 0.05
    assert abs(r["pure_noise"]["color"] - 0.25) < 0.1 and abs(r["pure_noise"]["shape"] - 0.25) < 0.1
    assert r["shuffled_score"] < 0.5  # good images of the wrong prompt are not rewarded


def test_answer_lists_memo_matches_asking_each_question(answerer: Answerer) -> None:
    """The per-image memo (foil lists repeat questions) answers exactly as asking every question afresh, on clean
    renders and on noise images whose many spurious detections exercise every relaxation path."""
    from unetnas.world.dataset import prompt_set

    ps = prompt_set(24, seed=1, split="eval")
    lists = ps.questions_by_prompt()
    clean = fixed_set("eval", 6, seed=3, resolution=16).images
    noise = np.random.default_rng(0).integers(0, 256, (6, 16, 16, 3), dtype=np.uint8)
    for image in [*clean, *noise]:
        dets = answerer.parse(image)
        fresh = [[Answerer._answer(dets, q) for q in qs] for qs in lists]
        assert answerer.answer_lists(image, lists) == fresh
