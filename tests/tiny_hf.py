"""Tiny random-initialised transformers VQA / CLIP models (real classes, small configs), saved to disk offline.

Each builder writes model + processor into `out_dir` with `save_pretrained` and returns the directory, so the
backends under test load them by path exactly as they would load a real checkpoint (this tests the plumbing, not
accuracy). Tokenizers are built offline from a tiny vocabulary: WordPiece (BERT; BLIP and ViLT use it) with
every lowercase character and its `##` continuation, so any lowercase ASCII text tokenizes without [UNK]; CLIP
uses a character-level byte-BPE one (vocab.json + an empty merges list). Image processors are the PIL backends
(torchvision is not installed here) at 32x32. Initialisation is seeded under `torch.random.fork_rng`.

    from tiny_hf import tiny_blip_vqa, tiny_vilt_vqa, tiny_clip_model, VILT_LABELS
"""

from __future__ import annotations

import string
from pathlib import Path

import torch

from unetnas.text import quiet_loading

_CHARS = list(string.ascii_lowercase + string.digits + ".,!?'-")
_WORDS = ["a", "the", "is", "are", "there", "what", "how", "many", "color", "shape", "yes", "no", "red", "blue",
          "green", "two", "circle", "square"]
_BERT_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]"]
VILT_LABELS = ["yes", "no", "red", "blue", "green", "two", "three", "circle", "square", "dog"]
"""The answer vocabulary (`config.id2label`) of `tiny_vilt_vqa`."""
IMAGE_SIZE = 32


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


def tiny_blip_vqa(out_dir: str | Path, hidden: int = 32, seed: int = 0) -> Path:
    """A `BlipForQuestionAnswering` (vision ViT 32x32 / patch 8, text encoder + decoder 2 layers each) and a
    `BlipProcessor` in `out_dir`. The decoder starts from [DEC] and stops at [SEP], as the real BLIP does."""
    from transformers import BlipConfig, BlipForQuestionAnswering, BlipImageProcessorPil, BlipProcessor

    tok = bert_tokenizer()
    tok.bos_token = "[DEC]"
    vocab = tok.get_vocab()
    text = dict(_encoder_dims(hidden), vocab_size=len(vocab), encoder_hidden_size=hidden, max_position_embeddings=64,
                bos_token_id=vocab["[DEC]"], sep_token_id=vocab["[SEP]"], eos_token_id=vocab["[SEP]"], pad_token_id=0)
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
    cfg = ViltConfig(**_encoder_dims(hidden), vocab_size=len(tok), max_position_embeddings=40,
                     image_size=IMAGE_SIZE, patch_size=8, pad_token_id=0, num_labels=len(labels),
                     id2label=dict(enumerate(labels)), label2id={w: i for i, w in enumerate(labels)})
    images = ViltImageProcessorPil(size={"shortest_edge": IMAGE_SIZE}, size_divisor=8)
    ViltProcessor(image_processor=images, tokenizer=tok).save_pretrained(out_dir)
    return _save_seeded(lambda: ViltForQuestionAnswering(cfg), Path(out_dir), seed)


def tiny_clip_model(out_dir: str | Path, hidden: int = 32, seed: int = 0) -> Path:
    """A full `CLIPModel` (text + vision towers, projection 16, 32 text positions) and a `CLIPProcessor`."""
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel, CLIPProcessor

    tok = clip_tokenizer()
    text = dict(_encoder_dims(hidden), vocab_size=len(tok), max_position_embeddings=32, bos_token_id=0,
                eos_token_id=1, pad_token_id=1)
    vision = dict(_encoder_dims(hidden), image_size=IMAGE_SIZE, patch_size=8)
    cfg = CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)
    images = CLIPImageProcessorPil(size={"shortest_edge": IMAGE_SIZE}, crop_size=IMAGE_SIZE)
    CLIPProcessor(image_processor=images, tokenizer=tok).save_pretrained(out_dir)
    return _save_seeded(lambda: CLIPModel(cfg), Path(out_dir), seed)
