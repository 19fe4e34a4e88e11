"""Named designs: the paper's controlled variants (Li et al., CVPR 2024, Table 1), diffusers' original UNets, and a
tiny CPU preset. Presets are plain data: each variant copies a base and changes a few fields."""

from __future__ import annotations

from unetnas.errors import UserError
from unetnas.spec import TextTimeEmbedding, UNetSpec

# The paper's controlled setup: OpenCLIP-H text (1024-d, 77 tokens), no added embeddings, 256 px = latent 4x32x32.
SD2 = UNetSpec(
    base_channels=320,
    channel_mult=(1, 2, 4, 4),
    layers_per_block=(2, 2, 2, 2),
    attention=("cross", "cross", "cross", "none"),
    transformer_depth=(1, 1, 1, 0),
    mid_attention="cross",
    mid_depth=1,
)
SDXL = UNetSpec(  # TD [0,2,10]: no attention at full resolution; the mid block takes the last level's depth
    base_channels=320,
    channel_mult=(1, 2, 4),
    layers_per_block=(2, 2, 2),
    attention=("none", "cross", "cross"),
    transformer_depth=(0, 2, 10),
    mid_attention="cross",
    mid_depth=10,
)
IF_XL = UNetSpec(  # DeepFloyd IF blocks as diffusers builds them, in the paper's controlled setup (no text_proj)
    family="if",
    base_channels=704,  # IF-I-XL's width
    channel_mult=(1, 2, 3, 4),
    layers_per_block=(3, 3, 3, 3),
    # Table 1: attention at downsampling factors [4, 2, 1] (SD2's notation): levels 0-2 attend, 8x does not, as in
    # SD2; the released IF-I-XL attends at 2x-8x instead, which adds ~6% parameters
    attention=("cross", "cross", "cross", "none"),
    transformer_depth=(1, 1, 1, 0),
    mid_attention="cross",
    mid_depth=1,
    act_fn="gelu",
    use_linear_projection=False,
    resnet_time_scale_shift="scale_shift",
    resnet_skip_time_act=True,
    cross_attention_norm="group_norm",
)
TINY = UNetSpec(  # trains on 2 CPU cores: 32x32 RGB pixels, MiniLM text (384-d, 32 tokens)
    base_channels=32,
    channel_mult=(1, 2, 2),
    layers_per_block=(1, 1, 1),
    attention=("none", "cross", "cross"),
    transformer_depth=(0, 1, 1),
    mid_attention="cross",
    mid_depth=1,
    head_dim=16,
    cross_attention_dim=384,
    text_len=32,
    latent_channels=3,
    latent_size=32,
    vae_downsample=1,
    norm_num_groups=8,
)


def _td(spec: UNetSpec, depths: tuple[int, ...]) -> UNetSpec:
    """A transformer-depth variant (TD written per level, as in the paper); the mid block follows the last level."""
    return spec.with_(transformer_depth=depths, mid_depth=depths[-1])


PRESETS: dict[str, UNetSpec] = {
    "sd2": SD2,
    "sd2-c512": SD2.with_(base_channels=512),
    "if-xl-c512": IF_XL.with_(base_channels=512),
    "if-xl": IF_XL,
    "sdxl-c128": SDXL.with_(base_channels=128),
    "sdxl-c192": SDXL.with_(base_channels=192),
    "sdxl": SDXL,
    "sdxl-c384": SDXL.with_(base_channels=384),
    "sdxl-td2": _td(SDXL, (0, 2, 2)),
    "sdxl-td4": _td(SDXL, (0, 2, 4)),
    "sdxl-td12": _td(SDXL, (0, 2, 12)),
    "sdxl-td14": _td(SDXL, (0, 2, 14)),
    "sdxl-td4_4": _td(SDXL, (0, 4, 4)),
    "sdxl-td4_8": _td(SDXL, (0, 4, 8)),
    "sdxl-td4_12": _td(SDXL, (0, 4, 12)),
    "sdxl-c384-td4_12": _td(SDXL.with_(base_channels=384), (0, 4, 12)),
    # diffusers' own configs: SD 2.1 at 768 px, SDXL base at 1024 px with CLIP-L+bigG text (2048) and text_time.
    "sd2.1-original": SD2.with_(latent_size=96),
    "sdxl-original": SDXL.with_(
        cross_attention_dim=2048, latent_size=128, addition_embed=TextTimeEmbedding().model_dump()
    ),
    "tiny": TINY,
}
PRESETS = {name: spec.with_(name=name) for name, spec in PRESETS.items()}


def get_preset(name: str) -> UNetSpec:
    try:
        return PRESETS[name]
    except KeyError:
        raise UserError(f"unknown preset (known: {', '.join(PRESETS)})", field="preset", value=name) from None
