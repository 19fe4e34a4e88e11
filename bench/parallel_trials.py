"""Two cores, two ways: one trial process with 2 intra-op threads vs two concurrent trial processes with 1 thread
each, side by side in one run (issue 16: the lever left after the trainer reached ~73% of its shapes' roofline).

    python -m bench parallel-trials [--specs median,max] [--rounds 5] [--steps 4] [--roofline-reps 3] [--json]

Every configuration runs real trainers (``unetnas.train.trainer.Trainer``: DeepSpeed engine, one gloo rank, the
search's recipe at batch 32, the built-in world) in long-lived child processes of this one, as `unetnas worker`
processes are, each on its own copy of the same design:

- ``1x2``: one process, ``OMP_NUM_THREADS=2`` and the OpenMP wait policy as the environment leaves it (today's
  `unetnas search`: torch's default threads on a 2-core machine);
- ``1x2-passive``: the same with ``OMP_WAIT_POLICY=PASSIVE``;
- ``2x1``: two processes at once, each ``OMP_NUM_THREADS=1``, ``OMP_WAIT_POLICY=PASSIVE``.

The children build their trainer and take ``--warmup`` steps, then wait. Each round runs every configuration
once, in an order rotated from round to round, on equal work: ``2 x --steps`` optimizer steps of the global batch
in total (the one process takes all of them; each of the two processes half). Only one configuration runs at a
time (the others' processes sleep on a pipe). A configuration's throughput is its total samples over the span from
the moment it was started until its last process finished (``time.monotonic``, shared by the processes), so a
straggler counts. Reported: median samples/s over the rounds, GFLOP/s (the cost model's training FLOPs per sample x
samples/s), the ratio to the first configuration of ``--configs``, CPU seconds per sample (all its processes), and the share of this machine's
roofline for the design's shapes (``bench/roofline.py``, measured in the same run): ``2 x`` the 1-thread
fwd+bwd ceiling per CPU second, i.e. what two fully busy cores would reach if every conv/GEMM ran at its best
single-thread speed. Load average before and after is printed: on a shared machine read the ratios.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

CONFIGS: dict[str, list[dict[str, str]]] = {
    # configuration: one environment per process
    "1x2": [{"OMP_NUM_THREADS": "2"}],
    "1x2-passive": [{"OMP_NUM_THREADS": "2", "OMP_WAIT_POLICY": "PASSIVE"}],
    "2x1": [{"OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}] * 2,
}


def child(spec_name: str, batch: int, warmup: int, pool: int) -> int:
    """A trainer in this process: warm up, print ``ready``, then for each line ``N`` on stdin train N steps and
    print one JSON line {"t0", "t1" (time.monotonic), "cpu" (process CPU s), "steps"}; an empty line ends it."""
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    from bench.roofline import get_spec
    from unetnas.train.recipe import load_recipe
    from unetnas.train.source import WorldSource
    from unetnas.train.trainer import Trainer

    spec = get_spec(spec_name)
    recipe = load_recipe().model_copy(update={"batch_size": batch, "micro_batch": batch})
    source = WorldSource(pool=pool, resolution=spec.resolution, text_len=spec.text_len)
    with tempfile.TemporaryDirectory(prefix="bench-par-") as out:
        trainer = Trainer(spec, recipe, source, out, seed=0)
        trainer.train_to(warmup)
        print(json.dumps({"ready": True, "threads": torch.get_num_threads()}), flush=True)
        for line in sys.stdin:
            if not line.strip():
                break
            n = int(line)
            t0, c0 = time.monotonic(), time.process_time()
            trainer.train_to(trainer.step + n)
            t1 = time.monotonic()
            print(json.dumps({"t0": t0, "t1": t1, "cpu": time.process_time() - c0, "steps": n}), flush=True)
    return 0


def _spawn(spec: str, env: dict[str, str], args) -> subprocess.Popen:
    full = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")} | env
    cmd = [sys.executable, "-m", "bench.parallel_trials", "--child", spec, "--batch", str(args.batch)]
    cmd += ["--warmup", str(args.warmup), "--pool", str(args.pool)]
    return subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=full)


def _read(p: subprocess.Popen) -> dict:
    line = p.stdout.readline()
    if not line:
        raise SystemExit(f"error: a bench child exited with {p.wait()} (see its stderr above)")
    return json.loads(line)


def bench(spec_name: str, args) -> dict:
    """Throughput of each configuration on one design (see the module docstring)."""
    from bench.roofline import get_spec, roofline
    from unetnas.cost import cost

    spec = get_spec(spec_name)
    gflop = cost(spec).train_flops_per_sample / 1e9
    names = args.configs.split(",")
    procs = {n: [_spawn(spec_name, env, args) for env in CONFIGS[n]] for n in names}
    try:
        threads = {n: [_read(p)["threads"] for p in ps] for n, ps in procs.items()}
        rate: dict[str, list[float]] = {n: [] for n in names}
        cpu: dict[str, list[float]] = {n: [] for n in names}
        for r in range(args.rounds):
            order = names[r % len(names) :] + names[: r % len(names)]
            for n in order:
                ps = procs[n]
                each = 2 * args.steps // len(ps)
                start = time.monotonic()
                for p in ps:
                    p.stdin.write(f"{each}\n")
                    p.stdin.flush()
                res = [_read(p) for p in ps]
                span = max(x["t1"] for x in res) - start
                samples = each * len(ps) * args.batch
                rate[n].append(samples / span)
                cpu[n].append(sum(x["cpu"] for x in res) / samples)
    finally:
        for ps in procs.values():
            for p in ps:
                if p.poll() is None:
                    p.stdin.write("\n")
                    p.stdin.flush()
        for ps in procs.values():
            for p in ps:
                p.wait()
    roof = roofline(spec_name, args.batch, [1, 2], args.roofline_reps)["by"] if args.roofline_reps else None
    return {
        "name": spec_name,
        "spec": spec.name,
        "gflop_per_sample": gflop,
        "threads": threads,
        "samples_per_s": {n: statistics.median(v) for n, v in rate.items()},
        "rounds": rate,
        "cpu_s_per_sample": {n: statistics.median(v) for n, v in cpu.items()},
        # two fully busy cores at the best 1-thread fwd+bwd speed of each shape (GFLOP/s)
        "roofline_2cores": 2 * roof[1]["model_ceiling_train_cpu"] if roof else None,
        "roofline_2threads": roof[2]["model_ceiling_train_cpu"] * 2 if roof else None,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench parallel-trials", description=__doc__.split("\n\n")[0])
    ap.add_argument("--specs", default="median,max", help="'median', 'max' (of space/tiny.yaml) or presets")
    ap.add_argument("--configs", default="1x2,1x2-passive,2x1", help=f"of {', '.join(CONFIGS)}")
    ap.add_argument("--batch", type=int, default=32, help="global batch")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved timed rounds")
    ap.add_argument("--steps", type=int, default=4, help="optimizer steps per process-core per round")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps per process first")
    ap.add_argument("--pool", type=int, default=512, help="built-in world scenes (captions encoded once)")
    ap.add_argument("--roofline-reps", type=int, default=3, help="repetitions per roofline shape; 0: no roofline")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return child(args.child, args.batch, args.warmup, args.pool)
    bad = [c for c in args.configs.split(",") if c not in CONFIGS]
    if bad:
        print(f"error: --configs={bad[0]}: must be one of {', '.join(CONFIGS)}", file=sys.stderr)
        return 2
    t0, load0 = datetime.datetime.now(datetime.UTC), os.getloadavg()
    rows = [bench(s.strip(), args) for s in args.specs.split(",")]
    load = os.getloadavg()
    head = (
        f"{t0:%Y-%m-%d %H:%M}-{datetime.datetime.now(datetime.UTC):%H:%M} UTC, {platform.machine()}, nproc "
        f"{os.cpu_count()}, batch {args.batch}, {args.rounds} rounds x {2 * args.steps} steps per configuration "
        f"after {args.warmup} warm-up steps, load average before {load0[0]:.1f}/{load0[1]:.1f}/{load0[2]:.1f}, "
        f"after {load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f}"
    )
    if args.json:
        print(json.dumps({"machine": head, "rows": rows}))
        return 0
    print(f"\n{head}\n")
    first = args.configs.split(",")[0]
    print(
        f"| spec | train GFLOP/sample | configuration | samples/s | GFLOP/s | vs {first} | CPU ms/sample | "
        "share of 2-core roofline | per-round samples/s |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        base = r["samples_per_s"][first]
        for n, v in r["samples_per_s"].items():
            g = v * r["gflop_per_sample"]
            share = f"{g / r['roofline_2cores']:.0%}" if r["roofline_2cores"] else "-"
            print(
                f"| {r['spec']} | {r['gflop_per_sample']:.3f} | {n} | {v:.1f} | {g:.1f} | {v / base:.2f}x | "
                f"{1e3 * r['cpu_s_per_sample'][n]:.1f} | {share} | {', '.join(f'{x:.1f}' for x in r['rounds'][n])} |"
            )
    for r in rows:
        if r["roofline_2cores"]:
            print(
                f"\n{r['spec']}: roofline (fwd+bwd ceiling of its conv/GEMM shapes): 2 x 1 thread "
                f"{r['roofline_2cores']:.1f} GFLOP/s, 2 threads {r['roofline_2threads']:.1f} (2 x per CPU-s)"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
