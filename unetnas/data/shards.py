"""On-disk format of prepared real data, and `ShardDataset`, its validating reader.

A data directory written by `unetnas data prepare` holds:
  meta.json                   settings, shapes, input hash, skipped inputs by reason, and one record per shard
                              (start, count, input items covered and skipped with why, sha256, bytes)
  shard-00000.safetensors     `latents` (N, C, h, w), `text` (N, T, D); metadata "index": JSON {captions, images}
  uncond.safetensors          a TextCache file holding the states of "" (the unconditional caption)
meta.json is also the journal of a preparation: a shard counts as done once its record is filled in.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path
from typing import Any

import torch

from unetnas.errors import UserError

DATA_FORMAT = "unetnas.latent-shards/1"  # meta.json "format"; bumped on incompatible layout changes
META_NAME = "meta.json"
UNCOND_NAME = "uncond.safetensors"
# Settings that define a preparation: rerunning into the same directory with any of them changed is an error.
PLAN_KEYS = (
    "format",
    "inputs",
    "inputs_sha256",
    "resolution",
    "shard_size",
    "dtype",
    "vae_path",
    "text_encoder",
    "text_max_length",
)
# What a reader needs (directories prepared before inputs were streamed lack "inputs" and read the same).
REQUIRED_KEYS = (
    "format",
    "n_samples",
    "resolution",
    "shard_size",
    "dtype",
    "vae_path",
    "text_encoder",
    "text_max_length",
    "latent_shape",
    "text_dim",
    "shards",
    "complete",
)
_RERUN = "rerun `unetnas data prepare` with the same arguments to rebuild it"


def shard_name(index: int) -> str:
    """File name of shard `index`."""
    return f"shard-{index:05d}.safetensors"


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_shard(path: Path, latents: torch.Tensor, text: torch.Tensor, captions: list[str], images: list[str]) -> dict:
    """Write one shard atomically (tmp file, then rename); returns its record's `sha256` and `bytes`."""
    from safetensors.torch import save_file

    # One metadata key: safetensors writes its metadata map in hash order, and shards must be byte-reproducible.
    meta = {"index": json.dumps({"captions": captions, "images": images})}
    tmp = path.with_name(path.name + ".tmp")
    save_file({"latents": latents.contiguous(), "text": text.contiguous()}, str(tmp), metadata=meta)
    os.replace(tmp, path)
    return {"sha256": file_sha256(path), "bytes": path.stat().st_size}


def write_meta(out_dir: Path, meta: dict[str, Any]) -> None:
    """Write meta.json atomically."""
    tmp = out_dir / (META_NAME + ".tmp")
    tmp.write_text(json.dumps(meta, indent=1) + "\n")
    os.replace(tmp, out_dir / META_NAME)


def read_meta(out_dir: Path) -> dict[str, Any]:
    """Parse and check meta.json of a data directory (one-line `UserError` on any problem)."""
    path = out_dir / META_NAME
    if not path.is_file():
        raise UserError("missing; expected a directory written by `unetnas data prepare`", source=path)
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise UserError(f"is not valid JSON ({err})", source=path) from None
    if not isinstance(meta, dict) or meta.get("format") != DATA_FORMAT:
        got = meta.get("format") if isinstance(meta, dict) else None
        raise UserError(f"must be {DATA_FORMAT!r}", source=path, field="format", value=got)
    missing = [k for k in REQUIRED_KEYS if k not in meta]
    if missing:
        raise UserError("is missing required keys", source=path, field="keys", value=missing)
    return meta


def _read_safetensors(path: Path, sha256: str | None) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of a safetensors file, checking its sha256 when given."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    if not path.is_file():
        raise UserError(f"missing; {_RERUN}", source=path)
    data = path.read_bytes()
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise UserError(f"is corrupt (sha256 differs from meta.json); delete it and {_RERUN}", source=path)
    try:
        (header_len,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8 : 8 + header_len])
        return load(data), header.get("__metadata__") or {}
    except (SafetensorError, struct.error, ValueError) as err:
        raise UserError(f"is corrupt ({str(err)[:80]}); delete it and {_RERUN}", source=path) from None


