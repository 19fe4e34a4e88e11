"""Benchmark the built-in world: answerer accuracy per TIFA category under degradations, render and answer speed.

    python bench/bench_answerer.py [--prompts 300] [--seed 0]

Prints markdown: one row per image variant (clean, the selftest's blur and noise, harsher ones, pure noise),
then renders/s and answer time per prompt. Timings are this process's CPU time (``time.process_time``; numpy
runs single-threaded here), so they stand for one core even on a busy machine.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import torch

from unetnas.world import (
    CATEGORIES,
    Answerer,
    WorldDataset,
    gaussian_blur,
    prompt_set,
    render_batch,
    sample_scene,
    tifa_score,
)
from unetnas.world.questions import chance

Variant = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def _desaturate(x: np.ndarray, keep: float) -> np.ndarray:
    grey = x.mean(axis=-1, keepdims=True)
    return grey + keep * (x - grey)


VARIANTS: dict[str, Variant] = {  # float (B, H, W, 3) in [-1, 1] -> same
    "clean": lambda x, r: x,
    "blur 0.7 px (selftest)": lambda x, r: gaussian_blur(x, 0.7),
    "noise 0.1 (selftest)": lambda x, r: x + 0.1 * r.standard_normal(x.shape),
    "blur 1.0 px": lambda x, r: gaussian_blur(x, 1.0),
    "blur 1.5 px": lambda x, r: gaussian_blur(x, 1.5),
    "noise 0.3": lambda x, r: x + 0.3 * r.standard_normal(x.shape),
    "blur 1.0 + noise 0.2": lambda x, r: gaussian_blur(x, 1.0) + 0.2 * r.standard_normal(x.shape),
    "saturation x0.4": lambda x, r: _desaturate(x, 0.4),
    "renders of other prompts": lambda x, r: np.roll(x, 1, axis=0),
    "pure noise N(0,1)": lambda x, r: r.standard_normal(x.shape),
}


def _evaluate(answerer: Answerer, images: np.ndarray, grouped: list[list[dict]]) -> tuple[float, dict, float]:
    t0 = time.process_time()
    answers = answerer.answer_batch(list(images), grouped)
    per_prompt_ms = (time.process_time() - t0) / len(images) * 1e3
    flat = [q for qs in grouped for q in qs]
    ok = [a == q["answer"] for a, q in zip((a for aa in answers for a in aa), flat, strict=True)]
    score, _, by_cat = tifa_score(ok, [q["id"] for q in flat], [q["element_type"] for q in flat])
    return score, by_cat, per_prompt_ms


def _speed(resolution: int, n: int = 2000) -> tuple[float, float]:
    """(renders/s of ``render_batch`` alone, images/s of ``WorldDataset.batch``: sample + caption + render)."""
    rng = np.random.default_rng(0)
    scenes = [sample_scene(rng, "train") for _ in range(n)]
    t0 = time.process_time()
    render_batch(scenes, resolution)
    render_rate = n / (time.process_time() - t0)
    ds = WorldDataset("train", resolution=resolution)
    t0 = time.process_time()
    for step in range(n // 250):
        ds.batch(250, step)
    return render_rate, n / (time.process_time() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=300, help="eval prompts (default 300, ~2,600 questions)")
    parser.add_argument("--seed", type=int, default=0, help="prompt-set and degradation seed")
    args = parser.parse_args()
    torch.set_num_threads(1)
    prompts = prompt_set(args.prompts, seed=args.seed)
    grouped = prompts.questions_by_prompt()
    answerer = Answerer()
    print(f"{args.prompts} eval prompts, {len(prompts.questions)} questions, chance {chance(prompts.questions):.3f}\n")
    print("| images | res | TIFA score | " + " | ".join(CATEGORIES) + " | ms/prompt |")
    print("|---" * (len(CATEGORIES) + 4) + "|")
    rows = [(name, 32) for name in VARIANTS] + [("clean", 16), ("clean", 64)]
    for name, res in rows:
        answerer.parse(np.zeros((res, res, 3), np.uint8))  # build the cached shape prototypes outside the timing
        rng = np.random.default_rng([args.seed, 99])
        base = render_batch(prompts.scenes, res).astype(np.float32) / 127.5 - 1.0
        images = np.clip(VARIANTS[name](base, rng), -1.0, 1.0).astype(np.float32)
        score, by_cat, ms = _evaluate(answerer, images, grouped)
        cells = " | ".join(f"{by_cat.get(c, float('nan')):.3f}" for c in CATEGORIES)
        print(f"| {name} | {res} | {score:.3f} | {cells} | {ms:.2f} |")
    print("\n| res | renders/s (render_batch) | images/s (WorldDataset.batch: sample+caption+render+tensor) |")
    print("|---|---|---|")
    for res in (32, 64):
        render_rate, data_rate = _speed(res)
        print(f"| {res} | {render_rate:,.0f} | {data_rate:,.0f} |")
    print(f"\nanswerer: {answerer.flops_per_image(32):,} FLOPs/image at 32 px (estimate, Answerer.flops_per_image)")


if __name__ == "__main__":
    main()
