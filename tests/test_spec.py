"""UNetSpec: presets, YAML round trips, and validators that reject impossible designs naming the field."""

from __future__ import annotations

import pytest
import yaml
from pydantic import ValidationError

from unetnas.errors import UserError
from unetnas.io import load_space, load_spec, save_model
from unetnas.presets import PRESETS, get_preset
from unetnas.spec import UNetSpec

ISSUE_PRESETS = [
    "sd2",
    "sd2-c512",
    "if-xl-c512",
    "if-xl",
    "sdxl-c128",
    "sdxl-c192",
    "sdxl",
    "sdxl-c384",
    "sdxl-td2",
    "sdxl-td4",
    "sdxl-td12",
    "sdxl-td14",
    "sdxl-td4_4",
    "sdxl-td4_8",
    "sdxl-td4_12",
    "sdxl-c384-td4_12",
    "sd2.1-original",
    "sdxl-original",
    "tiny",
]


def test_preset_names_are_exactly_the_issues():
    assert sorted(PRESETS) == sorted(ISSUE_PRESETS)
    for name, spec in PRESETS.items():
        assert spec.name == name
        assert get_preset(name) is spec


def test_unknown_preset_is_a_user_error_naming_it():
    with pytest.raises(UserError, match="sdxl-typo"):
        get_preset("sdxl-typo")


def test_paper_presets_follow_table1_conventions():
    # The paper's controlled setup: OpenCLIP-H (1024-d, 77 tokens), no added embeddings, 256 px = latent 4x32x32.
    for name in ISSUE_PRESETS[:16]:
        s = PRESETS[name]
        assert (s.cross_attention_dim, s.text_len, s.addition_embed) == (1024, 77, None), name
        assert (s.latent_channels, s.latent_size, s.resolution) == (4, 32, 256), name
    assert PRESETS["sdxl"].transformer_depth == (0, 2, 10)
    assert PRESETS["sdxl-td4_4"].transformer_depth == (0, 4, 4)
    assert PRESETS["sdxl-c384-td4_12"].base_channels == 384
    assert PRESETS["sdxl-c384-td4_12"].transformer_depth == (0, 4, 12)
    assert PRESETS["sd2"].attention == ("cross", "cross", "cross", "none")
    assert PRESETS["if-xl"].family == "if" and PRESETS["if-xl"].layers_per_block == (3, 3, 3, 3)
    assert PRESETS["if-xl"].attention == ("cross", "cross", "cross", "none")  # Table 1: [4, 2, 1], as SD2
    assert PRESETS["sdxl-original"].cross_attention_dim == 2048
    assert PRESETS["sdxl-original"].addition_embed is not None


def _random_members() -> list[UNetSpec]:
    return load_space("space/paper.yaml").sample(10, seed=3) + load_space("space/tiny.yaml").sample(10, seed=3)


@pytest.mark.parametrize("spec", list(PRESETS.values()) + _random_members(), ids=lambda s: s.name or "member")
def test_yaml_round_trip_is_lossless(spec, tmp_path):
    path = save_model(spec, tmp_path / "spec.yaml")
    back = load_spec(path)
    assert back == spec
    assert back.model_dump() == spec.model_dump()
    # and again from the written text: saving the reloaded spec writes the same bytes
    assert save_model(back, tmp_path / "again.yaml").read_text() == path.read_text()


def test_layers_per_block_shorthand_expands_per_level():
    s = UNetSpec.model_validate({**PRESETS["tiny"].model_dump(), "layers_per_block": 2})
    assert s.layers_per_block == (2, 2, 2)


def test_with_revalidates():
    with pytest.raises(ValidationError, match="head_dim"):
        PRESETS["tiny"].with_(head_dim=24)


