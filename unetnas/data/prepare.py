"""`prepare`: images + captions -> VAE latents + text states in safetensors shards (see `shards.py` for the layout).

Inputs are a directory of images with same-stem `.txt` caption sidecars, or a JSONL manifest of
`{"image": path relative to the manifest, "caption": str}`. Each image is resized (shorter side) and centre-cropped
to `resolution`, encoded with a diffusers `AutoencoderKL` (latent = (posterior mean - shift_factor) *
scaling_factor: deterministic, so a resumed run rewrites a shard bit for bit), and its caption with `TextEncoder`.
Batches never cross shard boundaries, so each shard's numbers do not depend on which shards ran before.

Resume: shards already recorded in meta.json are skipped. Rerunning with other inputs or settings into the same
directory is a `UserError` raised before anything is written.
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unetnas.data.shards import (
    DATA_FORMAT, META_NAME, PLAN_KEYS, UNCOND_NAME, file_sha256, read_meta, shard_name, write_meta, write_shard,
)
from unetnas.errors import UserError
from unetnas.text import PACKAGED_NAME, TextCache, TextEncoder, first_line, model_dir, offline, quiet_loading

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")  # what an images directory is scanned for
DTYPES = {"float16": torch.float16, "float32": torch.float32}  # storage dtypes of latents and text states
DECODE_THREADS = min(8, os.cpu_count() or 1)  # image decode/resize threads (PIL releases the GIL)


@dataclass(frozen=True)
class Sample:
    """One input: `key` is the image path as listed (relative), `path` where it is on disk."""

    key: str
    path: Path
    caption: str


def list_images_dir(images_dir: str | Path) -> list[Sample]:
    """Images under `images_dir` (recursive, sorted by relative path), each with its same-stem `.txt` caption."""
    root = Path(images_dir).expanduser()
    if not root.is_dir():
        raise UserError("does not exist or is not a directory; --images must hold images + .txt captions", source=root)
    samples = []
    for path in sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()):
        sidecar = path.with_suffix(".txt")
        if not sidecar.is_file():
            raise UserError("has no caption: each image needs a .txt file of the same stem", source=path)
        samples.append(Sample(path.relative_to(root).as_posix(), path, sidecar.read_text(encoding="utf-8").strip()))
    return samples


def list_manifest(manifest: str | Path) -> list[Sample]:
    """Samples of a JSONL manifest, one `{"image": ..., "caption": ...}` object a line (blank lines skipped)."""
    path = Path(manifest).expanduser()
    if not path.is_file():
        raise UserError("does not exist; --manifest must be a JSONL file", source=path)
    samples = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            row = json.loads(line)
        except ValueError as err:
            raise UserError(f"is not valid JSON ({err})", source=where) from None
        if not isinstance(row, dict) or not isinstance(row.get("image"), str):
            raise UserError('must be an object with a string "image"', source=where, field="image")
        if not isinstance(row.get("caption"), str):
            raise UserError("must be a string", source=where, field="caption", value=row.get("caption"))
        image = path.parent / row["image"]
        if not image.is_file():
            rule = "file does not exist (paths are relative to the manifest)"
            raise UserError(rule, source=where, field="image", value=row["image"])
        samples.append(Sample(row["image"], image, row["caption"].strip()))
    return samples


def inputs_sha256(samples: list[Sample]) -> str:
    """Hash of the input list: image keys, file sizes and captions, in order."""
    rows = [[s.key, s.path.stat().st_size, s.caption] for s in samples]
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()


def load_image(path: Path, resolution: int) -> torch.Tensor:
    """(3, resolution, resolution) in [-1, 1]: shorter side resized (bicubic), then centre-cropped."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            img = ImageOps.exif_transpose(im).convert("RGB")
    except (UnidentifiedImageError, OSError) as err:
        raise UserError(f"is not a readable image ({err})", source=path) from None
    scale = resolution / min(img.size)
    w, h = max(resolution, round(img.width * scale)), max(resolution, round(img.height * scale))
    img = img.resize((w, h), Image.Resampling.BICUBIC)
    left, top = (w - resolution) // 2, (h - resolution) // 2
    img = img.crop((left, top, left + resolution, top + resolution))
    return torch.from_numpy(np.asarray(img, dtype=np.float32) / 127.5 - 1.0).permute(2, 0, 1)


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


def _check_args(images_dir, manifest, resolution: int, shard_size: int, batch_size: int, dtype: str) -> None:
    if (images_dir is None) == (manifest is None):
        raise UserError("give exactly one of --images DIR or --manifest FILE.jsonl", field="inputs")
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
        if meta[key] != plan[key]:
            rule = f"differs from the preparation in this directory ({meta[key]!r}); use a new --out or the old value"
            raise UserError(rule, source=out / META_NAME, field=key, value=plan[key])
    return meta


