"""Trial throughput and MFU of paper-scale presets on one GPU: the unetnas trainer against a plain PyTorch loop.

    python -m bench gpu-throughput [--presets sdxl,sdxl-td4_4,sd2] [--out bench/results/gpu-throughput.json]
    python -m bench gpu-throughput --smoke --out /tmp/gpu-throughput.json     # CPU, shrunken presets, seconds

For each preset at the spec's own shapes (the paper presets: 256 px = latent 4x32x32, 77 text tokens of 1024):

1. the trial trainer (``unetnas.train.trainer.Trainer``: DeepSpeed engine, ZeRO-2 of trials/deepspeed/zero2.json or
   ZeRO-1 with ``--zero 1``, bf16 weights on GPU) and a plain loop (the diffusers UNet in fp32, ``torch.optim.AdamW``
   with the same hyper-parameters, ``torch.autocast`` bf16, ``clip_grad_norm_``) are built side by side on the GPU
   and trained on the same synthetic batches (``SyntheticSource``: seeded random latents and text states; throughput
   does not depend on content) with the same per-step noise, timesteps and caption dropout;
2. the micro-batch: doubling from ``--micro-start`` (one step of each loop there allocates their optimizer states),
   the plain loop probes each size while the trainer stays resident, until ``torch.OutOfMemoryError``, ``--max-micro``
   or ``--search-s`` seconds; the largest size that ran is used for both loops (global batch = one micro-batch).
   Both loops stay resident (interleaved rounds need them), so "fits" means fits beside the other loop; on an 80 GB
   GPU the sdxl pair (about 90 GB of weights, gradients and AdamW states) does not fit at all;
3. ``--warmup`` untimed steps of each loop at that size (cuDNN autotuning, ``--compile`` compilation), then
   ``--rounds`` rounds of ``--steps`` optimizer steps alternate trainer, plain, trainer, ... and the medians are
   reported (as bench/bench_trial.py does on CPU). A round is timed from ``torch.cuda.synchronize()`` to
   ``torch.cuda.synchronize()`` with ``time.perf_counter``: whole steps including the host's batch preparation,
   which is what a trial pays.

Figures: samples/s; achieved TFLOP/s = ``cost(spec).train_flops_per_sample`` (3 x forward FLOPs of every matmul and
convolution, attention included) x samples/s; MFU = achieved / the GPU's dense bf16 peak (vendor datasheets:
H100 SXM and H200 989 TFLOP/s, H100 NVL 835, H100 PCIe 756, A100 312; ``--peak-tflops`` for others); the measured
bf16 8192^3 matmul rate beside it as the practical ceiling. ``ratio_vs_plain`` = trainer / plain samples/s. With
``sdxl`` and ``sdxl-td4_4`` both measured, their time-per-sample ratio stands next to the cost model's GMACs ratio
(Li et al., CVPR 2024: TD4_4 has 28% fewer MACs than SDXL and converges 1.7x faster in wall-clock).

Levers: SDPA flash attention (``--attention``, default ``flash``: a backend that cannot run the shapes fails loudly),
``--compile BACKEND`` (``torch.compile`` of both UNets after the micro-batch search, e.g. ``inductor``; each preset then
spends a few minutes compiling in warm-up) and ``--channels-last`` (the UNet's input in channels_last for both loops:
DeepSpeed keeps the trainer's bf16 weights as views into flat buffers, so their layout cannot change; cuDNN picks
NHWC when the input is NHWC, GroupNorm on CUDA may return NCHW again). Both default off: measure them on the device.

``--smoke`` runs everything on CPU at tiny sizes (each preset shrunk to 8 base channels and an 8x8 latent, fp32,
1-2 steps, micro-batch at most 4) and writes only to ``--out``. The results JSON is rewritten after every preset.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import json
import math
import os
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "bench" / "results" / "gpu-throughput.json"
PRESETS = ("sdxl", "sdxl-td4_4", "sd2")

# Dense bf16 tensor-core peaks (no sparsity), TFLOP/s, from the vendors' datasheets; the first substring found in
# torch.cuda.get_device_name() wins, so the more specific names come first.
PEAK_BF16_TFLOPS: tuple[tuple[str, float], ...] = (
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H200", 989.0),
    ("H100", 989.0),  # SXM ("NVIDIA H100 80GB HBM3")
    ("A100", 312.0),
)


def peak_tflops(device_name: str) -> float | None:
    """Dense bf16 peak of a GPU named as ``torch.cuda.get_device_name`` names it, or None when not in the table."""
    for key, tflops in PEAK_BF16_TFLOPS:
        if key.lower() in device_name.lower():
            return tflops
    return None


@dataclass
class SyntheticSource:
    """A ``unetnas.train.source.Source`` of seeded random latents (C, S, S) and text states (T, D) for timing.

    A pool of ``pool`` samples is drawn once; every batch picks samples from it with the (seed, step) generator,
    as the real sources do, so the host-side cost per step (gather, caption dropout, copy) is that of a real trial.
    """

    channels: int
    size: int
    text_len: int
    text_dim: int
    pool: int = 128
    seed: int = 0

    def __post_init__(self) -> None:
        import torch

        g = torch.Generator().manual_seed(self.seed)
        self.latents = torch.randn(self.pool, self.channels, self.size, self.size, generator=g)
        self.text = torch.randn(self.pool, self.text_len, self.text_dim, generator=g)
        self.uncond = torch.randn(self.text_len, self.text_dim, generator=g)

    @classmethod
    def for_spec(cls, spec, pool: int = 128, seed: int = 0) -> SyntheticSource:
        return cls(spec.latent_channels, spec.latent_size, spec.text_len, spec.cross_attention_dim, pool, seed)

    def global_batch(self, step: int, n: int):
        import torch

        from unetnas.train.source import step_generator

        idx = torch.randint(self.pool, (n,), generator=step_generator(self.seed, step, tag=1))
        return self.latents[idx], self.text[idx]

    def val_batch(self, n: int):
        n = min(n, self.pool)
        return self.latents[:n], self.text[:n]

    def describe(self) -> dict:
        return {
            "kind": "synthetic",
            "pool": self.pool,
            "seed": self.seed,
            "latent": [self.channels, self.size, self.size],
            "text": [self.text_len, self.text_dim],
        }


def shrink(spec):
    """The smoke-test version of a preset: same levels, attention layout and depths; 8 base channels, 8x8 latent."""
    return spec.with_(base_channels=8, head_dim=8, norm_num_groups=4, latent_size=8, text_len=8, cross_attention_dim=16)


class PlainLoop:
    """The baseline: the same UNet trained by a plain PyTorch loop (fp32 weights, AdamW with the trainer's warm-up
    schedule, autocast bf16 on GPU).

    Batches, noise, timesteps and caption dropout come from the trainer's (seed, step) generators, so both loops
    do the same work per step; ``batch`` samples per step in one micro-batch.
    """

    def __init__(self, spec, recipe, source, device, bf16: bool, seed: int = 0) -> None:
        import torch

        from unetnas.build import build_unet
        from unetnas.cost import cost
        from unetnas.train.trainer import noise_scheduler

        self.recipe, self.source, self.device, self.bf16, self.seed = recipe, source, device, bf16, seed
        self.unet = build_unet(spec, device=device, seed=seed).train()  # random weights: speed does not depend on them
        self.opt = torch.optim.AdamW(
            self.unet.parameters(), lr=recipe.lr, betas=recipe.betas, weight_decay=recipe.weight_decay
        )
        warm = recipe.warmup_steps(cost(spec).train_flops_per_sample * recipe.batch_size)  # the trainer's schedule
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lambda s: min(1.0, (s + 1) / warm) if warm else 1.0)
        self.alphas = noise_scheduler(recipe).alphas_cumprod.to(device)
        self.batch, self.step, self.history = recipe.batch_size, 0, []

    def train_to(self, step: int) -> None:
        import torch
        import torch.nn.functional as F

        from unetnas.train.source import step_generator

        r, n, dev = self.recipe, self.batch, self.device
        while self.step < step:
            x0, text = self.source.global_batch(self.step, n)
            g = step_generator(self.seed, self.step, tag=2)
            noise = torch.randn(x0.shape, generator=g)
            t = torch.randint(0, r.num_train_timesteps, (n,), generator=g)
            drop = torch.rand(n, generator=g) < r.caption_dropout
            text = torch.where(drop.view(-1, 1, 1), self.source.uncond.expand_as(text), text)
            x0, noise, t, text = x0.to(dev), noise.to(dev), t.to(dev), text.to(dev)
            a = self.alphas[t].view(-1, 1, 1, 1)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=self.bf16):
                pred = self.unet(a.sqrt() * x0 + (1 - a).sqrt() * noise, t, encoder_hidden_states=text).sample
            loss = F.mse_loss(pred.float(), noise)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.unet.parameters(), r.grad_clip)
            self.opt.step()
            self.sched.step()
            self.opt.zero_grad(set_to_none=True)
            self.history.append(loss.item())
            self.step += 1


def set_trainer_batch(trainer, m: int) -> None:
    """Give a one-rank ``Trainer`` a global batch of ``m`` samples in one micro-batch (no rebuild).

    The trainer draws ``recipe.batch_size`` samples per step and feeds them in slices of ``micro``; DeepSpeed's own
    bookkeeping follows through its public ``set_train_micro_batch_size`` (gradient accumulation stays 1).
    """
    trainer.recipe = trainer.recipe.model_copy(update={"batch_size": m, "micro_batch": m})
    trainer.micro, trainer.accum = m, 1
    trainer.flops_per_step = trainer.cost.train_flops_per_sample * m
    trainer.engine.set_train_micro_batch_size(m)


def largest_micro_batch(
    probe: Callable[[int], float], start: int, cap: int, deadline: float, clock: Callable[[], float] = time.monotonic
) -> tuple[int, list[dict[str, Any]]]:
    """Double the micro-batch from ``start`` while ``probe(m)`` (seconds per step) runs without running out of memory.

    Stops at the first ``torch.OutOfMemoryError`` (the caller then frees gradients and cached blocks), past
    ``cap`` or once ``clock()`` passes ``deadline``. ``start`` must fit (it ran before). Returns (largest size that
    ran, the probes as ``{"micro_batch", "s_per_step" | "oom"}``).
    """
    import torch

    best, log, m = start, [], start
    while m <= cap and clock() < deadline:
        try:
            log.append({"micro_batch": m, "s_per_step": probe(m)})
        except torch.OutOfMemoryError:
            log.append({"micro_batch": m, "oom": True})
            break
        best, m = m, 2 * m
    return best, log


class Clock:
    """Wall seconds of whole steps: ``torch.cuda.synchronize()`` before and after on a GPU."""

    def __init__(self, device) -> None:
        import torch

        self.sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def time(self, fn: Callable[[], None]) -> float:
        self.sync()
        t0 = time.perf_counter()
        fn()
        self.sync()
        return time.perf_counter() - t0


def matmul_tflops(n: int = 8192, reps: int = 10) -> float:
    """Measured bf16 n^3 matmul rate (CUDA events, 3 warm-ups): the practical ceiling beside the datasheet peak."""
    import torch

    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(reps):
        a @ b
    end.record()
    torch.cuda.synchronize()
    return 2 * n**3 * reps / (start.elapsed_time(end) / 1e3) / 1e12


def channels_last_input(module) -> None:
    """Feed ``module`` its first positional input (the noisy latents) in channels_last memory format."""
    import torch

    def hook(_mod, args, kwargs):
        return (args[0].contiguous(memory_format=torch.channels_last), *args[1:]), kwargs

    module.register_forward_pre_hook(hook, with_kwargs=True)


def loop_figures(rates: list[float], flops_per_sample: float, peak: float | None, history: list[float]) -> dict:
    sps = statistics.median(rates)
    tflops = sps * flops_per_sample / 1e12
    return {
        "samples_per_s": sps,
        "tflops": tflops,
        "mfu": tflops / peak if peak else None,
        "rounds": rates,
        "first_loss": history[0],
        "last_loss": history[-1],
        "finite": all(math.isfinite(x) for x in history),
    }


def measure(name: str, spec, args, recipe, device, peak: float | None) -> dict[str, Any]:
    """Build trainer and plain loop for one preset, find the micro-batch, time alternating rounds."""
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from unetnas.cost import cost
    from unetnas.train.trainer import Trainer

    c = cost(spec)
    source = SyntheticSource.for_spec(spec)
    clock = Clock(device)
    m0 = args.micro_start
    start_recipe = recipe.model_copy(update={"batch_size": m0, "micro_batch": m0})
    backends = {
        "flash": [SDPBackend.FLASH_ATTENTION],
        "efficient": [SDPBackend.EFFICIENT_ATTENTION],
        "cudnn": [SDPBackend.CUDNN_ATTENTION],
        "math": [SDPBackend.MATH],
    }
    attention = sdpa_kernel(backends[args.attention]) if args.attention != "default" else contextlib.nullcontext()
    t_build = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gpu-throughput-") as out, attention:
        trainer = Trainer(spec, start_recipe, source, out, seed=0)
        try:
            plain = PlainLoop(spec, start_recipe, source, trainer.device, trainer.bf16, seed=0)
            if args.channels_last:
                channels_last_input(trainer.engine.module)
                channels_last_input(plain.unet)
            trainer.train_to(1)  # allocates DeepSpeed's gradient partitions
            plain.train_to(1)  # allocates AdamW's states
            build_s = time.perf_counter() - t_build

            def probe(m: int) -> float:
                plain.batch = m
                plain.train_to(plain.step + 1)  # first step at a new size (cuDNN autotuning)
                return clock.time(lambda: plain.train_to(plain.step + 1))

            t_search = time.perf_counter()
            m, probes = largest_micro_batch(probe, m0, args.max_micro, time.monotonic() + args.search_s)
            search_s = time.perf_counter() - t_search
            plain.opt.zero_grad(set_to_none=True)  # an out-of-memory probe leaves gradients and cached blocks
            gc.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()
            set_trainer_batch(trainer, m)
            plain.batch = m
            if args.compile != "none":
                trainer.engine.compile(backend=args.compile)
                plain.unet.compile(backend=args.compile)
            t_warm = time.perf_counter()
            for loop in (trainer, plain):
                loop.train_to(loop.step + args.warmup)
            warmup_s = time.perf_counter() - t_warm
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            rates: dict[str, list[float]] = {"trainer": [], "plain": []}
            for _ in range(args.rounds):
                for key, loop in (("trainer", trainer), ("plain", plain)):
                    s = clock.time(lambda loop=loop: loop.train_to(loop.step + args.steps))
                    rates[key].append(args.steps * m / s)
            host = [clock.time(lambda k=k: source.global_batch(10**6 + k, m)) for k in range(3)]
            figures = {
                "trainer": loop_figures(rates["trainer"], c.train_flops_per_sample, peak, trainer.history),
                "plain": loop_figures(rates["plain"], c.train_flops_per_sample, peak, plain.history),
            }
            peak_mem = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None
        finally:
            trainer.engine.destroy()  # the caller collects what is left once this frame is gone
    return {
        "params": c.params,
        "gmacs": c.gmacs,
        "train_tflop_per_sample": c.train_flops_per_sample / 1e12,
        "latent": [spec.latent_channels, spec.latent_size, spec.latent_size],
        "text": [spec.text_len, spec.cross_attention_dim],
        "micro_batch": m,
        "search": probes,
        **figures,
        "ratio_vs_plain": figures["trainer"]["samples_per_s"] / figures["plain"]["samples_per_s"],
        "host_batch_ms": 1e3 * statistics.median(host),
        "peak_memory_gib": peak_mem,
        "seconds": {"build": build_s, "search": search_s, "warmup": warmup_s},
    }


def td_comparison(presets: dict[str, Any]) -> dict[str, Any] | None:
    """Time per sample of sdxl-td4_4 over sdxl (trainer, each at its micro-batch) next to the cost model's ratios."""
    a, b = presets.get("sdxl-td4_4"), presets.get("sdxl")
    if not (a and b and "trainer" in a and "trainer" in b):
        return None
    return {
        "time_per_sample_ratio": b["trainer"]["samples_per_s"] / a["trainer"]["samples_per_s"],
        "plain_time_per_sample_ratio": b["plain"]["samples_per_s"] / a["plain"]["samples_per_s"],
        "gmacs_ratio": a["gmacs"] / b["gmacs"],
        "train_flops_ratio": a["train_tflop_per_sample"] / b["train_tflop_per_sample"],
        "micro_batch": {"sdxl-td4_4": a["micro_batch"], "sdxl": b["micro_batch"]},
        "paper": "Li et al. 2024: TD4_4 28% fewer MACs than SDXL (ratio 0.72), 1.7x faster wall-clock convergence",
    }


