"""Training data for a trial: the built-in world (pixels + cached text states) or prepared shards (latents).

Every batch is a pure function of ``(seed, step)``: the whole global batch is drawn, then each rank takes its slice,
so one rank and several ranks see the same samples at equal global batch, and a resumed run sees what an
uninterrupted one would have.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch

from unetnas.errors import UserError


def cache_dir() -> Path:
    """Where encoded caption sets and JIT-compiled ops are kept between runs (``UNETNAS_CACHE``)."""
    return Path(os.environ.get("UNETNAS_CACHE", Path.home() / ".cache" / "unetnas"))


def step_generator(seed: int, step: int, tag: int = 0) -> torch.Generator:
    """A generator owned by one (seed, step, use): no RNG state is shared across steps, trials or ranks."""
    digest = hashlib.blake2b(f"{seed}/{step}/{tag}".encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little") & (2**63 - 1))


class Source(Protocol):
    channels: int
    size: int
    text_len: int
    text_dim: int
    uncond: torch.Tensor  # (T, D) states of the empty caption

    def global_batch(self, step: int, n: int) -> tuple[torch.Tensor, torch.Tensor]: ...
    def val_batch(self, n: int) -> tuple[torch.Tensor, torch.Tensor]: ...
    def describe(self) -> dict: ...


@dataclass
class WorldSource:
    """A pool of built-in-world scenes (train split) whose captions are encoded once and cached on disk."""

    pool: int = 8192  # distinct training scenes
    seed: int = 0
    resolution: int = 32
    text_encoder: str | None = None  # None: the packaged all-MiniLM-L6-v2
    text_len: int = 16

    def __post_init__(self) -> None:
        from unetnas.text import TextEncoder
        from unetnas.world.dataset import fixed_set

        self.encoder = TextEncoder.load(self.text_encoder, max_length=self.text_len)
        self.channels, self.size, self.text_dim = 3, self.resolution, self.encoder.dim
        train = fixed_set("train", self.pool, self.seed, self.resolution)
        val = fixed_set("val", 512, self.seed, self.resolution)
        self.images, self.val_images = train.images, val.images
        self.captions, self.val_captions = train.captions, val.captions
        self.text = self._encode_cached("train", self.captions)
        self.val_text = self._encode_cached("val", self.val_captions)
        self.uncond = self.encoder.encode([""])[0]

    def _encode_cached(self, split: str, captions: list[str]) -> torch.Tensor:
        from unetnas.text import TextCache

        sig = self.encoder.signature()
        key = hashlib.blake2b(repr((sig, split, self.seed, len(captions), captions[:8])).encode(), digest_size=8)
        path = cache_dir() / "text" / f"world-{split}-{key.hexdigest()}.safetensors"
        if path.is_file():
            cache = TextCache.load(path, self.encoder)
            if all(c in cache for c in captions):
                return cache.get(captions)
        cache = TextCache(self.encoder)
        states = cache.get(captions)
        path.parent.mkdir(parents=True, exist_ok=True)
        cache.save(path)
        return states

    def global_batch(self, step: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.randint(self.pool, (n,), generator=step_generator(self.seed, step, tag=1))
        return self.images[idx], self.text[idx]

    def val_batch(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        n = min(n, len(self.val_captions))
        return self.val_images[:n], self.val_text[:n]

    def describe(self) -> dict:
        return {
            "kind": "shapes",
            "pool": self.pool,
            "seed": self.seed,
            "resolution": self.resolution,
            "text_encoder": self.encoder.signature(),
        }


class ShardSource:
    """Prepared safetensors shards (``unetnas data prepare``): VAE latents and text states."""

    def __init__(self, path: str | Path, seed: int = 0, holdout: int = 256) -> None:
        from unetnas.data.shards import ShardDataset, read_meta

        self.path, self.seed = Path(path), seed
        n = int(read_meta(self.path).get("n_samples", 0))  # validates meta.json before the shards are read
        self.data = ShardDataset(self.path, holdout=min(holdout, n // 8), holdout_seed=seed)
        self.channels, self.size = self.data.latent_shape[0], self.data.latent_shape[-1]
        self.text_len, self.text_dim = self.data.text_len, self.data.text_dim
        self.uncond = self.data.uncond

    def global_batch(self, step: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        latents, text, _ = self.data.batch(n, step_generator(self.seed, step, tag=1))
        return latents.float(), text.float()

    def val_batch(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        n = min(n, len(self.data.holdout_indices) or len(self.data))  # small data sets hold out fewer samples
        latents, text, _ = self.data.fixed_batch(n, seed=self.seed)
        return latents.float(), text.float()

    def describe(self) -> dict:
        m = self.data.meta
        return {
            "kind": "shards",
            "path": str(self.path.resolve()),
            "samples": len(self.data),
            "text_encoder": {"name": m["text_encoder"], "dim": self.text_dim, "max_length": self.text_len},
        }


def open_source(data: str, *, seed: int, pool: int, resolution: int, text_len: int) -> Source:
    """``shapes`` (the built-in world) or a directory of prepared shards."""
    if data == "shapes":
        return WorldSource(pool=pool, seed=seed, resolution=resolution, text_len=text_len)
    p = Path(data)
    if not p.is_dir():
        raise UserError("is neither 'shapes' nor a directory of prepared shards", field="--data", value=data)
    return ShardSource(p, seed=seed)
