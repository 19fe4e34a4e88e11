"""The built-in world: scenes, renders, captions, datasets and TIFA question files. Real components, seeded, small."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch

from unetnas.errors import UserError
from unetnas.world import (
    CATEGORIES,
    COLORS,
    HELD_OUT,
    Scene,
    WorldDataset,
    WorldObject,
    chance,
    describe,
    fixed_set,
    load_tifa_questions,
    make_questions,
    parse_caption,
    prompt_set,
    render,
    render_batch,
    sample_scene,
    save_tifa_questions,
)
from unetnas.world.captions import relation_between
from unetnas.world.questions import question_refs
from unetnas.world.scene import BACKGROUND, GAP, MARGIN, boxes_clear


def _scenes(split: str, n: int, seed: int = 0) -> list[Scene]:
    rng = np.random.default_rng(seed)
    return [sample_scene(rng, split) for _ in range(n)]


def test_sampling_is_deterministic_under_seed() -> None:
    assert _scenes("train", 50, seed=1) == _scenes("train", 50, seed=1)
    assert _scenes("train", 50, seed=1) != _scenes("train", 50, seed=2)


def test_held_out_pairs_never_in_train_but_in_eval() -> None:
    train = {(o.color, o.shape) for s in _scenes("train", 1500) for o in s.objects}
    assert not train & HELD_OUT
    assert len(train) == 24 - len(HELD_OUT)  # every other pair does occur
    for split in ("val", "eval"):
        scenes = _scenes(split, 600)
        assert {(o.color, o.shape) for s in scenes for o in s.objects} >= HELD_OUT
        assert any(s.held_out for s in scenes) and not all(s.held_out for s in scenes)


def test_scenes_are_valid_layouts() -> None:
    counts = set()
    for s in _scenes("eval", 400):
        counts.add(len(s.objects))
        boxes = [(o.x, o.y, o.half) for o in s.objects]
        for o in s.objects:
            assert MARGIN + o.half - 1e-9 <= o.x <= 1 - MARGIN - o.half + 1e-9
        for i, a in enumerate(boxes):
            assert all(boxes_clear(a, b, GAP - 1e-9) for b in boxes[i + 1 :])
    assert counts == {1, 2, 3, 4}


def test_bad_scene_values_are_user_errors() -> None:
    with pytest.raises(UserError, match="shape.*hexagon.*must be one of"):
        WorldObject("hexagon", "red", "small", 0.5, 0.5)
    with pytest.raises(UserError, match="x=0.01"):
        WorldObject("circle", "red", "large", 0.01, 0.5)
    with pytest.raises(UserError, match="split"):
        sample_scene(np.random.default_rng(0), "test")


@pytest.mark.parametrize("res", [16, 33, 64])
def test_render_pixels(res: int) -> None:
    scene = Scene((WorldObject("square", "blue", "large", 0.5, 0.5),))
    img = render(scene, res)
    assert img.shape == (res, res, 3) and img.dtype == np.uint8
    assert tuple(img[res // 2, res // 2]) == COLORS["blue"]
    assert tuple(img[0, 0]) == BACKGROUND
    alpha = (img[..., 2].astype(float) - BACKGROUND[2]) / (COLORS["blue"][2] - BACKGROUND[2])
    assert alpha.mean() == pytest.approx(0.34**2, rel=0.03)  # anti-aliased area of a 0.34-side square


@pytest.mark.parametrize("res", [15, 65, 32.0, True, "32"])
def test_resolution_bounds(res: object) -> None:
    with pytest.raises(UserError, match="resolution.*16..64"):
        render_batch(_scenes("train", 1), res)  # type: ignore[arg-type]


def test_render_batch_matches_single_renders() -> None:
    scenes = _scenes("val", 12)
    batch = render_batch(scenes, 32)
    assert all(np.array_equal(batch[i], render(s, 32)) for i, s in enumerate(scenes))


def test_captions_mention_every_object_and_round_trip() -> None:
    rng = np.random.default_rng(3)
    texts = set()
    for scene in _scenes("eval", 300, seed=3):
        cap = describe(scene, rng)
        texts.add(cap.text)
        assert parse_caption(cap.text) == cap
        assert sum(m.count for m in cap.mentions) == len(scene.objects)
        for o in scene.objects:
            assert (
                sum(m.color == o.color and m.shape == o.shape and m.size in (None, o.size) for m in cap.mentions) == 1
            )
        groups = [
            [o for o in scene.objects if (o.color, o.shape) == (m.color, m.shape) and m.size in (None, o.size)]
            for m in cap.mentions
        ]
        for r in cap.relations:  # every stated relation holds in the layout
            assert relation_between(groups[r.a], groups[r.b]) == r.relation
    assert len(texts) > 250  # only short captions of one object repeat
    joined = " ".join(texts)
    for phrase in ("two ", "three ", " left of ", " right of ", " above ", " below ", "an image of", " small "):
        assert phrase in joined


def test_captions_are_deterministic_given_rng() -> None:
    scene = _scenes("train", 1, seed=5)[0]
    assert describe(scene, np.random.default_rng(9)) == describe(scene, np.random.default_rng(9))


def test_parse_caption_rejects_other_text() -> None:
    with pytest.raises(UserError, match="names no object"):
        parse_caption("a cat on a mat")
    with pytest.raises(UserError, match="link"):
        parse_caption("a red circle near a blue square")


def test_dataset_stream_is_deterministic_and_picklable() -> None:
    ds = WorldDataset("train", resolution=24, seed=4)
    a, b = ds.batch(6, 10), pickle.loads(pickle.dumps(ds)).batch(6, 10)
    assert torch.equal(a.images, b.images) and a.captions == b.captions and a.scenes == b.scenes
    assert a.captions != ds.batch(6, 11).captions
    assert a.images.shape == (6, 3, 24, 24) and a.images.dtype == torch.float32
    assert a.images.min() >= -1 and a.images.max() <= 1
    gen = ds.batch(6, np.random.default_rng(0))
    assert len(gen) == 6
    first = next(ds.stream(6, start=10))
    assert first.captions == a.captions


def test_fixed_sets_are_stable_and_separate() -> None:
    small, big = fixed_set("val", 5, seed=1), fixed_set("val", 9, seed=1)
    assert big.captions[:5] == small.captions and torch.equal(big.images[:5], small.images)
    assert fixed_set("val", 5, seed=2).captions != small.captions
    assert WorldDataset("val", seed=1).batch(5, 0).captions != small.captions
    with pytest.raises(UserError, match="seed"):
        fixed_set("val", 5, seed=-1)
    with pytest.raises(UserError, match="split"):
        WorldDataset("dev")


def test_questions_follow_tifa_schema_and_only_ask_what_the_caption_says() -> None:
    ps = prompt_set(120, seed=0)
    assert {q["element_type"] for q in ps.questions} == set(CATEGORIES)
    assert len(ps.questions_by_prompt()) == 120
    for q in ps.questions:
        assert set(q) == {"id", "caption", "question", "choices", "answer", "element_type", "element"}
        assert q["answer"] in q["choices"] and len(set(q["choices"])) == len(q["choices"]) >= 2
        mentions = parse_caption(q["caption"]).mentions
        for ref in question_refs(q["question"]):
            assert any(
                all(getattr(ref, f) in (None, getattr(m, f)) for f in ("color", "shape", "size")) for m in mentions
            ), (q["question"], q["caption"])
    assert 0.25 < chance(ps.questions) < 0.5
    assert chance([{"choices": ["yes", "no"]}, {"choices": ["a", "b", "c", "d"]}]) == pytest.approx(0.375)
    again = make_questions(ps.captions[0], ps.ids[0], np.random.default_rng(0))
    assert again == make_questions(ps.captions[0], ps.ids[0], np.random.default_rng(0))


def test_tifa_file_round_trip_and_schema_errors(tmp_path) -> None:
    qs = prompt_set(5).questions
    path = tmp_path / "q.json"
    save_tifa_questions(path, qs)
    assert load_tifa_questions(path) == qs
    bad = [dict(q) for q in qs]
    bad[3]["answer"] = "maybe"
    path.write_text(json.dumps(bad))
    with pytest.raises(UserError) as err:
        load_tifa_questions(path)
    assert str(err.value).startswith(str(path)) and "3.answer='maybe'" in str(err.value)
    assert "answer must be one of the choices" in str(err.value)
    bad[3] = {**qs[3], "choices": "yes"}
    path.write_text(json.dumps(bad))
    with pytest.raises(UserError, match=r"3\.choices"):
        load_tifa_questions(path)
    path.write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        load_tifa_questions(path)
    with pytest.raises(UserError, match="not found"):
        load_tifa_questions(tmp_path / "missing.json")
