"""`python -m bench NAME [args]`: one entry point for the benchmarks that read the ground-truth table and others.

Each name maps to a module ``bench.<module>`` with ``main(argv: list[str]) -> int``. Standalone scripts
(``python bench/bench_cost.py``) keep working as before.
"""

from __future__ import annotations

import importlib
import sys

COMMANDS: dict[str, tuple[str, str]] = {
    # name: (module, one-line description)
    "ground-truth": ("bench.ground_truth", "train the tabular ground truth of a space (resumable; v2: samples)"),
    "equal-samples": ("bench.equal_samples", "a table read at equal training samples: true front, seeds, noise"),
    "proxy-fidelity": ("bench.proxy_fidelity", "rank correlation of early proxies with final alignment"),
    "prompt-count": (
        "bench.prompt_count",
        "seeds rho and separated front vs alignment prompt count (measured, projected)",
    ),
    "science": ("bench.science", "the paper's findings (depth vs width, cross-attention placement) on the table"),
    "search-efficiency": ("bench.search_efficiency", "unetnas vs baselines on the replayed ground truth"),
    "second-chance": ("bench.second_chance", "ablation: how the scheduler spends the budget left after its brackets"),
    "bracket-types": (
        "bench.bracket_types",
        "ablation: unetnas with fixed bracket types (what learning them could buy)",
    ),
    "roofline": (
        "bench.roofline",
        "this CPU's fp32 GFLOP/s on the conv/GEMM shapes of a tiny-space trial, and a GEMM peak",
    ),
    "trial": ("bench.bench_trial", "trial throughput: new trainer vs today's vs an equally optimised plain loop"),
    "trial-mechanisms": ("bench.trial_mechanisms", "each CPU speed mechanism of a training step alone vs eager"),
    "parallel-trials": (
        "bench.parallel_trials",
        "2 cores: one 2-thread trial process vs two 1-thread processes at once (samples/s, roofline share)",
    ),
    "scoring": ("bench.bench_scoring", "alignment scoring images/s (batched CFG sampling, memoised judge) new vs old"),
    "cross-device": ("bench.cross_device", "two tables' rows of the same runs compared (GPU vs CPU control)"),
    "gpu-throughput": ("bench.gpu_throughput", "trial throughput and MFU of paper-scale presets on a GPU"),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        width = max(map(len, COMMANDS))
        lines = [f"  {n:<{width}}  {d}" for n, (_, d) in COMMANDS.items()]
        print("usage: python -m bench NAME [args]\n\nbenchmarks:\n" + "\n".join(lines))
        if argv and argv[0] not in ("-h", "--help"):
            print(f"error: unknown benchmark {argv[0]!r}", file=sys.stderr)
            return 2
        return 0
    module = importlib.import_module(COMMANDS[argv[0]][0])
    return int(module.main(argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
