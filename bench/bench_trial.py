"""Benchmark trial training: the Trainer (DeepSpeed engine) now, as it was before the CPU-speed work, and a plain
PyTorch loop, on the same model and batch, side by side in one run.

    python -m bench trial [--specs median,tiny] [--batch 32] [--rounds 5] [--steps 4] [--threads N] [--micro 32]

All loops train the same UNet (``build_unet``, same seed) with the same AdamW + warmup LambdaLR, the same global
batch from the same source, and the same per-step noise, timesteps and caption dropout (drawn from the trainer's
(seed, step) generators). ``trainer`` is ``unetnas.train.trainer.Trainer``; ``today`` is the same file at
``bench.legacy.BASELINE_REV`` (loaded from git, so the comparison needs no second checkout); ``plain`` is
``loss.backward(); clip_grad_norm_; opt.step()`` with whatever process-wide settings the trainer gets (threads).
After a warm-up, rounds alternate trainer, today, plain, trainer, ... (``--steps`` optimizer steps each) and the
medians are reported, so drifting load on a shared machine hits all alike. Prints a markdown table: samples/s of
each (wall clock and per CPU-second of this process), the ratios trainer/today and trainer/plain, achieved GFLOP/s
(the cost model's training FLOPs per sample x samples/s), and the largest relative difference between the loops'
per-step losses (same seed, same data: the loss curves must agree).

``median`` is the member of space/tiny.yaml with the median training FLOPs per sample (bench/roofline.py);
``space-self`` a member with a self-attention level (C=24, mult 1-2).
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
import torch.nn.functional as F


def other_member():
    from unetnas.io import load_space

    space = load_space("space/tiny.yaml")
    for s in space.enumerate():
        if (s.base_channels, s.channel_mult, s.attention, s.mid_depth, s.layers_per_block[0]) == (
            24,
            (1, 2),
            ("none", "self"),
            1,
            1,
        ):
            return s.with_(name="space-self")
    raise SystemExit("space/tiny.yaml has no member with a self-attention level at C=24, mult 1-2")


def get_spec(name: str):
    from bench.roofline import get_spec as preset_or_median

    return other_member() if name == "space-self" else preset_or_median(name)


class Plain:
    """The plain PyTorch loop: same model, optimizer, schedule, batch and noise as ``Trainer``."""

    def __init__(self, spec, recipe, source, seed: int = 0) -> None:
        from unetnas.build import build_unet
        from unetnas.train.trainer import noise_scheduler

        self.recipe, self.source, self.seed, self.step = recipe, source, seed, 0
        self.unet = build_unet(spec, seed=seed).train()
        self.opt = torch.optim.AdamW(
            self.unet.parameters(), lr=recipe.lr, betas=recipe.betas, weight_decay=recipe.weight_decay
        )
        from unetnas.cost import cost

        warm = recipe.warmup_steps(cost(spec).train_flops_per_sample * recipe.batch_size)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lambda s: min(1.0, (s + 1) / warm) if warm else 1.0)
        self.alphas = noise_scheduler(recipe).alphas_cumprod
        self.history: list[float] = []

    def train_to(self, step: int) -> None:
        from unetnas.train.source import step_generator

        r, n = self.recipe, self.recipe.batch_size
        while self.step < step:
            x0, text = self.source.global_batch(self.step, n)
            g = step_generator(self.seed, self.step, tag=2)
            noise = torch.randn(x0.shape, generator=g)
            t = torch.randint(0, r.num_train_timesteps, (n,), generator=g)
            drop = torch.rand(n, generator=g) < r.caption_dropout
            text = torch.where(drop.view(-1, 1, 1), self.source.uncond.expand_as(text), text)
            a = self.alphas[t].view(-1, 1, 1, 1)
            pred = self.unet(a.sqrt() * x0 + (1 - a).sqrt() * noise, t, encoder_hidden_states=text).sample
            loss = F.mse_loss(pred, noise)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.unet.parameters(), r.grad_clip)
            self.opt.step()
            self.sched.step()
            self.opt.zero_grad(set_to_none=True)
            self.history.append(loss.item())
            self.step += 1


def timed(loop, steps: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) for ``steps`` more steps of ``loop``."""
    w0, c0 = time.perf_counter(), time.process_time()
    loop.train_to(loop.step + steps)
    return time.perf_counter() - w0, time.process_time() - c0


