"""End to end on real (tiny, random-initialised) models saved to local folders: images -> `unetnas data prepare`
(a diffusers AutoencoderKL and a BERT text encoder) -> `unetnas search` on the prepared latents, alignment scored
by `--proxy vqa-tifa` (a BLIP VQA model on a TIFA v1.0 file) and by `--proxy clipscore` (a CLIP model) -> `unetnas
export` -> `UNet2DConditionModel.from_pretrained`. Checks plumbing and accounting, not accuracy: every scored rung
names its proxy and carries the text-blind-corrected alignment with its standard error, the ledger's evaluation
FLOPs equal what the records (validation loss + the proxy's own accounting) say was spent, and a proxy that cannot
run stops the search before anything is stored."""

from __future__ import annotations

import json
import math
from pathlib import Path

import optuna
import pytest
from tiny_models import LATENT_BUDGET, tiny_blip_vqa, tiny_clip, tiny_latent_search

from tests.helpers import cli_args, tifa_question
from unetnas.export import MARKER, folder_name
from unetnas.search import study as S
from unetnas.search.ledger import Ledger
from unetnas.search.plan import val_flops
from unetnas.search.storage import engine_for
from unetnas.train.recipe import load_recipe

BUDGET = LATENT_BUDGET


QUESTIONS = [
    tifa_question("p1", "a red circle", "is there a circle?", ["yes", "no"], "yes", "object"),
    tifa_question("p1", "a red circle", "what color is the circle?", ["red", "blue", "green"], "red", "color"),
    tifa_question("p2", "a blue square", "is there a square?", ["yes", "no"], "yes", "object"),
    tifa_question("p2", "a blue square", "what color is the square?", ["red", "blue", "green"], "blue", "color"),
]


@pytest.fixture(scope="module")
def e2e(tmp_path_factory, run_cli) -> dict:
    """Images, tiny models in folders, `data prepare` through the CLI, a question file, the space and recipe."""
    root = tmp_path_factory.mktemp("e2e")
    f = tiny_latent_search(root, prepare_data=False)
    f.update(
        blip=tiny_blip_vqa(root / "blip"),
        clip=tiny_clip(root / "clip"),
        questions=root / "tifa_v1.0_question_answers.json",
        db=root / "runs" / "study.db",
    )
    code, _, err = run_cli(
        [
            "data",
            "prepare",
            "--out",
            str(f["data"]),
            "--vae",
            str(f["vae"]),
            "--images",
            str(root / "imgs"),
            "--text-encoder",
            str(f["bert"]),
            "--resolution",
            "32",
            "--shard-size",
            "16",
            "--batch-size",
            "16",
            "--no-progress",
        ]
    )
    assert code == 0, err
    f["db"].parent.mkdir()
    f["questions"].write_text(json.dumps(QUESTIONS))
    return f


def search_args(f: dict, study: str, *proxy: str, db: Path | None = None) -> list[str]:
    storage = f"sqlite:///{db or f['db']}"
    opts = cli_args(
        "search", budget=BUDGET, data=f["data"], space=f["space"], recipe=f["recipe"], storage=storage, study=study
    )
    return [*opts, "--json", *proxy]


def _search(f: dict, run_cli, study: str, *proxy: str) -> dict:
    code, out, err = run_cli(search_args(f, study, *proxy))
    assert code == 0, err
    assert "Traceback" not in err
    return json.loads(out)


