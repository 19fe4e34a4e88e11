"""Two ground-truth tables measured on different devices, compared run by run (same design, seed and samples).

The control behind mixing GPU and CPU rows in one table: if fp32 training on two devices differs only by
floating-point summation order, the same (design, seed) gives the same validation loss and alignment to well
within one seed's noise. Reports, over every (design, seed, checkpoint) both tables measured: the relative
difference of validation loss and the absolute difference of alignment (median and max), beside the median
alignment SE over prompts.

    python -m bench cross-device --a bench/data/gt-tiny-plus-v2-pilot.json --b bench/data/gt-tiny-plus-v2.json
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from bench.cli import Parser
from bench.table_stats import ROOT, V2_TABLE


def rows(table: dict[str, Any]) -> dict[tuple[str, int, int], dict[str, Any]]:
    """(design, seed, samples) -> the checkpoint row, complete and partial runs alike."""
    out = {}
    for run in [*table.get("runs", []), *table.get("partial_runs", [])]:
        for c in run["checkpoints"]:
            out[run["design"], run["seed"], c["samples"]] = c
    return out


def compare(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    ra, rb = rows(a), rows(b)
    both = sorted(set(ra) & set(rb))
    dval = [abs(ra[k]["val_loss"] - rb[k]["val_loss"]) / ra[k]["val_loss"] for k in both]
    scored = [k for k in both if ra[k].get("alignment") is not None and rb[k].get("alignment") is not None]
    dal = [abs(ra[k]["alignment"] - rb[k]["alignment"]) for k in scored]
    se = [ra[k]["alignment_se"] for k in scored]
    dev = lambda t: sorted({c.get("device", "unrecorded") for r in t["runs"] for c in r["checkpoints"]})  # noqa: E731
    return {
        "devices_a": dev(a),
        "devices_b": dev(b),
        "checkpoints": len(both),
        "runs": len({k[:2] for k in both}),
        "val_loss_rel_diff_median": statistics.median(dval) if dval else None,
        "val_loss_rel_diff_max": max(dval) if dval else None,
        "val_loss_within_1pct": sum(d <= 0.01 for d in dval),
        "scored": len(scored),
        "alignment_abs_diff_median": statistics.median(dal) if dal else None,
        "alignment_abs_diff_max": max(dal) if dal else None,
        "alignment_se_median": statistics.median(se) if se else None,
    }


def main(argv: list[str] | None = None) -> int:
    ap = Parser(prog="python -m bench cross-device", description=__doc__.splitlines()[0])
    ap.add_argument("--a", type=Path, default=ROOT / "bench" / "data" / "gt-tiny-plus-v2-pilot.json")
    ap.add_argument("--b", type=Path, default=V2_TABLE)
    args = ap.parse_args(argv)
    res = compare(json.loads(args.a.read_text()), json.loads(args.b.read_text()))
    print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
