"""The one path from a `UNetSpec` to a diffusers `UNet2DConditionModel`. Nothing else constructs UNets.

``unet_kwargs(spec)`` is the whole mapping; ``build_unet`` instantiates it (on the meta device when only the
structure matters); ``to_diffusers_config`` / ``from_diffusers_config`` round-trip diffusers' ``config.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from unetnas.errors import UserError
from unetnas.heads import block_heads, head_layout
from unetnas.spec import TextTimeEmbedding, UNetSpec

# Block type names per family and attention kind (data, not if/elif chains).
_DOWN = {
    ("sd", "none"): "DownBlock2D",
    ("sd", "self"): "AttnDownBlock2D",
    ("sd", "cross"): "CrossAttnDownBlock2D",
    ("if", "none"): "ResnetDownsampleBlock2D",
    ("if", "cross"): "SimpleCrossAttnDownBlock2D",
}
_UP = {
    ("sd", "none"): "UpBlock2D",
    ("sd", "self"): "AttnUpBlock2D",
    ("sd", "cross"): "CrossAttnUpBlock2D",
    ("if", "none"): "ResnetUpsampleBlock2D",
    ("if", "cross"): "SimpleCrossAttnUpBlock2D",
}
_MID = {
    ("sd", "none"): "UNetMidBlock2D",
    ("sd", "cross"): "UNetMidBlock2DCrossAttn",
    ("if", "cross"): "UNetMidBlock2DSimpleCrossAttn",
}


def unet_kwargs(spec: UNetSpec) -> dict[str, Any]:
    """diffusers ``UNet2DConditionModel(**kwargs)`` arguments for a spec (JSON-serialisable)."""
    fam = spec.family
    # diffusers reads the entry only at transformer levels ... and at the last level, for the mid block
    depth = [d if a == "cross" else 1 for a, d in zip(spec.attention, spec.transformer_depth)]
    if spec.attention[-1] != "cross":
        depth[-1] = max(spec.mid_depth, 1)
    heads = head_layout(spec)  # diffusers reads it as heads in some blocks, head size in others (see heads.py)
    kw: dict[str, Any] = {
        "sample_size": spec.latent_size,
        "in_channels": spec.latent_channels,
        "out_channels": spec.latent_channels,
        "down_block_types": [_DOWN[fam, a] for a in spec.attention],
        "mid_block_type": _MID[fam, spec.mid_attention],
        "up_block_types": [_UP[fam, a] for a in reversed(spec.attention)],
        "block_out_channels": list(spec.widths),
        "layers_per_block": list(spec.layers_per_block),
        "transformer_layers_per_block": depth,
        "attention_head_dim": heads,
        "cross_attention_dim": spec.cross_attention_dim,  # read only by cross-attention blocks
        "norm_num_groups": spec.norm_num_groups,
        "act_fn": spec.act_fn,
        "use_linear_projection": spec.use_linear_projection,
        "resnet_time_scale_shift": spec.resnet_time_scale_shift,
        "resnet_skip_time_act": spec.resnet_skip_time_act,
        "cross_attention_norm": spec.cross_attention_norm,
    }
    if fam == "if":  # IF defaults that differ from the constructor's
        kw["downsample_padding"] = 1
    if spec.addition_embed is not None:
        kw["addition_embed_type"] = "text_time"
        kw["addition_time_embed_dim"] = spec.addition_embed.time_dim
        kw["projection_class_embeddings_input_dim"] = spec.addition_embed.projection_input_dim
    return kw


def build_unet(spec: UNetSpec, device: str | torch.device = "cpu", seed: int | None = None):
    """Instantiate the UNet. ``device="meta"`` builds the structure without allocating weights."""
    from diffusers import UNet2DConditionModel

    if seed is not None:
        torch.manual_seed(seed)  # diffusers initialises weights from the global generator
    with torch.device(device):
        return UNet2DConditionModel(**unet_kwargs(spec))


def to_diffusers_config(spec: UNetSpec) -> dict[str, Any]:
    """The ``config.json`` diffusers writes for this UNet (loads with ``UNet2DConditionModel.from_config``)."""
    from diffusers import UNet2DConditionModel

    defaults = {k: v for k, v in UNet2DConditionModel.extract_init_dict({})[0].items()}
    cfg = {"_class_name": "UNet2DConditionModel", **defaults, **unet_kwargs(spec)}
    return json.loads(json.dumps(cfg))  # tuples -> lists, as diffusers writes them


def save_diffusers_config(spec: UNetSpec, out_dir: str | Path) -> Path:
    config = to_diffusers_config(spec)  # refuses an unbuildable design before anything is written
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "config.json"
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return path


def example_inputs(spec: UNetSpec, batch: int = 1, device: str | torch.device = "cpu") -> dict[str, Any]:
    """Inputs for one forward pass at the spec's latent size and text length."""
    with torch.device(device):
        inputs: dict[str, Any] = {
            "sample": torch.zeros(batch, spec.latent_channels, spec.latent_size, spec.latent_size),
            "timestep": torch.zeros(batch, dtype=torch.long),
            "encoder_hidden_states": torch.zeros(batch, spec.text_len, spec.cross_attention_dim),
        }
        if spec.addition_embed is not None:
            e = spec.addition_embed
            inputs["added_cond_kwargs"] = {
                "text_embeds": torch.zeros(batch, e.pooled_dim),
                "time_ids": torch.zeros(batch, e.n_time_ids),
            }
    return inputs


