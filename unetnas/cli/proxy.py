"""`unetnas proxy selftest` and `unetnas proxy tifa`."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from unetnas.cli.app import app

console = Console()
proxy_app = typer.Typer(help="Alignment proxies: check the judge, score trained trials.", no_args_is_help=True)
app.add_typer(proxy_app, name="proxy")


@proxy_app.command()
def selftest(
    prompts: int = typer.Option(300, "--prompts", min=10, help="evaluation prompts (~9 questions each)"),
    seed: int = typer.Option(0, "--seed"),
    json_out: bool = typer.Option(False, "--json", help="print one JSON object"),
) -> None:
    """Accuracy of the built-in world's pixel answerer per category on clean/blurred/noisy renders; calibration."""
    from unetnas.world.selftest import selftest as run

    res = run(n_prompts=prompts, seed=seed)
    if json_out:
        print(json.dumps(res))
        return
    table = Table(title=f"answerer self-test: {res['n_questions']} questions on {prompts} prompts")
    table.add_column("category")
    for col in ("clean", "blur", "noise"):
        table.add_column(col, justify="right")
    for cat in res["clean"]:
        table.add_row(cat, *(f"{res[c][cat]:.3f}" for c in ("clean", "blur", "noise")))
    console.print(table)
    console.print(f"renderer images score {res['renderer_score']:.3f}; pure noise {res['noise_score']:.3f} "
                  f"(chance {res['chance']:.3f})")  # fmt: skip


@proxy_app.command()
def tifa(
    checkpoint: Path = typer.Option(..., "--checkpoint", help="a trial folder (or its checkpoint folder)"),
    prompts: int = typer.Option(32, "--prompts", min=1, help="evaluation prompts"),
    images: int = typer.Option(2, "--images", min=1, help="images per prompt (fixed seeds)"),
    steps: int = typer.Option(20, "--steps", min=1, help="DDIM steps"),
    cfg: float = typer.Option(None, "--cfg", min=1.0, help="guidance scale (default: the trial recipe's)"),
    grid: Path = typer.Option(None, "--grid", help="also write the sampled images as a PNG grid"),
    json_out: bool = typer.Option(False, "--json", help="print one JSON object"),
) -> None:
    """TIFA-style score of a trained trial on the built-in world's evaluation prompts."""
    from unetnas.errors import UserError
    from unetnas.proxies import Subject, WorldTifa

    subject = Subject.from_checkpoint(str(checkpoint))
    if subject.spec.vae_downsample != 1:
        raise UserError("trained on latents; the built-in TIFA proxy scores built-in-world (pixel) trials",
                        source=checkpoint)  # fmt: skip
    res = WorldTifa(prompts=prompts, images_per_prompt=images, steps=steps, cfg=cfg).score(subject)
    if grid is not None:
        from unetnas.sample import save_grid

        save_grid(res.details["images"], grid, cols=images * 4)
    out = {"score": res.value, "by_category": res.details["by_category"], "eval_flops": res.flops,
           "per_prompt": res.details["per_prompt"], "prompts": prompts, "images_per_prompt": images,
           "steps": steps, "cfg": res.details["cfg"]}  # fmt: skip
    if json_out:
        print(json.dumps(out))
        return
    table = Table(title=f"TIFA-style score of {checkpoint}: {res.value:.3f}")
    table.add_column("category")
    table.add_column("accuracy", justify="right")
    for cat, acc in res.details["by_category"].items():
        table.add_row(cat, f"{acc:.3f}")
    console.print(table)
    console.print(f"{prompts} prompts x {images} images, {steps} DDIM steps; {res.flops:.3g} evaluation FLOPs")
