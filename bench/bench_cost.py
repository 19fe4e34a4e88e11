"""Benchmark: the analytic cost model against FlopCounterMode on a meta-device model.

For every preset and ``--n`` random members of each space file: ``cost(spec)`` timed over ``--reps`` calls (median
per spec) and ``measure(spec)`` (meta build + forward under FlopCounterMode, timed once per spec); reports the max
relative FLOPs error, the max parameter difference, the median time per spec of both and their ratio, as a
markdown table.

    python bench/bench_cost.py            # all presets + 100 members of space/paper.yaml and space/tiny.yaml
    python bench/bench_cost.py --n 10     # quicker
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _time_cost(spec, reps: int) -> float:
    from unetnas.cost import cost

    times = []
    for _ in range(reps):
        start = time.perf_counter()
        cost(spec)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _row(group: str, rows: list[dict]) -> str:
    cost_ms = statistics.median(r["cost_s"] for r in rows) * 1e3
    meas_ms = statistics.median(r["measure_s"] for r in rows) * 1e3
    ratio = statistics.median(r["measure_s"] / r["cost_s"] for r in rows)
    return (
        f"| {group} | {len(rows)} | {max(r['rel_err'] for r in rows):.2e} | {max(r['param_diff'] for r in rows)} "
        f"| {cost_ms:.3f} | {meas_ms:.0f} | {ratio:,.0f}x |"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100, help="random members per space file (default 100)")
    parser.add_argument("--seed", type=int, default=0, help="sampler seed")
    parser.add_argument("--reps", type=int, default=200, help="cost() calls per spec (median taken)")
    parser.add_argument("--spaces", nargs="*", default=["space/paper.yaml", "space/tiny.yaml"])
    args = parser.parse_args(argv)

    import torch

    from unetnas.io import load_space
    from unetnas.measure import measure
    from unetnas.presets import PRESETS

    groups: dict[str, list] = {"presets": list(PRESETS.values())}
    for path in args.spaces:
        space = load_space(ROOT / path if not Path(path).is_absolute() else path)
        groups[f"{space.name} space (n={args.n}, seed {args.seed})"] = space.sample(args.n, seed=args.seed)

    measure(PRESETS["tiny"])  # warm-up: first diffusers import and model build
    results: dict[str, list[dict]] = {}
    started = time.perf_counter()
    for group, specs in groups.items():
        rows = []
        for i, spec in enumerate(specs):
            from unetnas.cost import cost

            c = cost(spec)
            cost_s = _time_cost(spec, args.reps)
            start = time.perf_counter()
            truth = measure(spec)
            measure_s = time.perf_counter() - start
            rows.append(
                {
                    "cost_s": cost_s,
                    "measure_s": measure_s,
                    "param_diff": abs(c.params - truth["params"]),
                    "rel_err": abs(c.flops - truth["flops"]) / truth["flops"],
                }
            )
            print(f"\r{group}: {i + 1}/{len(specs)}", end="", file=sys.stderr, flush=True)
        print(file=sys.stderr)
        results[group] = rows

    every = [r for rows in results.values() for r in rows]
    print(
        f"\ncost model vs FlopCounterMode on meta; torch {torch.__version__}, Python {platform.python_version()}, "
        f"{torch.get_num_threads()} torch threads; {time.perf_counter() - started:.0f} s total\n"
    )
    print(
        "| specs | n | max rel. FLOPs error | max param diff | cost() ms/spec (median) "
        "| measure() ms/spec (median) | speed-up (median) |"
    )
    print("|---|---|---|---|---|---|---|")
    for group, rows in results.items():
        print(_row(group, rows))
    print(_row("all", every))
    worst = max(r["rel_err"] for r in every)
    return 0 if worst <= 0.005 and max(r["param_diff"] for r in every) == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
