"""TIFA-style alignment on the built-in world: sample each evaluation prompt, answer its questions from pixels.

Prompts come from the world's evaluation split (held-out colour-shape pairs included); questions from each
prompt's caption (presence, counting, colour, shape, size, spatial); answers from the pixel-reading `Answerer`,
which never sees the scene graph. Score = mean accuracy per prompt, then over prompts (TIFA).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from unetnas.cost import cost
from unetnas.proxies.base import Proxy, ProxyResult, Subject
from unetnas.world.questions import tifa_summary


@dataclass
class WorldTifa(Proxy):
    """TIFA on ``prompts`` evaluation prompts x ``images_per_prompt`` DDIM+CFG samples with fixed seeds."""

    name = "tifa"
    direction = "maximize"
    prompts: int = 32  # evaluation prompts (each has ~9 questions)
    images_per_prompt: int = 2  # fixed seeds 0..k-1 per prompt
    steps: int | None = None  # DDIM steps (default: the recipe's sample_steps)
    cfg: float | None = None  # guidance scale (default: the recipe's cfg_scale)
    seed: int = 0  # which evaluation prompt set

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

    def score(self, subject: Subject) -> ProxyResult:
        from unetnas.sample import sample, to_uint8

        spent = self.flops(subject)  # before encoding: the first score pays for the prompt states
        steps, cfg = self._settings(subject)
        text, uncond = self._text_states(subject)
        k = self.images_per_prompt
        seeds = [s for _ in range(self.prompts) for s in range(k)]
        was_training = subject.unet.training
        subject.unet.eval()
        try:
            images = to_uint8(sample(subject.unet, text.repeat_interleave(k, 0), uncond, recipe=subject.recipe,
                                     steps=steps, cfg=cfg, seeds=seeds))  # fmt: skip
        finally:
            subject.unet.train(was_training)
        per_prompt_qs = self.prompt_set.questions_by_prompt()
        questions, correct = [], []
        for p, qs in enumerate(per_prompt_qs):
            answers = self.answerer.answer_batch(list(images[p * k : (p + 1) * k]), [qs] * k)
            for qi, q in enumerate(qs):
                questions.append(q)
                correct.append(float(np.mean([answers[j][qi] == q["answer"] for j in range(k)])))
        res = tifa_summary(questions, correct, int(spent))
        details = {"by_category": res.by_category, "per_prompt": list(res.per_prompt.values()),
                   "n_questions": res.n_questions, "prompts": self.prompts, "images_per_prompt": k,
                   "steps": steps, "cfg": cfg, "images": images}  # fmt: skip
        return ProxyResult(self.name, res.score, spent, details)
