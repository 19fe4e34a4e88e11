"""A ground-truth table read at equal training samples (Li et al.'s comparison): the true front and its noise.

For each sample count S, every design's corrected alignment after S training samples, averaged over its seeds (the
truth of a v2 table): read at a checkpoint of S samples, or interpolated linearly in log(samples) between the two
checkpoints around S (a v1 table at equal FLOPs gives each design other sample counts; never extrapolated, so a
design whose run ends before S is left out). Per-prompt alignments are interpolated with the same weights, so two
designs are compared *paired* over the same prompts and initial noise (common random numbers).

Reported per S (reading designs; the text-blind control is shown, never on the front):
- the true front: designs not dominated in (alignment up, GMACs down), and its *separated* part: walking up the
  front by GMACs, the designs whose alignment exceeds the last one kept by more than ``--sep`` paired SE (the
  issue 18 criterion: >= 4 designs at distinct GMACs, each > 2 paired SE above its cheaper neighbour);
- Spearman's rho of alignment with GMACs (does capacity pay at equal samples?), with a bootstrap interval;
- Spearman between seeds 0 and 1 over the reading designs with both (goal >= 0.8);
- the spread across designs against the median standard error (the table rule: SE <= half the sd).

    python -m bench equal-samples [--table bench/data/gt-tiny-v1.json] [--samples 1920 4096] [--sep 2] [--json]

The isoFLOP view (Liang et al.) from the same curves: ``--flops 1e12 4e12`` reads every design after that many
training FLOPs instead (interpolated in log(FLOPs) the same way): which design is best for a given compute.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from bench.cli import Parser
from bench.table_stats import DEFAULT_TABLE, spearman_ci


def at_samples(checkpoints: list[dict[str, Any]], s: float, key: str = "samples") -> dict[str, Any] | None:
    """(alignment, per-prompt alignment, val_loss) after ``s`` samples of one run (``key="train_flops"``: after
    ``s`` training FLOPs, the isoFLOP reading), or None outside its checkpoints or where the checkpoints around
    ``s`` carry no alignment."""
    cks = [c for c in sorted(checkpoints, key=lambda c: c[key]) if c.get("alignment") is not None]
    for a, b in zip(cks, cks[1:] or cks):
        if a[key] <= s <= b[key]:
            w = 0.0 if b[key] == a[key] else math.log(s / a[key]) / math.log(b[key] / a[key])
            pa, pb = np.asarray(a["per_prompt_alignment"], float), np.asarray(b["per_prompt_alignment"], float)
            return {
                "alignment": (1 - w) * a["alignment"] + w * b["alignment"],
                "per_prompt": (1 - w) * pa + w * pb,
                "val_loss": (1 - w) * a["val_loss"] + w * b["val_loss"],
            }
    return None


def paired_se(a: np.ndarray, b: np.ndarray) -> float:
    d = np.asarray(a) - np.asarray(b)
    return float(d.std(ddof=1) / math.sqrt(len(d)))


def analyse(
    table: dict[str, Any], s: float, sep: float = 2.0, key: str = "samples", front_only: bool = False
) -> dict[str, Any]:
    """The true front at ``s`` samples (``key="train_flops"``: at ``s`` training FLOPs) and its noise (see the
    module docstring); ``front_only``: the fronts without the correlations and their bootstrap intervals."""
    runs: dict[str, dict[int, dict[str, Any]]] = {}
    for r in table["runs"]:
        v = at_samples(r["checkpoints"], s, key)
        if v is not None:
            runs.setdefault(r["design"], {})[int(r["seed"])] = v
    meta = {d["id"]: d for d in table["designs"]}
    rows = []
    for i, by_seed in runs.items():
        pp = np.mean([v["per_prompt"] for v in by_seed.values()], axis=0)
        rows.append(
            {
                "id": i,
                "gmacs": meta[i]["gmacs"],
                "text_blind": bool(meta[i]["text_blind"]),
                "seeds": sorted(by_seed),
                "alignment": float(np.mean([v["alignment"] for v in by_seed.values()])),
                "se": float(pp.std(ddof=1) / math.sqrt(len(pp))),
                "by_seed": {k: round(v["alignment"], 4) for k, v in sorted(by_seed.items())},
                "_pp": pp,
            }
        )
    reading = sorted((r for r in rows if not r["text_blind"]), key=lambda r: (r["gmacs"], -r["alignment"]))
    front, best = [], -math.inf
    for r in reading:  # by GMACs ascending: on the front if better than every cheaper design
        if r["alignment"] > best:
            front.append(r)
            best = r["alignment"]
    separated = front[:1]
    for r in front[1:]:
        if r["gmacs"] > separated[-1]["gmacs"] and (
            r["alignment"] - separated[-1]["alignment"] > sep * paired_se(r["_pp"], separated[-1]["_pp"])
        ):
            separated.append(r)
    out: dict[str, Any] = {key: s, "designs": len(rows), "reading": len(reading)}
    if len(reading) >= 3 and not front_only:
        out["spearman_alignment_gmacs"] = spearman_ci([r["gmacs"] for r in reading], [r["alignment"] for r in reading])
        sd = float(np.std([r["alignment"] for r in reading], ddof=1))
        out["sd_across_designs"] = round(sd, 4)
        out["median_se"] = round(float(np.median([r["se"] for r in reading])), 4)
    twice = [r for r in reading if {0, 1} <= set(r["by_seed"])]
    if len(twice) >= 3 and not front_only:
        out["seed_spearman"] = spearman_ci([r["by_seed"][0] for r in twice], [r["by_seed"][1] for r in twice])
    out["front"] = [r["id"] for r in front]
    out["separated_front"] = [r["id"] for r in separated]
    out["rows"] = [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items() if k != "_pp"} for r in rows]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = Parser(prog="python -m bench equal-samples", description=__doc__.splitlines()[0])
    ap.add_argument("--table", type=Path, default=DEFAULT_TABLE)
    ap.add_argument("--samples", type=float, nargs="+", default=None, help="default: the table's checkpoints")
    ap.add_argument(
        "--flops", type=float, nargs="+", default=None, help="isoFLOP view (Liang et al.): read at these FLOPs instead"
    )
    ap.add_argument("--sep", type=float, default=2.0, help="front members kept if > this many paired SE apart")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    table = json.loads(args.table.read_text())
    table["runs"] = table["runs"] + table.get("partial_runs", [])
    key, unit = ("train_flops", "FLOPs") if args.flops else ("samples", "samples")
    points = args.flops or args.samples or sorted({c["samples"] for r in table["runs"] for c in r["checkpoints"]})
    res = [analyse(table, s, args.sep, key) for s in points]
    if args.json:
        print(json.dumps(res, indent=1))
        return 0
    for r in res:
        if not r["reading"]:
            continue
        rho = r.get("spearman_alignment_gmacs", {})
        seed = r.get("seed_spearman", {})
        print(
            f"{r[key]:>8g} {unit}: {r['reading']} reading designs; rho(alignment, GMACs) "
            f"{rho.get('rho', float('nan')):+.2f} {rho.get('ci', '')}; seeds rho {seed.get('rho', float('nan')):+.2f} "
            f"(n {seed.get('n', 0)}); sd {r.get('sd_across_designs', float('nan')):.3f} vs median SE "
            f"{r.get('median_se', float('nan')):.3f}; front {len(r['front'])} ({', '.join(r['front'])}), "
            f"separated by > {args.sep:g} paired SE: {len(r['separated_front'])} ({', '.join(r['separated_front'])})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