def _check_records(f: dict, study_name: str, proxy: str) -> None:
    """Every rung record names the proxy that scored it; the ledger's eval FLOPs equal the records' (validation
    loss + the proxy's own accounting), trial by trial; scored trials hold samples.png."""
    study = optuna.load_study(study_name=study_name, storage=f"sqlite:///{f['db']}")
    recipe = load_recipe(f["recipe"])
    led = Ledger(engine_for(f"sqlite:///{f['db']}"), study_name).summary()
    assert led["reserved"] == 0 and 0 < led["spent"] <= float(BUDGET)
    scored, eval_total = 0, 0.0
    for t in study.trials:
        recs = [v for k, v in t.user_attrs.items() if k.startswith("rung_")]
        before = 0.0  # a second chance holds its origin's records (the origin's spend) up to where it continued
        if "continues" in t.user_attrs:
            origin = study.trials[t.user_attrs["continues"]].user_attrs
            recs = [r for r in recs if r["rung"] > origin["rung"]]
            before = origin[f"rung_{origin['rung']}"]["train_flops"]
        for rec in recs:
            eval_total += rec["eval_flops"]
            if rec.get("proxy") is None:
                assert rec["alignment"] is None  # not scored at this rung: validation loss only
                continue
            scored += 1
            assert rec["proxy"] == proxy  # never relabelled as the world's TIFA
            assert math.isfinite(rec["alignment"]) and rec["alignment_se"] is not None and rec["alignment_se"] >= 0
            assert rec["proxy_flops"] > 0  # eval = the fixed validation batch + what the proxy itself accounted
            assert rec["eval_flops"] == pytest.approx(val_flops(S.spec_of(t), recipe) + rec["proxy_flops"], rel=1e-12)
            if proxy == "clipscore":
                assert rec["tifa"] is None and 0 <= rec["clipscore"] <= 100 and rec["clipscore_se"] >= 0
            else:
                assert 0 <= rec["tifa"] <= 1 and rec["blind_tifa"] is not None
            assert (Path(t.user_attrs["dir"]) / "samples.png").is_file()
        spent = led["by_trial"].get(str(t.number), led["by_trial"].get(t.number, 0.0))
        if recs:  # the trial's spend: training to its last rung (cumulative) + every rung's evaluation
            last = max(recs, key=lambda r: r["rung"])
            assert spent == pytest.approx(last["train_flops"] - before + sum(r["eval_flops"] for r in recs), rel=1e-9)
        assert spent == pytest.approx(t.user_attrs["flops_spent"], rel=1e-9)
    assert scored >= 1
    assert led["by_kind"]["eval"] == pytest.approx(eval_total, rel=1e-9)
    assert study.metric_names == ["alignment", "gmacs"]  # optuna-dashboard shows the objectives' names


def test_vqa_tifa_search_then_export_then_from_pretrained(e2e, run_cli, tmp_path) -> None:
    from diffusers import UNet2DConditionModel

    s = _search(
        e2e,
        run_cli,
        "vqa",
        "--proxy",
        "vqa-tifa",
        "--questions",
        str(e2e["questions"]),
        "--vqa",
        str(e2e["blip"]),
        "--vae",
        str(e2e["vae"]),
    )
    assert s["proxy"] == "vqa_tifa" and s["n_complete"] >= 1 and s["pareto"]
    _check_records(e2e, "vqa", "vqa_tifa")
    out = tmp_path / "exported"
    code, _, err = run_cli(["export", "--study", "vqa", "--storage", f"sqlite:///{e2e['db']}", "--out", str(out)])
    assert code == 0, err
    folders = sorted(d for d in out.iterdir() if d.name != MARKER)
    assert [d.name for d in folders] == sorted(folder_name("vqa", row["trial"]) for row in s["pareto"])
    for d in folders:
        unet, info = UNet2DConditionModel.from_pretrained(d, output_loading_info=True)
        assert not any(info.values()), info
        assert unet.config.in_channels == 4 and unet.config.cross_attention_dim == 32


def test_clipscore_search(e2e, run_cli) -> None:
    s = _search(
        e2e,
        run_cli,
        "clip",
        "--proxy",
        "clipscore",
        "--questions",
        str(e2e["questions"]),
        "--clip",
        str(e2e["clip"]),
        "--vae",
        str(e2e["vae"]),
    )
    assert s["proxy"] == "clipscore" and s["n_complete"] >= 1
    _check_records(e2e, "clip", "clipscore")


