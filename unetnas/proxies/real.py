"""Alignment proxies for trials trained on real data: TIFA with a VQA model (``VqaTifa``) and CLIPScore
(``ClipScore``), on images the trial generates.

Both sample each prompt ``images_per_prompt`` times (DDIM + CFG, fixed seeds ``seed + p k .. seed + p k + k - 1`` for
prompt ``p``: the same for every candidate, distinct across images) from the trial's UNet, conditioned on the
prompt encoded by the trial's own text encoder. A latent trial's samples are decoded by the VAE its data was
prepared with: ``latent / scaling_factor + shift_factor``, the inverse of ``unetnas.data.prepare``. A pixel trial's
samples are the images (no VAE).

FLOPs. ``score(...).flops`` is what was spent: sampling (steps x 2 with CFG x ``cost(spec).flops`` x images, the
repo's convention), VAE decoding and the judge (measured by ``count_flops`` hooks: 2 x weights x rows of every
``nn.Linear`` / ``nn.Conv2d``), encoding the prompts (first score per text encoder only), and the probes run since
the last score. ``flops(subject)`` bounds it before scoring:

- sampling: the same formula (exact);
- VAE decoding: one latent decoded on PyTorch's meta device (shapes only: no arithmetic, nothing spent) under the
  same hooks, times the images. Exact, since a decoder's cost depends only on the latent shape;
- judge: one worst-case pair measured on a blank image of the output size (the longest question or caption in
  tokens; BLIP forced to generate ``max_new_tokens``) times the pairs, plus for VQA the answer matcher's worst case
  (every answer and distinct choice embedded at its 64-token truncation). A pair never costs more than the probe
  (images are resized alike, batches pad to their longest text), so the bound holds. The probe runs once per proxy
  and image size and is charged to the next score (and included in the bound until then);
- text: ``text_flops_per_caption`` x (prompts + 1) until the prompt states are cached.

Text-blind correction (as the built-in world's TIFA, ``unetnas.proxies.alignment``): each image is also judged
against ``foils`` other prompts (cyclic shifts, ``foil_indices``): VqaTifa answers their questions, ClipScore scores
their captions (the mismatched-pair control of CLIPScore). The proxy's value is ``alignment = mean_p (own_p -
foil_p)`` with ``alignment_se = std(own_p - foil_p, ddof=1) / sqrt(N)`` over prompts; the raw score (``tifa`` /
``clipscore``) and its SE are kept beside it. Foil judging is counted in FLOPs and in the bound like own judging
(``foils`` bounds its cost: default 4 foil prompts). ``foils=0`` scores uncorrected (value = the raw score).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unetnas.cost import cost
from unetnas.errors import UserError
from unetnas.proxies.alignment import foil_indices, score_alignment, standard_error
from unetnas.proxies.base import Proxy, ProxyResult, Subject
from unetnas.proxies.vqa import count_flops, load_tifa_questions

DECODE_BATCH = 16  # latents per VAE decode


def read_prompts(prompts: Sequence[str] | str | Path) -> list[str]:
    """Prompts from a list of strings or a file: a TIFA v1.0 JSON file (its captions, each once, in order) or a
    text file (one prompt a line, blank lines skipped)."""
    if isinstance(prompts, str | Path):
        path = Path(prompts)
        if path.suffix.lower() == ".json":
            return list(dict.fromkeys(q["caption"] for q in load_tifa_questions(path)))
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as err:
            raise UserError(
                f"is not a readable prompt file ({type(err).__name__}); expected one prompt a line", source=path
            ) from None
        out = [ln.strip() for ln in lines if ln.strip()]
        if not out:
            raise UserError("holds no prompts; expected one prompt a line", source=path)
        return out
    out = list(prompts)
    if not out or not all(isinstance(p, str) and p.strip() for p in out):
        raise UserError("must be a non-empty list of non-empty strings (or a prompt file)", field="prompts", value=out)
    return out


class _Generated(Proxy):
    """What the real-data proxies share: check the trial against the VAE, encode the prompts once per text
    encoder, sample -> decode -> uint8 images, and the FLOPs of each part. Subclasses are dataclasses with
    fields ``vae``, ``images_per_prompt``, ``steps``, ``cfg``, ``seed``, ``device``; they set ``captions`` (one
    per prompt) and call ``_setup`` in ``__post_init__``."""

    vae: str | Path | None
    images_per_prompt: int
    steps: int | None
    cfg: float | None
    seed: int
    device: str
    captions: list[str]

    def _setup(self) -> None:
        from unetnas.data.prepare import _load_vae
        from unetnas.text import model_dir

        if not isinstance(self.images_per_prompt, int) or self.images_per_prompt < 1:
            raise UserError("must be a positive integer", field="images_per_prompt", value=self.images_per_prompt)
        if not isinstance(self.foils, int) or self.foils < 0:
            raise UserError(
                "must be a non-negative integer (0: no text-blind correction)", field="foils", value=self.foils
            )
        if self.foils and len(self.captions) < 2:
            raise UserError(
                "the text-blind correction needs at least 2 prompts (or foils=0: uncorrected)",
                field="prompts",
                value=len(self.captions),
            )
        self.foil_of = foil_indices(len(self.captions), self.foils) if self.foils else [[] for _ in self.captions]
        self._vae = None if self.vae is None else _load_vae(model_dir(self.vae, "vae", "the VAE"), self.device)
        self._meta_vae: Any = None  # the VAE's architecture on the meta device (decode FLOPs without arithmetic)
        self._decode_per_image: dict[tuple[int, ...], int] = {}  # latent shape -> decode FLOPs of one latent
        self._judge_per_pair: dict[int, int] = {}  # image size -> probe FLOPs of one worst-case pair
        self._unbilled = 0  # probe FLOPs spent and not yet charged to a score
        self._encoders: dict[tuple[str | None, int], Any] = {}  # (text encoder, text_len) -> TextEncoder
        self._states: dict[tuple[str | None, int], Any] = {}  # same key -> (prompt states, uncond states)

    # -- the trial ---------------------------------------------------------------------------------------------
    def _check(self, subject: Subject) -> None:
        spec = subject.spec
        if spec.vae_downsample > 1 and self._vae is None:
            raise UserError(
                "the trial diffuses VAE latents; give the AutoencoderKL its data was prepared with", field="vae"
            )
        if spec.vae_downsample == 1 and self._vae is not None:
            raise UserError(
                "the trial is trained on pixels and needs no VAE; drop it", field="vae", value=str(self.vae)
            )
        if self._vae is not None:
            c = self._vae.config
            factor = 2 ** (len(c.block_out_channels) - 1)
            if (c.latent_channels, factor) != (spec.latent_channels, spec.vae_downsample):
                rule = (
                    f"has {c.latent_channels} latent channels and downsamples {factor}x, but the trial's spec "
                    f"has {spec.latent_channels} and {spec.vae_downsample}x; not the VAE of its data"
                )
                raise UserError(rule, source=self.vae)

    def _settings(self, subject: Subject) -> tuple[int, float]:
        return self.steps or subject.recipe.sample_steps, self.cfg or subject.recipe.cfg_scale

    @staticmethod
    def _text_path(subject: Subject) -> str | None:
        """The trial's text encoder. A live trainer on prepared shards names it in the shards' meta.json (its
        source's ``describe`` does not, so ``Subject.from_trainer`` leaves ``text_encoder_path`` unset)."""
        src = subject.trainer.source.describe() if subject.trainer is not None else {}
        if src.get("kind") == "shards":
            from unetnas.data.shards import read_meta
            from unetnas.text import PACKAGED_NAME

            name = read_meta(Path(src["path"]))["text_encoder"]
            return None if name == PACKAGED_NAME else name
        return subject.text_encoder_path

    def _key(self, subject: Subject) -> tuple[str | None, int]:
        return self._text_path(subject), subject.spec.text_len

    def _encoder(self, subject: Subject) -> Any:
        from unetnas.text import TextEncoder

        key = self._key(subject)
        if key not in self._encoders:
            self._encoders[key] = TextEncoder.load(key[0], max_length=key[1], device=self.device)
        return self._encoders[key]

    def _text_flops(self, subject: Subject) -> float:
        """Encoding the prompts and "" happens once per text encoder; later scores reuse the states."""
        if self._key(subject) in self._states:
            return 0.0
        return float(self._encoder(subject).text_flops_per_caption * (len(self.captions) + 1))

    def _text_states(self, subject: Subject) -> tuple[torch.Tensor, torch.Tensor]:
        key = self._key(subject)
        if key not in self._states:
            enc = self._encoder(subject)
            self._states[key] = (enc.encode(self.captions), enc.encode([""])[0])
        return self._states[key]

    # -- FLOPs -------------------------------------------------------------------------------------------------
    @property
    def n_images(self) -> int:
        return len(self.captions) * self.images_per_prompt

    def _sampling_flops(self, subject: Subject) -> float:
        steps, cfg = self._settings(subject)
        return float(steps * (2 if cfg != 1.0 else 1) * cost(subject.spec).flops * self.n_images)

    def _decode_flops_per_image(self, subject: Subject) -> int:
        """Decode FLOPs of one latent, counted on the meta device (exact; nothing computed)."""
        if self._vae is None:
            return 0
        spec = subject.spec
        shape = (spec.latent_channels, spec.latent_size, spec.latent_size)
        if shape not in self._decode_per_image:
            if self._meta_vae is None:
                with torch.device("meta"):
                    self._meta_vae = type(self._vae).from_config(self._vae.config)
            with count_flops(self._meta_vae) as spent, torch.no_grad():
                self._meta_vae.decode(torch.zeros(1, *shape, device="meta"))
            self._decode_per_image[shape] = spent[0]
        return self._decode_per_image[shape]

    def _judge_probe(self, subject: Subject) -> int:
        """FLOPs of one worst-case judge pair at the trial's output size (probed once per size, billed later)."""
        res = subject.spec.resolution
        if res not in self._judge_per_pair:
            probe = self._probe(np.zeros((res, res, 3), np.uint8))
            self._judge_per_pair[res] = probe
            self._unbilled += probe
        return self._judge_per_pair[res]

    def _probe(self, blank: np.ndarray) -> int:
        raise NotImplementedError

    def _bill_probes(self) -> int:
        spent, self._unbilled = self._unbilled, 0
        return spent

    def _common_bound(self, subject: Subject) -> float:
        """Sampling + decoding + text encoding (the judge is the subclass's part)."""
        bound = self._sampling_flops(subject) + self._decode_flops_per_image(subject) * self.n_images
        return bound + self._text_flops(subject)

    # -- images ------------------------------------------------------------------------------------------------
    def _generate(self, subject: Subject) -> tuple[np.ndarray, int]:
        """(uint8 images (prompts x k, H, W, 3), prompt-major; decode FLOPs measured)."""
        from unetnas.sample import decode_latents, sample, to_uint8

        steps, cfg = self._settings(subject)
        text, uncond = self._text_states(subject)
        k = self.images_per_prompt
        seeds = [self.seed + p * k + j for p in range(len(self.captions)) for j in range(k)]  # distinct: CRN
        was_training = subject.unet.training
        subject.unet.eval()
        try:
            x = sample(
                subject.unet,
                text.repeat_interleave(k, 0),
                uncond,
                recipe=subject.recipe,
                steps=steps,
                cfg=cfg,
                seeds=seeds,
            )
        finally:
            subject.unet.train(was_training)
        if self._vae is None:
            return to_uint8(x), 0
        with count_flops(self._vae) as spent:
            decoded = decode_latents(self._vae, x, batch=DECODE_BATCH)
        return to_uint8(decoded), spent[0]

    def _details(self, subject: Subject, images: np.ndarray, **parts: float) -> dict[str, Any]:
        steps, cfg = self._settings(subject)
        return {
            "prompts": len(self.captions),
            "images_per_prompt": self.images_per_prompt,
            "steps": steps,
            "cfg": cfg,
            "images": images,
            "flops_parts": parts,
        }


@dataclass
class VqaTifa(_Generated):
    """TIFA with a VQA model (BLIP or ViLT, local path) on a TIFA v1.0 question file: each prompt's caption is
    sampled ``images_per_prompt`` times, every question answered on every image of its prompt; score = mean
    accuracy per prompt, then over prompts (``details["per_prompt"]`` keeps the vector, in file order)."""

    name = "vqa_tifa"
    direction = "maximize"
    questions: str | Path  # a TIFA v1.0 question file
    vqa: str | Path  # a local BLIP / ViLT VQA checkpoint
    vae: str | Path | None = None  # the AutoencoderKL the trial's data was prepared with (latent trials)
    images_per_prompt: int = 2  # fixed seeds per (prompt, image)
    steps: int | None = None  # DDIM steps (default: the recipe's sample_steps)
    cfg: float | None = None  # guidance scale (default: the recipe's cfg_scale)
    prompts: int | None = None  # score the file's first N prompts (None: all)
    seed: int = 0
    device: str = "cpu"
    foils: int = 4  # foil prompts per prompt (text-blind correction; 0: uncorrected raw TIFA)

    def __post_init__(self) -> None:
        from unetnas.proxies.vqa import VQABackend

        items = load_tifa_questions(self.questions)
        ids = list(dict.fromkeys(q["id"] for q in items))
        if self.prompts is not None:
            if not isinstance(self.prompts, int) or self.prompts < 1:
                raise UserError("must be a positive integer", field="prompts", value=self.prompts)
            ids = ids[: self.prompts]
        keep = set(ids)
        self.items = [q for q in items if q["id"] in keep]
        self.prompt_ids = ids
        caption = {q["id"]: q["caption"] for q in self.items}
        self.captions = [caption[i] for i in ids]
        self.by_prompt = [[q for q in self.items if q["id"] == i] for i in ids]
        self._setup()
        self.backend = VQABackend.load(self.vqa, device=self.device)

    @property
    def n_pairs(self) -> int:
        """(image, question) pairs one score answers: each image its own prompt's and its foils' questions."""
        per_image = [sum(len(self.by_prompt[q]) for q in [p, *self.foil_of[p]]) for p in range(len(self.captions))]
        return sum(per_image) * self.images_per_prompt

    def _probe(self, blank: np.ndarray) -> int:
        return self.backend.probe_flops(blank, [q["question"] for q in self.items])

    def flops(self, subject: Subject) -> float:
        self._check(subject)
        pairs = self.n_pairs
        judge = self._judge_probe(subject) * pairs
        judge += self.backend.matcher_flops_bound(pairs, [c for q in self.items for c in q["choices"]])
        return float(self._common_bound(subject) + judge + self._unbilled)

    def _answer_image(self, image: np.ndarray, lists: Sequence[Sequence[dict]]) -> list[list[str | None]]:
        """One image's answers to each list of questions (own, then foils), in one batched call."""
        flat = [q for lst in lists for q in lst]
        picks, out = self.backend.answer([image] * len(flat), flat), []
        for lst in lists:
            out.append(picks[: len(lst)])
            picks = picks[len(lst) :]
        return out

    def score(self, subject: Subject) -> ProxyResult:
        """Sample, answer own and foil questions; ``value`` is the text-blind-corrected alignment (raw TIFA
        when ``foils=0``)."""
        from unetnas.proxies.vqa import score_tifa

        self._check(subject)
        text = self._text_flops(subject)
        images, decode = self._generate(subject)
        k = self.images_per_prompt
        per_prompt_images = [list(images[i * k : (i + 1) * k]) for i in range(len(self.prompt_ids))]
        before = self.backend.total_flops
        if self.foils:
            res = score_alignment(self._answer_image, self.by_prompt, per_prompt_images, foils=self.foils)
            summary, value = res.summary(), res.alignment
            raw = dict(zip(self.prompt_ids, res.own))
        else:
            tifa = score_tifa(self.backend, self.items, dict(zip(self.prompt_ids, per_prompt_images)))
            own = np.array([tifa.per_prompt[i] for i in self.prompt_ids])
            summary = {"tifa": tifa.score, "tifa_se": standard_error(own), "by_category": tifa.by_category}
            value, raw = tifa.score, tifa.per_prompt
        judge = self.backend.total_flops - before
        sampling, probes = self._sampling_flops(subject), self._bill_probes()
        details = self._details(
            subject, images, sampling=sampling, decode=decode, judge=judge, text=text, probes=probes
        )
        details.update(
            summary,
            per_prompt=[float(raw[i]) for i in self.prompt_ids],
            prompt_ids=self.prompt_ids,
            n_questions=len(self.items),
            foils=self.foils,
            pairs=self.n_pairs,
        )
        return ProxyResult(self.name, float(value), float(sampling + decode + judge + text + probes), details)


@dataclass
class ClipScore(_Generated):
    """CLIPScore (torchmetrics scale: max(100 cos, 0)) of each generated image with its prompt, with a local
    ``CLIPModel``; value = mean over images (``details["per_prompt"]``: mean over each prompt's images,
    ``details["per_image"]``: every image's score, prompt-major)."""

    name = "clipscore"
    direction = "maximize"
    clip: str | Path  # a local CLIPModel directory (model + processor)
    prompts: Sequence[str] | str | Path  # prompts, or a file of them (see ``read_prompts``)
    vae: str | Path | None = None  # the AutoencoderKL the trial's data was prepared with (latent trials)
    images_per_prompt: int = 2
    steps: int | None = None
    cfg: float | None = None
    seed: int = 0
    device: str = "cpu"
    foils: int = 4  # foil captions per prompt (text-blind correction; 0: uncorrected raw CLIPScore)

    def __post_init__(self) -> None:
        from unetnas.proxies.clipscore import ClipScoreBackend

        self.captions = read_prompts(self.prompts)
        self._setup()
        self.backend = ClipScoreBackend.load(self.clip, device=self.device)

    def _probe(self, blank: np.ndarray) -> int:
        """The longest caption (in CLIP tokens, truncated like ``score``) on a blank image: the worst pair."""
        be = self.backend
        ids = be.processor.tokenizer(self.captions, truncation=True, max_length=be.max_text_tokens)["input_ids"]
        longest = self.captions[max(range(len(ids)), key=lambda i: (len(ids[i]), -i))]
        be.score([blank], [longest])
        return be.last_flops

    def flops(self, subject: Subject) -> float:
        self._check(subject)
        judge = self._judge_probe(subject) * self.n_images * (1 + len(self.foil_of[0]))
        return float(self._common_bound(subject) + judge + self._unbilled)

    def score(self, subject: Subject) -> ProxyResult:
        self._check(subject)
        text = self._text_flops(subject)
        images, decode = self._generate(subject)
        k = self.images_per_prompt
        n, m = len(self.captions), len(self.foil_of[0])
        pairs = [(i, q) for p in range(n) for i in range(p * k, (p + 1) * k) for q in [p, *self.foil_of[p]]]
        flat = self.backend.score([images[i] for i, _ in pairs], [self.captions[q] for _, q in pairs])
        table = np.asarray(flat, dtype=float).reshape(n, k, 1 + m)  # prompt, image, [own, foils...]
        own, foil = table[:, :, 0].mean(1), table[:, :, 1:].mean((1, 2)) if m else np.zeros(n)
        judge, sampling, probes = self.backend.last_flops, self._sampling_flops(subject), self._bill_probes()
        details = self._details(
            subject, images, sampling=sampling, decode=decode, judge=judge, text=text, probes=probes
        )
        details.update(
            clipscore=float(own.mean()),
            clipscore_se=standard_error(own),
            per_prompt=own.tolist(),
            per_image=table[:, :, 0].reshape(-1).tolist(),
            foils=self.foils,
            pairs=len(pairs),
        )
        value = float(own.mean())
        if m:
            d = own - foil
            value = float(d.mean())
            details.update(
                alignment=value,
                alignment_se=standard_error(d),
                blind_clipscore=float(foil.mean()),
                per_prompt_alignment=[round(float(x), 6) for x in d],
            )
        return ProxyResult(self.name, value, float(sampling + decode + judge + text + probes), details)
