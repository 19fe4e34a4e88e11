"""A TIFA-style VQA backend on transformers' VQA models loaded from a local directory, and TIFA v1.0 scoring.

Supported checkpoints (detected from config.json's ``architectures`` / ``model_type``):
- **BLIP** (``BlipForQuestionAnswering`` + ``BlipProcessor``): answers are generated (greedy) and the free-form text is
  mapped to the nearest choice (``NearestChoice``), as TIFA does.
- **ViLT** (``ViltForQuestionAnswering`` + ``ViltProcessor``): a classifier over ``config.id2label``. The answer is the
  highest-scoring label among those that name one of the question's choices (normalised match); when no label names
  a choice, the overall top label is mapped to the nearest choice.

FLOPs are measured, not guessed: every ``nn.Linear`` / ``nn.Conv2d`` run is charged 2 x weights x rows it processed
(2 x params x tokens, padding and generated tokens included; attention's QK^T / AV products and norms left out, as
in the repo's ptflops convention), plus the sentence-embedding FLOPs of answer matching. ``last_flops`` is the last
call's total, ``total_flops`` the running sum.

TIFA score (Hu et al. 2023): accuracy per question (averaged over the prompt's images), mean over each prompt's
questions, then mean over prompts; accuracy per ``element_type`` is the mean over that category's questions.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from unetnas.errors import UserError
from unetnas.proxies.choice import NearestChoice, normalize
from unetnas.text import first_line, offline, quiet_loading

_KINDS = {"BlipForQuestionAnswering": "blip", "ViltForQuestionAnswering": "vilt"}
_CLASSES = {"blip": ("BlipForQuestionAnswering", "BlipProcessor"),
            "vilt": ("ViltForQuestionAnswering", "ViltProcessor")}
_FIELDS = ("id", "caption", "question", "choices", "answer", "element_type", "element")


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
            model, info = model_cls.from_pretrained(mdir, local_files_only=True, dtype=torch.float32,
                                                    output_loading_info=True)
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

    def __init__(self, model: torch.nn.Module, processor: Any, kind: str, *, source: str,
                 matcher: NearestChoice | None = None, batch_size: int = 16, max_new_tokens: int = 10) -> None:
        self.model, self.processor, self.kind, self.source = model.eval().requires_grad_(False), processor, kind, source
        self.matcher = matcher or NearestChoice()
        self.batch_size, self.max_new_tokens = batch_size, max_new_tokens
        self.device = next(model.parameters()).device
        text_cfg = getattr(model.config, "text_config", model.config)
        self.max_text_tokens = int(getattr(text_cfg, "max_position_embeddings", 512))
        self._label_ids: dict[tuple[str, ...], list[int]] = {}  # ViLT: normalised label -> its class ids
        for i, label in (model.config.id2label.items() if kind == "vilt" else ()):
            self._label_ids.setdefault(normalize(label), []).append(int(i))
        self.last_flops = self.total_flops = 0

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu", matcher: NearestChoice | None = None,
             **kwargs: Any) -> VQABackend:
        """Load a BLIP or ViLT VQA checkpoint saved with ``save_pretrained`` in a local directory."""
        import transformers

        mdir, kind, _ = resolve_model(path, _KINDS, "the VQA model")
        model_cls, proc_cls = (getattr(transformers, n) for n in _CLASSES[kind])
        model, processor = load_checked(model_cls, proc_cls, mdir, device)
        return cls(model, processor, kind, source=str(mdir), matcher=matcher, **kwargs)

    def _run_batch(self, images: Sequence[Any], qs: Sequence[Mapping[str, Any]]) -> list[str]:
        """Chosen options for one batch: BLIP gives free-form text; ViLT restricted argmax over its labels."""
        inp = self.processor(images=[to_pil(i) for i in images], text=[q["question"] for q in qs],
                             return_tensors="pt", padding=True, truncation=True, max_length=self.max_text_tokens)
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

    def answer(self, images: Sequence[Any], questions: Sequence[Mapping[str, Any]]) -> list[str]:
        """One chosen option per pair: ``images[i]`` (PIL or uint8 HxWx3) answers ``questions[i]`` (a TIFA dict)."""
        if len(images) != len(questions):
            raise ValueError(f"{len(images)} images but {len(questions)} questions; pass one image per question")
        out, spent = [], self.matcher.flops
        with count_flops(self.model) as flops, torch.inference_mode():
            for i in range(0, len(questions), self.batch_size):
                out += self._run_batch(images[i : i + self.batch_size], questions[i : i + self.batch_size])
        self.last_flops = flops[0] + self.matcher.flops - spent
        self.total_flops += self.last_flops
        return out


def read_tifa_questions(path: str | Path) -> list[dict[str, Any]]:
    """Read a TIFA v1.0 question file (JSON list of {id, caption, question, choices, answer, element_type,
    element}). Extra keys are kept, repeated choices dropped; missing/mistyped fields, an answer not among the
    choices, or one id with two captions is a one-line ``UserError`` naming the item index and field."""
    path = Path(path)
    try:
        items = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError("TIFA question file not found", source=path) from None
    except (OSError, ValueError) as err:
        raise UserError(f"is not a readable JSON file ({first_line(err)})", source=path) from None
    if not isinstance(items, list) or not items:
        raise UserError("must be a non-empty JSON list of TIFA v1.0 question items", source=path)
    out, captions = [], {}
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise UserError("must be an object with keys " + ", ".join(_FIELDS), source=path, field=f"[{i}]")
        if type(item.get("id")) is int:
            item = {**item, "id": str(item["id"])}  # numeric prompt ids are read as strings
        for key in _FIELDS:
            value = item.get(key, ...)
            ok = isinstance(value, list) and len(value) >= 2 and all(isinstance(c, str) and c for c in value) \
                if key == "choices" else isinstance(value, str) and (bool(value) or key == "element")
            if not ok:
                rule = "must be a list of at least 2 non-empty strings" if key == "choices" else \
                    "must be a string" if key == "element" else "must be a non-empty string"
                raise UserError(rule if value is not ... else "is missing", source=path, field=f"[{i}].{key}",
                                value=value)
        if item["answer"] not in item["choices"]:
            raise UserError("answer must be one of the choices", source=path, field=f"[{i}].answer",
                            value=item["answer"])
        if captions.setdefault(item["id"], item["caption"]) != item["caption"]:
            raise UserError("one id must have one caption", source=path, field=f"[{i}].id", value=item["id"])
        out.append({**item, "choices": list(dict.fromkeys(item["choices"]))})
    return out


@dataclass(frozen=True)
class TifaResult:
    """TIFA score (mean over prompts), per-prompt scores (id -> accuracy), accuracy per element_type, FLOPs."""

    score: float
    per_prompt: dict[str, float]
    by_category: dict[str, float]
    n_questions: int
    flops: int = 0


def tifa_summary(questions: Sequence[Mapping[str, Any]], correct: Sequence[float], flops: int = 0) -> TifaResult:
    """Aggregate per-question accuracies (``correct[i]`` in [0, 1] for ``questions[i]``) into a ``TifaResult``."""
    if len(questions) != len(correct) or not questions:
        raise ValueError(f"need one accuracy per question, got {len(correct)} for {len(questions)}")
    by_id: dict[str, list[float]] = {}
    by_cat: dict[str, list[float]] = {}
    for q, c in zip(questions, correct):
        by_id.setdefault(q["id"], []).append(float(c))
        by_cat.setdefault(q["element_type"], []).append(float(c))
    per_prompt = {k: float(np.mean(v)) for k, v in by_id.items()}
    return TifaResult(float(np.mean(list(per_prompt.values()))), per_prompt,
                      {k: float(np.mean(v)) for k, v in sorted(by_cat.items())}, len(questions), flops)


def score_tifa(backend: VQABackend, questions: Sequence[Mapping[str, Any]],
               images: Mapping[str, Sequence[Any]]) -> TifaResult:
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
