"""The builder: spec -> diffusers UNet2DConditionModel, and diffusers config.json both ways."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from diffusers import UNet2DConditionModel

import unetnas
from unetnas.build import (
    build_unet,
    example_inputs,
    from_diffusers_config,
    save_diffusers_config,
    to_diffusers_config,
    unet_kwargs,
)
from unetnas.cost import cost
from unetnas.io import load_space
from unetnas.presets import PRESETS


def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", list(PRESETS))
def test_diffusers_config_builds_the_same_model(name):
    spec = PRESETS[name]
    cfg = to_diffusers_config(spec)
    cfg = json.loads(json.dumps(cfg))  # what config.json holds
    with torch.device("meta"):
        model = UNet2DConditionModel.from_config(cfg)
    assert _params(model) == cost(spec).params
    # diffusers keeps the config it was given: the file is a faithful description of the model
    for key, value in cfg.items():
        if not key.startswith("_"):
            assert json.loads(json.dumps(model.config[key])) == value, key


@pytest.mark.parametrize("name", list(PRESETS))
def test_from_diffusers_config_round_trips_every_preset(name):
    spec = PRESETS[name]
    back = from_diffusers_config(to_diffusers_config(spec), text_len=spec.text_len, vae_downsample=spec.vae_downsample)
    assert back.model_dump(exclude={"name"}) == spec.model_dump(exclude={"name"})


@pytest.mark.parametrize("path", ["space/paper.yaml", "space/tiny.yaml"])
def test_from_diffusers_config_round_trips_space_members(path):
    space = load_space(path)
    members = list(space.enumerate()) if space.size() <= 100 else space.sample(100, seed=11)
    for spec in members:
        cfg = to_diffusers_config(spec)
        back = from_diffusers_config(cfg, text_len=spec.text_len, vae_downsample=spec.vae_downsample)
        assert to_diffusers_config(back) == cfg
        assert space.contains(back)
        assert back.model_dump(exclude={"name"}) == spec.model_dump(exclude={"name"})


def test_from_diffusers_config_reads_diffusers_own_sd21_config():
    # the relevant keys of stabilityai/stable-diffusion-2-1/unet/config.json, as published
    cfg = {
        "_class_name": "UNet2DConditionModel",
        "act_fn": "silu",
        "attention_head_dim": [5, 10, 20, 20],
        "block_out_channels": [320, 640, 1280, 1280],
        "center_input_sample": False,
        "cross_attention_dim": 1024,
        "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
        "downsample_padding": 1,
        "dual_cross_attention": False,
        "flip_sin_to_cos": True,
        "freq_shift": 0,
        "in_channels": 4,
        "layers_per_block": 2,
        "mid_block_scale_factor": 1,
        "norm_eps": 1e-05,
        "norm_num_groups": 32,
        "out_channels": 4,
        "sample_size": 96,
        "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
        "use_linear_projection": True,
    }
    spec = from_diffusers_config(cfg)
    assert spec.model_dump(exclude={"name"}) == PRESETS["sd2.1-original"].model_dump(exclude={"name"})
    with torch.device("meta"):
        assert _params(UNet2DConditionModel.from_config(cfg)) == 865_910_724 == cost(spec).params


def test_tiny_preset_runs_forward_on_cpu_with_real_weights():
    spec = PRESETS["tiny"]
    model = build_unet(spec, seed=0).eval()
    assert next(model.parameters()).device.type == "cpu"
    assert _params(model) == cost(spec).params
    inputs = example_inputs(spec, batch=2)
    inputs["sample"] = torch.randn_like(inputs["sample"])
    inputs["encoder_hidden_states"] = torch.randn_like(inputs["encoder_hidden_states"])
    inputs["timestep"] = torch.tensor([10, 500])
    with torch.no_grad():
        out = model(**inputs).sample
    assert out.shape == (2, spec.latent_channels, spec.latent_size, spec.latent_size)
    assert torch.isfinite(out).all() and out.abs().sum() > 0
    # the text reaches the output through cross-attention
    inputs["encoder_hidden_states"] = torch.randn_like(inputs["encoder_hidden_states"])
    with torch.no_grad():
        assert not torch.allclose(model(**inputs).sample, out)


def test_build_seed_is_deterministic():
    a = build_unet(PRESETS["tiny"], seed=3).state_dict()
    b = build_unet(PRESETS["tiny"], seed=3).state_dict()
    c = build_unet(PRESETS["tiny"], seed=4).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_meta_build_allocates_nothing():
    model = build_unet(PRESETS["sdxl"], device="meta")
    assert all(p.is_meta for p in model.parameters())


def test_every_tiny_space_member_builds_with_the_costed_params():
    # exhaustive over the 78 members: every design the tiny space can propose must be buildable
    failures = []
    for spec in load_space("space/tiny.yaml").enumerate():
        try:
            params = _params(build_unet(spec, device="meta"))
        except Exception as err:  # noqa: BLE001 - collect all failures, report them together
            failures.append(f"{spec.attention} mid={spec.mid_attention}:{spec.mid_depth}: {type(err).__name__}: {err}")
            continue
        if params != cost(spec).params:
            failures.append(f"{spec}: params {params} != cost {cost(spec).params}")
    assert not failures, f"{len(failures)} members fail:\n" + "\n".join(failures[:10])


def test_save_diffusers_config_writes_loadable_json(tmp_path):
    spec = PRESETS["sdxl-td4_4"]
    path = save_diffusers_config(spec, tmp_path / "out")
    assert path == tmp_path / "out" / "config.json"
    cfg = UNet2DConditionModel.load_config(str(path.parent))
    with torch.device("meta"):
        assert _params(UNet2DConditionModel.from_config(cfg)) == cost(spec).params


def test_unet_kwargs_are_json_serialisable():
    for spec in PRESETS.values():
        kw = unet_kwargs(spec)
        assert json.loads(json.dumps(kw)) == json.loads(json.dumps(kw, default=str))


def test_only_the_builder_constructs_unets():
    # "One path; nothing else constructs UNets": no other module calls the constructor
    root = Path(unetnas.__file__).parent
    offenders = [
        str(p.relative_to(root))
        for p in root.rglob("*.py")
        if p.name != "build.py" and re.search(r"UNet2DConditionModel\(", p.read_text())
    ]
    assert not offenders