def render(result: dict[str, Any]) -> str:
    """The markdown table for BENCHMARKS.md."""

    def pct(x):
        return "-" if x is None else f"{100 * x:.1f}%"

    lines = [
        f"{result['date']}, {result['device']}, peak {result['peak_tflops']} TFLOP/s dense bf16 "
        f"({result['peak_source']}), matmul {result['matmul_tflops'] or '-'} TFLOP/s measured, "
        f"torch {result['versions']['torch']}, DeepSpeed {result['versions']['deepspeed']}, settings "
        f"{json.dumps(result['settings'], sort_keys=True)}",
        "",
        "| preset | params | train TFLOP/sample | micro-batch | trainer samples/s | trainer TFLOP/s | trainer MFU "
        "| plain samples/s | plain MFU | trainer/plain | peak GiB |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in result["presets"].items():
        if "error" in r:
            lines.append(f"| {name} | failed: {r['error']} |")
            continue
        t, p, mem = r["trainer"], r["plain"], r["peak_memory_gib"]
        lines.append(
            f"| {name} | {r['params'] / 1e6:.4g}M | {r['train_tflop_per_sample']:.3g} | {r['micro_batch']} | "
            f"{t['samples_per_s']:.1f} | {t['tflops']:.4g} | {pct(t['mfu'])} | {p['samples_per_s']:.1f} | "
            f"{pct(p['mfu'])} | {r['ratio_vs_plain']:.3f} | {'-' if mem is None else f'{mem:.1f}'} |"
        )
    td = result.get("td4_4_vs_sdxl")
    if td:
        lines += [
            "",
            f"sdxl-td4_4 / sdxl: time per sample {td['time_per_sample_ratio']:.3f} (trainer; plain "
            f"{td['plain_time_per_sample_ratio']:.3f}), cost model GMACs {td['gmacs_ratio']:.3f}, training "
            f"FLOPs {td['train_flops_ratio']:.3f} (paper: GMACs 0.72, 1.7x faster convergence)",
        ]
    return "\n".join(lines)


def parse(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench gpu-throughput", description=__doc__.split("\n\n")[0])
    ap.add_argument("--presets", default=",".join(PRESETS), help="comma-separated presets (default: %(default)s)")
    ap.add_argument("--out", type=Path, default=None, help=f"results JSON (default: {DEFAULT_OUT.relative_to(ROOT)})")
    ap.add_argument("--smoke", action="store_true", help="CPU, shrunken presets, fp32, 1-2 steps (needs --out)")
    ap.add_argument("--peak-tflops", type=float, default=None, help="dense bf16 peak of the GPU (default: table)")
    ap.add_argument("--zero", type=int, choices=(1, 2), default=2, help="ZeRO stage of the trainer's engine")
    ap.add_argument(
        "--attention",
        choices=("flash", "efficient", "cudnn", "math", "default"),
        default="flash",
        help="SDPA backend for both loops (default: %(default)s)",
    )
    ap.add_argument("--compile", default="none", help="torch.compile backend for both UNets, e.g. inductor")
    ap.add_argument("--channels-last", action="store_true", help="feed both UNets channels_last latents")
    ap.add_argument("--micro-start", type=int, default=None, help="first micro-batch (default 8; smoke 1)")
    ap.add_argument("--max-micro", type=int, default=None, help="largest micro-batch tried (default 256; smoke 4)")
    ap.add_argument("--search-s", type=float, default=60.0, help="seconds of micro-batch search per preset")
    ap.add_argument("--warmup", type=int, default=None, help="untimed steps per loop (default 3; smoke 1)")
    ap.add_argument("--rounds", type=int, default=None, help="alternating timed rounds per loop (default 5; smoke 2)")
    ap.add_argument("--steps", type=int, default=None, help="optimizer steps per round (default 4; smoke 1)")
    args = ap.parse_args(argv)
    defaults = {"micro_start": (8, 1), "max_micro": (256, 4), "warmup": (3, 1), "rounds": (5, 2), "steps": (4, 1)}
    for key, (full, smoke) in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, smoke if args.smoke else full)
    return args


def check(args: argparse.Namespace) -> tuple[list[tuple[str, Any]], str, float | None, str | None]:
    """Every check on the input before anything is built: (presets, device name, peak TFLOP/s, peak source)."""
    import torch

    from unetnas.errors import UserError
    from unetnas.presets import get_preset

    for key in ("micro_start", "max_micro", "warmup", "rounds", "steps"):
        if getattr(args, key) < 1:
            raise UserError("must be a positive integer", field=f"--{key.replace('_', '-')}", value=getattr(args, key))
    for key in ("search_s", "peak_tflops"):
        v = getattr(args, key)
        if v is not None and not (v > 0 and math.isfinite(v)):
            raise UserError("must be a positive number", field=f"--{key.replace('_', '-')}", value=v)
    if args.max_micro < args.micro_start:
        raise UserError(f"must be at least --micro-start={args.micro_start}", field="--max-micro", value=args.max_micro)
    names = [n.strip() for n in args.presets.split(",") if n.strip()]
    if not names:
        raise UserError("names no preset", field="--presets", value=args.presets)
    specs = [(n, shrink(get_preset(n)) if args.smoke else get_preset(n)) for n in names]
    if args.smoke and args.out is None:
        raise UserError("is required with --smoke (bench/results holds device figures only)", field="--out")
    if args.compile != "none" and args.compile not in torch._dynamo.list_backends(exclude_tags=()):
        raise UserError(
            f"is not a torch.compile backend ({', '.join(torch._dynamo.list_backends())})",
            field="--compile",
            value=args.compile,
        )
    cuda = torch.cuda.is_available()
    if not (cuda or args.smoke):
        raise UserError("needs a CUDA device (use --smoke on CPU)", field="device", value="cpu")
    name = torch.cuda.get_device_name() if cuda else "cpu"
    if args.peak_tflops:
        return specs, name, args.peak_tflops, "--peak-tflops"
    peak = peak_tflops(name) if cuda else None
    if peak is None and not args.smoke:
        raise UserError(
            "is not in the peak table; give its dense bf16 peak with --peak-tflops", field="device", value=name
        )
    return specs, name, peak, None if peak is None else "datasheet table"


def recipe_for(args: argparse.Namespace, tmp: Path):
    """trials/gpu.yaml (bf16 on GPU, the paper's LR), with ZeRO stage ``--zero`` of trials/deepspeed/zero2.json."""
    from unetnas.train.recipe import load_recipe

    recipe = load_recipe(ROOT / "trials" / "gpu.yaml")
    if args.zero == 2:
        return recipe
    cfg = json.loads((ROOT / "trials" / "deepspeed" / "zero2.json").read_text())
    cfg["zero_optimization"] = {"stage": args.zero}
    path = tmp / f"zero{args.zero}.json"
    path.write_text(json.dumps(cfg))
    return recipe.model_copy(update={"deepspeed": str(path)})


def main(argv: list[str] | None = None) -> int:
    from unetnas.errors import EXIT_USAGE, UserError

    args = parse(list(sys.argv[1:] if argv is None else argv))
    os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")  # before CUDA's first allocation
    try:
        specs, device_name, peak, peak_source = check(args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
    import deepspeed
    import diffusers
    import torch

    from unetnas.train.engine import device as train_device
    from unetnas.train.engine import ensure_distributed

    out = args.out or DEFAULT_OUT
    ensure_distributed()
    dev = train_device()  # the trainer's: a GPU when there is one (--smoke too), else the CPU
    bf16 = dev.type == "cuda"  # trials/gpu.yaml: precision auto
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True  # conv algorithms autotuned per shape (in the untimed first steps)
    t0 = time.perf_counter()
    result: dict[str, Any] = {
        "benchmark": "gpu-throughput",
        "date": datetime.date.today().isoformat(),
        "device": device_name,
        "smoke": args.smoke,
        "peak_tflops": peak,
        "peak_source": peak_source,
        "matmul_tflops": round(matmul_tflops(), 1) if dev.type == "cuda" else None,
        "gpu_memory_gib": torch.cuda.get_device_properties(dev).total_memory / 2**30 if dev.type == "cuda" else None,
        "versions": {
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "deepspeed": deepspeed.__version__,
            "diffusers": diffusers.__version__,
            "python": sys.version.split()[0],
        },
        "settings": {
            "precision": "bf16" if bf16 else "fp32",
            "presets": "shrunken" if args.smoke else "as named",
            "zero": args.zero,
            "attention": args.attention,
            "compile": args.compile,
            "channels_last": args.channels_last,
            "micro_start": args.micro_start,
            "max_micro": args.max_micro,
            "search_s": args.search_s,
            "warmup": args.warmup,
            "rounds": args.rounds,
            "steps": args.steps,
            "plain": "fp32 weights, torch.optim.AdamW (default implementation), "
            + ("autocast bf16" if bf16 else "fp32"),
        },
        "mfu": {},
        "ratio_vs_plain": {},
        "presets": {},
        "complete": False,
    }
    failed = False
    with tempfile.TemporaryDirectory(prefix="gpu-throughput-cfg-") as tmp:
        recipe = recipe_for(args, Path(tmp))
        for name, spec in specs:
            print(f"[{time.strftime('%H:%M:%S')}] {name}: measuring", file=sys.stderr, flush=True)
            try:
                r = measure(name, spec, args, recipe, dev, peak)
            except Exception as err:  # one preset's failure (OOM at the first size, a kernel missing) keeps the rest
                failed = True
                r = {"error": f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"[:300]}
                traceback.print_exc()
            gc.collect()  # the preset's models are unreachable now
            if dev.type == "cuda":
                torch.cuda.empty_cache()
                r["memory_left_gib"] = torch.cuda.memory_allocated() / 2**30  # a leak would shrink later presets
            result["presets"][name] = r
            if "error" not in r:
                result["mfu"][name], result["ratio_vs_plain"][name] = r["trainer"]["mfu"], r["ratio_vs_plain"]
            result["td4_4_vs_sdxl"] = td_comparison(result["presets"])
            result["wall_s"] = time.perf_counter() - t0
            result["complete"] = name == specs[-1][0]
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(result, indent=2) + "\n")  # after every preset: a timeout keeps what ran
    print(render(result))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
