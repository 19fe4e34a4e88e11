"""`unetnas data ...`: prepare real training data (VAE latents + text states in safetensors shards)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

data_app = typer.Typer(
    help="Prepare real training data: images + captions -> VAE latents + text states in safetensors shards.",
    no_args_is_help=True,
)


@data_app.callback()
def _group() -> None:
    """Real-data commands."""


@data_app.command("prepare")
def prepare_cmd(
    out: Annotated[Path, typer.Option(help="Output directory; rerun into it to resume.")],
    vae: Annotated[Path, typer.Option(help="Local diffusers AutoencoderKL directory (or a pipeline root).")],
    images: Annotated[Optional[Path], typer.Option(help="Directory of images with same-stem .txt captions.")] = None,
    manifest: Annotated[
        Optional[Path], typer.Option(help='JSONL file of {"image": path relative to it, "caption": str}.')
    ] = None,
    text_encoder: Annotated[
        Optional[Path],
        typer.Option(help="Local transformers text model directory (default: the packaged all-MiniLM-L6-v2)."),
    ] = None,
    resolution: Annotated[int, typer.Option(help="Square training resolution in pixels.")] = 256,
    shard_size: Annotated[int, typer.Option(help="Samples per shard file.")] = 256,
    batch_size: Annotated[int, typer.Option(help="Images per VAE forward pass.")] = 8,
    max_length: Annotated[int, typer.Option(help="Text tokens per caption.")] = 16,
    dtype: Annotated[str, typer.Option(help="Storage dtype of latents and text states (float16|float32).")] = "float16",
    device: Annotated[str, typer.Option(help="Device for the VAE and text encoder (cpu, cuda, ...).")] = "cpu",
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Encode images (--images DIR or --manifest FILE.jsonl) and captions into OUT; resumes an interrupted run."""
    from unetnas.data.prepare import prepare

    meta = prepare(
        out_dir=out, vae_path=vae, text_encoder_path=text_encoder, images_dir=images, manifest=manifest,
        resolution=resolution, shard_size=shard_size, batch_size=batch_size, text_max_length=max_length,
        dtype=dtype, device=device, progress=progress,
    )
    shape = "x".join(str(d) for d in meta["latent_shape"])
    typer.echo(
        f"{out}: {meta['n_samples']} samples in {len(meta['shards'])} shards, latents {shape}, "
        f"text {meta['text_max_length']}x{meta['text_dim']}"
    )
