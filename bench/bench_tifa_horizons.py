"""TIFA-style score of the tiny preset at increasing training horizons (one trial, continued rung by rung).

Trains `tiny` on the built-in world to each horizon (continuing from the previous checkpoint, as the search's rungs
do), scores it with the world's TIFA proxy after each, and finally samples a grid for docs/. Prints a markdown table.

    python bench/bench_tifa_horizons.py [--horizons 4e12 1.6e13 4.8e13] [--out runs/bench-horizons]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from unetnas.presets import get_preset
from unetnas.proxies import Subject, WorldTifa
from unetnas.train.recipe import load_recipe
from unetnas.train.source import WorldSource
from unetnas.train.trial import LoadedTrial, run_trial

DOC_PROMPTS = [
    "a red circle",
    "a large blue square",
    "two green triangles",
    "a yellow circle left of a magenta square",
    "a small cyan diamond above a red circle",
]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--horizons", type=float, nargs="+", default=[4e12, 1.6e13, 4.8e13])
    ap.add_argument("--out", type=Path, default=Path("runs/bench-horizons"))
    ap.add_argument("--prompts", type=int, default=48)
    ap.add_argument("--images", type=int, default=2)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--grid", type=Path, default=Path("docs/tiny-samples.png"))
    args = ap.parse_args()

    spec, recipe = get_preset("tiny"), load_recipe()
    source = WorldSource(pool=recipe.world_pool, resolution=spec.resolution, text_len=spec.text_len)
    proxy = WorldTifa(prompts=args.prompts, images_per_prompt=args.images, steps=args.steps)
    rows = []
    for h in args.horizons:
        resume = (args.out / "checkpoint" / "state.json").is_file()
        summary = run_trial(spec, recipe, source, args.out, horizon=h, resume=resume)
        t0 = time.perf_counter()
        res = proxy.score(Subject.from_checkpoint(str(args.out)))
        dt = time.perf_counter() - t0
        rows.append(
            {
                "horizon": h,
                "steps": summary["steps"],
                "train_flops": summary["train_flops"],
                "val_loss": summary["val_loss"],
                "tifa": res.value,
                "by_category": res.details["by_category"],
                "eval_flops": res.flops,
                "score_s": dt,
                "score_s_per_prompt": dt / args.prompts,
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    cats = list(rows[-1]["by_category"])
    print(f"\n| horizon (FLOPs) | steps | val loss | TIFA | {' | '.join(cats)} | eval FLOPs | s/prompt |")
    print("|---" * (6 + len(cats)) + "|")
    for r in rows:
        by = " | ".join(f"{r['by_category'].get(c, float('nan')):.3f}" for c in cats)
        print(
            f"| {r['horizon']:.2g} | {r['steps']} | {r['val_loss']:.4f} | {r['tifa']:.3f} | {by} | "
            f"{r['eval_flops']:.3g} | {r['score_s_per_prompt']:.2f} |"
        )
    _grid(args.out, args.grid)


def _grid(trial: Path, path: Path) -> None:
    from unetnas.sample import sample, save_grid, to_uint8
    from unetnas.text import TextEncoder

    t = LoadedTrial(trial)
    enc = TextEncoder.load(t.text_encoder_path(), max_length=t.spec.text_len)
    n = 8
    text = enc.encode([p for p in DOC_PROMPTS for _ in range(n)])
    images = sample(
        t.unet, text, enc.encode([""])[0], recipe=t.recipe, steps=50, cfg=4.0, seeds=list(range(n)) * len(DOC_PROMPTS)
    )
    save_grid(to_uint8(images), path, cols=n)
    print(f"\nwrote {path}: rows = {DOC_PROMPTS}")


if __name__ == "__main__":
    main()
