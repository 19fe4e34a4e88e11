"""The image + caption inputs `unetnas data prepare` reads, as one ordered stream of `Item`s.

Four layouts (``open_inputs`` picks one from the arguments and, for a folder, from what it holds):
- **images folder**: images (``IMAGE_SUFFIXES``, recursive, sorted by relative path), each with a same-stem ``.txt``
  caption;
- **Hugging Face imagefolder**: a folder with ``metadata.jsonl`` or ``metadata.csv`` files (at its root or in split
  sub-folders), each row naming an image by ``file_name`` (relative to the metadata file) and its caption in a column
  (``--caption-column``, else the first of ``CAPTION_COLUMNS`` present), as ``datasets.load_dataset("imagefolder")``
  reads them;
- **WebDataset shards** as img2dataset writes them: ``.tar`` files of ``<key>.jpg|png|webp`` + ``<key>.txt`` and/or
  ``<key>.json`` (``{"caption": ...}``), read in order with the ``webdataset`` package (a folder of ``.tar`` files, one
  file, or a brace pattern such as ``data/{00000..00099}.tar``);
- **JSONL manifest**: ``{"image": path relative to the manifest, "caption": str}`` a line.

Items are streamed: a tar member's bytes are read when its item is reached. Problems with one item (a missing image
file, no caption) do not stop the stream: the item carries ``problem`` and ``prepare`` skips and counts it, as it does
unreadable images. Problems with the inputs as a whole (no such folder, a metadata file without the caption column,
malformed JSON) are one-line ``UserError``s raised by ``open_inputs`` before anything is written.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from unetnas.errors import UserError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")  # what an images folder is scanned for
WDS_IMAGE_KEYS = ("jpg", "jpeg", "png", "webp")  # image fields of a WebDataset sample, first present wins
CAPTION_COLUMNS = ("text", "caption")  # imagefolder caption column when none is given (diffusers' scripts: "text")
METADATA_NAMES = ("metadata.jsonl", "metadata.csv")


@dataclass(frozen=True)
class Item:
    """One input sample. ``key`` names it in errors and in the shards' index (relative path or ``tar/key``);
    the image is ``path`` on disk or ``data`` bytes; ``problem`` (if set) is why it cannot be used."""

    key: str
    caption: str | None
    path: Path | None = None
    data: bytes | None = None
    problem: str | None = None


@dataclass(frozen=True)
class Inputs:
    """A stream of items in a fixed order, and what identifies it for resuming (``sha256``)."""

    kind: str  # "images" | "imagefolder" | "webdataset" | "manifest"
    source: str  # what the user passed
    sha256: str  # hash of the item list (keys, sizes, captions) or, for tars, of the tar names and sizes
    count: int | None  # number of items when known without reading the images (None for tars)
    items: Callable[[], Iterator[Item]]  # a fresh iterator over the items, from the first


def _digest(rows: list) -> str:
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()


def _fixed(kind: str, source: Path, items: list[Item]) -> Inputs:
    rows = [
        [i.key, i.path.stat().st_size if i.path is not None and i.path.is_file() else None, i.caption] for i in items
    ]
    return Inputs(kind, str(source), _digest(rows), len(items), lambda: iter(items))


def images_folder(root: Path) -> Inputs:
    """Images under ``root`` with same-stem ``.txt`` captions (an image without one is an item with a problem)."""
    items = []
    for path in sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()):
        sidecar = path.with_suffix(".txt")
        caption = sidecar.read_text(encoding="utf-8").strip() if sidecar.is_file() else None
        problem = None if caption is not None else "no caption (.txt file of the same stem)"
        items.append(Item(path.relative_to(root).as_posix(), caption, path=path, problem=problem))
    return _fixed("images", root, items)


def _metadata_rows(meta: Path) -> tuple[list[dict], list[str]]:
    """Rows and column names of one metadata.jsonl / metadata.csv file."""
    if meta.suffix == ".csv":
        with open(meta, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            return list(reader), list(reader.fieldnames or [])
    rows, columns = [], {}
    for lineno, line in enumerate(meta.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as err:
            raise UserError(f"is not valid JSON ({err})", source=f"{meta}:{lineno}") from None
        if not isinstance(row, dict):
            raise UserError("must be a JSON object with file_name and a caption", source=f"{meta}:{lineno}")
        rows.append(row)
        columns.update(dict.fromkeys(row))
    return rows, list(columns)


def imagefolder(root: Path, caption_column: str | None) -> Inputs:
    """A Hugging Face imagefolder: metadata files (sorted by path) list ``file_name`` + caption, in file order."""
    items = []
    for meta in sorted(p for name in METADATA_NAMES for p in root.rglob(name)):
        rows, columns = _metadata_rows(meta)
        if "file_name" not in columns:
            raise UserError(f"has no file_name column (columns: {columns})", source=meta, field="file_name")
        column = caption_column or next((c for c in CAPTION_COLUMNS if c in columns), None)
        if column is None or column not in columns:
            rule = f"no caption column (columns: {columns}); name it with --caption-column"
            raise UserError(rule, source=meta, field="caption_column", value=caption_column)
        for row in rows:
            path = meta.parent / str(row.get("file_name", ""))
            caption = row.get(column)
            caption = caption.strip() if isinstance(caption, str) and caption.strip() else None
            problem = (
                "missing image file"
                if not path.is_file()
                else None
                if caption is not None
                else f"no caption in column {column!r}"
            )
            key = path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)
            items.append(Item(key, caption, path=path, problem=problem))
    return _fixed("imagefolder", root, items)


def manifest(path: Path) -> Inputs:
    """A JSONL manifest of ``{"image": ..., "caption": ...}`` (blank lines skipped)."""
    if not path.is_file():
        raise UserError("does not exist; --manifest must be a JSONL file", source=path)
    items = []
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
        problem = None if image.is_file() else "missing image file (paths are relative to the manifest)"
        items.append(Item(row["image"], row["caption"].strip(), path=image, problem=problem))
    return _fixed("manifest", path, items)


def tar_files(spec: str) -> list[Path]:
    """The local ``.tar`` files of ``--shards``: a folder (its ``*.tar``, sorted), one file, or a brace pattern."""
    import braceexpand  # installed with webdataset

    p = Path(spec).expanduser()
    if p.is_dir():
        files = sorted(p.glob("*.tar"))
        if not files:
            raise UserError("holds no .tar files", source=p, field="--shards")
        return files
    files = [Path(s).expanduser() for s in braceexpand.braceexpand(spec)]
    missing = [f for f in files if not f.is_file()]
    if missing:
        rule = f"no such file ({len(missing)} of {len(files)} missing); --shards takes local .tar files"
        raise UserError(rule, source=missing[0], field="--shards")
    return files


def _wds_items(files: list[Path], errors: list[str]) -> Iterator[Item]:
    import webdataset as wds

    def keep_going(err: Exception) -> bool:  # a truncated or corrupt tar: note it, go on with the next file
        errors.append(f"{type(err).__name__}: {str(err)[:120]}")
        return True

    stream = wds.WebDataset([str(f) for f in files], shardshuffle=False, handler=keep_going, empty_check=False)
    for sample in stream:
        key = f"{Path(sample.get('__url__', '')).name}/{sample['__key__']}"
        image = next((sample[k] for k in WDS_IMAGE_KEYS if k in sample), None)
        caption = sample["txt"].decode("utf-8", "replace").strip() if "txt" in sample else None
        if not caption and "json" in sample:
            try:
                caption = json.loads(sample["json"]).get("caption")
            except (ValueError, AttributeError):
                caption = None
            caption = caption.strip() if isinstance(caption, str) else None
        problem = (
            "no image (jpg/png/webp)"
            if image is None
            else None
            if caption
            else "no caption (txt, or json with a caption)"
        )
        yield Item(key, caption or None, data=image, problem=problem)


def webdataset_shards(spec: str, errors: list[str]) -> Inputs:
    """WebDataset tar shards, streamed in file order; read errors of whole tars are appended to ``errors``."""
    files = tar_files(spec)
    ident = _digest([[f.name, f.stat().st_size] for f in files])
    return Inputs("webdataset", spec, ident, None, lambda: _wds_items(files, errors))


def open_inputs(
    images_dir: str | Path | None = None,
    manifest_path: str | Path | None = None,
    shards: str | None = None,
    caption_column: str | None = None,
    errors: list[str] | None = None,
) -> Inputs:
    """The inputs named by exactly one of ``images_dir`` (an images folder, or an imagefolder when it holds
    metadata files), ``manifest_path`` or ``shards``."""
    given = [x for x in (images_dir, manifest_path, shards) if x is not None]
    if len(given) != 1:
        raise UserError("give exactly one of --images DIR, --manifest FILE.jsonl or --shards TARS", field="inputs")
    if shards is not None:
        return webdataset_shards(str(shards), [] if errors is None else errors)
    if manifest_path is not None:
        return manifest(Path(manifest_path).expanduser())
    root = Path(images_dir).expanduser()
    if not root.is_dir():
        raise UserError(
            "does not exist or is not a directory; --images must hold images + .txt captions, or an "
            "imagefolder with metadata.jsonl/.csv",
            source=root,
        )
    if any(True for name in METADATA_NAMES for _ in root.rglob(name)):
        return imagefolder(root, caption_column)
    if caption_column is not None:
        raise UserError(
            "applies to imagefolder metadata (metadata.jsonl/.csv), and this folder has none",
            field="--caption-column",
            value=caption_column,
        )
    return images_folder(root)
