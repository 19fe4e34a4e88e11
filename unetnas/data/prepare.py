"""`prepare`: images + captions -> VAE latents + text states in safetensors shards (see `shards.py` for the layout).

Inputs (``inputs.py``): an images folder with ``.txt`` captions, a Hugging Face imagefolder (``metadata.jsonl`` /
``metadata.csv``), WebDataset tar shards as img2dataset writes them, or a JSONL manifest. They are streamed: shard k
holds the usable samples among input items ``k * shard_size .. (k+1) * shard_size - 1``, decoded a batch at a time.
An item that cannot be used (unreadable or missing image, no caption) is skipped and counted, per shard and in
meta.json, never fatal. Each image is resized (shorter side) and centre-cropped to `resolution`, encoded with a
diffusers `AutoencoderKL` (latent = (posterior mean - shift_factor) * scaling_factor: deterministic, so a resumed run
rewrites a shard bit for bit), and its caption with `TextEncoder`. Batches never cross shard boundaries, so each
shard's numbers do not depend on which shards ran before.

Resume: shards already recorded in meta.json are skipped (their input items are read past, not decoded). Rerunning
with other inputs or settings into the same directory is a `UserError` raised before anything is written.
"""

from __future__ import annotations

import io
import itertools
import json
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unetnas.data.inputs import IMAGE_SUFFIXES, Inputs, Item, open_inputs
from unetnas.data.shards import (
    DATA_FORMAT,
    META_NAME,
    PLAN_KEYS,
    UNCOND_NAME,
    file_sha256,
    read_meta,
    shard_name,
    write_meta,
    write_shard,
)
from unetnas.errors import UserError
from unetnas.text import PACKAGED_NAME, TextCache, TextEncoder, first_line, model_dir, offline, quiet_loading

__all__ = ["IMAGE_SUFFIXES", "BadImage", "load_image", "prepare"]
DTYPES = {"float16": torch.float16, "float32": torch.float32}  # storage dtypes of latents and text states
DECODE_THREADS = min(8, os.cpu_count() or 1)  # image decode/resize threads (PIL releases the GIL)


class BadImage(Exception):
    """An image that cannot be decoded; ``prepare`` skips and counts it."""


def load_image(source: Path | bytes, resolution: int) -> torch.Tensor:
    """(3, resolution, resolution) in [-1, 1] from a file or its bytes: shorter side resized (bicubic), then
    centre-cropped. Raises ``BadImage`` for anything PIL cannot decode (truncated, not an image, a decompression
    bomb)."""
    from PIL import Image, ImageOps

    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as im:
            img = ImageOps.exif_transpose(im).convert("RGB")
    except Exception as err:  # noqa: BLE001  any decoding failure of one input image is that image's problem
        raise BadImage(f"{type(err).__name__}: {str(err)[:80]}") from None
    scale = resolution / min(img.size)
    w, h = max(resolution, round(img.width * scale)), max(resolution, round(img.height * scale))
    img = img.resize((w, h), Image.Resampling.BICUBIC)
    left, top = (w - resolution) // 2, (h - resolution) // 2
    img = img.crop((left, top, left + resolution, top + resolution))
    return torch.from_numpy(np.asarray(img, dtype=np.float32) / 127.5 - 1.0).permute(2, 0, 1)


UNREADABLE = "unreadable image"


def _decode(item: Item, resolution: int) -> torch.Tensor | list[str]:
    """The item's pixels, or why it is skipped: [key, reason] or [key, "unreadable image", PIL's error]."""
    if item.problem is not None:
        return [item.key, item.problem]
    try:
        return load_image(item.data if item.data is not None else item.path, resolution)
    except BadImage as err:
        return [item.key, UNREADABLE, str(err)]


def _load_vae(vae_dir: Path, device: str):
    from diffusers import AutoencoderKL

    kind = json.loads((vae_dir / "config.json").read_text()).get("_class_name")
    if kind != "AutoencoderKL":
        raise UserError("must be a diffusers AutoencoderKL", source=vae_dir, field="_class_name", value=kind)
    try:
        with quiet_loading():
            vae = AutoencoderKL.from_pretrained(vae_dir, local_files_only=True)
    except Exception as err:  # noqa: BLE001  any load failure is a bad directory, reported in one line
        raise UserError(f"could not load the VAE ({first_line(err)})", source=vae_dir) from None
    return vae.to(device).eval().requires_grad_(False)


def _check_args(resolution: int, shard_size: int, batch_size: int, dtype: str) -> None:
    for name, value in (("resolution", resolution), ("shard_size", shard_size), ("batch_size", batch_size)):
        if not isinstance(value, int) or value < 1:
            raise UserError("must be a positive integer", field=name, value=value)
    if dtype not in DTYPES:
        raise UserError(f"must be one of {sorted(DTYPES)}", field="dtype", value=dtype)


