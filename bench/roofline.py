"""This CPU's fp32 ceiling on the shapes a trial runs: per-shape GFLOP/s of the convolutions and GEMMs of a real
model's forward and backward, and a large-GEMM peak, so every trial figure reads as a share of the limit.

    python -m bench roofline [--spec median] [--batch 32] [--threads 1,2] [--reps 5] [--json]

Shapes are collected from the model itself: forward hooks on every ``nn.Conv2d`` and ``nn.Linear`` of the built
UNet (``build_unet``) record input shape, weight shape, stride and padding during one forward at the trial batch;
attention's two batched matmuls per SDPA call (Q K^T and P V) are recorded from a wrapped
``F.scaled_dot_product_attention``. Identical shapes are timed once and weighted by their count. Each shape is
timed alone as forward (``F.conv2d`` / ``F.linear`` / ``torch.bmm``) and as forward + backward (input and weight
gradients, 3x the forward FLOPs); the time is the minimum over ``--reps`` repetitions (each at least 20 ms of
calls), the best case a shared machine still allows. FLOPs = 2 x MACs.

Figures per thread count:

- ``peak``: a 2048^3 fp32 GEMM (``torch.mm``), the large-GEMM ceiling;
- each figure per wall second (the minimum time, the best case a shared machine allowed) and per CPU second of
  this process (what the kernels cost; equal to wall on an idle machine with 1 thread);
- ``model_ceiling_fwd`` / ``model_ceiling_train``: total FLOPs of the recorded shapes over the sum of their best
  times, i.e. what a step would reach if every conv and GEMM ran at its own measured best and everything else
  (norms, activations, softmax, optimizer, Python) took no time;
- the shapes that cost most time, with their GFLOP/s.

``--spec median`` is the member of space/tiny.yaml with the median training FLOPs per sample (16x16 pixels,
the ground truth's shapes); any preset name works too.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import time
from collections import Counter
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F


def median_member(largest: bool = False):
    """The member of space/tiny.yaml with the median training FLOPs per sample (lower median), or the largest."""
    from unetnas.cost import cost
    from unetnas.io import load_space

    members = sorted(load_space("space/tiny.yaml").enumerate(), key=lambda s: cost(s).train_flops_per_sample)
    if largest:
        return members[-1].with_(name="tiny-max")
    return members[(len(members) - 1) // 2].with_(name="tiny-median")


def get_spec(name: str):
    """'median' or 'max' (members of space/tiny.yaml by training FLOPs per sample), else a preset."""
    from unetnas.presets import get_preset

    return median_member(largest=name == "max") if name in ("median", "max") else get_preset(name)


@contextlib.contextmanager
def _recording_sdpa(shapes: Counter) -> Iterator[None]:
    """Record the two bmm shapes of each SDPA call: (B*H, Lq, d) x (B*H, d, Lk) and (B*H, Lq, Lk) x (B*H, Lk, d)."""
    real = F.scaled_dot_product_attention

    def wrapped(q, k, v, *a, **kw):
        bh = q.shape[:-2].numel()
        lq, d, lk = q.shape[-2], q.shape[-1], k.shape[-2]
        shapes[("bmm", (bh, lq, d), (bh, d, lk))] += 1
        shapes[("bmm", (bh, lq, lk), (bh, lk, v.shape[-1]))] += 1
        return real(q, k, v, *a, **kw)

    F.scaled_dot_product_attention = wrapped
    try:
        yield
    finally:
        F.scaled_dot_product_attention = real


def collect_shapes(spec, batch: int) -> Counter:
    """Counter of (kind, input shape, weight shape[, stride, padding]) over one forward of ``spec`` at ``batch``."""
    from unetnas.build import build_unet

    unet = build_unet(spec, seed=0)
    shapes: Counter = Counter()

    def hook(mod, inputs, _out):
        x = inputs[0]
        if isinstance(mod, torch.nn.Conv2d):
            shapes[("conv", tuple(x.shape), tuple(mod.weight.shape), mod.stride, mod.padding)] += 1
        else:  # Linear: flatten leading dims into rows
            shapes[("linear", (x.shape[:-1].numel(), x.shape[-1]), tuple(mod.weight.shape))] += 1

    handles = [
        m.register_forward_hook(hook) for m in unet.modules() if isinstance(m, torch.nn.Conv2d | torch.nn.Linear)
    ]
    x = torch.randn(batch, spec.latent_channels, spec.latent_size, spec.latent_size)
    text = torch.randn(batch, spec.text_len, spec.cross_attention_dim)
    with torch.no_grad(), _recording_sdpa(shapes):
        unet(x, torch.full((batch,), 500), encoder_hidden_states=text)
    for h in handles:
        h.remove()
    return shapes


def shape_flops(key: tuple) -> float:
    """Forward FLOPs (2 x MACs) of one recorded op."""
    kind = key[0]
    if kind == "conv":
        (n, _, h, w), (co, ci, kh, kw), (sh, sw), _ = key[1], key[2], key[3], key[4]
        return 2.0 * n * co * ci * kh * kw * (h // sh) * (w // sw)
    if kind == "linear":
        (rows, k), (out, _) = key[1], key[2]
        return 2.0 * rows * k * out
    (bh, m, k), (_, _, n) = key[1], key[2]
    return 2.0 * bh * m * k * n


def _op(key: tuple, train: bool) -> Callable[[], None]:
    """A closure running the op once (forward, or forward + backward of input and weight)."""
    kind = key[0]
    a = torch.randn(key[1], requires_grad=train)
    b = torch.randn(key[2], requires_grad=train)
    if kind == "conv":
        fwd = lambda: F.conv2d(a, b, stride=key[3], padding=key[4])  # noqa: E731
    elif kind == "linear":
        fwd = lambda: F.linear(a, b)  # noqa: E731
    else:
        fwd = lambda: torch.bmm(a, b)  # noqa: E731
    if not train:
        return lambda: fwd()

    def step() -> None:
        out = fwd()
        torch.autograd.grad(out, (a, b), torch.ones_like(out))

    return step


def best_time(fn: Callable[[], None], reps: int, min_s: float = 0.02) -> tuple[float, float]:
    """Minimum over ``reps`` of the mean (wall, CPU) seconds per call; each repetition runs at least ``min_s``.

    CPU seconds are this process's (``time.process_time``, all threads): on a loaded machine they still measure
    what the kernel costs, while wall time also counts the time the process waited for a core."""
    fn()
    t0, calls = time.perf_counter(), 0
    while time.perf_counter() - t0 < min_s:
        fn()
        calls += 1
    wall = cpu = float("inf")
    for _ in range(reps):
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(calls):
            fn()
        wall = min(wall, (time.perf_counter() - t0) / calls)
        cpu = min(cpu, (time.process_time() - c0) / calls)
    return wall, cpu


def gemm_peak(n: int, reps: int) -> tuple[float, float]:
    """GFLOP/s of an n x n x n fp32 ``torch.mm``: per wall second and per CPU second."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    wall, cpu = best_time(lambda: torch.mm(a, b), reps, min_s=0.2)
    return 2.0 * n**3 / wall / 1e9, 2.0 * n**3 / cpu / 1e9


