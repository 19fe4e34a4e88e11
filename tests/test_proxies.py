"""Alignment proxies on really trained micro trials (a few steps, 16 px / 16x16 latents): the built-in world's
TIFA, validation loss from a live trainer, and the real-data proxies (TIFA with a tiny BLIP, CLIPScore with a tiny
CLIP) on a latent trial of tiny prepared data. Checks contracts (ranges, determinism, FLOPs bounds), not accuracy."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from tiny_models import prepare_latents, tiny_bert, tiny_blip_vqa, tiny_clip, tiny_image_folder, tiny_vae

from tests.helpers import tifa_question
from unetnas.errors import UserError
from unetnas.io import load_space
from unetnas.proxies import PROXIES, ClipScore, Proxy, Subject, ValLoss, VqaTifa, WorldTifa
from unetnas.train.recipe import load_recipe
from unetnas.train.source import ShardSource
from unetnas.train.trainer import Trainer
from unetnas.train.trial import run_trial
from unetnas.world.questions import CATEGORIES

DATA = Path(__file__).parent / "data"
RECIPE = load_recipe(DATA / "smoke.yaml")  # 4 DDIM steps, cfg 2, batch 8, 128 scenes
WORLD_SPEC = next(s for s in load_space(DATA / "micro.yaml").enumerate() if s.attention[-1] == "cross")
# the same UNet on the tiny VAE's latents (4 x 16 x 16 from 32 px) and the tiny BERT's states (32-d, 16 tokens)
REAL_SPEC = WORLD_SPEC.with_(latent_channels=4, cross_attention_dim=32, vae_downsample=2, text_len=16)
REAL_RECIPE = RECIPE.model_copy(update={"val_samples": 2})  # 16 samples hold out 2


def _q(*args) -> dict:  # noqa: ANN002 (tifa_question's)
    return {**tifa_question(*args), "question_type": args[-1]}


QUESTIONS = [  # a 2-prompt TIFA v1.0 file (one numeric id and an extra key, as the official file may have)
    _q("coco_1", "a red circle", "is there a circle?", ["yes", "no"], "yes", "object"),
    _q("coco_1", "a red circle", "what color is the circle?", ["red", "blue", "green"], "red", "color"),
    _q(7, "two blue squares", "are there squares?", ["yes", "no"], "yes", "object"),
    _q(7, "two blue squares", "how many squares are there?", ["1", "2", "3"], "2", "counting"),
]


@pytest.fixture(scope="module")
def real(tmp_path_factory) -> dict:
    """Tiny prepared data (16 images at 32 px through a tiny VAE + BERT), a latent micro UNet trained 3 steps on it,
    a tiny BLIP and CLIP, and a TIFA v1.0 file of 2 prompts."""
    root = tmp_path_factory.mktemp("real")
    tiny_image_folder(root / "imgs", n=16, size=(32, 32))
    f = {
        "root": root,
        "vae": tiny_vae(root / "vae"),
        "bert": tiny_bert(root / "bert"),
        "blip": tiny_blip_vqa(root / "blip"),
        "clip": tiny_clip(root / "clip"),
    }
    f["data"], f["trial"] = prepare_latents(root, f["vae"], f["bert"]), root / "trial"
    run_trial(REAL_SPEC, REAL_RECIPE, ShardSource(f["data"]), f["trial"], steps=3)
    f["questions"] = root / "tifa_v1.0_question_answers.json"
    f["questions"].write_text(json.dumps(QUESTIONS))
    return f


def test_proxy_table() -> None:
    assert PROXIES == {"val_loss": ValLoss, "tifa": WorldTifa, "vqa_tifa": VqaTifa, "clipscore": ClipScore}
    for key, cls in PROXIES.items():
        assert cls.name == key and cls.direction in ("maximize", "minimize")
        assert cls.score is not Proxy.score and cls.flops is not Proxy.flops


def test_world_tifa_scores_deterministically_within_its_flops(world) -> None:
    subject = Subject.from_checkpoint(str(world["trial"]))
    proxy = WorldTifa(prompts=4, images_per_prompt=1, steps=3)
    bound = proxy.flops(subject)
    first = proxy.score(subject)
    assert first.flops == bound > 0  # a fresh proxy spends exactly its bound (the prompt states included)
    d = first.details
    assert -1.0 <= first.value <= 1.0 and len(d["per_prompt_alignment"]) == 4 and d["images"].shape == (4, 16, 16, 3)
    assert first.value == d["alignment"] == pytest.approx(np.mean(d["per_prompt_alignment"]), abs=1e-5)  # corrected
    assert d["tifa"] == pytest.approx(
        np.mean(d["per_prompt_tifa"]), abs=1e-5
    )  # raw TIFA: per prompt first, then over prompts
    assert d["alignment"] == pytest.approx(d["tifa"] - d["blind_tifa"])
    assert d["tifa_se"] >= 0 and d["alignment_se"] >= 0
    assert set(d["by_category"]) <= set(CATEGORIES) and all(0 <= v <= 1 for v in d["by_category"].values())
    again = proxy.score(subject)
    assert again.value == first.value and again.details["per_prompt_alignment"] == d["per_prompt_alignment"]
    assert np.array_equal(again.details["images"], d["images"])
    assert again.flops < first.flops and again.flops <= proxy.flops(subject)  # prompt states cached


def test_val_loss_of_a_live_trainer(world, tmp_path) -> None:
    trainer = Trainer(WORLD_SPEC, RECIPE, world["source"], tmp_path / "live")
    trainer.train_to(1)
    subject = Subject.from_trainer(trainer)
    assert subject.text_encoder_path is None and subject.unet is trainer.engine.module
    res = ValLoss().score(subject)
    assert res.name == "val_loss" and math.isfinite(res.value) and res.value > 0
    assert res.flops == ValLoss().flops(subject) > 0
    assert ValLoss().score(subject).value == res.value  # fixed batch, timesteps and noise
    with pytest.raises(ValueError, match="live trainer"):
        ValLoss().score(Subject.from_checkpoint(str(world["trial"])))


def test_vqa_tifa_on_a_latent_trial(real) -> None:
    subject = Subject.from_checkpoint(str(real["trial"]))
    assert subject.spec.vae_downsample == 2 and subject.text_encoder_path == str(real["bert"].resolve())
    proxy = VqaTifa(real["questions"], real["blip"], vae=real["vae"], images_per_prompt=2, steps=3)
    assert proxy.prompt_ids == ["coco_1", "7"] and proxy.captions == ["a red circle", "two blue squares"]
    bound = proxy.flops(subject)
    res = proxy.score(subject)
    d = res.details
    assert -1.0 <= res.value <= 1.0 and math.isfinite(res.value)
    assert len(d["per_prompt"]) == 2 and d["prompt_ids"] == ["coco_1", "7"] and d["n_questions"] == 4
    # text-blind-corrected as the built-in TIFA: own questions minus the other prompt's, SEs over prompts
    assert res.value == d["alignment"] == pytest.approx(np.mean(d["per_prompt_alignment"]), abs=1e-5)
    assert d["tifa"] == pytest.approx(np.mean(d["per_prompt"])) and d["alignment"] == pytest.approx(
        d["tifa"] - d["blind_tifa"]
    )
    assert d["alignment_se"] >= 0 and d["tifa_se"] >= 0 and set(d["alignment_by_category"]) == set(d["by_category"])
    assert d["pairs"] == 2 * (4 + 4)  # 2 images x (own 2 + foil 2 questions) per prompt: foils cost VQA passes
    assert set(d["by_category"]) == {"object", "color", "counting"}
    assert d["images"].shape == (4, 32, 32, 3) and d["images"].dtype == np.uint8  # decoded: 16 latent -> 32 px
    parts = d["flops_parts"]
    assert all(parts[k] > 0 for k in ("sampling", "decode", "judge", "text", "probes"))
    assert 0 < res.flops <= bound and res.flops == pytest.approx(sum(parts.values()))
    again = proxy.score(subject)
    assert again.value == res.value and np.array_equal(again.details["images"], d["images"])
    assert again.flops < res.flops and again.flops <= proxy.flops(subject)  # states cached, probe billed once
    assert again.details["flops_parts"]["decode"] == parts["decode"]  # shape-determined, as the bound assumes
    first1 = VqaTifa(real["questions"], real["blip"], vae=real["vae"], images_per_prompt=1, steps=2, prompts=1, foils=0)
    assert first1.prompt_ids == ["coco_1"] and len(first1.items) == 2
    raw = first1.score(subject)  # foils=0: uncorrected raw TIFA, within the bound
    assert "alignment" not in raw.details and raw.value == raw.details["tifa"] and raw.details["pairs"] == 2


def test_clipscore_on_a_latent_trial(real) -> None:
    subject = Subject.from_checkpoint(str(real["trial"]))
    proxy = ClipScore(
        real["clip"], ["a red circle", "two blue squares on the left"], vae=real["vae"], images_per_prompt=2, steps=3
    )
    bound = proxy.flops(subject)
    res = proxy.score(subject)
    d = res.details
    assert len(d["per_image"]) == 4 and len(d["per_prompt"]) == 2 and d["pairs"] == 8  # own + 1 foil caption each
    assert all(math.isfinite(s) and 0.0 <= s <= 100.0 for s in d["per_image"])
    assert d["clipscore"] == pytest.approx(np.mean(d["per_image"])) and 0 < res.flops <= bound
    # mismatched-caption control: CLIPScore(own) - CLIPScore(foil captions), SE over prompts
    assert res.value == d["alignment"] == pytest.approx(d["clipscore"] - d["blind_clipscore"])
    assert res.value == pytest.approx(np.mean(d["per_prompt_alignment"]), abs=1e-5) and d["alignment_se"] >= 0
    from_file = ClipScore(real["clip"], real["questions"], vae=real["vae"], images_per_prompt=1, steps=2)
    assert from_file.captions == ["a red circle", "two blue squares"]  # a TIFA file's captions, each once
    assert from_file.score(subject).flops <= bound


def test_real_proxies_on_a_live_shard_trainer(real, tmp_path) -> None:
    """A live trainer on shards: the proxy finds the data's text encoder (BERT, not the packaged MiniLM)."""
    trainer = Trainer(REAL_SPEC, REAL_RECIPE, ShardSource(real["data"]), tmp_path / "live")
    trainer.train_to(1)
    subject = Subject.from_trainer(trainer)
    proxy = ClipScore(real["clip"], ["a red circle"], vae=real["vae"], images_per_prompt=1, steps=2, foils=0)
    bound = proxy.flops(subject)
    res = proxy.score(subject)
    assert math.isfinite(res.value) and res.flops <= bound
    assert subject.unet.training  # left as it was found
    assert math.isfinite(ValLoss().score(subject).value)


