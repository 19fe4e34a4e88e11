"""Attention heads as the spec says: every attention block of a `UNetSpec` gets ``width // head_dim`` heads of
``head_dim`` channels, or the design is refused.

diffusers 0.42 takes one per-level list, ``attention_head_dim``, and reads it two ways (its legacy naming,
diffusers#2011; passing ``num_attention_heads`` raises):

- transformer blocks (``CrossAttnDown/UpBlock2D``, ``UNetMidBlock2DCrossAttn``) read entry i as the number of
  heads (head size = width // entry); the mid block reads the last entry;
- self-attention blocks (``AttnDown/UpBlock2D``) and IF's simple blocks read it as the head size;
- the up path reverses the heads list but not the head sizes, so the up-path self-attention block of level L
  reads entry n-1-L.

``head_layout`` finds the one list that gives every block the spec's heads and raises ``UserError`` when two
blocks need different values in one entry (a self-attention level facing a transformer level, or a self-attention
last level under a cross-attention mid block, unless width = head_dim^2). ``block_heads`` reads a diffusers config
the way diffusers does: (block, heads, head size) per attention block.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from unetnas.errors import UserError
from unetnas.spec import UNetSpec

# Block types whose `attention_head_dim` entry is the number of heads / the head size (others have no attention).
_READS_HEADS = {"CrossAttnDownBlock2D", "CrossAttnUpBlock2D", "UNetMidBlock2DCrossAttn"}
_READS_SIZE = {
    "AttnDownBlock2D",
    "AttnUpBlock2D",
    "SimpleCrossAttnDownBlock2D",
    "SimpleCrossAttnUpBlock2D",
    "UNetMidBlock2DSimpleCrossAttn",
}


def head_layout(spec: UNetSpec) -> list[int] | int:
    """diffusers' ``attention_head_dim`` for ``spec``: per level for SD blocks, one int for IF blocks.

    Entries no block reads are set to ``head_dim``. Raises ``UserError`` (field ``attention``) when no list gives
    every block ``head_dim``-sized heads.
    """
    try:
        return layout(spec.family, spec.attention, spec.mid_attention, spec.widths, spec.head_dim)
    except ValueError as err:
        raise UserError(str(err), field="attention", value=list(spec.attention)) from None


def head_problem(spec: UNetSpec) -> str | None:
    """None when diffusers can build ``spec`` with its heads, else the one-line reason."""
    try:
        head_layout(spec)
    except UserError as err:
        return str(err)
    return None


def layout(
    family: str, attention: Sequence[str], mid_attention: str, widths: Sequence[int], head_dim: int
) -> list[int] | int:
    """``head_layout`` on plain values (what a search space checks for every combination); ValueError if none."""
    h, n, w = head_dim, len(widths), widths
    if family == "if":
        return h  # every IF attention block reads the head size
    need: dict[int, tuple[int, str]] = {}  # entry -> (value, which block reads it and how)

    def put(entry: int, value: int, who: str) -> None:
        if entry in need and need[entry][0] != value:
            other, by = need[entry]
            raise ValueError(
                f"diffusers cannot give every block {h}-channel heads: attention_head_dim[{entry}] is read by {by} "
                f"({other}) and by {who} ({value})"
            )
        need[entry] = (value, who)

    for level, kind in enumerate(attention):
        if kind == "cross":
            put(level, w[level] // h, f"the level-{level} transformer blocks as heads")
        elif kind == "self":
            put(level, h, f"the level-{level} self-attention down block as head size")
            put(n - 1 - level, h, f"the level-{level} self-attention up block as head size")
    if mid_attention == "cross":
        put(n - 1, w[-1] // h, "the cross-attention mid block as heads")
    return [need.get(i, (h, ""))[0] for i in range(n)]


def block_heads(config: dict[str, Any]) -> list[tuple[str, int, int]]:
    """(block, heads, head size) of every attention block diffusers builds from ``config`` (a UNet2DConditionModel
    config), down blocks first, then the mid block, then the up blocks. Block names are ``down.i``, ``mid``, ``up.i``
    with diffusers' up-path index i (level n-1-i)."""
    widths = list(config["block_out_channels"])
    n = len(widths)
    raw = config.get("attention_head_dim", 8)
    entries = list(raw) if isinstance(raw, (list, tuple)) else [raw] * n
    out = []

    def read(name: str, kind: str, width: int, heads_entry: int, size_entry: int) -> None:
        if kind in _READS_HEADS:
            out.append((name, heads_entry, width // heads_entry))
        elif kind in _READS_SIZE:
            out.append((name, width // size_entry, size_entry))

    for i, kind in enumerate(config["down_block_types"]):
        read(f"down.{i}", kind, widths[i], entries[i], entries[i])
    read("mid", config.get("mid_block_type", "UNetMidBlock2DCrossAttn"), widths[-1], entries[-1], entries[-1])
    for i, kind in enumerate(config["up_block_types"]):
        read(f"up.{i}", kind, widths[n - 1 - i], entries[n - 1 - i], entries[i])
    return out