def _open_out_dir(out: Path, plan: dict[str, Any]) -> dict[str, Any] | None:
    """The existing meta.json of `out` if it matches `plan`; None for a new or empty directory."""
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        return None
    if not out.is_dir():
        raise UserError("exists and is not a directory", source=out)
    if not (out / META_NAME).is_file():
        raise UserError("is not empty and holds no meta.json; choose a new or empty --out directory", source=out)
    meta = read_meta(out)
    for key in PLAN_KEYS:
        if meta.get(key) != plan[key]:
            rule = (
                f"differs from the preparation in this directory ({meta.get(key)!r}); use a new --out or the old value"
            )
            raise UserError(rule, source=out / META_NAME, field=key, value=plan[key])
    return meta


def prepare(
    *,
    out_dir: str | Path,
    vae_path: str | Path,
    text_encoder_path: str | Path | None = None,
    images_dir: str | Path | None = None,
    manifest: str | Path | None = None,
    shards: str | None = None,  # WebDataset tars: a folder, a file or a brace pattern
    caption_column: str | None = None,  # imagefolder caption column (default: "text", else "caption")
    resolution: int = 256,  # pixels; SD-style 256 -> 32x32 latents with an 8x VAE
    shard_size: int = 256,  # input items per shard file (skipped ones leave it smaller)
    batch_size: int = 8,  # images per VAE forward
    text_max_length: int = 16,  # tokens per caption (the TextEncoder default)
    dtype: str = "float16",  # storage dtype of latents and text states (readers get float32)
    device: str = "cpu",  # where the VAE and text encoder run
    progress: bool = True,  # show a rich progress bar on stderr
) -> dict[str, Any]:
    """Encode images and captions into `out_dir`, resuming a previous run there; returns the final meta.json
    (``n_samples`` usable samples, ``skipped`` items by reason)."""
    offline()
    _check_args(resolution, shard_size, batch_size, dtype)
    read_errors: list[str] = []
    inputs = open_inputs(images_dir, manifest, shards, caption_column, read_errors)
    if inputs.count == 0:
        raise UserError("holds no images", source=inputs.source)
    vae_dir = model_dir(vae_path, "vae", "--vae")
    te_dir = None if text_encoder_path is None else model_dir(text_encoder_path, "text_encoder", "--text-encoder")
    out = Path(out_dir).expanduser()
    plan = {
        "format": DATA_FORMAT,
        "inputs": inputs.kind,
        "inputs_sha256": inputs.sha256,
        "resolution": resolution,
        "shard_size": shard_size,
        "dtype": dtype,
        "vae_path": str(vae_dir),
        "text_encoder": PACKAGED_NAME if te_dir is None else str(te_dir),
        "text_max_length": text_max_length,
    }
    meta = _open_out_dir(out, plan)  # checked before any model loads or any byte is written
    if meta is not None and meta["complete"] and _shards_present(out, meta):
        return meta  # nothing left to do
    vae = _load_vae(vae_dir, device)
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    if resolution % factor:
        raise UserError(
            f"must be divisible by the VAE's downsampling factor {factor}", field="resolution", value=resolution
        )
    encoder = TextEncoder.load(te_dir, max_length=text_max_length, device=device)
    shape = [vae.config.latent_channels, resolution // factor, resolution // factor]
    if meta is not None and (meta["latent_shape"], meta["text_dim"]) != (shape, encoder.dim):
        rule = "the VAE or text encoder changed on disk since this directory was started; use a new --out"
        raise UserError(rule, source=out / META_NAME, field="latent_shape, text_dim", value=(shape, encoder.dim))
    if meta is None:
        out.mkdir(parents=True, exist_ok=True)
        n_shards = 0 if inputs.count is None else -(-inputs.count // shard_size)
        meta = {
            **plan,
            "source": inputs.source,
            "n_inputs": inputs.count,
            "n_samples": None,
            "latent_shape": shape,
            "scaling_factor": vae.config.scaling_factor,
            "shift_factor": vae.config.get("shift_factor"),
            "text_dim": encoder.dim,
            "text_flops_per_caption": encoder.text_flops_per_caption,
            "uncond": UNCOND_NAME,
            "uncond_sha256": None,
            "shards": [None] * n_shards,
            "skipped": {},
            "read_errors": [],
            "complete": False,
        }
        write_meta(out, meta)
    _run(out, meta, inputs, vae, encoder, batch_size, device, progress, read_errors)
    return meta


def _shard_done(out: Path, record: dict | None) -> bool:
    """A shard is done once meta.json records it and its file has the recorded size."""
    path = out / record["file"] if record is not None else None
    return path is not None and path.is_file() and path.stat().st_size == record["bytes"]


def _shards_present(out: Path, meta: dict) -> bool:
    return all(_shard_done(out, r) for r in meta["shards"]) and (out / meta["uncond"]).is_file()


def _encode_shard(
    chunk: list[Item],
    meta: dict,
    vae,
    encoder: TextEncoder,
    batch_size: int,
    device: str,
    pool: ThreadPoolExecutor,
    advance,
) -> tuple[torch.Tensor, torch.Tensor, list[Item], list[list[str]]]:
    """(latents, text states, items kept, [key, reason(, detail)] of items skipped) of one shard's input items."""
    dtype, res = DTYPES[meta["dtype"]], meta["resolution"]
    shift, scale = meta["shift_factor"] or 0.0, meta["scaling_factor"]
    latents, kept, skipped = [], [], []
    for b in range(0, len(chunk), batch_size):
        batch = chunk[b : b + batch_size]
        decoded = list(pool.map(_decode, batch, [res] * len(batch)))
        skipped += [d for d in decoded if isinstance(d, list)]
        good = [(i, d) for i, d in zip(batch, decoded) if not isinstance(d, list)]
        if good:
            with torch.no_grad():
                mean = vae.encode(torch.stack([d for _, d in good]).to(device)).latent_dist.mean
            latents.append(((mean - shift) * scale).to("cpu", dtype))
            kept += [i for i, _ in good]
        advance(len(batch), len(batch) - len(good))
    lat = torch.cat(latents) if latents else torch.zeros(0, *meta["latent_shape"], dtype=dtype)
    captions = [i.caption for i in kept]
    unique = {c: i for i, c in enumerate(dict.fromkeys(captions))}  # each distinct caption encoded once
    if unique:
        states = encoder.encode(list(unique))[[unique[c] for c in captions]].to(dtype)
    else:
        states = torch.zeros(0, meta["text_max_length"], meta["text_dim"], dtype=dtype)
    return lat, states, kept, skipped


def _run(
    out: Path,
    meta: dict,
    inputs: Inputs,
    vae,
    encoder: TextEncoder,
    batch_size: int,
    device: str,
    progress: bool,
    read_errors: list[str],
) -> None:
    """Encode every shard not yet recorded in meta.json, recording each as it lands; then the "" states."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    size = meta["shard_size"]
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[bad]}"),
        TimeRemainingColumn(),
    )
    items = inputs.items()
    with (
        Progress(*columns, console=Console(stderr=True), disable=not progress) as bar,
        ThreadPoolExecutor(DECODE_THREADS) as pool,
    ):
        task = bar.add_task(f"prepare {out.name}", total=inputs.count, bad="")
        skipped_so_far = [sum(len(r.get("skipped", ())) for r in meta["shards"] if r is not None)]

        def advance(n: int, bad: int) -> None:
            skipped_so_far[0] += bad
            bar.update(task, advance=n, bad=f"{skipped_so_far[0]} skipped" if skipped_so_far[0] else "")

        for index in itertools.count():
            chunk = list(itertools.islice(items, size))
            if not chunk:
                break
            if index == len(meta["shards"]):
                meta["shards"].append(None)  # a stream of unknown length (tars) grows the list
            record = meta["shards"][index]
            if _shard_done(out, record):
                bar.update(task, advance=len(chunk))
                continue
            latents, states, kept, skipped = _encode_shard(chunk, meta, vae, encoder, batch_size, device, pool, advance)
            path = out / shard_name(index)
            entry = write_shard(path, latents, states, [i.caption for i in kept], [i.key for i in kept])
            start = sum(r["count"] for r in meta["shards"][:index] if r is not None)
            meta["shards"][index] = {
                "file": path.name,
                "start": start,
                "count": len(kept),
                "inputs": len(chunk),
                "input_start": index * size,
                "skipped": skipped,
                **entry,
            }
            write_meta(out, meta)
    del meta["shards"][index:]  # inputs shorter than recorded (cannot happen with a matching inputs hash)
    meta["n_samples"] = sum(r["count"] for r in meta["shards"])
    meta["skipped"] = dict(Counter(entry[1] for r in meta["shards"] for entry in r.get("skipped", ())))
    meta["read_errors"] = read_errors
    if meta["n_samples"] == 0:
        write_meta(out, meta)
        why = ", ".join(f"{n} {reason}" for reason, n in meta["skipped"].items()) or "no input items"
        raise UserError(f"no usable sample among the inputs ({why})", source=inputs.source)
    uncond = out / meta["uncond"]
    if meta["uncond_sha256"] is None or not uncond.is_file():
        cache = TextCache(encoder)
        cache.get([""])
        cache.save(uncond)
        meta["uncond_sha256"] = file_sha256(uncond)
    meta["complete"] = True
    write_meta(out, meta)
