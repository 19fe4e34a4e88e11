"""Tiny random-initialised real models (diffusers/transformers classes from small configs) saved to disk: the one
helper module for text encoders, VAEs, VQA and CLIP models in tests.

Every builder writes model (+ tokenizer/processor) with `save_pretrained` into `out_dir` and returns that directory,
so code under test loads them by path exactly as it would load real checkpoints (this tests plumbing, not accuracy).
Tokenizers are built offline from a tiny vocabulary: WordPiece (BERT; BLIP and ViLT use it too) with every lowercase
character and its `##` continuation, and a character-level byte-BPE one (CLIP): both cover lowercase ASCII text
without [UNK]. Image processors are the PIL backends (torchvision is not installed here) at 32x32. Initialisation is
seeded inside `torch.random.fork_rng`, so the global RNG is left as it was.

    from tiny_models import tiny_bert, tiny_clip, tiny_clip_text, tiny_vae, tiny_image_folder
    from tiny_models import tiny_blip_vqa, tiny_vilt_vqa, VILT_LABELS
"""

from __future__ import annotations

import string
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from unetnas.text import quiet_loading

_CHARS = list(string.ascii_lowercase + string.digits + ".,!?'-")
_WORDS = [
    "a",
    "the",
    "of",
    "on",
    "is",
    "are",
    "there",
    "what",
    "how",
    "many",
    "color",
    "shape",
    "yes",
    "no",
    "red",
    "green",
    "blue",
    "yellow",
    "two",
    "circle",
    "square",
    "cat",
    "dog",
    "photo",
]
_BERT_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]"]  # [DEC]: BLIP's decoder start token
VILT_LABELS = ["yes", "no", "red", "blue", "green", "two", "three", "circle", "square", "dog"]
"""The answer vocabulary (`config.id2label`) of `tiny_vilt_vqa`."""
IMAGE_SIZE = 32  # input size of the tiny vision towers (BLIP, ViLT, CLIP)
COLOURS = {"red": (220, 40, 40), "green": (40, 180, 60), "blue": (40, 80, 220), "yellow": (230, 210, 40)}
SHAPES = ("circle", "square")


def _save_seeded(build, out: Path, seed: int) -> Path:
    """Build a model with `build()` under a private RNG seeded with `seed`, then `save_pretrained(out)`."""
    with torch.random.fork_rng(devices=[]), quiet_loading():
        torch.manual_seed(seed)
        build().eval().save_pretrained(out)
    return Path(out)


def bert_tokenizer():
    """A BertTokenizer over [PAD] [UNK] [CLS] [SEP] [MASK] [DEC], characters, ##characters and a few words."""
    from transformers import BertTokenizer

    tokens = _BERT_SPECIALS + _CHARS + ["##" + c for c in _CHARS] + [w for w in _WORDS if w not in _CHARS]
    return BertTokenizer(vocab={t: i for i, t in enumerate(tokens)}, do_lower_case=True)


def clip_tokenizer():
    """A CLIPTokenizer (byte-level BPE, no merges: one token per character); bos=0, eos=pad=1."""
    from transformers import CLIPTokenizer

    tokens = ["<|startoftext|>", "<|endoftext|>"] + _CHARS + [c + "</w>" for c in _CHARS]
    return CLIPTokenizer(vocab={t: i for i, t in enumerate(tokens)}, merges=[], pad_token="<|endoftext|>")


def _encoder_dims(hidden: int, layers: int = 2, heads: int = 4) -> dict:
    return dict(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads, intermediate_size=2 * hidden)


def tiny_bert(out_dir: str | Path, hidden: int = 32, layers: int = 2, max_positions: int = 64, seed: int = 0) -> Path:
    """A BertModel (hidden 32, 2 layers, 4 heads) plus its tokenizer in `out_dir`."""
    from transformers import BertConfig, BertModel

    tok = bert_tokenizer()
    tok.save_pretrained(out_dir)
    cfg = BertConfig(
        **_encoder_dims(hidden, layers), vocab_size=len(tok), max_position_embeddings=max_positions, pad_token_id=0
    )
    return _save_seeded(lambda: BertModel(cfg), Path(out_dir), seed)


