"""`unetnas proxy selftest` and `unetnas proxy tifa`."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from unetnas.cli.registry import group

console = Console()
proxy_app = typer.Typer(help="Alignment proxies: check the judge, score trained trials.", no_args_is_help=True)
group("proxy", proxy_app)


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
    console.print(
        f"renderer images score {res['renderer_score']:.3f}; pure noise {res['noise_score']:.3f} "
        f"(chance {res['chance']:.3f})"
    )


@proxy_app.command()
def tifa(
    checkpoint: Path = typer.Option(..., "--checkpoint", help="a trial folder (or its checkpoint folder)"),
    prompts: int = typer.Option(
        None, "--prompts", min=1, help="evaluation prompts (default: 32 built-in; all of a --questions file)"
    ),
    images: int = typer.Option(2, "--images", min=1, help="images per prompt (fixed seeds)"),
    steps: int = typer.Option(20, "--steps", min=1, help="DDIM steps"),
    cfg: float = typer.Option(None, "--cfg", min=1.0, help="guidance scale (default: the trial recipe's)"),
    questions: Path = typer.Option(None, "--questions", help="TIFA v1.0 question file (real-data trials; with --vqa)"),
    vqa: Path = typer.Option(None, "--vqa", help="local BLIP / ViLT VQA model directory (with --questions)"),
    vae: Path = typer.Option(None, "--vae", help="the AutoencoderKL the trial's data was prepared with (latents)"),
    foils: int = typer.Option(
        4,
        "--foils",
        min=0,
        help="real judges: foil prompts per prompt for the text-blind correction (0: raw TIFA, uncorrected)",
    ),
    grid: Path = typer.Option(None, "--grid", help="also write the sampled images as a PNG grid"),
    json_out: bool = typer.Option(False, "--json", help="print one JSON object"),
) -> None:
    """TIFA-style score of a trained trial: the built-in world's evaluation prompts answered from pixels, or (with
    --questions and --vqa, and --vae for a latent trial) a TIFA v1.0 file answered by a VQA model."""
    from unetnas.errors import UserError
    from unetnas.proxies import Subject, VqaTifa, WorldTifa

    real = questions is not None or vqa is not None
    if real and (questions is None or vqa is None):
        raise UserError(
            "give --questions and --vqa together (a TIFA v1.0 file and the VQA model answering it)",
            field="--questions" if questions is None else "--vqa",
        )
    subject = Subject.from_checkpoint(str(checkpoint))
    latent = subject.spec.vae_downsample != 1
    if latent and not real:
        raise UserError(
            "is trained on latents; score it with --questions FILE --vqa PATH --vae PATH (the built-in "
            "TIFA proxy scores built-in-world pixel trials)",
            source=checkpoint,
        )
    if latent and vae is None:
        raise UserError(
            "is trained on latents; pass --vae with the AutoencoderKL its data was prepared with", source=checkpoint
        )
    if not latent and vae is not None:
        raise UserError("is trained on pixels; it needs no --vae", source=checkpoint, field="--vae", value=str(vae))
    if real:
        proxy = VqaTifa(
            questions, vqa, vae=vae, images_per_prompt=images, steps=steps, cfg=cfg, prompts=prompts, foils=foils
        )
    else:
        proxy = WorldTifa(prompts=prompts or 32, images_per_prompt=images, steps=steps, cfg=cfg)
    res = proxy.score(subject)
    n = res.details["prompts"]
    if grid is not None:
        from unetnas.sample import save_grid

        save_grid(res.details["images"], grid, cols=images * 4)
    d = res.details
    out = {
        "score": res.value,
        "by_category": d["by_category"],
        "eval_flops": res.flops,
        "per_prompt": d.get("per_prompt_alignment", d.get("per_prompt")),
        "prompts": n,
        "images_per_prompt": images,
        "steps": steps,
        "cfg": d["cfg"],
        "judge": str(vqa) if real else "world-answerer",
        "proxy": res.name,
    }
    out.update({k: d[k] for k in ("alignment", "alignment_se", "tifa", "tifa_se", "blind_tifa") if k in d})
    if real:
        out["prompt_ids"] = res.details["prompt_ids"]
    if json_out:
        print(json.dumps(out))
        return
    title = f"TIFA-style score of {checkpoint}: {res.value:.3f}"
    if "alignment" in d:  # the text-blind-corrected alignment and the paper's raw TIFA, each with its SE
        title = (
            f"TIFA-style score of {checkpoint}: alignment {d['alignment']:+.3f} +- {d['alignment_se']:.3f} (text-blind-corrected), "
            f"raw TIFA {d['tifa']:.3f} +- {d['tifa_se']:.3f}"
        )
    table = Table(title=title)
    table.add_column("category")
    table.add_column("accuracy", justify="right")
    for cat, acc in res.details["by_category"].items():
        table.add_row(cat, f"{acc:.3f}")
    console.print(table)
    console.print(f"{n} prompts x {images} images, {steps} DDIM steps; {res.flops:.3g} evaluation FLOPs")
