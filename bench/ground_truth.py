"""The tabular ground truth of `space/tiny.yaml` (in the spirit of NAS-Bench-201 and JAHS-Bench-201).

Every member of the space that can read the prompt, plus a text-blind control, is trained on the built-in world
to the full horizon with the default recipe; at geometric checkpoints (horizon / 2^k) each run records validation
loss, raw TIFA and the text-blind-corrected alignment (with standard errors over prompts), training FLOPs and wall
seconds. A few designs get a second seed so seed noise is known. Runs are resumable: each run keeps its trainer
checkpoint and finished rows under ``--work``; the table is rewritten (atomically) after every run.

    python -m bench ground-truth [--horizon 2.4e12] [--checkpoints 3] [--ratio 4] [--prompts 128] [--second-seeds 8]
                                 [--out bench/data/gt-tiny-v1.json] [--work runs/ground-truth]

Table schema (version 1): ``{"version", "meta", "designs": [{id, spec, params, gmacs, train_flops_per_sample,
text_blind, tags}], "runs": [{design, seed, checkpoints: [{train_flops, steps, samples, wall_s, eval_flops, eval_s,
val_loss, tifa, tifa_se, alignment, alignment_se, blind_tifa, per_prompt_alignment}]}]}``. Units: FLOPs, seconds;
alignment and TIFA are accuracies in [0, 1] (alignment is a difference and may be negative).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "bench" / "data" / "gt-tiny-v1.json"


def designs(space_path: Path) -> list[dict[str, Any]]:
    """Every text-reading member of the space, then the strongest text-blind control (largest C, self-attention).

    Ids are stable for a given space file: members in the space's enumeration order, ``d00``, ``d01``, ...
    """
    from unetnas.cost import cost
    from unetnas.io import load_model
    from unetnas.space import SearchSpace

    space = load_model(space_path, SearchSpace)
    blind_space = (
        space.model_copy(update={"allow_text_blind": True}) if "allow_text_blind" in type(space).model_fields else space
    )
    members = list(blind_space.enumerate())
    reading = [m for m in members if text_reading(m)]
    blind = [m for m in members if not text_reading(m)]
    control = max(blind, key=lambda m: (m.base_channels, "self" in m.attention, m.mid_depth), default=None)
    chosen = reading + ([control] if control is not None else [])
    out = []
    for i, spec in enumerate(chosen):
        c = cost(spec)
        out.append(
            {
                "id": f"d{i:02d}",
                "spec": spec.with_(name=f"d{i:02d}").model_dump(mode="json"),
                "params": c.params,
                "gmacs": c.gmacs,
                "train_flops_per_sample": c.train_flops_per_sample,
                "text_blind": not text_reading(spec),
                "tags": tags(spec),
            }
        )
    return out


def text_reading(spec) -> bool:
    """True if the UNet has cross-attention somewhere (a level or the mid block): it can read the prompt."""
    return "cross" in spec.attention or (spec.mid_attention == "cross" and spec.mid_depth > 0)


def tags(spec) -> list[str]:
    """Human-readable design facts the science contrasts group by."""
    t = [f"C{spec.base_channels}", f"mult{'-'.join(map(str, spec.channel_mult))}"]
    t += [f"L{i}:{a}-{d}" for i, (a, d) in enumerate(zip(spec.attention, spec.transformer_depth))]
    t.append(f"mid:{spec.mid_attention}-{spec.mid_depth}")
    return t


def second_seed_ids(table_designs: list[dict[str, Any]], n: int) -> list[str]:
    """``n`` designs spread evenly over the GMACs range (the text-blind control always among them)."""
    reading = sorted((d for d in table_designs if not d["text_blind"]), key=lambda d: d["gmacs"])
    blind = [d["id"] for d in table_designs if d["text_blind"]]
    k = max(n - len(blind), 1)
    picks = [reading[round(i * (len(reading) - 1) / max(k - 1, 1))]["id"] for i in range(k)]
    return list(dict.fromkeys(picks + blind))[:n]


def run_one(
    design: dict[str, Any], seed: int, *, recipe, source, proxy, horizons: list[float], work: Path, log
) -> list[dict[str, Any]]:
    """Train one design with one seed through every checkpoint; resumes from ``work`` if a run was cut short."""
    from unetnas.proxies import Subject, ValLoss
    from unetnas.spec import UNetSpec
    from unetnas.train import checkpoint
    from unetnas.train.trainer import Trainer

    run_dir = work / f"{design['id']}-s{seed}"
    rows_path = run_dir / "rows.json"
    rows: list[dict[str, Any]] = json.loads(rows_path.read_text()) if rows_path.is_file() else []
    if len(rows) == len(horizons):
        return rows
    spec = UNetSpec.model_validate(design["spec"])
    trainer = Trainer(spec, recipe, source, run_dir, seed=seed)
    if rows and (run_dir / "checkpoint" / checkpoint.STATE).is_file():
        trainer.resume()
        rows = [r for r in rows if r["steps"] <= trainer.step]
    else:
        rows = []
    for h in horizons[len(rows) :]:
        trainer.train_to(trainer.steps_for(h))
        t0 = time.perf_counter()
        subject = Subject.from_trainer(trainer)
        val = ValLoss().score(subject)
        res = proxy.score(subject)
        d = res.details
        rows.append(
            {
                "train_flops": trainer.train_flops,
                "steps": trainer.step,
                "samples": trainer.samples,
                "wall_s": round(trainer.wall_s, 2),
                "eval_flops": val.flops + res.flops,
                "eval_s": round(time.perf_counter() - t0, 2),
                "val_loss": val.value,
                "tifa": d["tifa"],
                "tifa_se": d["tifa_se"],
                "alignment": d["alignment"],
                "alignment_se": d["alignment_se"],
                "blind_tifa": d["blind_tifa"],
                "alignment_by_category": d["alignment_by_category"],
                "per_prompt_alignment": d["per_prompt_alignment"],
            }
        )
        trainer.save()
        _write_json(rows_path, rows)
        log(
            f"{design['id']} s{seed} {trainer.train_flops:.3g} FLOPs step {trainer.step}: val {val.value:.4f} "
            f"tifa {d['tifa']:.3f} alignment {d['alignment']:+.3f} +- {d['alignment_se']:.3f}"
        )
    return rows


def _write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, separators=(",", ":")))
    os.replace(tmp, path)


def machine() -> dict[str, Any]:
    import torch

    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpus": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench ground-truth", description=__doc__.splitlines()[0])
    ap.add_argument("--space", type=Path, default=ROOT / "space" / "tiny.yaml")
    ap.add_argument("--recipe", type=Path, default=ROOT / "trials" / "short.yaml")
    ap.add_argument("--horizon", type=float, default=2.4e12, help="full training horizon per run, FLOPs")
    ap.add_argument("--checkpoints", type=int, default=3, help="geometric checkpoints horizon/ratio^k, k < this")
    ap.add_argument("--ratio", type=float, default=4.0, help="ratio between checkpoints (3, 4: first at 1/16)")
    ap.add_argument("--prompts", type=int, default=128, help="evaluation prompts per alignment score")
    ap.add_argument("--second-seeds", type=int, default=8, help="designs trained again with seed 1")
    ap.add_argument("--only", default="", help="comma-separated design ids (default: all)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "ground-truth")
    args = ap.parse_args(argv)

    import torch

    from unetnas.proxies import WorldTifa
    from unetnas.train.engine import ensure_distributed
    from unetnas.train.recipe import load_recipe
    from unetnas.train.source import WorldSource

    torch.set_num_threads(int(os.environ.get("UNETNAS_THREADS", os.cpu_count() or 1)))
    ensure_distributed()
    recipe = load_recipe(args.recipe)
    table_designs = designs(args.space)
    first = table_designs[0]["spec"]
    source = WorldSource(pool=recipe.world_pool, seed=0, resolution=first["latent_size"], text_len=first["text_len"])
    proxy = WorldTifa(prompts=args.prompts, images_per_prompt=1)
    horizons = [args.horizon / args.ratio**k for k in reversed(range(args.checkpoints))]
    only = set(filter(None, args.only.split(",")))
    jobs = [(d, 0) for d in table_designs]
    seconds = set(second_seed_ids(table_designs, args.second_seeds))
    jobs += [(d, 1) for d in table_designs if d["id"] in seconds]
    jobs = [(d, s) for d, s in jobs if not only or d["id"] in only]
    start = time.time()
    previous = json.loads(args.out.read_text()) if args.out.is_file() else {}
    spent_before = previous.get("meta", {}).get("cost_s", 0.0)

    def log(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)

    log(f"{len(table_designs)} designs, {len(jobs)} runs, horizons {', '.join(f'{h:.3g}' for h in horizons)}")
    runs = []
    for d, seed in jobs:
        rows = run_one(d, seed, recipe=recipe, source=source, proxy=proxy, horizons=horizons, work=args.work, log=log)
        runs.append({"design": d["id"], "seed": seed, "checkpoints": rows})
        done = [r for r in runs if len(r["checkpoints"]) == len(horizons)]
        meta = {
            "space": str(args.space.relative_to(ROOT)) if args.space.is_relative_to(ROOT) else str(args.space),
            "recipe": str(args.recipe.relative_to(ROOT)) if args.recipe.is_relative_to(ROOT) else str(args.recipe),
            "horizons": horizons,
            "world": source.describe(),
            "proxy": {
                "name": "tifa",
                "prompts": args.prompts,
                "images_per_prompt": 1,
                "steps": recipe.sample_steps,
                "cfg": recipe.cfg_scale,
                "foils": "all other prompts",
                "sampler": "DDIM, trailing spacing",
            },
            "machine": machine(),
            "date": time.strftime("%Y-%m-%d"),
            "command": "python -m bench ground-truth " + " ".join(argv or []),
            "cost_s": round(spent_before + time.time() - start, 1),
            "complete": len(done) == len(jobs),
        }
        _write_json(args.out, {"version": 1, "meta": meta, "designs": table_designs, "runs": done})
    log(f"table written to {args.out} ({len(runs)} runs)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
