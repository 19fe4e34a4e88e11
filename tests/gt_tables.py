"""Synthetic ground-truth tables for replay tests, in the schema `python -m bench ground-truth` writes.

Every member of a space gets one run (a third of them two: seeds 0 and 1; or ``n_runs`` runs each, seeds 0..n_runs-1,
for the held-out replay) with checkpoints at geometric training
FLOPs from below the plan's first rung to its last (the horizon H comes from the recipe and the space, as the
search derives it). Values follow a known law, so tests can tell a sampler that learns from one that does not:
alignment grows with cross-attention depth (a text-blind design scores 0) and a little with width, and with
training FLOPs as (F / H)^0.25; each run adds its own seed offset (sd ``seed_sd``, the per-seed noise a held-out
replay is fooled by) and small per-checkpoint noise.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from unetnas.cost import cost
from unetnas.io import load_space
from unetnas.search.plan import rung_horizons
from unetnas.spec import UNetSpec
from unetnas.train.recipe import load_recipe

DATA = Path(__file__).parent / "data"
SPACE = DATA / "replay_space.yaml"
RECIPE = DATA / "replay_recipe.yaml"
SE = 0.02  # alignment standard error of every checkpoint (16 prompts' spread)
FLOOR = 0.22  # raw TIFA of a text-blind design: alignment = TIFA - FLOOR


def cross_depth(spec: UNetSpec) -> int:
    levels = sum(d for a, d in zip(spec.attention, spec.transformer_depth) if a == "cross")
    mid = spec.mid_depth if spec.mid_attention == "cross" and spec.attention[-1] != "cross" else 0
    return levels + mid


def true_alignment(spec: UNetSpec) -> float:
    """Alignment at the horizon H, before seed noise."""
    cross = cross_depth(spec)
    if cross == 0:
        return 0.0
    selfs = sum(1 for a in spec.attention if a == "self")
    return 0.05 + 0.3 * (1 - math.exp(-cross / 2)) + 0.01 * selfs + 0.02 * math.log2(spec.base_channels / 16)


def make_table(
    path: Path,
    space_path: Path = SPACE,
    recipe_path: Path = RECIPE,
    seed: int = 0,
    n_runs: int | None = None,
    seed_sd: float = 0.01,
) -> Path:
    space, recipe = load_space(space_path), load_recipe(recipe_path)
    s = recipe.search
    rungs, _ = rung_horizons(space, recipe, s)
    horizon = rungs[-1]
    n_ckpt = math.ceil(math.log2(s.eta ** (len(rungs) - 1))) + 2  # from below rung 0 to the horizon, factor 2 apart
    rng = np.random.default_rng(seed)
    designs, runs = [], []
    for i, spec in enumerate(space.enumerate()):
        c = cost(spec)
        did = f"d{i:03d}"
        designs.append(
            {
                "id": did,
                "spec": spec.model_dump(mode="json"),
                "params": c.params,
                "gmacs": c.gmacs,
                "train_flops_per_sample": c.train_flops_per_sample,
                "text_blind": cross_depth(spec) == 0,
                "tags": [],
            }
        )
        a_inf = true_alignment(spec)
        for run_seed in range(n_runs) if n_runs else (0, 1) if i % 3 == 0 else (0,):
            offset = rng.normal(0, seed_sd)
            cks = []
            for j in reversed(range(n_ckpt)):
                f = horizon / 2**j
                steps = int(f // (c.train_flops_per_sample * recipe.batch_size))
                align = a_inf * (f / horizon) ** 0.25 + offset + rng.normal(0, 0.005)
                cks.append(
                    {
                        "train_flops": f,
                        "steps": steps,
                        "samples": steps * recipe.batch_size,
                        "wall_s": f / 5e10,
                        "eval_flops": 1e10,
                        "eval_s": 2.0,
                        "val_loss": 0.05
                        + 0.1 * (f / horizon) ** -0.3 * (1 - 0.02 * math.log2(spec.base_channels / 16)),
                        "tifa": align + FLOOR,
                        "tifa_se": SE,
                        "alignment": align,
                        "alignment_se": SE,
                    }
                )
            runs.append({"design": did, "seed": run_seed, "checkpoints": cks})
    meta = {
        "space": str(Path(space_path).resolve()),
        "recipe": str(Path(recipe_path).resolve()),
        "proxy": {"prompts": s.tifa_prompts, "images": s.tifa_images},
        "synthetic": True,
    }
    path.write_text(json.dumps({"version": 1, "meta": meta, "designs": designs, "runs": runs}))
    return path
