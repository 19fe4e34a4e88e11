"""Proxy fidelity on the ground truth: how well does each proxy at each checkpoint rank the designs' final alignment?

For every proxy (validation loss, raw TIFA, text-blind-corrected alignment) and every checkpoint of the table's
seed-0 runs, Spearman's rho between the proxy there and the final (full-horizon) corrected alignment, over all
designs, with a 95% bootstrap interval over designs. The seed-noise ceiling is the same correlation between two
seeds' final alignments (designs with a second seed): no proxy can predict one run's final ranking better than
another run of the same designs does, so it is the ceiling a proxy's rho should be read against.

    python -m bench proxy-fidelity [--table bench/data/gt-tiny-v1.json] [--json]

Goal (issue 8): rho >= 0.8 at the first checkpoint costing at most 10% of the full horizon.

A v2 table (``meta.horizon_unit: samples``: every design has the same checkpoints in training samples, Li et al.'s
protocol) is read by ``fidelity_samples`` instead, with a held-out truth: the proxy is read on one seed's run and
the target is the *other* seeds' mean corrected alignment at the final checkpoint (``--final``: default the deepest
checkpoint every reading design reached in every seed, so a table still being written can be read), averaged over
which seed is read (seed 0, then seed 1, ...): a proxy is not credited for predicting its own run's noise. Besides
validation loss, raw TIFA and alignment at each checkpoint, an extrapolation proxy fits each design's alignment at
the scored checkpoints up to k as ``a + b log(samples)`` (least squares, numpy.polyfit; the log-linear growth v1's
curves show between 2k and 23k samples) and reads it at the final sample count. The ceiling is Spearman between
two seeds' final alignments. Checkpoints without a measurement (alignment is scored from ``meta.align_from`` on)
say so instead of a rho.

    python -m bench proxy-fidelity --table bench/data/gt-tiny-plus-v2-pilot.json [--final 8192] [--json]
"""

from __future__ import annotations

import json

from bench.cli import Parser
from bench.table_stats import DEFAULT_TABLE, load, spearman_ci

PROXIES = {  # name -> (field, sign): larger signed value = better
    "alignment": ("alignment", 1.0),
    "tifa": ("tifa", 1.0),
    "val_loss": ("val_loss", -1.0),
}


def fidelity(path=DEFAULT_TABLE) -> dict:
    meta, designs = load(path)
    ds = list(designs.values())
    horizons = [c["train_flops"] for c in ds[0].runs[0]]
    full = horizons[-1]
    target = [d.final(0)["alignment"] for d in ds]
    by_ck: dict[str, list[dict]] = {}
    for name, (fld, sign) in PROXIES.items():
        rows = []
        for k in range(len(horizons)):
            x = [sign * d.runs[0][k][fld] for d in ds]
            share = horizons[k] / full
            rows.append({"checkpoint": k, "train_flops_share": round(share, 4), **spearman_ci(x, target, seed=k)})
        by_ck[name] = rows
    twice = [d for d in ds if 1 in d.runs]
    ceiling = (
        spearman_ci([d.final(0)["alignment"] for d in twice], [d.final(1)["alignment"] for d in twice])
        if len(twice) >= 3
        else None
    )
    first = min(range(len(horizons)), key=lambda k: (horizons[k] / full > 0.10, -horizons[k]))
    seed_diff = [d.final(1)["alignment"] - d.final(0)["alignment"] for d in twice]
    import numpy as np

    return {
        "table": str(path),
        "designs": len(ds),
        "horizons": horizons,
        "prompt_count": prompt_count(ds),
        "spearman_by_checkpoint": by_ck,
        "first_checkpoint_share": round(horizons[first] / full, 4),
        "first_checkpoint_rho": {n: by_ck[n][first]["rho"] for n in by_ck},
        "seed_noise_ceiling": ceiling,
        "seed_noise_sd": round(float(np.std(seed_diff, ddof=1) / np.sqrt(2)), 4) if len(seed_diff) > 1 else None,
        "mean_alignment_se": round(float(np.mean([d.final(0)["alignment_se"] for d in ds])), 4),
        "goal": "rho >= 0.8 at the first checkpoint costing <= 10% of the full horizon",
    }


def _v2_runs(table: dict) -> dict[str, dict[int, list[dict]]]:
    """design -> seed -> checkpoints (samples ascending), complete and partial runs alike."""
    runs: dict[str, dict[int, list[dict]]] = {}
    for r in [*table.get("runs", []), *table.get("partial_runs", [])]:
        runs.setdefault(r["design"], {})[int(r["seed"])] = sorted(r["checkpoints"], key=lambda c: c["samples"])
    return runs


