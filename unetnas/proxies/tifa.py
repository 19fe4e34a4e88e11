"""TIFA-style alignment on the built-in world: sample each evaluation prompt, answer its questions from pixels.

Prompts come from the world's evaluation split (held-out colour-shape pairs included); questions from each
prompt's caption (presence, counting, colour, shape, size, spatial); answers from the pixel-reading `Answerer`,
which never sees the scene graph. Raw TIFA = mean accuracy per prompt, then over prompts (Hu et al. 2023); the
proxy's value is the text-blind-corrected alignment (``unetnas.proxies.alignment``): raw TIFA minus the accuracy
of other prompts' questions on the same images, with standard errors over prompts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from unetnas.cost import cost
from unetnas.proxies.alignment import score_alignment
from unetnas.proxies.base import Proxy, ProxyResult, Subject


@dataclass
class WorldTifa(Proxy):
    """TIFA on ``prompts`` evaluation prompts x ``images_per_prompt`` DDIM+CFG samples with fixed seeds."""

    name = "tifa"
    direction = "maximize"
    prompts: int = 32  # evaluation prompts (each has ~9 questions)
    images_per_prompt: int = 2  # fixed seeds 0..k-1 per prompt
    steps: int | None = None  # DDIM steps (default: the recipe's sample_steps)
    cfg: float | None = None  # guidance scale (default: the recipe's cfg_scale)
    seed: int = 0  # which evaluation prompt set (and its noise seeds)
    foils: int | None = None  # foil prompts per prompt for the text-blind correction (None: all the others)
    batch: int = 32  # prompts per sampling batch (2x rows with CFG); 128 was not faster (python -m bench scoring)

    def __post_init__(self) -> None:
        from unetnas.world.answerer import Answerer
        from unetnas.world.dataset import prompt_set

        self.prompt_set = prompt_set(self.prompts, seed=self.seed, split="eval")
        self.answerer = Answerer()
        self._encoders: dict[tuple[str | None, int], Any] = {}  # (text encoder path, text_len) -> TextEncoder
        self._states: dict[tuple[str | None, int], Any] = {}  # same key -> (prompt states, uncond states)

    def _settings(self, subject: Subject) -> tuple[int, float]:
        return self.steps or subject.recipe.sample_steps, self.cfg or subject.recipe.cfg_scale

    def flops(self, subject: Subject) -> float:
        steps, cfg = self._settings(subject)
        n = self.prompts * self.images_per_prompt
        sampling = steps * (2 if cfg != 1.0 else 1) * cost(subject.spec).flops * n
        answering = self.answerer.flops_per_image(subject.spec.resolution) * n
        return float(sampling + answering + self._text_flops(subject))

    def _encoder(self, subject: Subject):
        from unetnas.text import TextEncoder

        key = subject.text_encoder_path, subject.spec.text_len
        if key not in self._encoders:
            self._encoders[key] = TextEncoder.load(key[0], max_length=key[1])
        return self._encoders[key]

    def _text_flops(self, subject: Subject) -> float:
        """Encoding the prompts (and "") happens once per text encoder; later scores reuse the states."""
        if (subject.text_encoder_path, subject.spec.text_len) in self._states:
            return 0.0
        return float(self._encoder(subject).text_flops_per_caption * (self.prompts + 1))

    def _text_states(self, subject: Subject):
        key = subject.text_encoder_path, subject.spec.text_len
        if key not in self._states:
            enc = self._encoder(subject)
            self._states[key] = (enc.encode(self.prompt_set.captions), enc.encode([""])[0])
        return self._states[key]

    def seeds(self) -> list[int]:
        """Initial-noise seeds, one per (prompt, image) in prompt-major order: the same for every candidate (common
        random numbers), distinct across images so a text-blind model does not draw one image for every prompt."""
        k = self.images_per_prompt
        return [self.seed * 1_000_003 + p * k + j for p in range(self.prompts) for j in range(k)]

    def score(self, subject: Subject) -> ProxyResult:
        """Sample every prompt, answer own and foil questions; ``value`` is the text-blind-corrected alignment."""
        from unetnas.sample import sample, to_uint8

        spent = self.flops(subject)  # before encoding: the first score pays for the prompt states
        steps, cfg = self._settings(subject)
        text, uncond = self._text_states(subject)
        k = self.images_per_prompt
        was_training = subject.unet.training
        subject.unet.eval()
        try:
            images = to_uint8(
                sample(
                    subject.unet,
                    text.repeat_interleave(k, 0),
                    uncond,
                    recipe=subject.recipe,
                    steps=steps,
                    cfg=cfg,
                    seeds=self.seeds(),
                    batch=self.batch,
                )
            )
        finally:
            subject.unet.train(was_training)
        per_prompt = [list(images[p * k : (p + 1) * k]) for p in range(self.prompts)]
        res = score_alignment(
            self.answerer.answer_lists, self.prompt_set.questions_by_prompt(), per_prompt, foils=self.foils
        )
        details = {**res.summary(), "images_per_prompt": k, "steps": steps, "cfg": cfg, "images": images}
        return ProxyResult(self.name, res.alignment, spent, details)