class ShardDataset:
    """All samples of a prepared data directory, held in memory (N x (latent + text) in the stored dtype).

    `batch(n, generator)` samples with replacement from the training pool; `fixed_batch(n, seed)` gives the
    same samples for the same seed, drawn from the `holdout` samples withheld from `batch` (or from all
    samples when `holdout` is 0).
    """

    def __init__(self, path: str | Path, holdout: int = 0, holdout_seed: int = 0, device: str = "cpu") -> None:
        """`holdout`: samples withheld from `batch()` (default none); `holdout_seed` picks which ones."""
        root = Path(path).expanduser()
        if not root.is_dir():
            raise UserError("does not exist or is not a directory; run `unetnas data prepare` first", source=root)
        meta = read_meta(root)
        if not meta["complete"]:
            done = sum(r is not None for r in meta["shards"])
            rule = f"preparation is incomplete ({done} of {len(meta['shards'])} shards); rerun it to finish"
            raise UserError(rule, source=root / META_NAME)
        self.root, self.meta, self.device = root, meta, torch.device(device)
        self.latent_shape = tuple(meta["latent_shape"])  # (C, h, w)
        self.text_len, self.text_dim = int(meta["text_max_length"]), int(meta["text_dim"])
        latents, text, self.captions = [], [], []
        for record in meta["shards"]:
            shard = root / record["file"]
            tensors, smeta = _read_safetensors(shard, record["sha256"])
            self._check(shard, tensors, smeta, record["count"])
            latents.append(tensors["latents"])
            text.append(tensors["text"])
            self.captions += json.loads(smeta["index"])["captions"]
        self.latents, self.text = torch.cat(latents), torch.cat(text)
        if len(self.captions) != meta["n_samples"]:
            raise UserError(
                f"shards hold {len(self.captions)} samples",
                source=root / META_NAME,
                field="n_samples",
                value=meta["n_samples"],
            )
        uncond, _ = _read_safetensors(root / meta["uncond"], meta.get("uncond_sha256"))
        self.uncond = uncond["states"][0].float()  # (T, D) states of "" for classifier-free guidance
        if not 0 <= holdout < len(self):
            raise UserError(f"must be in [0, {len(self)})", field="holdout", value=holdout)
        order = torch.randperm(len(self), generator=torch.Generator().manual_seed(holdout_seed))
        self.holdout_indices = order[:holdout].sort().values
        self.train_indices = order[holdout:].sort().values

    def _check(self, shard: Path, tensors: dict, smeta: dict, count: int) -> None:
        want = {"latents": (count, *self.latent_shape), "text": (count, self.text_len, self.text_dim)}
        for key, shape in want.items():
            got = tuple(tensors[key].shape) if key in tensors else None
            if got != shape:
                raise UserError(f"must have shape {shape} per meta.json", source=shard, field=key, value=got)
        try:
            ok = len(json.loads(smeta["index"])["captions"]) == count
        except (KeyError, ValueError, TypeError):
            ok = False
        if not ok:
            raise UserError(f"metadata must list {count} captions", source=shard, field="captions")

    def __len__(self) -> int:
        return self.latents.shape[0]

    def take(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
        """(latents (n, C, h, w), text states (n, T, D)) as float32 on `device`, and the n captions."""
        lat = self.latents[indices].to(self.device, torch.float32)
        txt = self.text[indices].to(self.device, torch.float32)
        return lat, txt, [self.captions[i] for i in indices.tolist()]

    def batch(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
        """`n` training samples drawn with replacement using `generator` (a CPU torch.Generator)."""
        pick = torch.randint(len(self.train_indices), (n,), generator=generator)
        return self.take(self.train_indices[pick])

    def fixed_batch(self, n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
        """The same `n` distinct samples for the same `seed`: held-out ones when `holdout` > 0."""
        pool = self.holdout_indices if len(self.holdout_indices) else torch.arange(len(self))
        if not 0 < n <= len(pool):
            raise UserError(f"must be in [1, {len(pool)}] (samples available)", field="fixed_batch n", value=n)
        order = torch.randperm(len(pool), generator=torch.Generator().manual_seed(seed))
        return self.take(pool[order[:n]])