@pytest.mark.parametrize(
    ("flags", "match"),
    [
        (["--proxy", "vqa-tifa", "--vqa", "BLIP", "--vae", "VAE"], "--questions: is required by proxy 'vqa_tifa'"),
        (["--proxy", "vqa-tifa", "--questions", "Q", "--vae", "VAE"], "--vqa: is required by proxy 'vqa_tifa'"),
        (["--proxy", "clipscore", "--questions", "Q", "--vae", "VAE"], "--clip: is required by proxy 'clipscore'"),
        (["--proxy", "vqa-tifa", "--questions", "Q", "--vqa", "NOPE", "--vae", "VAE"], "nope: does not exist"),
        (["--proxy", "clipscore", "--questions", "Q", "--clip", "CLIP"], "--vae: the space diffuses VAE latents"),
        (["--proxy", "vqa-tifa", "--questions", "PROMPTS", "--vqa", "BLIP", "--vae", "VAE"], "holds prompts, not TIFA"),
        (["--proxy", "vqa-tifa", "--questions", "ONE", "--vqa", "BLIP", "--vae", "VAE"], "needs at least 2 prompts"),
        (["--proxy", "tifa"], "--proxy='tifa': the built-in TIFA proxy reads the built-in world"),
        (["--proxy", "clip-score"], "--proxy='clip-score': must be one of"),
        (["--proxy", "val-loss", "--clip", "CLIP"], "is not used by proxy 'val_loss'"),
    ],
)
def test_a_proxy_that_cannot_run_stops_before_anything_is_stored(
    e2e, run_cli, assert_one_line_error, flags, match
) -> None:
    root = e2e["root"]
    (root / "prompts.txt").write_text("a red circle\na blue square\n")
    (root / "one.json").write_text(json.dumps(QUESTIONS[:2]))
    paths = {
        "Q": e2e["questions"],
        "BLIP": e2e["blip"],
        "VAE": e2e["vae"],
        "CLIP": e2e["clip"],
        "NOPE": root / "nope",
        "PROMPTS": root / "prompts.txt",
        "ONE": root / "one.json",
    }
    db = root / "bad" / "s.db"
    code, out, err = run_cli(search_args(e2e, "bad", *(str(paths.get(x, x)) for x in flags), db=db))
    assert_one_line_error(code, out, err, match)
    assert not db.parent.exists()  # nothing stored, nothing spent


def test_the_recipe_can_choose_the_proxy_and_a_study_keeps_its_proxy(e2e, run_cli, assert_one_line_error) -> None:
    """`search.proxy` in the recipe (paths relative to the recipe file) plans the same as the flags; a study made
    with one proxy refuses to resume with another."""
    import yaml

    root = e2e["root"]
    recipe = yaml.safe_load(e2e["recipe"].read_text())
    recipe["search"]["proxy"] = {"name": "vqa_tifa", "questions": e2e["questions"].name, "vqa": "blip", "vae": "vae"}
    (root / "with-proxy.yaml").write_text(yaml.safe_dump(recipe))
    dry = ["--dry-run", "--gpus", "1", "--tflops-per-gpu", "1"]
    args = search_args(e2e, "dry", *dry)
    args[args.index("--recipe") + 1] = str(root / "with-proxy.yaml")
    code, out, err = run_cli(args)
    assert code == 0, err
    by_recipe = json.loads(out)
    code, out, err = run_cli(
        search_args(
            e2e,
            "dry",
            *dry,
            "--proxy",
            "vqa-tifa",
            "--questions",
            str(e2e["questions"]),
            "--vqa",
            str(e2e["blip"]),
            "--vae",
            str(e2e["vae"]),
        )
    )
    assert code == 0, err
    by_flags = json.loads(out)
    assert by_recipe["proxy"] == by_flags["proxy"] == "vqa_tifa"
    assert by_recipe["plan"]["tifa_rungs"] == by_flags["plan"]["tifa_rungs"] == [1]
    assert by_recipe["plan"]["eval_flops"] == by_flags["plan"]["eval_flops"]
    assert by_flags["plan"]["eval_flops"][1] > by_flags["plan"]["eval_flops"][0]  # the proxy's cost is planned
    code, out, err = run_cli(search_args(e2e, "dry", *dry, "--proxy", "val-loss"))
    assert code == 0 and json.loads(out)["plan"]["tifa_rungs"] == [], err
    if e2e["db"].exists():  # after the searches above: study "vqa" keeps its proxy
        assert_one_line_error(
            *run_cli(
                search_args(
                    e2e,
                    "vqa",
                    "--proxy",
                    "clipscore",
                    "--questions",
                    str(e2e["questions"]),
                    "--clip",
                    str(e2e["clip"]),
                    "--vae",
                    str(e2e["vae"]),
                )
            ),
            "was made with other settings (",
            "--proxy ",
        )
