"""`UNetSpec`: one concrete UNet design, as data.

A spec holds the few dials of the paper's design space (base channels C, channel multipliers and so the number of
levels, transformer depth and attention kind per level, res blocks per level) plus the fields that map one-to-one onto
diffusers' ``UNet2DConditionModel`` arguments. Everything else (widths, heads, block types) is derived in
``unetnas.build``. Validators reject designs diffusers cannot build and name the field, value and rule; whether
diffusers can give every block the spec's heads depends on the attention kinds together and is checked where a
design is built or drawn (``unetnas.heads``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

Attention = Literal["none", "self", "cross"]
"""Per level: no attention; one self-attention layer per res block (diffusers' AttnDown/UpBlock2D, depth 1);
transformer blocks with self- and cross-attention (CrossAttnDown/UpBlock2D, depth = TD)."""


class TextTimeEmbedding(BaseModel):
    """SDXL's added "text_time" conditioning (pooled text embedding + 6 size/crop scalars)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    time_dim: int = Field(256, gt=0, description="sinusoidal dim per added time id (SDXL: 256)")
    pooled_dim: int = Field(1280, gt=0, description="pooled text embedding dim (SDXL: 1280)")
    n_time_ids: int = Field(6, gt=0, description="original size, crop top-left, target size (SDXL: 6)")

    @property
    def projection_input_dim(self) -> int:
        return self.pooled_dim + self.n_time_ids * self.time_dim


class UNetSpec(BaseModel):
    """One UNet design. Lists are per level; level i runs at 2^i downsampling of the latent."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str | None = Field(None, description="optional label (a preset or trial name)")
    family: Literal["sd", "if"] = Field(
        "sd",
        description="block family: 'sd' = SD/SDXL blocks (transformer blocks, conv down/up-sampling); "
        "'if' = DeepFloyd IF blocks (simple cross-attention, ResNet down/up-sampling)",
    )
    base_channels: int = Field(
        320, gt=0, le=1 << 16, description="C: width of level 0; level i has C x channel_mult[i]"
    )
    channel_mult: tuple[int, ...] = Field((1, 2, 4), min_length=1, description="width multiplier per level")
    layers_per_block: tuple[int, ...] = Field((2, 2, 2), description="res blocks per down level (up: +1)")
    attention: tuple[Attention, ...] = Field(("none", "cross", "cross"), description="attention kind per level")
    transformer_depth: tuple[int, ...] = Field((0, 2, 10), description="TD: transformer blocks per attention layer")
    mid_attention: Literal["none", "cross"] = Field("cross", description="attention kind of the mid block")
    mid_depth: int = Field(10, ge=0, le=256, description="transformer blocks in the mid block (0 with no attention)")
    head_dim: int = Field(64, gt=0, le=1 << 16, description="channels per attention head (heads grow with width)")
    cross_attention_dim: int = Field(1024, gt=0, le=1 << 16, description="text token dim (OpenCLIP-H: 1024)")
    text_len: int = Field(77, gt=0, le=1 << 16, description="text tokens per prompt")
    latent_channels: int = Field(4, gt=0, le=1 << 16, description="channels of the diffused latent (3 for pixel space)")
    latent_size: int = Field(32, gt=0, le=1 << 16, description="latent height = width (256 px / 8 = 32)")
    vae_downsample: int = Field(
        8, gt=0, le=1 << 16, description="pixels per latent cell (8 for the SD VAE, 1 in pixel space)"
    )
    norm_num_groups: int = Field(32, gt=0, le=1 << 16, description="GroupNorm groups; every width must divide by it")
    act_fn: Literal["silu", "gelu"] = Field("silu", description="activation (IF uses gelu)")
    use_linear_projection: bool = Field(True, description="transformer proj_in/out as Linear (else 1x1 conv)")
    resnet_time_scale_shift: Literal["default", "scale_shift"] = Field("default", description="IF: scale_shift")
    resnet_skip_time_act: bool = Field(False, description="IF: True")
    cross_attention_norm: Literal["group_norm"] | None = Field(None, description="IF: group_norm on text states")
    addition_embed: TextTimeEmbedding | None = Field(None, description="SDXL's text_time conditioning, or none")

    @property
    def n_levels(self) -> int:
        return len(self.channel_mult)

    @property
    def widths(self) -> tuple[int, ...]:
        return tuple(self.base_channels * m for m in self.channel_mult)

    @property
    def resolution(self) -> int:
        """Image resolution in pixels."""
        return self.latent_size * self.vae_downsample

    @property
    def time_embed_dim(self) -> int:
        return 4 * self.widths[0]  # diffusers: 4 x block_out_channels[0]

    @field_validator("layers_per_block", mode="before")
    @classmethod
    def _scalar_to_levels(cls, v: object, info: ValidationInfo) -> object:
        """`layers_per_block: 2` is shorthand for the same count at every level. A list becomes the tuple it fills
        here, so the field reads the same from Python and from a file validated as strict JSON (``unetnas.io``)."""
        if isinstance(v, int) and not isinstance(v, bool):
            return (v,) * len(info.data.get("channel_mult", (1, 2, 4)))
        return tuple(v) if isinstance(v, list) else v

    @model_validator(mode="after")
    def _check(self) -> UNetSpec:
        n = self.n_levels
        for field in ("layers_per_block", "attention", "transformer_depth"):
            value = getattr(self, field)
            if len(value) != n:
                raise ValueError(f"{field}={list(value)}: needs one entry per level ({n} levels from channel_mult)")
        if any(not 0 < m <= 64 for m in self.channel_mult):
            raise ValueError(f"channel_mult={list(self.channel_mult)}: multipliers must be in 1..64")
        if any(not 0 < k <= 64 for k in self.layers_per_block):
            raise ValueError(f"layers_per_block={list(self.layers_per_block)}: each level needs 1..64 res blocks")
        if any(d > 256 for d in self.transformer_depth):
            raise ValueError(f"transformer_depth={list(self.transformer_depth)}: depths must be at most 256")
        if self.latent_size % 2 ** (n - 1):
            raise ValueError(f"latent_size={self.latent_size}: must divide by 2^(levels-1) = {2 ** (n - 1)}")
        for i, (kind, depth) in enumerate(zip(self.attention, self.transformer_depth)):
            if (kind == "none") != (depth == 0) or depth < 0:
                raise ValueError(
                    f"transformer_depth[{i}]={depth}: must be 0 exactly where attention[{i}] is 'none' ({kind!r})"
                )
        if (self.mid_attention == "none") != (self.mid_depth == 0):
            raise ValueError(f"mid_depth={self.mid_depth}: must be 0 exactly when mid_attention is 'none'")
        for i, (kind, depth) in enumerate(zip(self.attention, self.transformer_depth)):
            if kind == "self" and depth != 1:
                raise ValueError(
                    f"transformer_depth[{i}]={depth}: a self-attention level has depth 1 (one layer per res block)"
                )
        if self.attention[-1] == "cross" and (self.mid_attention, self.mid_depth) != (
            self.attention[-1],
            self.transformer_depth[-1],
        ):
            raise ValueError(
                f"mid_depth={self.mid_depth}: diffusers ties the mid block to the last level's attention "
                f"({self.attention[-1]}, depth {self.transformer_depth[-1]}); set mid_attention/mid_depth to match"
            )
        for i, w in enumerate(self.widths):
            if w % self.norm_num_groups:
                raise ValueError(
                    f"channel_mult[{i}]={self.channel_mult[i]}: width {w} (base_channels {self.base_channels} x "
                    f"{self.channel_mult[i]}) must divide by norm_num_groups={self.norm_num_groups}"
                )
        attn_levels = [i for i, a in enumerate(self.attention) if a != "none"]
        if self.mid_attention != "none":
            attn_levels.append(n - 1)
        for i in attn_levels:
            if self.widths[i] % self.head_dim:
                raise ValueError(
                    f"head_dim={self.head_dim}: width {self.widths[i]} at level {i} must divide by the head dim"
                )
        if self.family == "if":
            bad = [i for i, a in enumerate(self.attention) if a == "self"]
            if bad:
                raise ValueError("attention: the 'if' family has no self-attention-only block; use 'none' or 'cross'")
            deep = [d for d in (*self.transformer_depth, self.mid_depth) if d > 1]
            if deep:
                raise ValueError(f"transformer_depth={list(self.transformer_depth)}: 'if' blocks have depth 0 or 1")
            if self.mid_attention == "none":
                raise ValueError("mid_attention='none': the 'if' mid block always has cross-attention")
        return self

    def with_(self, **changes: object) -> UNetSpec:
        """A validated copy with some fields changed (how presets derive variants)."""
        return UNetSpec.model_validate({**self.model_dump(), **changes})
