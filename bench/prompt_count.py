"""How many alignment prompts a v2 table needs: seeds rho and the separated front against the prompt count.

Issue 18 asks for seeds rho >= 0.8 (Spearman between two training seeds' alignment over the reading designs) and a
true front of >= 4 designs separated by > 2 paired SE; the table scores 128 prompts per checkpoint. Re-scoring at
more prompts needs the models again (the table keeps no checkpoints), so before paying for it this bench measures
what the prompt count buys, from the per-prompt alignments the table already stores:

- **Measured, P <= 128**: for each P in ``--prompts`` (default 8, 16, 32, 64, 128), ``--subsets`` random subsets
  of P of the table's prompts, the same subset for every design and seed (as one study scores one prompt set);
  each design's alignment = its mean over the subset; Spearman and Pearson between seeds 0 and 1 over the reading
  designs (averaged over subsets), and the separated front (``bench.equal_samples.analyse`` on the subset).
- **Projected, P > 128** (a measurement model, checked against the measured points): a design's score on one seed
  is its true value (variance V across designs) + a seed effect (S) + prompt-level noise (E / P). The correlation
  between seeds is then r(P) = V / (V + S + E / P), i.e. 1 / r is linear in 1 / P (the Spearman-Brown prophecy
  with a floor S that more prompts cannot remove; Spearman 1910, Brown 1910). a = 1 + S / V >= 1 and b = E / V >= 0
  of r(P) = 1 / (a + b / P) are fitted by bounded least squares on the measured r; 1 / a is r at infinitely many
  prompts (the seed floor). Spearman's rho is projected from
  Pearson's r as for a bivariate normal: rho = (6 / pi) asin(r / 2) (Pearson 1907). The separated front at P > 128
  is projected by keeping the 128-prompt means and shrinking every paired SE by sqrt(128 / P) (optimistic: the
  means do not move).
- **Intervals**: 95% percentile bootstrap over designs (``--boot`` resamples; every quantity recomputed).
- **One approximation**: a subsampled prompt keeps its text-blind baseline as the table measured it, against the
  images of all the table's other prompts (``WorldTifa``'s default foils); a real scoring of P prompts corrects
  against P - 1 foils, a noisier baseline when P is small. So the measured points at P < 128 are if anything
  optimistic, and the projection beyond 128 (more foils, a steadier baseline) if anything conservative.

    python -m bench prompt-count [--table bench/data/gt-tiny-plus-v2.json] [--samples 4096] [--json]

Errors: a table without per-prompt alignments at ``--samples``, or with fewer than 5 reading designs with seeds 0
and 1 there, is refused in one line.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import rankdata

from bench.cli import Parser
from bench.equal_samples import analyse, at_samples
from bench.table_stats import V2_TABLE

PROJECT = (256, 512)


def seed_matrix(table: dict[str, Any], samples: float) -> tuple[list[str], np.ndarray]:
    """(design ids, per-prompt alignments of shape (designs, 2 seeds, prompts)) of the reading designs with seeds 0
    and 1 at ``samples``."""
    text_blind = {d["id"] for d in table["designs"] if d["text_blind"]}
    by: dict[str, dict[int, np.ndarray]] = {}
    for r in table["runs"]:
        if r["design"] in text_blind or int(r["seed"]) not in (0, 1):
            continue
        v = at_samples(r["checkpoints"], samples)
        if v is not None:
            by.setdefault(r["design"], {})[int(r["seed"])] = v["per_prompt"]
    ids = sorted(d for d, s in by.items() if len(s) == 2)
    return ids, np.array([[by[d][0], by[d][1]] for d in ids], float)


def _corr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise Pearson correlation of (subsets, designs) arrays."""
    a = a - a.mean(1, keepdims=True)
    b = b - b.mean(1, keepdims=True)
    return (a * b).sum(1) / np.sqrt((a * a).sum(1) * (b * b).sum(1))