def bench(name: str, args, recipe) -> dict:
    from bench.legacy import legacy_module
    from unetnas.cost import cost
    from unetnas.train.source import WorldSource
    from unetnas.train.trainer import Trainer

    Today = legacy_module(args.baseline_rev, "unetnas/train/trainer.py").Trainer
    spec = get_spec(name)
    source = WorldSource(pool=args.pool, resolution=spec.resolution, text_len=spec.text_len)
    out = tempfile.TemporaryDirectory(prefix="bench-trial-")  # the trainers' metrics.jsonl; removed at exit
    fast = recipe.model_copy(update={"micro_batch": args.micro or recipe.micro_batch})
    loops = {
        "trainer": Trainer(spec, fast, source, f"{out.name}/new", seed=0),
        "today": Today(spec, recipe, source, f"{out.name}/today", seed=0),
        "plain": Plain(spec, recipe, source, seed=0),
    }
    for loop in loops.values():  # warm-up (allocator, first-call paths)
        timed(loop, args.warmup)
    wall: dict[str, list[float]] = {k: [] for k in loops}
    cpu: dict[str, list[float]] = {k: [] for k in loops}
    for _ in range(args.rounds):
        for k, loop in loops.items():
            w, c = timed(loop, args.steps)
            wall[k].append(args.steps * recipe.batch_size / w)
            cpu[k].append(args.steps * recipe.batch_size / c)
    c = cost(spec)
    params = sum(p.numel() for p in loops["plain"].unet.parameters())
    hist = {k: torch.tensor(v.history, dtype=torch.float64) for k, v in loops.items()}
    rel = {k: float(((hist[k] - hist["today"]).abs() / hist["today"].abs()).max()) for k in ("trainer", "plain")}
    out.cleanup()
    return {
        "name": name,
        "params": params,
        "gflop_per_sample": c.train_flops_per_sample / 1e9,
        "wall": {k: statistics.median(v) for k, v in wall.items()},
        "cpu": {k: statistics.median(v) for k, v in cpu.items()},
        "rounds_wall": wall,
        "steps": len(hist["today"]),
        "max_rel_loss_diff": rel,
        "final_loss": {k: float(v[-1]) for k, v in hist.items()},
    }


def main(argv: list[str] | None = None) -> int:
    from bench.legacy import BASELINE_REV

    ap = argparse.ArgumentParser(prog="python -m bench trial", description=__doc__.split("\n\n")[0])
    ap.add_argument("--specs", default="median,tiny", help="presets, 'median' or 'space-self', comma-separated")
    ap.add_argument("--batch", type=int, default=32, help="global batch")
    ap.add_argument("--micro", type=int, default=None, help="micro-batch of the new trainer (default: --batch)")
    ap.add_argument("--rounds", type=int, default=5, help="alternating timed rounds per loop")
    ap.add_argument("--steps", type=int, default=4, help="optimizer steps per round")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps per loop first")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    ap.add_argument("--pool", type=int, default=512, help="built-in world scenes (captions encoded once)")
    ap.add_argument("--baseline-rev", default=BASELINE_REV, help="git revision of today's trainer")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from unetnas.train.recipe import load_recipe

    recipe = load_recipe().model_copy(update={"batch_size": args.batch, "micro_batch": args.batch})
    rows = [bench(name.strip(), args, recipe) for name in args.specs.split(",")]
    load = os.getloadavg()
    print(
        f"\n{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()}, nproc {os.cpu_count()}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} intra-op threads, "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}, batch {args.batch} (new trainer micro "
        f"{args.micro or args.batch}), {args.rounds} rounds x {args.steps} steps after {args.warmup} warm-up steps, "
        f"today = {args.baseline_rev}, load average at the end {load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f}\n"
    )
    print(
        "| spec | params | train GFLOP/sample | trainer samples/s | today samples/s | plain samples/s | "
        "trainer/today | trainer/plain | trainer /CPU-s | today /CPU-s | plain /CPU-s | trainer/today (CPU) | "
        "trainer/plain (CPU) | trainer GFLOP/s | max rel. loss diff vs today (trainer, plain) |"
    )
    print("|---" * 15 + "|")
    for r in rows:
        w, c, g, d = r["wall"], r["cpu"], r["gflop_per_sample"], r["max_rel_loss_diff"]
        print(
            f"| {r['name']} | {r['params'] / 1e6:.2f}M | {g:.3f} | {w['trainer']:.1f} | {w['today']:.1f} | "
            f"{w['plain']:.1f} | {w['trainer'] / w['today']:.3f} | {w['trainer'] / w['plain']:.3f} | "
            f"{c['trainer']:.1f} | {c['today']:.1f} | {c['plain']:.1f} | {c['trainer'] / c['today']:.3f} | "
            f"{c['trainer'] / c['plain']:.3f} | {g * w['trainer']:.1f} | {d['trainer']:.1e}, {d['plain']:.1e} |"
        )
    for r in rows:
        per_round = ", ".join(
            "/".join(f"{r['rounds_wall'][k][i]:.1f}" for k in ("trainer", "today", "plain"))
            for i in range(len(r["rounds_wall"]["today"]))
        )
        print(
            f"\n{r['name']}: per-round samples/s trainer/today/plain: {per_round}; losses over {r['steps']} steps, "
            f"final " + ", ".join(f"{k} {v:.6f}" for k, v in r["final_loss"].items())
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
