"""Proxy fidelity on the ground truth: how well does each proxy at each checkpoint rank the designs' final alignment?

For every proxy (validation loss, raw TIFA, text-blind-corrected alignment) and every checkpoint of the table's
seed-0 runs, Spearman's rho between the proxy there and the final (full-horizon) corrected alignment, over all
designs, with a 95% bootstrap interval over designs. The seed-noise ceiling is the same correlation between two
seeds' final alignments (designs with a second seed): no proxy can predict one run's final ranking better than
another run of the same designs does, so it is the ceiling a proxy's rho should be read against.

    python -m bench proxy-fidelity [--table bench/data/gt-tiny-v1.json] [--json]

Goal (issue 8): rho >= 0.8 at the first checkpoint costing at most 10% of the full horizon.
"""

from __future__ import annotations

import argparse
import json

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
    ap = argparse.ArgumentParser(prog="python -m bench proxy-fidelity", description=__doc__.splitlines()[0])
    ap.add_argument("--table", default=str(DEFAULT_TABLE))
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
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


if __name__ == "__main__":
    raise SystemExit(main())
