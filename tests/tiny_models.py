"""Tiny random-initialised real models (diffusers/transformers classes from small configs) saved to disk.

Every builder writes with `save_pretrained` into `out_dir` and returns that directory, so code under test loads
them by path exactly as it would load real checkpoints. Tokenizers are built offline from a tiny vocabulary:
a WordPiece one (BERT) and a character-level byte-BPE one (CLIP) that cover lowercase ASCII text without [UNK].
Initialisation is seeded inside `torch.random.fork_rng`, so the global RNG is left as it was.

    from tiny_models import tiny_bert, tiny_clip, tiny_clip_text, tiny_vae, tiny_image_folder
"""

from __future__ import annotations

import string
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from unetnas.text import quiet_loading

_CHARS = list(string.ascii_lowercase + string.digits + ".,!?'-")
_WORDS = ["a", "the", "of", "on", "red", "green", "blue", "yellow", "circle", "square", "cat", "dog", "photo"]
COLOURS = {"red": (220, 40, 40), "green": (40, 180, 60), "blue": (40, 80, 220), "yellow": (230, 210, 40)}
SHAPES = ("circle", "square")


def _save_seeded(build, out: Path, seed: int) -> Path:
    """Build a model with `build()` under a private RNG seeded with `seed`, then `save_pretrained(out)`."""
    with torch.random.fork_rng(devices=[]), quiet_loading():
        torch.manual_seed(seed)
        build().save_pretrained(out)
    return Path(out)


def tiny_bert_tokenizer(out_dir: str | Path) -> Path:
    """Save a BertTokenizer with ~100 tokens (specials, chars, ##chars, a few words); returns `out_dir`."""
    from transformers import BertTokenizer

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokens = specials + _CHARS + ["##" + c for c in _CHARS] + [w for w in _WORDS if w not in _CHARS]
    tok = BertTokenizer(vocab={t: i for i, t in enumerate(tokens)})
    tok.save_pretrained(out_dir)
    return Path(out_dir)


def tiny_clip_tokenizer(out_dir: str | Path) -> Path:
    """Save a CLIPTokenizer (byte-level BPE, no merges: one token per character); bos=0, eos=pad=1."""
    from transformers import CLIPTokenizer

    tokens = ["<|startoftext|>", "<|endoftext|>"] + _CHARS + [c + "</w>" for c in _CHARS]
    tok = CLIPTokenizer(vocab={t: i for i, t in enumerate(tokens)}, merges=[])
    tok.save_pretrained(out_dir)
    return Path(out_dir)


def _vocab_size(tok_dir: Path) -> int:
    from transformers import AutoTokenizer

    return len(AutoTokenizer.from_pretrained(tok_dir, local_files_only=True))


def tiny_bert(out_dir: str | Path, hidden: int = 32, layers: int = 2, max_positions: int = 64, seed: int = 0) -> Path:
    """A BertModel (hidden 32, 2 layers, 4 heads) plus its tokenizer in `out_dir`."""
    from transformers import BertConfig, BertModel

    out = tiny_bert_tokenizer(out_dir)
    cfg = BertConfig(
        vocab_size=_vocab_size(out), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=4,
        intermediate_size=2 * hidden, max_position_embeddings=max_positions, pad_token_id=0,
    )
    return _save_seeded(lambda: BertModel(cfg), out, seed)


def _clip_text_config(vocab_size: int, hidden: int, layers: int, max_positions: int, projection_dim: int) -> dict:
    return dict(
        vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=4,
        intermediate_size=2 * hidden, max_position_embeddings=max_positions, projection_dim=projection_dim,
        bos_token_id=0, eos_token_id=1, pad_token_id=1,
    )


def tiny_clip_text(
    out_dir: str | Path, projection: bool = False, hidden: int = 32, layers: int = 2, max_positions: int = 32,
    seed: int = 0,
) -> Path:
    """A CLIPTextModel (or CLIPTextModelWithProjection, projection_dim 16) plus a CLIP tokenizer in `out_dir`."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    out = tiny_clip_tokenizer(out_dir)
    cfg = CLIPTextConfig(**_clip_text_config(_vocab_size(out), hidden, layers, max_positions, 16))
    return _save_seeded(lambda: (CLIPTextModelWithProjection if projection else CLIPTextModel)(cfg), out, seed)


def tiny_clip(out_dir: str | Path, image_size: int = 32, hidden: int = 32, seed: int = 0) -> Path:
    """A full CLIPModel (text + vision, projection 16) and a CLIPProcessor (tokenizer + PIL image processor;
    the default torchvision backend is not installed here)."""
    from transformers import AutoTokenizer, CLIPConfig, CLIPImageProcessorPil, CLIPModel, CLIPProcessor

    out = tiny_clip_tokenizer(out_dir)
    tok = AutoTokenizer.from_pretrained(out, local_files_only=True)
    vision = dict(hidden_size=hidden, num_hidden_layers=2, num_attention_heads=4, intermediate_size=2 * hidden,
                  image_size=image_size, patch_size=image_size // 4)
    cfg = CLIPConfig(text_config=_clip_text_config(len(tok), hidden, 2, 32, 16), vision_config=vision,
                     projection_dim=16)
    images = CLIPImageProcessorPil(size={"shortest_edge": image_size}, crop_size=image_size)
    CLIPProcessor(image_processor=images, tokenizer=tok).save_pretrained(out)
    return _save_seeded(lambda: CLIPModel(cfg), out, seed)


def tiny_vae(
    out_dir: str | Path, block_out_channels: tuple[int, ...] = (8, 16), latent_channels: int = 4, seed: int = 0
) -> Path:
    """A diffusers AutoencoderKL, 1 layer per block, norm groups 4; downsamples by 2**(len(blocks)-1)."""
    from diffusers import AutoencoderKL

    n = len(block_out_channels)
    return _save_seeded(
        lambda: AutoencoderKL(
            block_out_channels=block_out_channels, down_block_types=("DownEncoderBlock2D",) * n,
            up_block_types=("UpDecoderBlock2D",) * n, layers_per_block=1, latent_channels=latent_channels,
            norm_num_groups=4, sample_size=32,
        ),
        Path(out_dir), seed,
    )


def tiny_image_folder(
    out_dir: str | Path, n: int = 20, size: tuple[int, int] = (48, 40), seed: int = 0, sidecars: bool = True
) -> list[tuple[Path, str]]:
    """Write `n` PNGs (a coloured shape on noise, `size` = (w, h)) named img-000.png...; captions such as
    "a red circle" go into same-stem .txt sidecars when `sidecars`. Returns [(png path, caption)]."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    items = []
    for i in range(n):
        colour, shape = list(COLOURS)[i % len(COLOURS)], SHAPES[(i // len(COLOURS)) % len(SHAPES)]
        img = Image.fromarray(rng.integers(0, 60, (size[1], size[0], 3), dtype=np.uint8))
        w, h = size
        box = (w // 4, h // 4, 3 * w // 4, 3 * h // 4)
        draw = ImageDraw.Draw(img)
        (draw.ellipse if shape == "circle" else draw.rectangle)(box, fill=COLOURS[colour])
        path = out / f"img-{i:03d}.png"
        img.save(path)
        caption = f"a {colour} {shape}"
        if sidecars:
            path.with_suffix(".txt").write_text(caption + "\n")
        items.append((path, caption))
    return items