def _extrapolated(cks: list[dict], k: int, final: float) -> float | None:
    """Alignment at ``final`` samples from the fit ``a + b log(samples)`` to the scored checkpoints up to ``k``."""
    import numpy as np

    pts = [(c["samples"], c["alignment"]) for c in cks[: k + 1] if c.get("alignment") is not None]
    if len(pts) < 2:
        return None
    b, a = np.polyfit(np.log([p[0] for p in pts]), [p[1] for p in pts], 1)
    return float(a + b * np.log(final))


def fidelity_samples(path, final: float | None = None) -> dict:
    """Proxy fidelity of a v2 (equal-samples) table with a held-out-seed truth (see the module docstring).

    Returns ``{"final_samples", "checkpoints" (samples), "designs", "seeds", "spearman_by_checkpoint": {proxy:
    [{"checkpoint", "samples", "share", "rho", "ci", "n"} | {..., "rho": None, "why"}]}, "seed_noise_ceiling"}``;
    rho and its bootstrap interval are averaged over the seed read (the CI of each read is kept in ``by_seed``).
    Raises ``ValueError`` when fewer than 3 reading designs have two seeds at the final checkpoint.
    """
    import json
    from pathlib import Path

    import numpy as np

    table = json.loads(Path(path).read_text())
    blind = {d["id"] for d in table["designs"] if d.get("text_blind")}
    runs = {i: by for i, by in _v2_runs(table).items() if i not in blind}
    horizons = sorted({c["samples"] for by in runs.values() for cks in by.values() for c in cks})

    def scored_at(cks: list[dict], s: float) -> dict | None:
        return next((c for c in cks if c["samples"] == s and c.get("alignment") is not None), None)

    if final is None:
        reached = [s for s in horizons if all(scored_at(c, s) for by in runs.values() for c in by.values())]
        final = max(reached) if reached else horizons[-1]
    ids = sorted(i for i, by in runs.items() if sum(scored_at(c, final) is not None for c in by.values()) >= 2)
    if len(ids) < 3:
        raise ValueError(f"{path}: fewer than 3 reading designs have two seeds scored at {final:g} samples")
    seeds = sorted({s for i in ids for s in runs[i]})
    ks = [k for k, s in enumerate(horizons) if s <= final]

    def proxy(name: str, cks: list[dict], k: int) -> float | None:
        if name == "extrapolated":
            return _extrapolated(cks, k, final)
        c = cks[k] if k < len(cks) else None
        v = None if c is None else c.get(name)
        return None if v is None else (-v if name == "val_loss" else v)

    out: dict[str, list[dict]] = {}
    for name in ("val_loss", "tifa", "alignment", "extrapolated"):
        rows = []
        for k in ks:
            reads = []
            for s in seeds:
                pairs = []
                for i in ids:
                    if s not in runs[i]:
                        continue
                    others = [
                        scored_at(c, final)["alignment"] for t, c in runs[i].items() if t != s and scored_at(c, final)
                    ]
                    x = proxy(name, runs[i][s], k)
                    if others and x is not None:
                        pairs.append((x, float(np.mean(others))))
                if len(pairs) >= 3:
                    reads.append({"seed": s, **spearman_ci(*zip(*pairs, strict=True), seed=k)})
            row = {"checkpoint": k, "samples": horizons[k], "share": round(horizons[k] / final, 4)}
            if not reads:
                rows.append({**row, "rho": None, "why": "not measured at this checkpoint (or < 3 designs)"})
                continue
            rows.append(
                {
                    **row,
                    "rho": round(float(np.mean([r["rho"] for r in reads])), 4),
                    "ci": [round(float(np.mean([r["ci"][j] for r in reads])), 4) for j in (0, 1)],
                    "n": reads[0]["n"],
                    "by_seed": reads,
                }
            )
        out[name] = rows
    two = [i for i in ids if 0 in runs[i] and 1 in runs[i] and all(scored_at(runs[i][t], final) for t in (0, 1))]
    ceiling = spearman_ci(
        [scored_at(runs[i][0], final)["alignment"] for i in two],
        [scored_at(runs[i][1], final)["alignment"] for i in two],
    )
    return {
        "table": str(path),
        "final_samples": final,
        "checkpoints": [horizons[k] for k in ks],
        "designs": len(ids),
        "seeds": seeds,
        "truth": "held-out: the other seeds' mean final alignment",
        "spearman_by_checkpoint": out,
        "seed_noise_ceiling": ceiling,
    }


