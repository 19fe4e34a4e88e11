"""`unetnas proxy selftest` and `unetnas proxy tifa` end to end (in-process): JSON keys and thresholds, a micro
trial trained 3 steps on the built-in world, and bad input (one `error:` line, exit code 2, no traceback)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

QUESTION = {
    "id": "p1",
    "caption": "a red circle",
    "question": "is there a circle?",
    "choices": ["yes", "no"],
    "answer": "yes",
    "element_type": "object",
    "element": "circle",
}


@pytest.fixture(scope="module")
def files(world, tmp_path_factory) -> dict[str, Path]:
    """A micro world trial (conftest's, 3 steps at 16 px), a valid and an invalid TIFA file, and a folder that is
    no trial."""
    root = tmp_path_factory.mktemp("proxy-cli")
    f = {
        "root": root,
        "trial": world["trial"],
        "good": root / "good.json",
        "bad": root / "bad.json",
        "not_json": root / "not.json",
        "not_trial": root / "not-a-trial",
    }
    f["good"].write_text(
        json.dumps([QUESTION, {**QUESTION, "id": "p2", "caption": "a dog", "question": "is there a dog?"}])
    )
    f["one"] = root / "one.json"
    f["one"].write_text(json.dumps([QUESTION]))
    f["bad"].write_text(json.dumps([QUESTION, {**QUESTION, "choices": "yes"}]))
    f["not_json"].write_text("{not json")
    f["not_trial"].mkdir()
    (f["not_trial"] / "notes.txt").write_text("hello")
    return f


def _json(stdout: str) -> dict:
    lines = [ln for ln in stdout.splitlines() if ln.startswith("{")]
    assert len(lines) == 1, stdout
    return json.loads(lines[0])


def test_selftest_json(run_cli) -> None:
    code, out, err = run_cli(["proxy", "selftest", "--prompts", "120", "--json"])
    assert code == 0, err
    res = _json(out)
    assert {"clean", "renderer_score", "noise_score", "chance"} <= res.keys()
    assert min(res["clean"].values()) >= 0.98 and res["renderer_score"] >= 0.98
    assert res["noise_score"] <= res["chance_score"] + 0.05 < res["renderer_score"]  # noise: at or below chance
    assert 0.25 < res["chance"] < 0.5


def test_tifa_json(files, run_cli) -> None:
    argv = ["proxy", "tifa", "--checkpoint", str(files["trial"]), "--prompts", "4", "--steps", "3", "--json"]
    code, out, err = run_cli(argv)
    assert code == 0, err
    res = _json(out)
    assert {"score", "by_category", "eval_flops"} <= res.keys()
    assert -1 <= res["score"] <= 1 and res["eval_flops"] > 0 and len(res["per_prompt"]) == res["prompts"] == 4
    assert res["score"] == res["alignment"] and 0 <= res["tifa"] <= 1 and res["alignment_se"] >= 0
    assert run_cli(argv)[1] == out  # fixed seeds: the same score again
    code, out, err = run_cli(argv[:-1] + ["--images", "1"])  # the table
    assert code == 0 and "TIFA-style score" in out and "evaluation FLOPs" in out, err


def test_tifa_with_a_vqa_judge_reads_the_question_file_first(files, run_cli, tmp_path) -> None:
    """A pixel trial may be judged by a VQA model too (no --vae); the question file is checked before any model."""
    from tiny_models import tiny_vilt_vqa

    vilt = tiny_vilt_vqa(tmp_path / "vilt")
    argv = [
        "proxy",
        "tifa",
        "--checkpoint",
        str(files["trial"]),
        "--steps",
        "2",
        "--images",
        "1",
        "--json",
        "--questions",
        str(files["good"]),
        "--vqa",
        str(vilt),
    ]
    code, out, err = run_cli(argv)
    assert code == 0, err
    res = _json(out)
    assert res["prompt_ids"] == ["p1", "p2"] and res["by_category"].keys() == {"object"} and res["eval_flops"] > 0
    assert res["proxy"] == "vqa_tifa" and res["score"] == res["alignment"] and res["alignment_se"] >= 0
    one = ["--questions", str(files["one"])]
    code, out, err = run_cli([*argv[:-4], *one, "--vqa", str(vilt)])
    assert code == 2 and "prompts=1: the text-blind correction needs at least 2 prompts" in err, err
    code, out, err = run_cli([*argv[:-4], *one, "--vqa", str(vilt), "--foils", "0"])
    assert code == 0 and "alignment" not in _json(out), err  # uncorrected raw TIFA, on request


@pytest.mark.parametrize(
    ("case", "match"),
    [
        ("not_trial", "not a trial checkpoint"),
        ("missing_checkpoint", "is not a directory; expected a trial folder"),
        ("bad_schema", "bad.json: 1.choices='yes': Input should be a valid list"),
        ("not_json", "not.json: is not valid JSON"),
        ("missing_questions", "absent.json: file not found"),
        ("missing_vqa", "nope: does not exist; the VQA model must be a local directory"),
        ("questions_without_vqa", "--vqa: give --questions and --vqa together"),
        ("pixel_trial_with_vae", "is trained on pixels; it needs no --vae"),
    ],
)
def test_bad_input_is_one_line_exit_2(files, run_cli, case: str, match: str) -> None:
    trial, root = str(files["trial"]), files["root"]
    argv = {
        "not_trial": ["--checkpoint", str(files["not_trial"])],
        "missing_checkpoint": ["--checkpoint", str(root / "absent")],
        "bad_schema": ["--checkpoint", trial, "--questions", str(files["bad"]), "--vqa", str(root / "nope")],
        "not_json": ["--checkpoint", trial, "--questions", str(files["not_json"]), "--vqa", str(root / "nope")],
        "missing_questions": ["--checkpoint", trial, "--questions", str(root / "absent.json"), "--vqa", "x"],
        "missing_vqa": ["--checkpoint", trial, "--questions", str(files["good"]), "--vqa", str(root / "nope")],
        "questions_without_vqa": ["--checkpoint", trial, "--questions", str(files["good"])],
        "pixel_trial_with_vae": ["--checkpoint", trial, "--vae", str(root / "vae")],
    }[case]
    code, out, err = run_cli(["proxy", "tifa", *argv, "--steps", "2", "--json"])
    assert code == 2, (code, out, err)
    assert "Traceback" not in out + err and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and match in lines[0], lines
