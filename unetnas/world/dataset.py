"""Streams of (image, caption, scene) from the built-in world, and fixed sets for validation and evaluation.

Every batch is a pure function of ``(seed, split, step)``: ``WorldDataset`` holds three small fields, pickles in
a few bytes and needs no worker state, so data never depends on process or iteration order.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from unetnas.errors import UserError
from unetnas.world.captions import describe
from unetnas.world.questions import make_questions
from unetnas.world.render import check_resolution, render_batch
from unetnas.world.scene import Scene, check_split, sample_scene

_STREAM, _FIXED, _QUESTIONS = 0, 1, 2  # seed-sequence tags keeping the three uses of one seed independent


@dataclass(frozen=True)
class WorldBatch:
    """``images``: float ``(B, 3, H, W)`` in [-1, 1]; ``captions`` and ``scenes`` in the same order."""

    images: torch.Tensor
    captions: list[str]
    scenes: list[Scene]

    def __len__(self) -> int:
        return len(self.captions)


@dataclass(frozen=True)
class PromptSet:
    """A fixed evaluation set: prompt ids, captions, scene graphs, and TIFA questions (``id`` = prompt id)."""

    ids: list[str]
    captions: list[str]
    scenes: list[Scene]
    questions: list[dict[str, Any]]

    def questions_by_prompt(self) -> list[list[dict[str, Any]]]:
        """Questions grouped per prompt, in ``ids`` order (the shape ``Answerer.answer_batch`` takes)."""
        groups: dict[str, list[dict[str, Any]]] = {i: [] for i in self.ids}
        for q in self.questions:
            groups[q["id"]].append(q)
        return list(groups.values())


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 ``(B, H, W, 3)`` -> float32 ``(B, 3, H, W)`` in [-1, 1]."""
    out = np.ascontiguousarray(images.transpose(0, 3, 1, 2), dtype=np.float32)  # numpy: no torch thread pool
    out *= 1.0 / 127.5
    out -= 1.0
    return torch.from_numpy(out)


def _check_int(value: int, field: str, minimum: int = 0) -> int:
    """``value`` as an int if it is an integer >= ``minimum`` (default 0: seeds and steps), else ``UserError``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise UserError(f"must be an integer >= {minimum}", field=field, value=value)
    return int(value)


def _rng(seed: int, split: str, tag: int, *more: int) -> np.random.Generator:
    return np.random.default_rng([_check_int(seed, "seed"), check_split(split), tag, *more])


def sample_batch(rng: np.random.Generator, n: int, split: str = "train", resolution: int = 32) -> WorldBatch:
    """``n`` fresh scenes from ``split`` (default "train"), their captions and renders at ``resolution`` (default
    32, the CPU trial size), all drawn from ``rng``."""
    _check_int(n, "n", minimum=1)
    scenes, captions = [], []
    for _ in range(n):  # scene then caption per item: the first k items of any n >= k are the same
        scenes.append(sample_scene(rng, split))
        captions.append(describe(scenes[-1], rng).text)
    return WorldBatch(to_tensor(render_batch(scenes, resolution)), captions, scenes)


@dataclass(frozen=True)
class WorldDataset:
    """Endless deterministic stream of world batches for one split."""

    split: str = "train"  # "train" never shows the HELD_OUT (colour, shape) pairs; "val"/"eval" do
    resolution: int = 32  # image side in pixels, 16..64 (32 = the CPU trial size)
    seed: int = 0  # stream seed; batches depend only on (seed, split, step)

    def __post_init__(self) -> None:
        check_split(self.split)
        check_resolution(self.resolution)
        _check_int(self.seed, "seed")

    def batch(self, n: int, rng_or_step: np.random.Generator | int) -> WorldBatch:
        """Batch of ``n``: from a ``Generator``, or deterministically from a step number."""
        rng = rng_or_step if isinstance(rng_or_step, np.random.Generator) else self.step_rng(rng_or_step)
        return sample_batch(rng, n, self.split, self.resolution)

    def step_rng(self, step: int) -> np.random.Generator:
        """The generator behind ``batch(n, step)``."""
        return _rng(self.seed, self.split, _STREAM, _check_int(step, "step"))

    def stream(self, n: int, start: int = 0) -> Iterator[WorldBatch]:
        """Batches of ``n`` for steps ``start`` (default 0, the first step), ``start + 1``, ... forever."""
        step = start
        while True:
            yield self.batch(n, step)
            step += 1


def fixed_set(split: str, n: int, seed: int = 0, resolution: int = 32) -> WorldBatch:
    """A fixed batch of ``n`` (e.g. for validation loss); its seed stream is disjoint from ``WorldDataset``'s.

    ``seed`` defaults to 0 and ``resolution`` to 32 (the CPU trial size); the first k items of any n >= k agree.
    """
    return sample_batch(_rng(seed, split, _FIXED), n, split, resolution)


def prompt_set(n: int, seed: int = 0, split: str = "eval") -> PromptSet:
    """The prompts of ``fixed_set(split, n, seed)`` with their TIFA questions: the evaluation set.

    ``seed`` defaults to 0 and ``split`` to "eval" (the split that shows the held-out colour-shape pairs).
    """
    fixed = fixed_set(split, n, seed)
    captions, scenes = fixed.captions, fixed.scenes
    ids = [f"{split}-{seed}-{i:05d}" for i in range(n)]
    q_rng = _rng(seed, split, _QUESTIONS)
    questions = [q for pid, cap in zip(ids, captions, strict=True) for q in make_questions(cap, pid, q_rng)]
    return PromptSet(ids, captions, scenes, questions)