def seeds_corr(pp: np.ndarray, masks: np.ndarray) -> tuple[float, float]:
    """(mean Spearman, mean Pearson) between seeds over prompt subsets ``masks`` (subsets, prompts; 0/1)."""
    w = masks / masks.sum(1, keepdims=True)
    a, b = w @ pp[:, 0, :].T, w @ pp[:, 1, :].T  # (subsets, designs)
    ra, rb = rankdata(a, axis=1), rankdata(b, axis=1)
    return float(np.mean(_corr(ra, rb))), float(np.mean(_corr(a, b)))


def fit_line(prompts: list[int], pearson: list[float]) -> tuple[float, float]:
    """(a, b) of r(P) = 1 / (a + b / P), a = (V + S) / V >= 1 and b = E / V >= 0, by least squares on r (every
    measured count weighs the same; ``scipy.optimize.curve_fit`` with those bounds)."""
    from scipy.optimize import curve_fit

    x, y = np.asarray(prompts, float), np.asarray(pearson, float)
    (a, b), _ = curve_fit(lambda p, a, b: 1 / (a + b / p), x, y, p0=(1.1, 10.0), bounds=([1.0, 0.0], [np.inf, np.inf]))
    return float(a), float(b)


def project(intercept: float, slope: float, p: float) -> float:
    """Pearson r at ``p`` prompts (``math.inf``: the seed floor) from the fitted line."""
    inv = intercept + (0.0 if math.isinf(p) else slope / p)
    return 1 / inv if inv > 0 else float("nan")


def to_spearman(r: float) -> float:
    return 6 / math.pi * math.asin(max(-1.0, min(1.0, r)) / 2)


def curve(pp: np.ndarray, prompts: list[int], subsets: int, rng: np.random.Generator) -> dict[str, Any]:
    """Measured seeds correlations at each P and the projections of the fitted line."""
    n = pp.shape[2]
    spear, pear = [], []
    for p in prompts:
        k = 1 if p >= n else subsets
        masks = np.zeros((k, n))
        for i in range(k):
            masks[i, rng.choice(n, size=min(p, n), replace=False)] = 1
        s, r = seeds_corr(pp, masks)
        spear.append(s)
        pear.append(r)
    intercept, slope = fit_line(prompts, pear)
    proj = {str(p): project(intercept, slope, p) for p in (*PROJECT, math.inf)}
    return {"spearman": spear, "pearson": pear, "fit": (intercept, slope), "projected_pearson": proj}


def subset_table(table: dict[str, Any], idx: np.ndarray) -> dict[str, Any]:
    """The table with every scored checkpoint's alignment re-read on the prompts ``idx``."""
    runs = []
    for r in table["runs"]:
        cks = []
        for c in r["checkpoints"]:
            if c.get("per_prompt_alignment") is not None:
                pp = np.asarray(c["per_prompt_alignment"], float)[idx]
                c = {**c, "per_prompt_alignment": pp.tolist(), "alignment": float(pp.mean())}
            cks.append(c)
        runs.append({**r, "checkpoints": cks})
    return {**table, "runs": runs}


