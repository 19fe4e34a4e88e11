"""`unetnas data ...`: prepare real training data (VAE latents + text states in safetensors shards)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from unetnas.cli.registry import group

data_app = group(
    "data",
    typer.Typer(
        help="Prepare real training data: images + captions -> VAE latents + text states in safetensors shards.",
        no_args_is_help=True,
    ),
)


@data_app.callback()
def _group() -> None:
    """Real-data commands."""


@data_app.command("prepare")
def prepare_cmd(
    out: Annotated[Path, typer.Option(help="Output directory; rerun into it to resume.")],
    vae: Annotated[Path, typer.Option(help="Local diffusers AutoencoderKL directory (or a pipeline root).")],
    images: Annotated[
        Path | None,
        typer.Option(
            help="Folder of images with same-stem .txt captions, or a Hugging Face imagefolder (metadata.jsonl/.csv "
            "with file_name and a caption column)."
        ),
    ] = None,
    shards: Annotated[
        str | None,
        typer.Option(
            help="WebDataset tar shards as img2dataset writes them (jpg/png/webp + txt/json): a folder of .tar files, "
            "one file, or a brace pattern such as 'data/{00000..00099}.tar'."
        ),
    ] = None,
    manifest: Annotated[
        Path | None, typer.Option(help='JSONL file of {"image": path relative to it, "caption": str}.')
    ] = None,
    caption_column: Annotated[
        str | None, typer.Option(help="imagefolder caption column (default: 'text', else 'caption').")
    ] = None,
    text_encoder: Annotated[
        Path | None,
        typer.Option(help="Local transformers text model directory (default: the packaged all-MiniLM-L6-v2)."),
    ] = None,
    resolution: Annotated[int, typer.Option(help="Square training resolution in pixels.")] = 256,
    shard_size: Annotated[int, typer.Option(help="Input items per shard file (skipped ones leave it smaller).")] = 256,
    batch_size: Annotated[int, typer.Option(help="Images per VAE forward pass.")] = 8,
    max_length: Annotated[int, typer.Option(help="Text tokens per caption.")] = 16,
    dtype: Annotated[str, typer.Option(help="Storage dtype of latents and text states (float16|float32).")] = "float16",
    device: Annotated[str, typer.Option(help="Device for the VAE and text encoder (cpu, cuda, ...).")] = "cpu",
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Encode images and captions (--images DIR, --shards TARS or --manifest FILE.jsonl) into OUT, streaming;
    unreadable images and items without a caption are skipped and counted; rerun to resume an interrupted run."""
    from unetnas.data.prepare import prepare

    meta = prepare(
        out_dir=out,
        vae_path=vae,
        text_encoder_path=text_encoder,
        images_dir=images,
        manifest=manifest,
        shards=shards,
        caption_column=caption_column,
        resolution=resolution,
        shard_size=shard_size,
        batch_size=batch_size,
        text_max_length=max_length,
        dtype=dtype,
        device=device,
        progress=progress,
    )
    shape = "x".join(str(d) for d in meta["latent_shape"])
    skipped = meta.get("skipped") or {}
    why = f" ({', '.join(f'{n} {reason}' for reason, n in skipped.items())})" if skipped else ""
    errors = f"; {len(meta['read_errors'])} tar read errors" if meta.get("read_errors") else ""
    typer.echo(
        f"{out}: {meta['n_samples']} samples in {len(meta['shards'])} shards, latents {shape}, "
        f"text {meta['text_max_length']}x{meta['text_dim']}; {sum(skipped.values())} skipped{why}{errors}"
    )
