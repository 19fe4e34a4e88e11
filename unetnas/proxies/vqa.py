"""A TIFA-style VQA backend on transformers' VQA models loaded from a local directory, and TIFA v1.0 scoring.

Supported checkpoints (detected from config.json's ``architectures`` / ``model_type``):
- **BLIP** (``BlipForQuestionAnswering`` + ``BlipProcessor``): answers are generated (greedy) and the free-form text is
  mapped to the nearest choice (``NearestChoice``: VQA answer normalisation, numbers, negation), as TIFA does; an
  empty answer matches no choice.
- **ViLT** (``ViltForQuestionAnswering`` + ``ViltProcessor``): a classifier over ``config.id2label``. The answer is the
  highest-scoring label among those that name one of the question's choices (normalised match); when no label names
  a choice, the overall top label is mapped to the nearest choice.

FLOPs are measured, not guessed: every ``nn.Linear`` / ``nn.Conv2d`` run is charged 2 x weights x rows it processed
(2 x params x tokens, padding and generated tokens included; attention's QK^T / AV products and norms left out, as
in the repo's ptflops convention), plus the sentence-embedding FLOPs of answer matching. ``last_flops`` is the last
call's total, ``total_flops`` the running sum.

Bounds before answering: ``probe_flops`` measures the worst (image, question) pair (longest question, BLIP forced
to generate ``max_new_tokens``), and ``matcher_flops_bound`` the answer matcher's worst case; pairs x probe +
matcher bound is an upper bound of ``answer``'s FLOPs (see ``probe_flops``).

TIFA score (Hu et al. 2023): accuracy per question (averaged over the prompt's images), mean over each prompt's
questions, then mean over prompts (``unetnas.world.questions.tifa_summary``, the one aggregation; question files
are read by ``unetnas.world.questions.load_tifa_questions``, the one reader).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from unetnas.errors import UserError
from unetnas.proxies.choice import NearestChoice, normalize
from unetnas.text import first_line, offline, quiet_loading
from unetnas.world.questions import TifaResult, load_tifa_questions, tifa_summary

__all__ = [
    "MATCH_TOKENS",
    "TifaResult",
    "VQABackend",
    "count_flops",
    "linear_conv_weights",
    "load_checked",
    "load_tifa_questions",
    "resolve_model",
    "score_tifa",
    "tifa_summary",
    "to_pil",
]

_KINDS = {"BlipForQuestionAnswering": "blip", "ViltForQuestionAnswering": "vilt"}
_CLASSES = {
    "blip": ("BlipForQuestionAnswering", "BlipProcessor"),
    "vilt": ("ViltForQuestionAnswering", "ViltProcessor"),
}
MATCH_TOKENS = 64  # NearestChoice.embed truncates every string at 64 tokens


@contextlib.contextmanager
def count_flops(model: torch.nn.Module) -> Iterator[list[int]]:
    """Yield a one-item list that accumulates 2 x weights x rows over every Linear / Conv2d forward inside."""
    total = [0]

    def hook(mod: torch.nn.Module, _inp: Any, out: torch.Tensor) -> None:
        per_row = mod.weight.numel() // (mod.out_features if isinstance(mod, torch.nn.Linear) else mod.out_channels)
        total[0] += 2 * per_row * out.numel()

    layers = [m for m in model.modules() if isinstance(m, torch.nn.Linear | torch.nn.Conv2d)]
    handles = [m.register_forward_hook(hook) for m in layers]
    try:
        yield total
    finally:
        for h in handles:
            h.remove()


def linear_conv_weights(model: torch.nn.Module) -> int:
    """Weights of the layers ``count_flops`` charges (every ``nn.Linear`` / ``nn.Conv2d``)."""
    return sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear | torch.nn.Conv2d))


def to_pil(image: Any) -> Image.Image:
    """A PIL RGB image from a PIL image or a uint8 HxWx3 array."""
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    arr = np.asarray(image)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise TypeError(f"images must be PIL images or uint8 HxWx3 arrays, got {arr.dtype} {arr.shape}")
    return Image.fromarray(arr)


def resolve_model(path: str | Path, supported: Mapping[str, str], role: str) -> tuple[Path, str, dict]:
    """Resolve a local model directory and pick its kind from config.json (architectures first, then model_type);
    anything else is a one-line ``UserError`` naming the path and the rule."""
    offline()
    mdir = Path(path).expanduser()
    rule = f"{role} must be a local directory written by save_pretrained (config.json + weights)"
    if not mdir.is_dir():
        raise UserError(f"{'is not a directory' if mdir.exists() else 'does not exist'}; {rule}", source=mdir)
    if not (mdir / "config.json").is_file():
        raise UserError(f"holds no config.json; {rule}", source=mdir)
    try:
        config = json.loads((mdir / "config.json").read_text())
    except (OSError, ValueError) as err:
        raise UserError(f"config.json is unreadable ({first_line(err)})", source=mdir) from None
    config = config if isinstance(config, dict) else {}
    archs = config.get("architectures") or []
    kinds = [supported[a] for a in archs if a in supported]
    if not archs and config.get("model_type") in supported.values():
        kinds = [config["model_type"]]
    if not kinds:
        found = archs or config.get("model_type")
        raise UserError(f"is an unsupported model ({found!r}); {role} must be one of {sorted(supported)}", source=mdir)
    return mdir, kinds[0], config


def load_checked(model_cls: type, proc_cls: type, mdir: Path, device: str) -> tuple[torch.nn.Module, Any]:
    """``from_pretrained`` model (float32, local files only) and processor; a failure, or weights missing from the
    checkpoint (they would be silently random), is a one-line ``UserError``."""
    try:
        with quiet_loading():
            model, info = model_cls.from_pretrained(
                mdir, local_files_only=True, dtype=torch.float32, output_loading_info=True
            )
            processor = proc_cls.from_pretrained(mdir, local_files_only=True)
    except Exception as err:  # noqa: BLE001  any load failure is a bad directory, reported in one line
        raise UserError(f"could not load {model_cls.__name__} ({first_line(err)})", source=mdir) from None
    missing = sorted(info.get("missing_keys") or [])
    if missing:
        rule = f"lacks {len(missing)} weights of {model_cls.__name__} (e.g. {missing[0]}); not such a checkpoint"
        raise UserError(rule, source=mdir)
    return model.to(device), processor


class VQABackend:
    """A frozen VQA model + processor; ``answer`` picks one choice per (image, TIFA question) pair."""

    def __init__(
        self,
        model: torch.nn.Module,
        processor: Any,
        kind: str,
        *,
        source: str,
        matcher: NearestChoice | None = None,
        batch_size: int = 16,
        max_new_tokens: int = 10,
    ) -> None:
        self.model, self.processor, self.kind, self.source = model.eval().requires_grad_(False), processor, kind, source
        self.matcher = matcher or NearestChoice()
        self.batch_size, self.max_new_tokens = batch_size, max_new_tokens
        self.device = next(model.parameters()).device
        text_cfg = getattr(model.config, "text_config", model.config)
        self.max_text_tokens = int(getattr(text_cfg, "max_position_embeddings", 512))
        self._label_ids: dict[tuple[str, ...], list[int]] = {}  # ViLT: normalised label -> its class ids
        for i, label in model.config.id2label.items() if kind == "vilt" else ():
            self._label_ids.setdefault(normalize(label), []).append(int(i))
        self.last_flops = self.total_flops = 0

    @classmethod
    def load(
        cls, path: str | Path, device: str = "cpu", matcher: NearestChoice | None = None, **kwargs: Any
    ) -> VQABackend:
        """Load a BLIP or ViLT VQA checkpoint saved with ``save_pretrained`` in a local directory."""
        import transformers

        mdir, kind, _ = resolve_model(path, _KINDS, "the VQA model")
        model_cls, proc_cls = (getattr(transformers, n) for n in _CLASSES[kind])
        model, processor = load_checked(model_cls, proc_cls, mdir, device)
        return cls(model, processor, kind, source=str(mdir), matcher=matcher, **kwargs)

    def _run_batch(self, images: Sequence[Any], qs: Sequence[Mapping[str, Any]]) -> list[str | None]:
        """Chosen options for one batch: BLIP gives free-form text; ViLT restricted argmax over its labels."""
        inp = self.processor(
            images=[to_pil(i) for i in images],
            text=[q["question"] for q in qs],
            return_tensors="pt",
            padding=True,
            truncation=True,
            max_length=self.max_text_tokens,
        )
        inp = {k: v.to(self.device) for k, v in inp.items()}
        if self.kind == "blip":
            ids = self.model.generate(**inp, max_new_tokens=self.max_new_tokens, do_sample=False, num_beams=1)
            free = self.processor.batch_decode(ids, skip_special_tokens=True)
            return self.matcher.match_batch(free, [q["choices"] for q in qs])
        logits = self.model(**inp).logits.float().cpu()
        out = [self._vilt_pick(row, q["choices"]) for row, q in zip(logits, qs)]
        todo = [i for i, o in enumerate(out) if o is None]
        free = [self.model.config.id2label[int(logits[i].argmax())] for i in todo]
        for i, pick in zip(todo, self.matcher.match_batch(free, [qs[i]["choices"] for i in todo])):
            out[i] = pick
        return out  # type: ignore[return-value]

    def _vilt_pick(self, logits: torch.Tensor, choices: Sequence[str]) -> str | None:
        """The choice named by the highest-scoring label (ties: lowest class id, then first choice), or None."""
        ids = [self._label_ids.get(normalize(c), ()) for c in choices]
        named = [(float(logits[i]), -i, -k) for k, group in enumerate(ids) for i in group]
        return choices[-max(named)[2]] if named else None

    def _longest(self, texts: Sequence[str]) -> str:
        """The text of ``texts`` with the most tokens once truncated as ``answer`` truncates (first of equals)."""
        ids = self.processor.tokenizer(list(texts), truncation=True, max_length=self.max_text_tokens)["input_ids"]
        return texts[max(range(len(texts)), key=lambda i: (len(ids[i]), -i))]

    def probe_flops(self, image: Any, questions: Sequence[str]) -> int:
        """Measured FLOPs of the VQA model alone answering the longest of ``questions`` (in tokens) on ``image``,
        BLIP forced to generate all ``max_new_tokens``; counted in ``total_flops``.

        It bounds the model's FLOPs per (image, question) pair in ``answer`` for images the size of ``image`` and
        questions among ``questions``: the processor resizes every image alike, so the vision part costs the same
        for each; a batch pads its questions to its longest, never longer than the longest; BLIP generates at
        most ``max_new_tokens`` per row; and every charged layer costs 2 x weights per row, rows being per pair.
        """
        inp = self.processor(
            images=[to_pil(image)],
            text=[self._longest(questions)],
            return_tensors="pt",
            padding=True,
            truncation=True,
            max_length=self.max_text_tokens,
        )
        inp = {k: v.to(self.device) for k, v in inp.items()}
        with count_flops(self.model) as flops, torch.inference_mode():
            if self.kind == "blip":
                self.model.generate(
                    **inp,
                    max_new_tokens=self.max_new_tokens,
                    min_new_tokens=self.max_new_tokens,
                    do_sample=False,
                    num_beams=1,
                )
            else:
                self.model(**inp)
        self.total_flops += flops[0]
        return flops[0]

    def matcher_flops_bound(self, n_pairs: int, choices: Sequence[str]) -> int:
        """Most FLOPs the nearest-choice matcher can spend in ``answer`` calls on ``n_pairs`` pairs whose choices
        are among ``choices``: every free-form answer and every distinct choice embedded once (the matcher caches),
        each at its ``MATCH_TOKENS`` truncation. Loads the sentence model if it is not loaded yet."""
        m = self.matcher
        if m._model is None:
            m._load()
        n_strings = n_pairs + len(set(choices))  # distinct strings >= distinct embedding keys
        return 2 * m._matmul_params * MATCH_TOKENS * n_strings

    def answer(self, images: Sequence[Any], questions: Sequence[Mapping[str, Any]]) -> list[str | None]:
        """One chosen option per pair: ``images[i]`` (PIL or uint8 HxWx3) answers ``questions[i]`` (a TIFA dict);
        None where the model's answer is empty (it matches no choice, so it scores wrong)."""
        if len(images) != len(questions):
            raise ValueError(f"{len(images)} images but {len(questions)} questions; pass one image per question")
        out, spent = [], self.matcher.flops
        with count_flops(self.model) as flops, torch.inference_mode():
            for i in range(0, len(questions), self.batch_size):
                out += self._run_batch(images[i : i + self.batch_size], questions[i : i + self.batch_size])
        self.last_flops = flops[0] + self.matcher.flops - spent
        self.total_flops += self.last_flops
        return out


def score_tifa(
    backend: VQABackend, questions: Sequence[Mapping[str, Any]], images: Mapping[str, Sequence[Any]]
) -> TifaResult:
    """Answer every question on every image of its prompt (``images[id]``: the prompt's images) and score."""
    missing = sorted({q["id"] for q in questions if not images.get(q["id"])})
    if missing:
        raise ValueError(f"no images for prompt id {missing[0]!r} ({len(missing)} ids missing)")
    pairs = [(img, qi) for qi, q in enumerate(questions) for img in images[q["id"]]]
    picks = backend.answer([p[0] for p in pairs], [questions[p[1]] for p in pairs])
    hits = np.zeros(len(questions))
    for (_, qi), pick in zip(pairs, picks):
        hits[qi] += pick == questions[qi]["answer"]
    acc = [h / len(images[q["id"]]) for h, q in zip(hits, questions)]
    return tifa_summary(questions, acc, backend.last_flops)