def fronts(table: dict[str, Any], samples: float, prompts: list[int], subsets: int, rng: np.random.Generator):
    """Mean separated-front size at each measured P, and the projected size at ``PROJECT`` prompts."""
    n = len(next(c for r in table["runs"] for c in r["checkpoints"] if c.get("per_prompt_alignment")))
    measured = {}
    for p in prompts:
        k = 1 if p >= n else max(1, subsets // 10)  # a front is slower to read than a correlation
        sizes = [
            len(
                analyse(subset_table(table, rng.choice(n, size=min(p, n), replace=False)), samples, front_only=True)[
                    "separated_front"
                ]
            )
            for _ in range(k)
        ]
        measured[str(p)] = float(np.mean(sizes))
    projected = {}
    for p in PROJECT:
        res = analyse(table, samples, sep=2.0 * math.sqrt(n / p), front_only=True)  # paired SE x sqrt(n / p)
        projected[str(p)] = {"size": len(res["separated_front"]), "designs": res["separated_front"]}
    return measured, projected


def run(table: dict[str, Any], samples: float, prompts: list[int], subsets: int, boot: int, seed: int = 0):
    ids, pp = seed_matrix(table, samples)
    if len(ids) < 5:
        raise ValueError(f"{len(ids)} reading designs with seeds 0 and 1 at {samples:g} samples; 5 are needed")
    n = pp.shape[2]
    prompts = sorted({min(p, n) for p in prompts})
    if len(prompts) < 2:
        raise ValueError(f"--prompts needs at least 2 distinct counts <= the table's {n} prompts")
    rng = np.random.default_rng(seed)
    main = curve(pp, prompts, subsets, rng)
    boots = [curve(pp[rng.integers(0, len(ids), len(ids))], prompts, max(10, subsets // 5), rng) for _ in range(boot)]

    def ci(values: list[float]) -> list[float]:
        v = np.asarray([x for x in values if math.isfinite(x)])
        return [round(float(x), 3) for x in np.percentile(v, [2.5, 97.5])] if len(v) else [math.nan, math.nan]

    out: dict[str, Any] = {"samples": samples, "designs": len(ids), "table_prompts": n, "measured": [], "projected": []}
    for i, p in enumerate(prompts):
        out["measured"].append(
            {
                "prompts": p,
                "seeds_spearman": round(main["spearman"][i], 3),
                "spearman_ci": ci([b["spearman"][i] for b in boots]),
                "seeds_pearson": round(main["pearson"][i], 3),
                "model_pearson": round(project(*main["fit"], p), 3),
            }
        )
    for key in (*map(str, PROJECT), "inf"):
        r = main["projected_pearson"][key]
        rs = [b["projected_pearson"][key] for b in boots]
        out["projected"].append(
            {
                "prompts": key,
                "pearson": round(r, 3),
                "pearson_ci": ci(rs),
                "spearman": round(to_spearman(r), 3),
                "spearman_ci": ci([to_spearman(x) for x in rs if math.isfinite(x)]),
            }
        )
    measured, projected = fronts(table, samples, prompts, subsets, rng)
    out["separated_front"] = {"measured": measured, "projected": projected}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = Parser(prog="python -m bench prompt-count", description=__doc__.splitlines()[0])
    ap.add_argument("--table", type=Path, default=V2_TABLE)
    ap.add_argument("--samples", type=float, default=4096, help="checkpoint read (training samples)")
    ap.add_argument("--prompts", type=int, nargs="+", default=[8, 16, 32, 64, 128], help="prompt counts measured")
    ap.add_argument("--subsets", type=int, default=200, help="random prompt subsets per count")
    ap.add_argument("--boot", type=int, default=200, help="bootstrap resamples of designs")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    try:
        table = json.loads(args.table.read_text())
        res = run(table, args.samples, args.prompts, args.subsets, args.boot)
    except (OSError, ValueError, KeyError, StopIteration) as err:
        ap.error(f"{args.table}: {err!s}")
    if args.json:
        print(json.dumps(res, indent=1))
        return 0
    print(
        f"{args.table} at {res['samples']:g} samples: {res['designs']} reading designs with seeds 0 and 1, "
        f"{res['table_prompts']} prompts scored; {args.subsets} subsets per count, {args.boot} bootstrap resamples"
    )
    print("| prompts | seeds Spearman [95% CI] | seeds Pearson | model Pearson | separated front (mean) |")
    print("|---|---|---|---|---|")
    for m in res["measured"]:
        sep = res["separated_front"]["measured"][str(m["prompts"])]
        print(
            f"| {m['prompts']} (measured) | {m['seeds_spearman']:+.3f} {m['spearman_ci']} | "
            f"{m['seeds_pearson']:+.3f} | {m['model_pearson']:+.3f} | {sep:.1f} |"
        )
    for p in res["projected"]:
        sep = res["separated_front"]["projected"].get(p["prompts"])
        front = f"{sep['size']} ({', '.join(sep['designs'])})" if sep else "-"
        print(
            f"| {p['prompts']} (projected) | {p['spearman']:+.3f} {p['spearman_ci']} | {p['pearson']:+.3f} "
            f"{p['pearson_ci']} | - | {front} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
