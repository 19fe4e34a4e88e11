"""Design-space commands: presets, space show/sample, cost, export-config."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from unetnas.build import save_diffusers_config
from unetnas.cli.registry import command, group
from unetnas.cost import cost
from unetnas.io import load_space, resolve_spec, save_model
from unetnas.presets import PRESETS
from unetnas.space import RULES, TEXT_BLIND

console = Console()
space_app = typer.Typer(help="Inspect design spaces.", no_args_is_help=True)
group("space", space_app)


def _fmt_td(spec) -> str:
    """TD in the paper's notation, with 's' marking self-attention-only levels."""
    return (
        "[" + ",".join(f"{d}s" if a == "self" else str(d) for a, d in zip(spec.attention, spec.transformer_depth)) + "]"
    )


@command()
def presets(json_out: bool = typer.Option(False, "--json", help="print one JSON object")) -> None:
    """The named presets with their parameters and GMACs (256 px, 77 tokens for the paper's presets)."""
    rows = {name: cost(spec) for name, spec in PRESETS.items()}
    if json_out:
        print(json.dumps({n: {"params": c.params, "gmacs": c.gmacs, "gflops": c.gflops} for n, c in rows.items()}))
        return
    table = Table(title="presets (cost at each preset's own resolution and text length)")
    for col in ("name", "C", "mult", "TD", "res", "params", "GMACs", "GFLOPs", "attn share"):
        table.add_column(col, justify="left" if col in ("name", "mult", "TD") else "right")
    for name, c in rows.items():
        s = PRESETS[name]
        table.add_row(
            name,
            str(s.base_channels),
            str(list(s.channel_mult)),
            _fmt_td(s),
            str(c.resolution),
            f"{c.params / 1e9:.3f} B",
            f"{c.gmacs:.1f}",
            f"{c.gflops:.1f}",
            f"{c.attention_share:.1%}",
        )
    console.print(table)


@space_app.command("show")
def space_show(file: Path = typer.Argument(..., help="space YAML file")) -> None:
    """Fields, choices, number of members and cost range of a space."""
    space = load_space(file)
    table = Table(title=f"space {space.name!r}: {space.size():,} members")
    table.add_column("field")
    table.add_column("choices")
    table.add_row("base (fixed)", ", ".join(f"{k}={v}" for k, v in space.base.items()))
    table.add_row("base_channels", str(space.base_channels))
    table.add_row("channel_mult", ", ".join(str(list(m)) for m in space.channel_mult))
    for i, lv in enumerate(space.levels):
        table.add_row(
            f"level {i} ({2**i}x)",
            f"TD {lv.transformer_depth}, attention {lv.attention}, res blocks {lv.layers_per_block}",
        )
    table.add_row("layers tied", str(space.tie_layers_per_block))
    table.add_row("mid (free)", f"TD {space.mid_depth} (cross-attention; 0 = none) where the last level is not cross")
    removed = space.removed()
    table.add_row(
        "removed by rules",
        f"{sum(removed.values()):,} combinations: "
        + "; ".join(
            f"{k:,} {rule} ({RULES[rule]})"
            if rule != TEXT_BLIND or not space.allow_text_blind
            else "text-blind allowed (allow_text_blind: true)"
            for rule, k in removed.items()
        ),
    )
    if space.max_gmacs or space.max_params:
        table.add_row("constraints", f"max_gmacs={space.max_gmacs}, max_params={space.max_params}")
    members = list(space.enumerate()) if space.size() <= 20_000 else space.sample(2000, seed=0)
    costs = [cost(m) for m in members]
    how = "all members" if space.size() <= 20_000 else "2,000 sampled members"
    table.add_row(
        f"params ({how})", f"{min(c.params for c in costs) / 1e6:.2f}M .. {max(c.params for c in costs) / 1e6:.2f}M"
    )
    table.add_row(f"GMACs ({how})", f"{min(c.gmacs for c in costs):.3g} .. {max(c.gmacs for c in costs):.3g}")
    console.print(table)


@space_app.command("sample")
def space_sample(
    file: Path = typer.Argument(..., help="space YAML file"),
    n: int = typer.Option(5, "-n", min=1, help="how many members"),
    seed: int = typer.Option(0, help="sampler seed"),
    out: Path | None = typer.Option(None, help="write each member as spec YAML into this folder"),
) -> None:
    """Random members of a space, with their cost."""
    space = load_space(file)
    table = Table(title=f"{n} members of {space.name!r} (seed {seed})")
    for col in ("#", "C", "mult", "layers", "TD", "attention", "mid", "params", "GMACs"):
        table.add_column(col)
    for i, spec in enumerate(space.sample(n, seed=seed)):
        c = cost(spec)
        table.add_row(
            str(i),
            str(spec.base_channels),
            str(list(spec.channel_mult)),
            str(list(spec.layers_per_block)),
            str(list(spec.transformer_depth)),
            ",".join(spec.attention),
            f"{spec.mid_attention}:{spec.mid_depth}",
            f"{c.params / 1e6:.2f}M",
            f"{c.gmacs:.3g}",
        )
        if out is not None:
            save_model(spec.with_(name=f"{space.name}-{seed}-{i}"), out / f"{space.name}-{seed}-{i}.yaml")
    console.print(table)


@command("cost")
def cost_cmd(
    spec: str = typer.Argument(..., help="a preset name or a spec YAML file"),
    resolution: int | None = typer.Option(None, help="image pixels (default: the spec's own)"),
    text_len: int | None = typer.Option(None, "--text-len", help="text tokens (default: the spec's own)"),
    json_out: bool = typer.Option(False, "--json", help="print one JSON object"),
) -> None:
    """Params, GMACs (conv+linear), all-op GFLOPs, training and sampling cost of one design."""
    s = resolve_spec(spec)
    c = cost(s, resolution=resolution, text_len=text_len)
    if json_out:
        print(json.dumps({"spec": s.name or spec, **c.as_dict()}))
        return
    table = Table(title=f"cost of {s.name or spec} at {c.resolution} px, {c.text_len} tokens")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    for k, v in c.as_dict().items():
        table.add_row(k, f"{v:,}" if isinstance(v, int) else f"{v:.4g}")
    console.print(table)


@command("export-config")
def export_config(
    spec: str = typer.Argument(..., help="a preset name or a spec YAML file"),
    out: Path = typer.Option(..., "--out", help="folder for config.json (and spec.yaml)"),
) -> None:
    """Write a diffusers config.json (UNet2DConditionModel.from_config loads it) and the spec YAML."""
    s = resolve_spec(spec)
    path = save_diffusers_config(s, out)
    save_model(s, out / "spec.yaml")
    console.print(f"wrote {path} and {out / 'spec.yaml'}")
