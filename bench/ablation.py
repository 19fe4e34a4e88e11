"""What the scheduler ablations share (``python -m bench second-chance``, ``python -m bench bracket-types``): run
unetnas's search through ``python -m bench search-efficiency`` under a variant, and print the variants side by side
with each one's compute to epsilon over the first variant's (a paired bootstrap over seeds, marked as
search-efficiency marks a ratio whose side missed epsilon at some seed)."""

from __future__ import annotations

import contextlib
import io
import json
from typing import Any

from bench import search_efficiency as SE
from bench.table_stats import V2_TABLE


def with_table(argv: list[str]) -> list[str]:
    """``argv`` with ``--table`` set to the v2 table unless it names one."""
    return argv if any(a == "--table" or a.startswith("--table=") for a in argv) else ["--table", str(V2_TABLE), *argv]


def unetnas_json(argv: list[str]) -> dict[str, Any]:
    """``python -m bench search-efficiency ARGV --methods unetnas --json``, parsed (its exit status if not 0)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = SE.main([*argv, "--methods", "unetnas", "--json"])
    if code:
        raise SystemExit(code)
    return json.loads(out.getvalue())


def print_table(res: dict[str, dict[str, Any]], label: str) -> None:
    """One line on the setting, then a row per variant (``res``: variant name -> its search-efficiency result)."""
    first_name, first = next(iter(res.items()))
    print(
        f"{first['designs']} designs, seeds {first['seed_list'][0]}..{first['seed_list'][-1]}"
        f"{' (TUNING seeds)' if first.get('tuning') else ''}, protocol {first['protocol']}, budget "
        f"{first['budget']:.3g} FLOPs, truth at {first['truth_at']}, epsilon {first['epsilon']:g} ({first['regret']} "
        "regret)"
    )
    ref = first["methods"]["unetnas"]
    print(
        f"| {label} | reached eps | compute to eps (mean +- SE) | ratio to {first_name} [95% paired CI] "
        "| final regret | FLOPs spent | runs |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, x in res.items():
        m = x["methods"]["unetnas"]
        r, lo, hi = SE.ratio_ci(m["compute_to_epsilon"], ref["compute_to_epsilon"])
        sign = "" if name == first_name else SE.bound_sign(SE.bound_of(m["reached"], ref["reached"], x["seeds"]))
        print(
            f"| {name} | {m['reached']}/{x['seeds']} | {'>= ' if m['reached'] < x['seeds'] else ''}"
            f"{m['compute_mean']:.3g} +- {m['compute_se']:.2g} | {sign}{r:.2f}x [{lo:.2f}, {hi:.2f}] | "
            f"{m['final_regret_mean']:.3f} +- {m['final_regret_se']:.3f} | {m['spent_mean']:.3g} | {m['runs_mean']:.1f} |"
        )
