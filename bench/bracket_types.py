"""Ablation of Hyperband's bracket types: how much choosing which brackets to run could buy (held-out replay).

Hyper-Tune (Li et al., VLDB 2022; Syne Tune's ``HyperTuneBracketDistribution``) learns a distribution over
Hyperband's brackets from how well each rung ranks the highest. Before building that, this bounds what it could
gain here: unetnas's search run with a *fixed* set of bracket types, everything else as shipped (MO-ASHA promotion,
TPE proposals, second chances), on the same seeds, table, plan and budget. A learner of bracket weights can at best
match the best fixed choice.

Cycles (``--cycles``, each a '+'-separated list of first rungs; default ``0+1+2,0,1,2``; the ratio column is each
cycle's compute to epsilon over the first cycle's, a paired bootstrap over seeds; a miss counts at what it spent and
marks the ratio as search-efficiency does: '>=' this cycle missed, '<=' the first one did, '~' both; the table
defaults to the v2 table, whose held-out replay these ablations need):

- ``0+1+2``: Hyperband's cycle, every rung from 0 (shipped);
- ``0``: successive halving from rung 0 only (the most exploratory bracket, over and over);
- ``1``: brackets from rung 1 only;
- ``2`` (the last rung): every candidate straight to the full horizon, i.e. the ``tpe`` baseline of
  ``python -m bench search-efficiency``.

Usage: ``python -m bench bracket-types --table bench/data/gt-tiny-plus-v2.json --tuning [--budget 1e14]`` (seeds
0..19: choosing brackets is tuning). Every other argument goes to ``python -m bench search-efficiency``.
"""

from __future__ import annotations

import json
from typing import Any

from bench import ablation as A
from bench import baselines as B
from bench.cli import Parser

DEFAULT = "0+1+2,0,1,2"


def parse(cycles: str) -> list[tuple[int, ...]]:
    """'0+1+2,0' -> [(0, 1, 2), (0,)]; ValueError on anything else."""
    out = [tuple(int(x) for x in c.split("+")) for c in cycles.split(",") if c.strip()]
    if not out or any(len(set(c)) != len(c) or min(c) < 0 for c in out):
        raise ValueError("each cycle lists distinct rungs >= 0")
    return out


def run_cycle(cycle: tuple[int, ...], argv: list[str]) -> dict[str, Any]:
    shipped = B.METHODS["unetnas"]
    B.METHODS["unetnas"] = lambda bench, seed: B.run_search(bench, seed, sampler="tpe", cycle=cycle, name="unetnas")
    try:
        return A.unetnas_json(argv)
    finally:
        B.METHODS["unetnas"] = shipped


def main(argv: list[str] | None = None) -> int:
    ap = Parser(
        prog="python -m bench bracket-types",
        description=__doc__.splitlines()[0],
        epilog="Every other argument (--table, --seeds, --tuning, --budget, --truth-at ...) goes to "
        "`python -m bench search-efficiency` (see its --help).",
    )
    ap.add_argument("--cycles", default=DEFAULT, help="comma-separated cycles of '+'-separated first rungs")
    ap.add_argument("--out", default=None, help="also write the results as JSON here")
    args, rest = ap.parse_known_args(argv)
    rest = A.with_table(rest)
    try:
        cycles = parse(args.cycles)
    except ValueError as err:
        ap.error(f"argument --cycles: {args.cycles!r}: {err}")
    try:
        res = {"+".join(map(str, c)): run_cycle(c, rest) for c in cycles}
    except ValueError as err:  # a rung the plan does not have (make_plan: "cycle must list distinct rungs in ...")
        ap.error(f"argument --cycles: {args.cycles!r}: {err}")
    A.print_table(res, "bracket types")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(res, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