def prepare(
    *,
    out_dir: str | Path,
    vae_path: str | Path,
    text_encoder_path: str | Path | None = None,
    images_dir: str | Path | None = None,
    manifest: str | Path | None = None,
    resolution: int = 256,  # pixels; SD-style 256 -> 32x32 latents with an 8x VAE
    shard_size: int = 256,  # samples per shard file
    batch_size: int = 8,  # images per VAE forward
    text_max_length: int = 16,  # tokens per caption (the TextEncoder default)
    dtype: str = "float16",  # storage dtype of latents and text states (readers get float32)
    device: str = "cpu",  # where the VAE and text encoder run
    progress: bool = True,  # show a rich progress bar on stderr
) -> dict[str, Any]:
    """Encode images and captions into `out_dir`, resuming a previous run there; returns the final meta.json."""
    offline()
    _check_args(images_dir, manifest, resolution, shard_size, batch_size, dtype)
    samples = list_images_dir(images_dir) if images_dir is not None else list_manifest(manifest)
    if not samples:
        raise UserError("holds no images", source=images_dir if images_dir is not None else manifest)
    vae_dir = model_dir(vae_path, "vae", "--vae")
    te_dir = None if text_encoder_path is None else model_dir(text_encoder_path, "text_encoder", "--text-encoder")
    out = Path(out_dir).expanduser()
    plan = {
        "format": DATA_FORMAT, "n_samples": len(samples), "inputs_sha256": inputs_sha256(samples),
        "resolution": resolution, "shard_size": shard_size, "dtype": dtype, "vae_path": str(vae_dir),
        "text_encoder": PACKAGED_NAME if te_dir is None else str(te_dir), "text_max_length": text_max_length,
    }
    meta = _open_out_dir(out, plan)  # checked before any model loads or any byte is written
    if meta is not None and meta["complete"] and _shards_present(out, meta):
        return meta  # nothing left to do
    vae = _load_vae(vae_dir, device)
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    if resolution % factor:
        raise UserError(f"must be divisible by the VAE's downsampling factor {factor}", field="resolution",
                        value=resolution)
    encoder = TextEncoder.load(te_dir, max_length=text_max_length, device=device)
    shape = [vae.config.latent_channels, resolution // factor, resolution // factor]
    if meta is not None and (meta["latent_shape"], meta["text_dim"]) != (shape, encoder.dim):
        rule = "the VAE or text encoder changed on disk since this directory was started; use a new --out"
        raise UserError(rule, source=out / META_NAME, field="latent_shape, text_dim", value=(shape, encoder.dim))
    if meta is None:
        out.mkdir(parents=True, exist_ok=True)
        n_shards = -(-len(samples) // shard_size)
        meta = {
            **plan, "latent_shape": shape,
            "scaling_factor": vae.config.scaling_factor, "shift_factor": vae.config.get("shift_factor"),
            "text_dim": encoder.dim, "text_flops_per_caption": encoder.text_flops_per_caption,
            "uncond": UNCOND_NAME, "uncond_sha256": None, "shards": [None] * n_shards, "complete": False,
        }
        write_meta(out, meta)
    _run(out, meta, samples, vae, encoder, batch_size, device, progress)
    return meta


def _shard_done(out: Path, record: dict | None) -> bool:
    """A shard is done once meta.json records it and its file has the recorded size."""
    path = out / record["file"] if record is not None else None
    return path is not None and path.is_file() and path.stat().st_size == record["bytes"]


def _shards_present(out: Path, meta: dict) -> bool:
    return all(_shard_done(out, r) for r in meta["shards"]) and (out / meta["uncond"]).is_file()


def _run(out: Path, meta: dict, samples: list[Sample], vae, encoder: TextEncoder, batch_size: int, device: str,
         progress: bool) -> None:
    """Encode every shard not yet recorded in meta.json, recording each as it lands; then the "" states."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    size, dtype = meta["shard_size"], DTYPES[meta["dtype"]]
    shift, scale = meta["shift_factor"] or 0.0, meta["scaling_factor"]
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with (
        Progress(*columns, console=Console(stderr=True), disable=not progress) as bar,
        ThreadPoolExecutor(DECODE_THREADS) as pool,
    ):
        task = bar.add_task(f"prepare {out.name}", total=len(samples))
        for index, record in enumerate(meta["shards"]):
            start = index * size
            chunk = samples[start : start + size]
            path = out / shard_name(index)
            if _shard_done(out, record):
                bar.advance(task, len(chunk))
                continue
            latents = []
            for b in range(0, len(chunk), batch_size):
                paths = [s.path for s in chunk[b : b + batch_size]]
                pixels = torch.stack(list(pool.map(load_image, paths, [meta["resolution"]] * len(paths))))
                with torch.no_grad():
                    mean = vae.encode(pixels.to(device)).latent_dist.mean
                latents.append(((mean - shift) * scale).to("cpu", dtype))
                bar.advance(task, len(pixels))
            captions = [s.caption for s in chunk]
            unique = {c: i for i, c in enumerate(dict.fromkeys(captions))}  # each distinct caption encoded once
            states = encoder.encode(list(unique))[[unique[c] for c in captions]].to(dtype)
            entry = write_shard(path, torch.cat(latents), states, captions, [s.key for s in chunk])
            meta["shards"][index] = {"file": path.name, "start": start, "count": len(chunk), **entry}
            write_meta(out, meta)
    uncond = out / meta["uncond"]
    if meta["uncond_sha256"] is None or not uncond.is_file():
        cache = TextCache(encoder)
        cache.get([""])
        cache.save(uncond)
        meta["uncond_sha256"] = file_sha256(uncond)
    meta["complete"] = True
    write_meta(out, meta)
