"""`unetnas trial` and `unetnas sample`."""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from unetnas.cli.registry import command
from unetnas.errors import UserError
from unetnas.io import resolve_spec

console = Console(stderr=True)


@command()
def trial(
    spec: str = typer.Argument(..., help="a preset name or a spec YAML file"),
    horizon: str = typer.Option(None, "--horizon", help="training FLOPs, e.g. 2e12"),
    steps: int = typer.Option(None, "--steps", min=1, help="optimizer steps (instead of --horizon)"),
    data: str = typer.Option("shapes", "--data", help="'shapes' (the built-in world) or a prepared data folder"),
    recipe: Path = typer.Option(None, "--recipe", help="recipe YAML (default trials/short.yaml)"),
    out: Path = typer.Option(None, "--out", help="trial folder (default runs/trials/<spec>)"),
    resume: bool = typer.Option(False, "--resume", help="continue the trial in --out from its checkpoint"),
    seed: int = typer.Option(0, "--seed", help="seed for weights, data order and noise"),
    json_out: bool = typer.Option(False, "--json", help="print one JSON summary"),
) -> None:
    """Train one candidate for a horizon (training FLOPs, or samples if the recipe says horizon_unit: samples): metrics.jsonl, validation loss and a resumable checkpoint."""
    from unetnas.cost import cost
    from unetnas.stop import graceful_stop
    from unetnas.train.recipe import load_recipe
    from unetnas.train.source import open_source
    from unetnas.train.trainer import TrainingDiverged
    from unetnas.train.trial import parse_horizon, preflight, prepare_out, run_trial

    if (horizon is None) == (steps is None):
        raise UserError("give exactly one of --horizon FLOPS or --steps N", field="--horizon")
    s = resolve_spec(spec)
    r = load_recipe(recipe)
    h = parse_horizon(horizon, r.horizon_unit) if horizon is not None else None
    out = out or Path("runs") / "trials" / (s.name or Path(spec).stem)
    prepare_out(out, resume, s, r, seed)  # fail before loading data (resume: every stored file and setting checked)
    src = open_source(data, seed=seed, pool=r.world_pool, resolution=s.resolution, text_len=s.text_len)
    total = preflight(s, r, src, out, horizon=h, steps=steps, resume=resume, seed=seed)  # ... and before the bar
    per_step = cost(s).train_flops_per_sample * r.batch_size
    cols = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} steps"),
        TextColumn("{task.fields[flops]}"),
        TextColumn("loss {task.fields[loss]:.4f}"),
        TextColumn("{task.fields[rate]:.1f} samples/s"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ]
    with graceful_stop() as stop, Progress(*cols, console=console, disable=json_out) as bar:
        task = bar.add_task(s.name or spec, total=total, flops="", loss=float("nan"), rate=0.0)

        def on_step(rec: dict) -> None:
            bar.update(
                task,
                completed=rec["step"],
                loss=rec["loss"],
                rate=rec["samples_per_s"],
                flops=f"{rec['train_flops']:.3g} of {total * per_step:.3g} FLOPs",
            )

        try:
            summary = run_trial(
                s, r, src, out, horizon=h, steps=steps, resume=resume, seed=seed, on_step=on_step, should_stop=stop
            )
        except TrainingDiverged as err:  # a result, not a crash: one line, exit 2 (the search records it as FAIL)
            raise UserError(
                f"training diverged ({err}); lower lr or warm up longer",
                source=recipe or "trials/short.yaml",
                field="lr",
                value=r.lr,
            ) from None
    if os.environ.get("RANK", "0") != "0":  # under the deepspeed launcher only rank 0 reports
        return
    if json_out:
        print(json.dumps(summary))
    else:
        console.print(
            f"{summary['steps']} steps, {summary['train_flops']:.3g} training FLOPs, loss "
            f"{summary['initial_loss']:.4f} -> {summary['final_loss']:.4f}, val {summary['val_loss']:.4f}; "
            f"checkpoint in {out / 'checkpoint'}"
        )


@command()
def sample(
    checkpoint: Path = typer.Option(..., "--checkpoint", help="a trial folder (or its checkpoint folder)"),
    prompt: list[str] = typer.Option(..., "--prompt", help="text prompt (repeat for several)"),
    steps: int = typer.Option(50, "--steps", min=1, help="DDIM steps"),
    cfg: float = typer.Option(7.5, "--cfg", min=1.0, help="classifier-free guidance scale"),
    seed: int = typer.Option(0, "--seed", help="seed of the first image; image i uses seed + i"),
    n: int = typer.Option(8, "-n", min=1, help="images per prompt"),
    vae: Path = typer.Option(None, "--vae", help="AutoencoderKL folder to decode latents (real-data trials)"),
    out: Path = typer.Option(Path("grid.png"), "--out", help="PNG grid, one row per prompt"),
) -> None:
    """Sample images from a trained trial with DDIM and classifier-free guidance."""
    from unetnas.sample import sample as ddim_sample
    from unetnas.sample import save_grid, to_uint8
    from unetnas.text import TextEncoder
    from unetnas.train.trial import LoadedTrial

    t = LoadedTrial(checkpoint)
    enc = TextEncoder.load(t.text_encoder_path(), max_length=t.spec.text_len)
    captions = [p for p in prompt for _ in range(n)]
    text = enc.encode(captions)
    uncond = enc.encode([""])[0]
    seeds = [seed + i for i in range(n)] * len(prompt)
    images = ddim_sample(t.unet, text, uncond, recipe=t.recipe, steps=steps, cfg=cfg, seeds=seeds)
    if t.spec.vae_downsample > 1:
        if vae is None:
            raise UserError(
                "this trial diffuses VAE latents; pass --vae with the AutoencoderKL it was prepared with", field="--vae"
            )
        from unetnas.data.prepare import _load_vae
        from unetnas.sample import decode_latents

        images = decode_latents(_load_vae(vae, "cpu"), images)
    path = save_grid(to_uint8(images), out, cols=n)
    console.print(f"wrote {path} ({len(prompt)} prompts x {n} images, {steps} DDIM steps, cfg {cfg})")
