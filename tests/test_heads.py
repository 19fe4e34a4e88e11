"""Heads as the spec says (issue 11 item 4): every attention block diffusers builds from a spec has width // head_dim
heads of head_dim channels, over presets and space members; designs diffusers cannot build that way are refused."""

from __future__ import annotations

import pytest
import yaml
from diffusers.models.attention_processor import Attention

from unetnas.build import build_unet, from_diffusers_config, to_diffusers_config, unet_kwargs
from unetnas.errors import UserError
from unetnas.heads import block_heads, head_problem
from unetnas.io import load_space
from unetnas.presets import PRESETS
from unetnas.spec import UNetSpec


def built_heads(spec: UNetSpec) -> list[tuple[str, int, int, int]]:
    """(block, width, heads, head size) of every Attention module of the UNet built on meta."""
    model = build_unet(spec, device="meta")
    n = spec.n_levels
    blocks = [(f"down.{i}", b, spec.widths[i]) for i, b in enumerate(model.down_blocks)]
    blocks += [("mid", model.mid_block, spec.widths[-1])]
    blocks += [(f"up.{i}", b, spec.widths[n - 1 - i]) for i, b in enumerate(model.up_blocks)]
    return [
        (name, width, m.heads, m.to_q.out_features // m.heads)
        for name, block, width in blocks
        for m in block.modules()
        if isinstance(m, Attention)
    ]


def _members() -> dict[str, UNetSpec]:
    out = {f"preset {n}": s for n, s in PRESETS.items() if n not in ("sdxl-original",)}  # its twin "sdxl" is here
    for path in ("space/tiny.yaml", "tests/data/micro.yaml"):
        out |= {f"{path} #{i}": s for i, s in enumerate(load_space(path).enumerate())}
    out |= {f"space/paper.yaml ~{i}": s for i, s in enumerate(load_space("space/paper.yaml").sample(8, seed=2))}
    return out


MEMBERS = _members()


@pytest.mark.parametrize("name", list(MEMBERS))
def test_every_built_block_has_the_spec_heads(name):
    spec = MEMBERS[name]
    got = built_heads(spec)
    assert got or ("cross" not in spec.attention and "self" not in spec.attention and spec.mid_attention == "none")
    for block, width, heads, size in got:
        assert (heads, size) == (width // spec.head_dim, spec.head_dim), (block, width, heads, size)
    # block_heads reads a config as diffusers does: the refusals below rest on it
    cfg = to_diffusers_config(spec)
    assert sorted({(b, h, s) for b, h, s in block_heads(cfg)}) == sorted({(b, h, s) for b, _, h, s in got})


TINY_BASE = {k: v for k, v in PRESETS["tiny"].model_dump().items() if k != "name"}
# issue 11 item 4, both designs: diffusers 0.42 reads attention_head_dim as heads in transformer blocks and as head
# size in self-attention blocks (the up path reads the mirrored level's entry), so no list gives every block 16-d heads
REFUSED = {
    "self last level under a cross mid block": (
        {
            **TINY_BASE,
            "base_channels": 16,
            "channel_mult": [1, 2],
            "layers_per_block": [1, 1],
            "attention": ["none", "self"],
            "transformer_depth": [0, 1],
            "mid_attention": "cross",
            "mid_depth": 1,
        },
        "attention_head_dim[1] is read by the level-1 self-attention down block as head size (16) and by the "
        "cross-attention mid block as heads (2)",
    ),
    "self level 0 facing a transformer last level": (
        {**TINY_BASE, "attention": ["self", "cross", "cross"], "transformer_depth": [1, 1, 1]},
        "attention_head_dim[2] is read by the level-0 self-attention up block as head size (16) and by the level-2 "
        "transformer blocks as heads (4)",
    ),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_designs_diffusers_cannot_build_with_their_heads_are_refused_in_one_line(case, tmp_path, run_cli):
    fields, reason = REFUSED[case]
    spec = UNetSpec.model_validate(fields)  # a well-formed design ...
    assert reason in head_problem(spec)
    with pytest.raises(UserError, match=r"^attention=\[.*diffusers cannot give every block 16-channel heads") as err:
        unet_kwargs(spec)  # ... that the one path to diffusers refuses
    assert reason in str(err.value) and "\n" not in str(err.value)
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(fields))
    code, _, err = run_cli(["export-config", str(path), "--out", str(tmp_path / "out")])
    assert code == 2 and err.startswith("error: attention=") and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_the_same_kinds_build_where_the_widths_allow():
    # width = head_dim^2 makes both readings agree: 16 heads of 16 channels at width 256
    spec = UNetSpec.model_validate({**REFUSED["self last level under a cross mid block"][0], "base_channels": 128})
    assert head_problem(spec) is None
    assert {(h, s) for _, _, h, s in built_heads(spec)} == {(16, 16)}


def test_a_config_with_mixed_head_sizes_is_outside_the_space():
    # what the builder used to write for the first design: its mid block had 16 heads of 2 channels
    spec = UNetSpec.model_validate(REFUSED["self last level under a cross mid block"][0])
    cfg = {
        **to_diffusers_config(spec.with_(mid_attention="none", mid_depth=0)),
        "mid_block_type": "UNetMidBlock2DCrossAttn",
        "attention_head_dim": [16, 16],
    }
    assert ("mid", 16, 2) in block_heads(cfg)
    with pytest.raises(UserError, match=r"attention_head_dim=\[16, 16\]: attention blocks get head sizes \[2, 16\]"):
        from_diffusers_config(cfg, text_len=32, vae_downsample=1)


def test_if_blocks_read_one_head_size():
    spec = PRESETS["if-xl-c512"]
    assert to_diffusers_config(spec)["attention_head_dim"] == 64
    assert {s for _, _, _, s in built_heads(spec)} == {64}