def roofline(spec_name: str, batch: int, threads: list[int], reps: int, top: int = 8) -> dict:
    spec = get_spec(spec_name)
    shapes = collect_shapes(spec, batch)
    prev = torch.get_num_threads()
    out: dict = {"spec": spec.name, "batch": batch, "ops": sum(shapes.values()), "distinct": len(shapes), "by": {}}
    try:
        for th in threads:
            torch.set_num_threads(th)
            rows = []
            tot = {m: [0.0, 0.0, 0.0] for m in ("fwd", "train")}  # [FLOPs, wall s, CPU s]
            for key, count in shapes.items():
                f = shape_flops(key)
                row = {"op": key[0], "in": key[1], "w": key[2], "count": count, "gflop": f / 1e9}
                for mode, mult in (("fwd", 1.0), ("train", 3.0)):
                    wall, cpu = best_time(_op(key, mode == "train"), reps)
                    row[f"{mode}_gflops"] = mult * f / wall / 1e9
                    row[f"{mode}_gflops_cpu"] = mult * f / cpu / 1e9
                    tot[mode][0] += count * mult * f
                    tot[mode][1] += count * wall
                    tot[mode][2] += count * cpu
                rows.append(row)
            rows.sort(key=lambda r: -r["count"] * r["gflop"] * 3 / r["train_gflops_cpu"])
            peak = gemm_peak(2048, reps)
            out["by"][th] = {
                "peak_gemm_2048": peak[0],
                "peak_gemm_2048_cpu": peak[1],
                **{f"model_ceiling_{m}": tot[m][0] / tot[m][1] / 1e9 for m in tot},
                **{f"model_ceiling_{m}_cpu": tot[m][0] / tot[m][2] / 1e9 for m in tot},
                "train_gflop_per_step": tot["train"][0] / 1e9,
                "top": rows[:top],
            }
    finally:
        torch.set_num_threads(prev)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench roofline", description=__doc__.split("\n\n")[0])
    ap.add_argument("--spec", default="median", help="'median' (of space/tiny.yaml) or a preset name")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", default="1,2", help="comma-separated intra-op thread counts")
    ap.add_argument("--reps", type=int, default=5, help="repetitions per shape (the minimum is kept)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    res = roofline(args.spec, args.batch, [int(t) for t in args.threads.split(",")], args.reps)
    load = os.getloadavg()
    res["machine"] = (
        f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()}, nproc {os.cpu_count()}, "
        f"torch {torch.__version__}, load average {load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f}"
    )
    if args.json:
        print(json.dumps(res, default=str))
        return 0
    print(f"{res['machine']}\n{res['spec']} at batch {res['batch']}: {res['ops']} conv/linear/bmm calls per forward, ")
    print(f"{res['distinct']} distinct shapes\n")
    print(
        "| threads | 2048^3 GEMM GFLOP/s | per CPU-s | model ceiling fwd GFLOP/s | per CPU-s | "
        "model ceiling fwd+bwd GFLOP/s | per CPU-s |"
    )
    print("|---|---|---|---|---|---|---|")
    for th, r in res["by"].items():
        print(
            f"| {th} | {r['peak_gemm_2048']:.1f} | {r['peak_gemm_2048_cpu']:.1f} | {r['model_ceiling_fwd']:.1f} | "
            f"{r['model_ceiling_fwd_cpu']:.1f} | {r['model_ceiling_train']:.1f} | {r['model_ceiling_train_cpu']:.1f} |"
        )
    for th, r in res["by"].items():
        print(f"\n{th} thread(s): shapes that take most fwd+bwd CPU time (GFLOP/s per CPU-s)\n")
        print("| op | input | weight | count | fwd | fwd+bwd |")
        print("|---|---|---|---|---|---|")
        for row in r["top"]:
            print(
                f"| {row['op']} | {row['in']} | {row['w']} | {row['count']} | {row['fwd_gflops_cpu']:.1f} | "
                f"{row['train_gflops_cpu']:.1f} |"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