def test_real_proxy_bad_input(real, world, tmp_path) -> None:
    latent = Subject.from_checkpoint(str(real["trial"]))
    pixel = Subject.from_checkpoint(str(world["trial"]))
    no_vae = ClipScore(real["clip"], ["a red circle", "a dog"], images_per_prompt=1, steps=2)
    with pytest.raises(UserError, match="diffuses VAE latents"):
        no_vae.flops(latent)
    with pytest.raises(UserError, match="trained on pixels and needs no VAE"):
        ClipScore(real["clip"], ["a red circle"], vae=real["vae"], foils=0).score(pixel)
    other = tiny_vae(tmp_path / "vae3", latent_channels=3)
    with pytest.raises(UserError, match="has 3 latent channels .* not the VAE of its data"):
        ClipScore(real["clip"], ["a red circle"], vae=other, foils=0).flops(latent)
    cases = [
        (lambda: VqaTifa(tmp_path / "absent.json", real["blip"]), "absent.json: file not found"),
        (lambda: VqaTifa(real["questions"], tmp_path / "nope"), "nope: does not exist"),
        (lambda: VqaTifa(real["questions"], real["clip"]), "unsupported model"),
        (lambda: VqaTifa(real["questions"], real["blip"], vae=tmp_path / "nope"), "nope: does not exist"),
        (lambda: VqaTifa(real["questions"], real["blip"], prompts=0), "prompts=0: must be a positive integer"),
        (lambda: ClipScore(real["clip"], []), r"prompts=\[\]: must be a non-empty list"),
        (lambda: ClipScore(real["clip"], tmp_path / "absent.txt"), "absent.txt: is not a readable prompt file"),
        (lambda: ClipScore(real["clip"], ["x"], images_per_prompt=0), "images_per_prompt=0"),
        (lambda: ClipScore(real["clip"], ["x"]), "prompts=1: the text-blind correction needs at least 2 prompts"),
        (lambda: ClipScore(real["clip"], ["x", "y"], foils=-1), "foils=-1: must be a non-negative integer"),
        (lambda: VqaTifa(real["questions"], real["blip"], prompts=1), "needs at least 2 prompts"),
    ]
    for make, msg in cases:
        with pytest.raises(UserError, match=msg) as err:
            make()
        assert "\n" not in str(err.value)


def test_cli_scores_a_latent_trial(real, run_cli) -> None:
    base = ["proxy", "tifa", "--checkpoint", str(real["trial"]), "--steps", "2", "--images", "1"]
    real_args = ["--questions", str(real["questions"]), "--vqa", str(real["blip"])]
    code, out, err = run_cli([*base, *real_args, "--vae", str(real["vae"]), "--json"])
    assert code == 0, err
    res = json.loads(out)
    assert {"score", "by_category", "eval_flops", "per_prompt"} <= res.keys() and res["prompt_ids"] == ["coco_1", "7"]
    assert 0 <= res["score"] <= 1 and res["eval_flops"] > 0 and len(res["per_prompt"]) == 2
    for argv, msg in [
        (base, "trained on latents; score it with --questions"),
        ([*base, *real_args], "pass --vae"),
        ([*base, *real_args, "--vae", str(real["root"] / "nope")], "nope: does not exist"),
    ]:
        code, out, err = run_cli(argv)
        assert code == 2 and "Traceback" not in out + err, err
        assert len(err.strip().splitlines()) == 1 and err.startswith("error:") and msg in err, err
