"""Alignment scoring speed: today's scorer against the current one on a fixed checkpoint, side by side in one run.

    python -m bench scoring [--checkpoint TRIAL_DIR | --train-steps 60] [--prompts 128] [--rounds 3]

A search scores a candidate with ``WorldTifa`` (``unetnas.proxies.tifa``): DDIM sampling with classifier-free
guidance of every evaluation prompt (cond/uncond pair in one batch), then the world's pixel judge answers each
image's own questions and the questions of all other prompts (the text-blind correction,
``unetnas.proxies.alignment``). Both parts are timed apart, on the same images:

- ``sample``: ``unetnas.sample.sample`` at the scorer's batch (32 prompts, 64 rows with CFG) and at ``--batch``;
- ``judge``: ``score_alignment`` with the judge of ``bench.legacy.BASELINE_REV`` (loaded from git) and the current
  one (per-image memo of repeated foil questions, cached question parsing); both must give the same figures;
- ``score``: the whole ``WorldTifa.score`` of today (old judge, old batch) and of now, rounds interleaved.

The checkpoint: ``--checkpoint`` (a trial folder, as ``unetnas trial`` writes it), else the median member of
space/tiny.yaml trained here for ``--train-steps`` with ``trials/short.yaml`` (seed 0). Times are CPU seconds of
this process (``time.process_time``; the shared machine's load inflates wall time, not CPU time) and wall
seconds; the medians over ``--rounds`` are reported. FLOPs charged are ``WorldTifa.flops`` (unchanged by speed).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import tempfile
import time

import torch

from bench.legacy import BASELINE_REV, legacy_module


def fixed_subject(args):
    """A trained checkpoint as a proxy ``Subject`` (trained here when no ``--checkpoint`` is given)."""
    from unetnas.proxies.base import Subject

    if args.checkpoint:
        return Subject.from_checkpoint(args.checkpoint), None
    from bench.roofline import median_member
    from unetnas.train.recipe import load_recipe
    from unetnas.train.source import WorldSource
    from unetnas.train.trainer import Trainer

    spec, recipe = median_member(), load_recipe()
    tmp = tempfile.TemporaryDirectory(prefix="bench-scoring-")
    tr = Trainer(
        spec,
        recipe,
        WorldSource(pool=recipe.world_pool, resolution=spec.resolution, text_len=spec.text_len),
        tmp.name,
        seed=0,
    )
    tr.train_to(args.train_steps)
    tr.save()
    return Subject.from_checkpoint(tmp.name), tmp


def timed(fn):
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w0, time.process_time() - c0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench scoring", description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", default=None, help="trial folder (default: train the median member here)")
    ap.add_argument("--train-steps", type=int, default=60, help="steps of the checkpoint trained here")
    ap.add_argument("--prompts", type=int, default=128)
    ap.add_argument("--batch", type=int, default=128, help="another sampling batch to time beside the scorer's")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--baseline-rev", default=BASELINE_REV)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from unetnas.proxies.alignment import score_alignment
    from unetnas.proxies.tifa import WorldTifa
    from unetnas.sample import sample, to_uint8

    subject, tmp = fixed_subject(args)
    subject.unet.eval()
    old_judge = legacy_module(args.baseline_rev, "unetnas/world/answerer.py").Answerer()
    new = WorldTifa(prompts=args.prompts, images_per_prompt=1)
    old = WorldTifa(prompts=args.prompts, images_per_prompt=1, batch=32)
    old.answerer = old_judge
    steps, cfg = new._settings(subject)
    text, uncond = new._text_states(subject)
    old._text_states(subject)  # both encode the prompts before timing: FLOPs charged compare like for like
    questions = new.prompt_set.questions_by_prompt()

    def sampler(batch):
        return lambda: to_uint8(
            sample(
                subject.unet, text, uncond, recipe=subject.recipe, steps=steps, cfg=cfg, seeds=new.seeds(), batch=batch
            )
        )

    def judge(answerer, images):
        return lambda: score_alignment(answerer.answer_lists, questions, [[im] for im in images])

    parts: dict[str, list[tuple[float, float]]] = {}
    figures: dict[str, object] = {}
    images = None
    for _ in range(args.rounds):
        for name, fn in (("sample b32", sampler(32)), (f"sample b{args.batch}", sampler(args.batch))):
            images_, w, c = timed(fn)
            images = images if images is not None else images_
            figures[name] = images_
            parts.setdefault(name, []).append((w, c))
        for name, ans in (("judge old", old_judge), ("judge new", new.answerer)):
            res, w, c = timed(judge(ans, images))
            figures[name] = res
            parts.setdefault(name, []).append((w, c))
        for name, proxy in (("score old", old), ("score new", new)):
            res, w, c = timed(lambda p=proxy: p.score(subject))
            figures[name] = res
            parts.setdefault(name, []).append((w, c))
    n = args.prompts
    load = os.getloadavg()
    print(
        f"\n{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()}, nproc {os.cpu_count()}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} intra-op threads, load average at the end "
        f"{load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f}; {subject.spec.name or 'checkpoint'}, {n} prompts x 1 image, "
        f"DDIM {steps} steps, CFG {cfg}; medians of {args.rounds} interleaved rounds; baseline {args.baseline_rev}\n"
    )
    print("| part | images/s (wall) | images/CPU-s | ms/image (CPU) |")
    print("|---|---|---|---|")
    for name, v in parts.items():
        w, c = statistics.median(x[0] for x in v), statistics.median(x[1] for x in v)
        print(f"| {name} | {n / w:.2f} | {n / c:.2f} | {1000 * c / n:.1f} |")
    med = {k: statistics.median(x[1] for x in v) for k, v in parts.items()}
    medw = {k: statistics.median(x[0] for x in v) for k, v in parts.items()}
    print(
        f"\nscore new/old images/s: {med['score old'] / med['score new']:.2f}x per CPU-s, "
        f"{medw['score old'] / medw['score new']:.2f}x wall"
    )
    same_images = bool((figures["sample b32"] == figures[f"sample b{args.batch}"]).all())
    diff_px = int((figures["sample b32"] != figures[f"sample b{args.batch}"]).sum())
    print(f"images at batch 32 and {args.batch}: {'identical' if same_images else f'{diff_px} uint8 values differ'}")
    jo, jn = figures["judge old"], figures["judge new"]
    print(f"judge old vs new on the same images: alignment {jo.alignment:+.4f} vs {jn.alignment:+.4f}, ")
    print(
        f"raw TIFA {jo.tifa:.4f} vs {jn.tifa:.4f} ({'identical' if (jo.own == jn.own).all() and (jo.foil == jn.foil).all() else 'DIFFERENT'})"
    )
    so, sn = figures["score old"], figures["score new"]
    d = sn.details["per_prompt_alignment"]
    do = so.details["per_prompt_alignment"]
    from unetnas.proxies.alignment import paired_difference

    m, se = paired_difference(d, do)
    print(
        f"score old: alignment {so.value:+.4f} +- {so.details['alignment_se']:.4f}, new: {sn.value:+.4f} +- "
        f"{sn.details['alignment_se']:.4f}; paired difference {m:+.4f} +- {se:.4f}; FLOPs charged old "
        f"{so.flops:.4g} new {sn.flops:.4g}"
    )
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
