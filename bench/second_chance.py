"""Ablation of the scheduler's second chances: how the budget left after the brackets is spent (held-out replay).

``Scheduler.second_chance`` decides it; this runs unetnas's search under each rule on the held-out replay of a v2
table and compares them.

Rules, side by side on the same seeds, table, plan and budget (everything else is unetnas as shipped):

- ``off``: no second chances (the scheduler before they existed: the search ends with the budget left unspent);
- ``standing`` (shipped): the stopped candidate with the best standing within its rung (position / results) goes on;
- ``highest``: the best stopped candidate of the highest rung that has one goes on (lower rungs only after it).

Usage: ``python -m bench second-chance --table bench/data/gt-tiny-plus-v2.json --tuning`` (seeds 0..19: choosing the
rule is tuning; reports use seeds from 100). Every other argument (``--table``, ``--partial``, ``--seeds``,
``--truth-at``, ``--protocol`` ...) goes to ``python -m bench search-efficiency``.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from bench import ablation as A
from bench.cli import Parser
from unetnas.search import scheduler as SCH

RULES = ("off", "standing", "highest")


def _highest(self: SCH.Scheduler, brackets, cands, available) -> SCH.Job | None:  # noqa: ANN001
    """The best eligible candidate of the highest rung that has one (see the module docstring)."""
    for k, pool, order in reversed(self.second_chance_rungs(brackets, cands, available)):
        for i in order:
            job = self.second_chance_job(pool[i], k)
            if job is not None:
                return job
    return None


def run_rule(rule: str, argv: list[str]) -> dict[str, Any]:
    shipped = SCH.Scheduler.second_chance
    patched = {"off": lambda self, b, c, a: None, "standing": shipped, "highest": _highest}[rule]
    SCH.Scheduler.second_chance = patched
    try:
        return A.unetnas_json(argv)
    finally:
        SCH.Scheduler.second_chance = shipped


def main(argv: list[str] | None = None) -> int:
    ap = Parser(
        prog="python -m bench second-chance",
        description=__doc__.splitlines()[0],
        epilog="Every other argument (--table, --partial, --seeds, --tuning, --truth-at, --protocol ...) goes to "
        "`python -m bench search-efficiency` (see its --help).",
    )
    ap.add_argument("--rules", default=",".join(RULES), help=f"comma-separated, of {', '.join(RULES)}")
    ap.add_argument("--out", default=None, help="also write the results as JSON here")
    args, rest = ap.parse_known_args(argv)
    rest = A.with_table(rest)
    rules = [r.strip() for r in args.rules.split(",") if r.strip()]
    if not rules or any(r not in RULES for r in rules) or len(set(rules)) < len(rules):
        print(f"error: --rules {args.rules!r}: must list some of {', '.join(RULES)}, each once", file=sys.stderr)
        return 2
    res = {r: run_rule(r, rest) for r in rules}
    A.print_table(res, "second-chance rule")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(res, f, indent=1)
    return 0
