"""Real alignment backends on tiny random-initialised real models loaded by path (plumbing, not accuracy):
VQA (BLIP, ViLT) answers, nearest-choice mapping, TIFA v1.0 file reading and scoring, CLIPScore, FLOPs bounds,
bad paths."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image
from tiny_models import VILT_LABELS, tiny_blip_vqa, tiny_clip, tiny_vilt_vqa

from tests.helpers import tifa_question
from unetnas.errors import UserError
from unetnas.proxies.choice import NearestChoice, normalize, string_match, vqa_normalize
from unetnas.proxies.clipscore import ClipScoreBackend
from unetnas.proxies.vqa import VQABackend, score_tifa
from unetnas.world.questions import load_tifa_questions, tifa_summary

QUESTIONS = [  # a TIFA v1.0 file: 2 prompts, 5 questions
    tifa_question("coco_1", "two red circles", "is there a circle?", ["yes", "no"], "yes", "object"),
    tifa_question("coco_1", "two red circles", "how many circles are there?", ["1", "2", "3"], "2", "counting"),
    tifa_question("coco_1", "two red circles", "what color are the circles?", ["red", "blue", "green"], "red", "color"),
    tifa_question("coco_2", "a dog on grass", "is there a dog?", ["yes", "no"], "yes", "object"),
    tifa_question("coco_2", "a dog on grass", "what animal is this?", ["cat", "dog", "triangle"], "dog", "animal"),
]


@pytest.fixture(scope="module")
def matcher() -> NearestChoice:
    return NearestChoice()


@pytest.fixture(scope="module")
def dirs(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("hf")
    return {
        "blip": tiny_blip_vqa(root / "blip"),
        "vilt": tiny_vilt_vqa(root / "vilt"),
        "clip": tiny_clip(root / "clip"),
    }


@pytest.fixture(scope="module")
def backends(dirs, matcher) -> dict:
    return {k: VQABackend.load(dirs[k], matcher=matcher) for k in ("blip", "vilt")}


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (40, 48, 3), dtype=np.uint8) for _ in QUESTIONS]


def test_string_rules_need_no_model() -> None:
    m = NearestChoice()
    assert m.match_batch(
        ["2", "Yes.", "two", "It is red.", "The Dog", "nope", "a dog"],
        [
            ["one", "two", "three"],
            ["yes", "no"],
            ["1", "2"],
            ["red", "blue"],
            ["cat", "dog"],
            ["yes", "no"],
            ["brown dog", "cat"],
        ],
    ) == ["two", "yes", "2", "red", "dog", "no", "brown dog"]
    assert m._model is None and m.flops == 0  # all resolved by string rules
    assert normalize("The  Three cats!") == ("3", "cats")
    assert string_match("yes and no", ["yes", "no"]) is None  # ambiguous: left to the embeddings


# issue 11 item 3: (free-form answer, choices, the choice it names; None = names none, scores wrong), whole kinds
ANSWERS = [
    # zero / none / no in counting questions
    ("none", ["0", "1", "2", "3"], "0"),
    ("no", ["0", "1", "2", "3"], "0"),
    ("zero", ["0", "1", "2"], "0"),
    ("There are no dogs.", ["0", "1", "2"], "0"),
    ("nothing", ["zero", "one", "two"], "zero"),
    ("no, there are two", ["0", "1", "2", "3"], "2"),
    ("no", ["yes", "no"], "no"),
    # numbers in words and digits, both sides
    ("twenty one", ["21", "20", "1"], "21"),
    ("twenty-one", ["21", "20", "1"], "21"),
    ("21", ["twenty-one", "twenty", "one"], "twenty-one"),
    ("20", ["twenty-one", "twenty", "one"], "twenty"),
    ("Fifteen.", ["5", "15", "50"], "15"),
    ("a hundred and five", ["105", "100", "5"], "105"),
    ("2,000", ["2000", "2"], "2000"),
    ("three cats", ["two", "three"], "three"),
    ("10", ["ten", "one"], "ten"),
    # negation
    ("It is not blue, it is red", ["blue", "red"], "red"),
    ("it isn't blue", ["blue", "red"], "red"),
    ("isnt blue, red", ["blue", "red", "green"], "red"),
    ("not the dog", ["cat", "dog"], "cat"),
    ("It is not blue", ["yes", "no"], "no"),
    ("it doesn't", ["yes", "no"], "no"),
    ("yes it is", ["yes", "no"], "yes"),
    # empty answers answer nothing
    ("", ["yes", "no"], None),
    ("  ", ["0", "1"], None),
    ("the", ["red", "blue"], None),
    ("?", ["yes", "no"], None),
]


@pytest.mark.parametrize("answer, choices, want", ANSWERS, ids=[repr(a[0]) for a in ANSWERS])
def test_answer_matching_kinds_need_no_model(answer, choices, want) -> None:
    m = NearestChoice()
    assert m(answer, choices) == want
    assert m._model is None and m.flops == 0  # decided by the normalisation and string rules, no embeddings


def test_vqa_normalisation_is_the_standard_one() -> None:
    # vqaEval.py's rules: punctuation next to a space is dropped, inside a word it splits; periods not before a
    # digit go; none/zero/one..ten become digits; articles go; contractions get their apostrophes
    assert vqa_normalize("A dog, the cat; an apple.") == "dog cat apple"
    assert vqa_normalize("black-and-white") == "black and white"
    assert vqa_normalize("Two.  None  3.5") == "2 0 3.5"
    assert vqa_normalize("isnt it? Dont") == "isn't it don't"
    assert normalize("twenty-one") == normalize("twenty one") == normalize("21") == ("21",)


def test_an_empty_answer_scores_wrong(matcher: NearestChoice) -> None:
    # a matcher that needs the embeddings for one pair still returns None for the empty one, without embedding it
    seen = matcher.embedded
    assert matcher.match_batch(["", "crimson"], [["yes", "no"], ["red", "blue", "green"]]) == [None, "red"]
    assert "" not in matcher._cache and matcher.embedded - seen <= 4


def test_embedding_fallback(matcher: NearestChoice) -> None:
    colours = ["blue", "red", "green", "yellow"]
    assert matcher.match_batch(["crimson", "puppy"], [colours, ["cat", "dog", "car"]]) == ["red", "dog"]
    spent, seen = matcher.flops, matcher.embedded
    assert spent > 0 and matcher("crimson", colours) == "red"
    assert (matcher.flops, matcher.embedded) == (spent, seen)  # cached: nothing re-encoded


@pytest.mark.parametrize("kind", ["blip", "vilt"])
def test_vqa_answers_are_choices_and_deterministic(backends, images, kind: str) -> None:
    be = backends[kind]
    assert be.kind == kind
    first = be.answer(images, QUESTIONS)
    assert all(a in q["choices"] for a, q in zip(first, QUESTIONS))
    total = be.total_flops
    assert be.last_flops > 0
    assert be.answer([Image.fromarray(i) for i in images], QUESTIONS) == first  # PIL == array, repeatable
    assert be.total_flops == total + be.last_flops
    with pytest.raises(ValueError, match="one image per question"):
        be.answer(images[:2], QUESTIONS)


def test_vilt_labels_and_fallback(backends, images) -> None:
    be = backends["vilt"]
    # "2"/"3" are named by labels "two"/"three"; "hexagon"/"oval" by no label -> nearest-choice fallback
    qs = [
        tifa_question("p", "c", "how many?", ["2", "3"], "2", "counting"),
        tifa_question("p", "c", "what shape?", ["hexagon", "oval"], "oval", "shape"),
    ]
    picks = be.answer(images[:2], qs)
    assert picks[0] in ("2", "3") and picks[1] in ("hexagon", "oval")
    assert {"two", "three"} <= set(VILT_LABELS)
    one = be.answer(images[:1], qs[:1]) and be.last_flops
    be.answer(images[:1] * 2, qs[:1] * 2)
    assert be.last_flops == 2 * one  # FLOPs are linear in the questions asked


def test_tifa_file_and_scores(tmp_path, backends, images) -> None:
    path = tmp_path / "tifa_v1.0_question_answers.json"
    official = [dict(q, question_type="what", extra_key=1) for q in QUESTIONS]  # keys beyond the seven are kept
    official[3:] = [dict(q, id=2) for q in official[3:]]  # numeric ids are read as strings
    official[0]["choices"] = ["yes", "no", "yes"]  # a repeated choice is kept once
    path.write_text(json.dumps(official))
    qs = load_tifa_questions(path)
    assert [q["question"] for q in qs] == [q["question"] for q in QUESTIONS]
    assert qs[0]["choices"] == ["yes", "no"] and qs[3]["id"] == "2" and qs[4]["extra_key"] == 1
    res = tifa_summary(qs, [1, 0, 1, 1, 0])
    assert res.per_prompt == {"coco_1": pytest.approx(2 / 3), "2": 0.5}
    assert res.score == pytest.approx((2 / 3 + 0.5) / 2) and res.n_questions == 5
    assert res.by_category == {"animal": 0.0, "color": 1.0, "counting": 0.0, "object": 1.0}
    be = backends["vilt"]
    by_id = {"coco_1": images[:2], "2": images[2:3]}
    out = score_tifa(be, qs, by_id)
    pairs = [(img, q) for q in qs for img in by_id[q["id"]]]
    hits = [a == q["answer"] for a, (_, q) in zip(be.answer(*zip(*pairs)), pairs)]
    acc1 = (sum(hits[0:2]) / 2 + sum(hits[2:4]) / 2 + sum(hits[4:6]) / 2) / 3
    assert out.per_prompt["coco_1"] == pytest.approx(acc1)
    assert out.per_prompt["2"] == pytest.approx(np.mean(hits[6:8]))
    assert out.score == pytest.approx((acc1 + np.mean(hits[6:8])) / 2) and out.flops == be.last_flops > 0
    with pytest.raises(ValueError, match="no images for prompt id '2'"):
        score_tifa(be, qs, {"coco_1": images[:1]})


@pytest.mark.parametrize(
    "content, msg",
    [
        ([{k: v for k, v in QUESTIONS[0].items() if k != "choices"}], r": 0\.choices: Field required"),
        ([dict(QUESTIONS[0], answer="maybe")], r": 0\.answer='maybe': answer must be one of the choices"),
        ([QUESTIONS[0], dict(QUESTIONS[1], caption="other")], r": 1\.id='coco_1': one id must have one caption"),
        ([dict(QUESTIONS[0], choices=["yes", "yes"])], r"0\.choices=\['yes', 'yes'\]: choices must be at least 2"),
        ([dict(QUESTIONS[0], id=True)], r": 0\.id=True: Input should be a valid string"),
        ([QUESTIONS[0], "not an item"], r": 1='not an item': Input should be a valid dictionary"),
        ({"id": 1}, "Input should be a valid list"),
        ([], "holds no question items"),
    ],
)
def test_tifa_file_errors(tmp_path, content, msg: str) -> None:
    path = tmp_path / "q.json"
    path.write_text(json.dumps(content))
    with pytest.raises(UserError, match=msg) as err:
        load_tifa_questions(path)
    assert str(err.value).startswith(str(path)) and "\n" not in str(err.value)
    with pytest.raises(UserError, match="not found"):
        load_tifa_questions(tmp_path / "absent.json")


def test_vqa_flops_bound(backends, images) -> None:
    """pairs x probe + matcher bound covers what ``answer`` spends, for both kinds and any question mix."""
    for be in backends.values():
        probe = be.probe_flops(images[0], [q["question"] for q in QUESTIONS])
        assert probe > 0 and probe == be.probe_flops(images[1], [q["question"] for q in QUESTIONS])  # size only
        pairs = QUESTIONS * 2
        bound = probe * len(pairs) + be.matcher_flops_bound(len(pairs), [c for q in QUESTIONS for c in q["choices"]])
        be.answer(images * 2, pairs)
        assert 0 < be.last_flops <= bound


def test_clipscore(dirs, images) -> None:
    clip = ClipScoreBackend.load(dirs["clip"])
    caps = [q["caption"] for q in QUESTIONS]
    scores = clip.score(images, caps)
    assert len(scores) == len(caps) and all(math.isfinite(s) and 0.0 <= s <= 100.0 for s in scores)
    assert clip.score(images, caps) == scores and clip.last_flops > 0
    assert clip.score(images[:1], ["x" * 500])[0] >= 0.0  # longer than the text tower: truncated
    with pytest.raises(TypeError):
        clip.score(images[:1], "a dog")


def test_bad_paths(tmp_path, dirs) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "bert").mkdir()
    (tmp_path / "bert" / "config.json").write_text(json.dumps({"model_type": "bert", "architectures": ["BertModel"]}))
    (tmp_path / "noweights").mkdir()
    (tmp_path / "noweights" / "config.json").write_text((dirs["vilt"] / "config.json").read_text())
    cases = [
        (VQABackend.load, tmp_path / "absent", "does not exist"),
        (VQABackend.load, tmp_path / "empty", "holds no config.json"),
        (VQABackend.load, tmp_path / "bert", "unsupported model"),
        (VQABackend.load, dirs["clip"], "unsupported model"),
        (VQABackend.load, tmp_path / "noweights", "could not load ViltForQuestionAnswering"),
        (ClipScoreBackend.load, dirs["blip"], "unsupported model"),
        (ClipScoreBackend.load, tmp_path / "absent", "does not exist"),
        (lambda p: NearestChoice(p).embed(["x"]), tmp_path / "absent", "does not exist"),
    ]
    for load, path, msg in cases:
        with pytest.raises(UserError, match=msg) as err:
            load(path)
        assert str(path) in str(err.value) and "\n" not in str(err.value)