def from_diffusers_config(config: dict[str, Any], *, text_len: int = 77, vae_downsample: int = 8) -> UNetSpec:
    """The spec of a diffusers config that lies in the design space (the reverse of ``to_diffusers_config``)."""
    c = dict(config)
    downs = list(c.get("down_block_types", ()))
    fam = "if" if any(b in ("ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D") for b in downs) else "sd"
    widths = list(c["block_out_channels"])
    base = widths[0]
    if any(w % base for w in widths):
        raise UserError("widths must be multiples of the first", field="block_out_channels", value=widths)
    n = len(widths)
    cross = c.get("cross_attention_dim", 1280)
    if isinstance(cross, (list, tuple)):
        if len(set(cross)) != 1:
            raise UserError(
                "per-level text dims are outside the design space", field="cross_attention_dim", value=cross
            )
        cross = cross[0]
    depth = c.get("transformer_layers_per_block", 1)
    depth_l = list(depth) if isinstance(depth, (list, tuple)) else [depth] * n
    kinds = {v: k[1] for k, v in _DOWN.items()}
    attention = [kinds.get(b, "none") for b in downs]
    has = [a != "none" for a in attention]
    mid_type = c.get("mid_block_type", "UNetMidBlock2DCrossAttn")
    mid_attn = "none" if mid_type == "UNetMidBlock2D" else "cross"
    sizes = {size for _, _, size in block_heads(c)}  # the head size every attention block gets
    if len(sizes) > 1:
        rule = f"attention blocks get head sizes {sorted(sizes)}; the design space has one head_dim"
        raise UserError(rule, field="attention_head_dim", value=c.get("attention_head_dim"))
    heads = c.get("attention_head_dim", 8)
    head_dim = sizes.pop() if sizes else (heads if isinstance(heads, int) else heads[0])
    addition = None
    if c.get("addition_embed_type") == "text_time":
        t = c["addition_time_embed_dim"]
        addition = TextTimeEmbedding(time_dim=t, pooled_dim=c["projection_class_embeddings_input_dim"] - 6 * t)
    lpb = c.get("layers_per_block", 2)
    return UNetSpec(
        family=fam,
        base_channels=base,
        channel_mult=tuple(w // base for w in widths),
        layers_per_block=tuple(lpb) if isinstance(lpb, (list, tuple)) else (lpb,) * n,
        attention=tuple(attention),
        transformer_depth=tuple((depth_l[i] if attention[i] == "cross" else 1) if has[i] else 0 for i in range(n)),
        mid_attention=mid_attn,
        mid_depth=0 if mid_attn == "none" else (1 if fam == "if" else depth_l[-1]),
        head_dim=head_dim,
        cross_attention_dim=cross,
        text_len=text_len,
        latent_channels=c.get("in_channels", 4),
        latent_size=c.get("sample_size") or 32,
        vae_downsample=vae_downsample,
        norm_num_groups=c.get("norm_num_groups", 32),
        act_fn=c.get("act_fn", "silu"),
        use_linear_projection=c.get("use_linear_projection", False),
        resnet_time_scale_shift=c.get("resnet_time_scale_shift", "default"),
        resnet_skip_time_act=c.get("resnet_skip_time_act", False),
        cross_attention_norm=c.get("cross_attention_norm"),
        addition_embed=addition,
    )