def prompt_count(ds) -> dict:
    """How many prompts the scoring needs: the per-prompt spread of corrected alignment at the full horizon gives
    the standard error at n prompts (sd / sqrt(n)); compared with the spread of final alignment across designs and
    with the paired standard error of a difference between two designs scored on the same prompts and noise (common
    random numbers) versus the unpaired one."""
    import itertools

    import numpy as np

    from unetnas.proxies.alignment import paired_difference

    finals = [d.final(0) for d in ds if not d.text_blind]
    sd = float(np.sqrt(np.mean([np.var(f["per_prompt_alignment"], ddof=1) for f in finals])))
    n_eval = len(finals[0]["per_prompt_alignment"])
    paired, unpaired = [], []
    for a, b in itertools.combinations(finals, 2):
        paired.append(paired_difference(a["per_prompt_alignment"], b["per_prompt_alignment"])[1])
        unpaired.append(float(np.hypot(a["alignment_se"], b["alignment_se"])))
    return {
        "per_prompt_sd": round(sd, 4),
        "prompts_in_table": n_eval,
        "se_at": {n: round(float(sd / np.sqrt(n)), 4) for n in (16, 32, 64, 128, 256, 512)},
        "design_sd": round(float(np.std([f["alignment"] for f in finals], ddof=1)), 4),
        "paired_se_median": round(float(np.median(paired)), 4),
        "unpaired_se_median": round(float(np.median(unpaired)), 4),
    }


def main(argv: list[str] | None = None) -> int:
    ap = Parser(prog="python -m bench proxy-fidelity", description=__doc__.splitlines()[0])
    ap.add_argument("--table", default=str(DEFAULT_TABLE))
    ap.add_argument("--final", type=float, default=None, help="v2 tables: the final checkpoint (samples)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if json.loads(open(args.table).read()).get("meta", {}).get("horizon_unit") == "samples":
        return _main_samples(args)
    res = fidelity(args.table)
    if args.json:
        print(json.dumps(res))
        return 0
    print(f"{res['designs']} designs; final = corrected alignment at {res['horizons'][-1]:.3g} training FLOPs")
    print(
        "| proxy | "
        + " | ".join(f"{r['train_flops_share']:.3g} of horizon" for r in res["spearman_by_checkpoint"]["alignment"])
        + " |"
    )
    print("|---|" + "---|" * len(res["horizons"]))
    for name, rows in res["spearman_by_checkpoint"].items():
        cells = [f"{r['rho']:+.2f} [{r['ci'][0]:+.2f}, {r['ci'][1]:+.2f}]" for r in rows]
        print(f"| {name} | " + " | ".join(cells) + " |")
    pc = res["prompt_count"]
    print(
        f"per-prompt sd {pc['per_prompt_sd']}: SE at n prompts {pc['se_at']}; sd of final alignment across designs "
        f"{pc['design_sd']}; median SE of a difference: paired {pc['paired_se_median']}, unpaired "
        f"{pc['unpaired_se_median']}"
    )
    c = res["seed_noise_ceiling"]
    if c:
        print(
            f"seed-noise ceiling (seed 0 vs seed 1 final alignment, {c['n']} designs): rho {c['rho']:+.2f} "
            f"[{c['ci'][0]:+.2f}, {c['ci'][1]:+.2f}]; seed sd {res['seed_noise_sd']}"
        )
    return 0


def _main_samples(args) -> int:
    try:
        res = fidelity_samples(args.table, args.final)
    except ValueError as err:
        print(f"error: {err}")
        return 2
    if args.json:
        print(json.dumps(res))
        return 0
    print(
        f"{res['designs']} reading designs, seeds {res['seeds']}; truth = {res['truth']} at "
        f"{res['final_samples']:,.0f} samples"
    )
    print("| proxy (read on one seed) | " + " | ".join(f"{s:,.0f} samples" for s in res["checkpoints"]) + " |")
    print("|---|" + "---|" * len(res["checkpoints"]))
    for name, rows in res["spearman_by_checkpoint"].items():
        cells = ["n/a" if r["rho"] is None else f"{r['rho']:+.2f} [{r['ci'][0]:+.2f}, {r['ci'][1]:+.2f}]" for r in rows]
        print(f"| {name} | " + " | ".join(cells) + " |")
    c = res["seed_noise_ceiling"]
    print(
        f"seed-noise ceiling (seed 0 vs 1 at the final checkpoint, {c['n']} designs): rho {c['rho']:+.2f} "
        f"[{c['ci'][0]:+.2f}, {c['ci'][1]:+.2f}]"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