def _clip_text_config(vocab_size: int, hidden: int, layers: int, max_positions: int) -> dict:
    return dict(
        **_encoder_dims(hidden, layers),
        vocab_size=vocab_size,
        max_position_embeddings=max_positions,
        projection_dim=16,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
    )


def tiny_clip_text(
    out_dir: str | Path,
    projection: bool = False,
    hidden: int = 32,
    layers: int = 2,
    max_positions: int = 32,
    seed: int = 0,
) -> Path:
    """A CLIPTextModel (or CLIPTextModelWithProjection, projection_dim 16) plus a CLIP tokenizer in `out_dir`."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    tok = clip_tokenizer()
    tok.save_pretrained(out_dir)
    cfg = CLIPTextConfig(**_clip_text_config(len(tok), hidden, layers, max_positions))
    return _save_seeded(
        lambda: (CLIPTextModelWithProjection if projection else CLIPTextModel)(cfg), Path(out_dir), seed
    )


def tiny_clip(out_dir: str | Path, image_size: int = IMAGE_SIZE, hidden: int = 32, seed: int = 0) -> Path:
    """A full CLIPModel (text + vision towers, projection 16, 32 text positions, patch image_size/4) and a
    CLIPProcessor (CLIP tokenizer + PIL image processor) in `out_dir`."""
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel, CLIPProcessor

    tok = clip_tokenizer()
    vision = dict(_encoder_dims(hidden), image_size=image_size, patch_size=image_size // 4)
    cfg = CLIPConfig(text_config=_clip_text_config(len(tok), hidden, 2, 32), vision_config=vision, projection_dim=16)
    images = CLIPImageProcessorPil(size={"shortest_edge": image_size}, crop_size=image_size)
    CLIPProcessor(image_processor=images, tokenizer=tok).save_pretrained(out_dir)
    return _save_seeded(lambda: CLIPModel(cfg), Path(out_dir), seed)


def tiny_blip_vqa(out_dir: str | Path, hidden: int = 32, seed: int = 0) -> Path:
    """A `BlipForQuestionAnswering` (vision ViT 32x32 / patch 8, text encoder + decoder 2 layers each) and a
    `BlipProcessor` in `out_dir`. The decoder starts from [DEC] and stops at [SEP], as the real BLIP does."""
    from transformers import BlipConfig, BlipForQuestionAnswering, BlipImageProcessorPil, BlipProcessor

    tok = bert_tokenizer()
    tok.bos_token = "[DEC]"
    vocab = tok.get_vocab()
    text = dict(
        _encoder_dims(hidden),
        vocab_size=len(vocab),
        encoder_hidden_size=hidden,
        max_position_embeddings=64,
        bos_token_id=vocab["[DEC]"],
        sep_token_id=vocab["[SEP]"],
        eos_token_id=vocab["[SEP]"],
        pad_token_id=0,
    )
    vision = dict(_encoder_dims(hidden), image_size=IMAGE_SIZE, patch_size=8)
    cfg = BlipConfig(text_config=text, vision_config=vision, projection_dim=hidden)
    images = BlipImageProcessorPil(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    BlipProcessor(image_processor=images, tokenizer=tok).save_pretrained(out_dir)
    return _save_seeded(lambda: BlipForQuestionAnswering(cfg), Path(out_dir), seed)


def tiny_vilt_vqa(out_dir: str | Path, hidden: int = 32, labels: list[str] | None = None, seed: int = 0) -> Path:
    """A `ViltForQuestionAnswering` (2 layers, 32x32 images, patch 8) classifying over `labels` (default
    `VILT_LABELS`), plus a `ViltProcessor`, in `out_dir`."""
    from transformers import ViltConfig, ViltForQuestionAnswering, ViltImageProcessorPil, ViltProcessor

    labels = list(VILT_LABELS if labels is None else labels)
    tok = bert_tokenizer()
    cfg = ViltConfig(
        **_encoder_dims(hidden),
        vocab_size=len(tok),
        max_position_embeddings=40,
        image_size=IMAGE_SIZE,
        patch_size=8,
        pad_token_id=0,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={w: i for i, w in enumerate(labels)},
    )
    images = ViltImageProcessorPil(size={"shortest_edge": IMAGE_SIZE}, size_divisor=8)
    ViltProcessor(image_processor=images, tokenizer=tok).save_pretrained(out_dir)
    return _save_seeded(lambda: ViltForQuestionAnswering(cfg), Path(out_dir), seed)


def tiny_vae(
    out_dir: str | Path, block_out_channels: tuple[int, ...] = (8, 16), latent_channels: int = 4, seed: int = 0
) -> Path:
    """A diffusers AutoencoderKL, 1 layer per block, norm groups 4; downsamples by 2**(len(blocks)-1)."""
    from diffusers import AutoencoderKL

    n = len(block_out_channels)
    return _save_seeded(
        lambda: AutoencoderKL(
            block_out_channels=block_out_channels,
            down_block_types=("DownEncoderBlock2D",) * n,
            up_block_types=("UpDecoderBlock2D",) * n,
            layers_per_block=1,
            latent_channels=latent_channels,
            norm_num_groups=4,
            sample_size=32,
        ),
        Path(out_dir),
        seed,
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


LATENT_SPACE = {  # the micro space on tiny_vae's latents (4 x 16 x 16 from 32 px) and tiny_bert's states (32-d, 16)
    "name": "micro-latent",
    "base": {
        "cross_attention_dim": 32,
        "text_len": 16,
        "latent_channels": 4,
        "latent_size": 16,
        "vae_downsample": 2,
        "head_dim": 8,
        "norm_num_groups": 4,
    },
    "base_channels": [8, 16],
    "channel_mult": [[1, 2]],
    "levels": [{"transformer_depth": [0], "layers_per_block": [1]}, {"transformer_depth": [1], "attention": ["cross"]}],
    "mid_depth": [0],
}
LATENT_RECIPE = {  # 2 rungs, eta 2, one candidate to the last rung; alignment scored at rung 1 on 2 prompts x 1 image
    "name": "tiny-latent",
    "lr": 0.002,
    "warmup_flops": 1.0e7,
    "batch_size": 8,
    "micro_batch": 8,
    "deepspeed": str(Path(__file__).resolve().parents[1] / "trials" / "deepspeed" / "cpu.json"),
    "val_samples": 2,
    "val_timesteps": [200, 600],
    "sample_steps": 2,
    "cfg_scale": 2.0,
    "log_every": 1,
    "search": {
        "eta": 2,
        "n_top": 1,
        "max_rungs": 2,
        "min_steps": 2,
        "tifa_rungs": [-1],
        "tifa_prompts": 2,
        "tifa_images": 1,
    },
}
LATENT_BUDGET = "4e11"  # LATENT_RECIPE's plan on LATENT_SPACE with a real proxy fits in it


def tiny_latent_search(root: str | Path, prepare_data: bool = True) -> dict[str, Path]:
    """A tiny VAE and BERT, 16 images prepared into `root/data` (skipped when `prepare_data` is False), and the
    space and recipe files of a latent search on them (`LATENT_SPACE`, `LATENT_RECIPE`)."""
    import yaml

    root = Path(root)
    f = {
        "root": root,
        "vae": tiny_vae(root / "vae"),
        "bert": tiny_bert(root / "bert"),
        "imgs": root / "imgs",
        "data": root / "data",
        "space": root / "space.yaml",
        "recipe": root / "recipe.yaml",
    }
    tiny_image_folder(f["imgs"], n=16, size=(32, 32))
    f["space"].write_text(yaml.safe_dump(LATENT_SPACE))
    f["recipe"].write_text(yaml.safe_dump(LATENT_RECIPE))
    if prepare_data:
        prepare_latents(root, f["vae"], f["bert"])
    return f


def prepare_latents(root: str | Path, vae: Path, bert: Path) -> Path:
    """The images in `root/imgs` (32 px) prepared into `root/data` with the tiny `vae` and `bert` (`unetnas data
    prepare`: 4 x 16 x 16 latents, 16 a shard); returns the data folder."""
    from unetnas.data.prepare import prepare

    root = Path(root)
    prepare(
        out_dir=root / "data",
        vae_path=vae,
        text_encoder_path=bert,
        images_dir=root / "imgs",
        resolution=32,
        shard_size=16,
        batch_size=16,
        progress=False,
    )
    return root / "data"
