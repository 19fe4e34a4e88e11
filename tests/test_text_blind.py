"""The control that every alignment claim must survive: a model that cannot read the prompt scores ~0.

Two members of the CPU world (16 px, the default recipe) are trained to the same training FLOPs: one reads the
prompt through a cross-attention mid block, one has no cross-attention anywhere. At that horizon the first has
learned colours; the corrected alignment separates them by more than 3 standard errors, and the text-blind model's
corrected alignment is within 2 standard errors of 0 although its raw TIFA is well above 0.

This trains two real UNets (~1.6e12 FLOPs each, about two minutes on one core); it is the suite's longest test.
"""

from __future__ import annotations

import pytest

from unetnas.proxies import Subject, WorldTifa
from unetnas.proxies.alignment import paired_difference
from unetnas.spec import UNetSpec
from unetnas.train.recipe import load_recipe
from unetnas.train.source import WorldSource
from unetnas.train.trainer import Trainer

BASE = dict(
    cross_attention_dim=384,
    text_len=32,
    latent_channels=3,
    latent_size=16,
    vae_downsample=1,
    head_dim=8,
    norm_num_groups=8,
    base_channels=16,
    channel_mult=(1, 2),
    layers_per_block=(1, 1),
    attention=("none", "none"),
    transformer_depth=(0, 0),
)
READS = UNetSpec.model_validate({**BASE, "mid_attention": "cross", "mid_depth": 1, "name": "reads"})
BLIND = UNetSpec.model_validate({**BASE, "mid_attention": "none", "mid_depth": 0, "name": "blind"})
HORIZON = 1.6e12  # training FLOPs for both (the reading one takes ~470 steps of batch 32)


@pytest.fixture(scope="module")
def scores(tmp_path_factory):
    recipe = load_recipe()
    source = WorldSource(pool=recipe.world_pool, seed=0, resolution=16, text_len=32)
    proxy = WorldTifa(prompts=128, images_per_prompt=1)
    out = {}
    for spec in (READS, BLIND):
        trainer = Trainer(spec, recipe, source, tmp_path_factory.mktemp(spec.name), seed=0)
        trainer.train_to(trainer.steps_for(HORIZON))
        assert trainer.train_flops == pytest.approx(HORIZON, rel=0.01)
        out[spec.name] = proxy.score(Subject.from_trainer(trainer)).details
    return out


def test_text_blind_model_scores_zero_after_correction(scores) -> None:
    blind = scores["blind"]
    assert abs(blind["alignment"]) <= 2 * blind["alignment_se"], blind["alignment"]
    assert blind["tifa"] > 0.15  # raw TIFA rewards what a blind model can guess: the shortcut the correction removes


def test_reading_model_beats_the_control_by_three_standard_errors(scores) -> None:
    reads, blind = scores["reads"], scores["blind"]
    assert reads["alignment_by_category"]["color"] > 0.15  # it has learned colours
    diff, se = paired_difference(reads["per_prompt_alignment"], blind["per_prompt_alignment"])  # same prompts, noise
    assert diff > 3 * se, (diff, se)
    assert reads["alignment"] > 3 * reads["alignment_se"]
