"""Each CPU speed mechanism for a training step measured on its own, against the eager step, on one model.

    python -m bench trial-mechanisms [--spec median] [--batch 32] [--rounds 4] [--steps 3] [--compile]

One plain step (forward, MSE, backward, ``clip_grad_norm_``, AdamW) of the same UNet (``build_unet``, seed 0) on a
fixed random batch, in variants that each change one thing:

- ``eager``: the reference; ``sdpa-math``: the math SDPA backend instead of the CPU flash kernel;
- ``channels-last``: weights and input in channels_last; ``ftz``: ``torch.set_flush_denormal(True)``;
- ``micro16`` / ``micro8``: the global batch as 2 / 4 micro-batches with gradient accumulation;
- ``compile`` (with ``--compile``): ``torch.compile`` (inductor CPU backend) of the UNet; its first step, which
  compiles, is timed apart (wall and this process's CPU seconds; the C++ compiler runs in child processes).

Rounds interleave the variants; the figure is the median CPU seconds per step of this process
(``time.process_time``, 1 intra-op thread by default: on a loaded machine it tracks the kernels' cost, wall time
does not). The first two losses of each variant are printed: every variant computes the same step.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import time

import torch
import torch.nn.functional as F


def variant(name: str, spec, batch: int):
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from unetnas.build import build_unet

    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, spec.latent_channels, spec.latent_size, spec.latent_size, generator=g)
    t = torch.randint(0, 1000, (batch,), generator=g)
    text = torch.randn(batch, spec.text_len, spec.cross_attention_dim, generator=g)
    noise = torch.randn(x.shape, generator=g)
    unet = build_unet(spec, seed=0).train()
    if name == "channels-last":
        unet, x = unet.to(memory_format=torch.channels_last), x.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(unet.parameters(), lr=1e-3)
    fwd = torch.compile(unet) if name == "compile" else unet
    micro = {"micro16": 16, "micro8": 8}.get(name, batch)
    ctx = (lambda: sdpa_kernel(SDPBackend.MATH)) if name == "sdpa-math" else contextlib.nullcontext

    def step() -> float:
        torch.set_flush_denormal(name == "ftz")
        total = 0.0
        with ctx():
            for lo in range(0, batch, micro):
                s = slice(lo, lo + micro)
                loss = F.mse_loss(fwd(x[s], t[s], encoder_hidden_states=text[s]).sample, noise[s]) * (micro / batch)
                loss.backward()
                total += loss.item()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        torch.set_flush_denormal(False)
        return total

    return step


def main(argv: list[str] | None = None) -> int:
    from bench.roofline import get_spec

    ap = argparse.ArgumentParser(prog="python -m bench trial-mechanisms", description=__doc__.split("\n\n")[0])
    ap.add_argument("--spec", default="median")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--compile", action="store_true", help="also torch.compile (minutes of compilation)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    spec = get_spec(args.spec)
    names = ["eager", "sdpa-math", "channels-last", "ftz", "micro16", "micro8"] + (["compile"] * args.compile)
    steps, first = {}, {}
    for n in names:
        steps[n] = variant(n, spec, args.batch)
        w0, c0 = time.perf_counter(), time.process_time()
        first[n] = (steps[n](), time.perf_counter() - w0, time.process_time() - c0)
        first[n] = (*first[n], steps[n]())
    cpu: dict[str, list[float]] = {n: [] for n in names}
    for _ in range(args.rounds):
        for n in names:
            c0 = time.process_time()
            for _ in range(args.steps):
                steps[n]()
            cpu[n].append((time.process_time() - c0) / args.steps)
    load = os.getloadavg()
    print(
        f"\n{spec.name}, batch {args.batch}, {args.threads} thread(s), {args.rounds} rounds x {args.steps} steps, "
        f"load average at the end {load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f}\n"
    )
    print("| variant | CPU s/step (median) | vs eager | first step wall s | first step CPU s | losses 1, 2 |")
    print("|---|---|---|---|---|---|")
    base = statistics.median(cpu["eager"])
    for n in names:
        m = statistics.median(cpu[n])
        loss1, w, c, loss2 = first[n]
        print(f"| {n} | {m:.3f} | {base / m:.2f}x | {w:.1f} | {c:.1f} | {loss1:.6f}, {loss2:.6f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
