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
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0).contiguous()


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise UserError("must be a non-negative integer", field="seed", value=seed)
    return int(seed)


def _rng(seed: int, split: str, tag: int, *more: int) -> np.random.Generator:
    return np.random.default_rng([_check_seed(seed), check_split(split), tag, *more])


def sample_batch(rng: np.random.Generator, n: int, split: str = "train", resolution: int = 32) -> WorldBatch:
    """``n`` fresh scenes from ``split``, their captions and renders, all drawn from ``rng``."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise UserError("must be a positive integer", field="n", value=n)
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
        _check_seed(self.seed)

    def batch(self, n: int, rng_or_step: np.random.Generator | int) -> WorldBatch:
        """Batch of ``n``: from a ``Generator``, or deterministically from a step number."""
        rng = rng_or_step if isinstance(rng_or_step, np.random.Generator) else self.step_rng(rng_or_step)
        return sample_batch(rng, n, self.split, self.resolution)

    def step_rng(self, step: int) -> np.random.Generator:
        """The generator behind ``batch(n, step)``."""
        return _rng(self.seed, self.split, _STREAM, _check_seed(step))

    def stream(self, n: int, start: int = 0) -> Iterator[WorldBatch]:
        """Batches of ``n`` for steps ``start, start + 1, ...`` forever."""
        step = start
        while True:
            yield self.batch(n, step)
            step += 1


def fixed_set(split: str, n: int, seed: int = 0, resolution: int = 32) -> WorldBatch:
    """A fixed batch, disjoint in seed stream from ``WorldDataset`` batches (e.g. for validation loss)."""
    return sample_batch(_rng(seed, split, _FIXED), n, split, resolution)


def prompt_set(n: int, seed: int = 0, split: str = "eval") -> PromptSet:
    """The prompts of ``fixed_set(split, n, seed)`` with their TIFA questions (the evaluation set)."""
    fixed = fixed_set(split, n, seed)
    captions, scenes = fixed.captions, fixed.scenes
    ids = [f"{split}-{seed}-{i:05d}" for i in range(n)]
    q_rng = _rng(seed, split, _QUESTIONS)
    questions = [q for pid, cap in zip(ids, captions, strict=True) for q in make_questions(cap, pid, q_rng)]
    return PromptSet(ids, captions, scenes, questions)