# (changes to the tiny preset, a field name the message must contain)
INVALID = {
    "layers_per_block too short": ({"layers_per_block": [1, 1]}, "layers_per_block"),
    "attention too long": ({"attention": ["none", "cross", "cross", "cross"]}, "attention"),
    "transformer_depth too short": ({"transformer_depth": [0, 1]}, "transformer_depth"),
    "width not divisible by norm groups": ({"base_channels": 20}, "norm_num_groups"),
    "norm groups not dividing width": ({"norm_num_groups": 24}, "norm_num_groups"),
    "head dim not dividing a width": ({"head_dim": 24}, "head_dim"),
    "attention without depth": ({"transformer_depth": [0, 0, 1]}, "transformer_depth[1]"),
    "depth without attention": ({"transformer_depth": [2, 1, 1]}, "transformer_depth[0]"),
    "negative depth": (
        {"attention": ["none", "cross", "none"], "transformer_depth": [0, 1, -1]},
        "transformer_depth[2]",
    ),
    "mid not tied to last level": ({"mid_depth": 2}, "mid_depth"),
    "mid kind not tied to last level": ({"mid_attention": "none", "mid_depth": 0}, "mid_depth"),
    "self-attention mid block": ({"mid_attention": "self"}, "mid_attention"),
    "self-attention level deeper than 1": (
        {"attention": ["none", "self", "cross"], "transformer_depth": [0, 2, 1]},
        "transformer_depth[1]",
    ),
    "mid none with depth": (
        {
            "attention": ["none", "cross", "none"],
            "transformer_depth": [0, 1, 0],
            "mid_attention": "none",
            "mid_depth": 1,
        },
        "mid_depth",
    ),
    "mid attention without depth": (
        {
            "attention": ["none", "cross", "none"],
            "transformer_depth": [0, 1, 0],
            "mid_attention": "cross",
            "mid_depth": 0,
        },
        "mid_depth",
    ),
    "latent not divisible by 2^(levels-1)": ({"latent_size": 30}, "latent_size"),
    "zero multiplier": ({"channel_mult": [1, 0, 2]}, "channel_mult"),
    "zero res blocks": ({"layers_per_block": [1, 0, 1]}, "layers_per_block"),
    "zero base channels": ({"base_channels": 0}, "base_channels"),
    "empty channel_mult": ({"channel_mult": []}, "channel_mult"),
    "unknown attention kind": ({"attention": ["none", "full", "cross"]}, "attention"),
    "unknown family": ({"family": "dit"}, "family"),
    "string for int": ({"base_channels": "wide"}, "base_channels"),
    "unknown field": ({"channels": 32}, "channels"),
    "unknown nested field": ({"addition_embed": {"time_dim": 256, "pool": 1}}, "addition_embed"),
    "if family with self-attention": (
        {"family": "if", "attention": ["none", "self", "cross"], "transformer_depth": [0, 1, 1]},
        "attention",
    ),
    "if family deeper than 1": ({"family": "if", "transformer_depth": [0, 2, 2], "mid_depth": 2}, "transformer_depth"),
}


@pytest.mark.parametrize("case", list(INVALID))
def test_validators_reject_and_name_the_field(case):
    changes, field = INVALID[case]
    data = {**PRESETS["tiny"].model_dump(exclude={"name"}), **changes}
    with pytest.raises(ValidationError) as info:
        UNetSpec.model_validate(data)
    assert field in str(info.value)


@pytest.mark.parametrize("case", list(INVALID))
def test_invalid_yaml_gives_one_line_user_error_naming_file_and_field(case, tmp_path):
    changes, field = INVALID[case]
    data = {**PRESETS["tiny"].model_dump(mode="json", exclude={"name"}), **changes}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(UserError) as info:
        load_spec(path)
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith(str(path))
    assert field.split("[")[0] in msg


def test_valid_specs_still_validate():
    # the validators are not over-strict: designs diffusers builds pass
    tiny = PRESETS["tiny"].model_dump(exclude={"name"})
    UNetSpec.model_validate({**tiny, "attention": ["none", "self", "cross"]})
    UNetSpec.model_validate(
        {
            **tiny,
            "attention": ["none", "cross", "self"],
            "transformer_depth": [0, 2, 1],
            "mid_attention": "cross",
            "mid_depth": 3,
        }
    )  # the mid block is free after a self level
    UNetSpec.model_validate(
        {
            **tiny,
            "attention": ["none", "cross", "none"],
            "transformer_depth": [0, 1, 0],
            "mid_attention": "none",
            "mid_depth": 0,
        }
    )
    UNetSpec.model_validate(
        {
            **tiny,
            "attention": ["none", "none", "none"],
            "transformer_depth": [0, 0, 0],
            "mid_attention": "cross",
            "mid_depth": 3,
        }
    )
