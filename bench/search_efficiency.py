"""Search efficiency on the replayed ground truth: how much compute each search needs to find the table's front.

The built-in searches (``bench.baselines``: unetnas, random search and TPE at the full horizon, top-k after rung 0,
Optuna's HyperbandPruner) and the peers' own schedulers (``bench.peers``: Syne Tune MOASHA/ASHA/BOHB, SMAC3's
multi-fidelity facade, DEHB; ``--methods all``, in the venv of ``scripts/setup_peers.sh``) run on the same table,
the same plan and the same FLOPs accounting, over ``--seeds`` seeds each.

Protocol (``bench.replay_noise``). ``held-out`` (default): at search seed s the search measures ONE run of every
design (every rung of it), and a design's TRUE alignment is the mean of its OTHER runs at their last checkpoint, so
the search can be fooled by seed noise; it needs >= 2 runs per design and reports seeds from 100 on (seeds 0..19
tuned the scheduler and are refused). ``same-run`` (issue 9): the truth is the mean of all runs, the one measured
included (``--first-seed`` 0 by default, as BENCHMARKS.md's v1 figures).

Metric. A design's TRUE value is its true alignment and its inference GMACs. Hypervolume (HV) of a set of designs =
area dominated by their true (alignment, GMACs) points within the fixed reference point (alignment 0, GMACs = the
space's largest), computed exactly (``unetnas.search.promotion.hypervolume``). The true front is that of all members
of the space; a method's answer at any moment (the designs non-dominated by its own last-rung measurements) has
regret = HV(true front) - HV(answer at true values), reported relative to HV(true front) (1 = nothing found, 0 = the
front found). Noise-aware regret: the same with every answered design within 2 SE of the front at its cost counted
as on it (``bench.replay_noise.credited``); it is the primary regret under ``held-out`` (epsilon, compute, ratios,
curves), the plain one beside it (``plain_*``), and the other way round under ``same-run``. Compute = training +
evaluation FLOPs spent (the one-off caption encoding, the same for all, excluded for every method). A method
reaches ``--epsilon`` when its relative regret first drops to epsilon or below (default 0.05, or twice the floor
regret where that is larger: the floor is what exhausting the space at the last rung answers, whose measurements
differ from the true values by noise and by the horizon, so a smaller epsilon is out of every method's reach); one
that never does within the budget is counted at what it spent (a lower bound; flagged). ``ratio_vs_X`` = mean
compute of X / mean compute of unetnas over seeds, with a 95% paired percentile bootstrap over seeds
(``scipy.stats.bootstrap``). The anytime curves show the mean relative regret over seeds +- one standard error.

    python -m bench search-efficiency [--table bench/data/gt-tiny-v1.json] [--protocol held-out|same-run]
        [--seeds 20] [--first-seed 100] [--epsilon E] [--methods unetnas,random,...|all]
        [--plot docs/search-efficiency.png] [--out result.json] [--json] [--partial]

Goal (issue 9, item 7; issue 18): unetnas reaches epsilon with at least 5x less compute than random search at the
full horizon, and with less than every other method.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from bench import replay_noise as RN
from bench.baselines import METHODS, Bench, Trace, make_bench
from bench.cli import Parser
from bench.peers import PEERS, label, method
from bench.table_stats import DEFAULT_TABLE, ROOT
from unetnas.cost import cost
from unetnas.errors import UserError
from unetnas.search.promotion import hypervolume, pareto
from unetnas.search.replay import GroundTruth

EPSILON = 0.05  # default relative regret threshold (raised to twice the floor regret where that is larger)
GRID = 80  # compute points of the anytime curves (log-spaced)
BASELINES = ("random", "tpe", "topk", "hyperband")


# -- truth and regret ---------------------------------------------------------------------------------------------


class Scorer:
    """True values of the space's members at one search seed and the (plain and noise-aware) regret of any set of
    them, cached by set. ``protocol``: ``bench.replay_noise.PROTOCOLS`` (held-out: the truth excludes the run the
    search at ``seed`` reads)."""

    def __init__(self, bench: Bench, protocol: str = "same-run", seed: int = 0, truth_at: str = "top-rung") -> None:
        t = bench.table
        at = truth_flops(bench, truth_at)
        tv = RN.truth(t, bench.members, protocol, seed, at)
        sd = RN.seed_sd(t, list(tv), at)
        self.truth: dict[str, tuple[float, float]] = {}
        self.se: dict[str, float] = {}  # SE of each design's true alignment (pooled seed sd / sqrt(runs averaged))
        for m in bench.members:
            d = t.design(m).id
            self.truth[d] = (tv[d][0], cost(m).gmacs)
            self.se[d] = sd / math.sqrt(tv[d][1])
        self.ref = (0.0, max(g for _, g in self.truth.values()))
        self.best = self.hv(self.truth)
        if self.best <= 0:
            raise UserError(
                "no member has positive alignment: the hypervolume of the true front is 0",
                field="--table",
                value=str(t.path),
            )
        ids = [d for d in self.truth if self.hv([d]) > 0]  # inside the reference point
        self.front = sorted(
            (ids[i] for i in pareto([(-self.truth[d][0], self.truth[d][1]) for d in ids])),
            key=lambda d: self.truth[d][1],
        )
        self._cache: dict[tuple[str, ...], float] = {}
        self._noise: dict[tuple[str, ...], float] = {}

    def hv(self, ids, points: dict[str, tuple[float, float]] | None = None) -> float:  # noqa: ANN001
        pts = self.truth if points is None else points
        return hypervolume([(-pts[d][0], pts[d][1]) for d in ids], [-self.ref[0], self.ref[1]])

    def regret(self, ids: tuple[str, ...], noise: bool = False) -> float:
        """Relative regret of answering ``ids``: (HV(true front) - HV(ids)) / HV(true front); ``noise``: of the
        answer with every design within 2 SE of the front credited as on it (``bench.replay_noise.credited``)."""
        if noise:
            if ids not in self._noise:
                pts = RN.credited(ids, self.truth, self.se)
                self._noise[ids] = max(0.0, (self.best - self.hv(ids, pts)) / self.best)
            return self._noise[ids]
        if ids not in self._cache:
            self._cache[ids] = (self.best - self.hv(ids)) / self.best
        return self._cache[ids]


def curve(trace: Trace, scorer: Scorer, grid: np.ndarray, noise: bool = False) -> np.ndarray:
    """Relative regret of the trace's answer at each compute level of ``grid`` (its last answer beyond its end)."""
    xs = np.array([f for f, _ in trace.events])
    rs = np.array([scorer.regret(a, noise) for _, a in trace.events])
    idx = np.searchsorted(xs, grid, side="right") - 1
    return rs[np.maximum(idx, 0)]


def compute_to(trace: Trace, scorer: Scorer, eps: float, noise: bool = False) -> tuple[float, bool]:
    """(compute at which the relative regret first is <= eps, reached?); (all it spent, False) if never."""
    for f, ids in trace.events:
        if scorer.regret(ids, noise) <= eps:
            return f, True
    return trace.spent, False


def ratio_ci(base: list[float], ours: list[float]) -> tuple[float, float, float]:
    """mean(base) / mean(ours) with a 95% paired percentile bootstrap interval over seeds."""
    from scipy.stats import bootstrap

    point = statistics.fmean(base) / statistics.fmean(ours)
    if len(base) < 2 or (len(set(base)) == 1 and len(set(ours)) == 1):
        return point, point, point
    res = bootstrap(
        (np.asarray(base), np.asarray(ours)),
        lambda b, o, axis=-1: b.mean(axis) / o.mean(axis),
        paired=True,
        n_resamples=2000,
        method="percentile",
        rng=np.random.default_rng(0),
    )
    return point, float(res.confidence_interval.low), float(res.confidence_interval.high)


def bound_sign(bound: str) -> str:
    """The mark before a ratio whose numerator (``lower``), denominator (``upper``) or both missed epsilon at some
    seed and were counted at what they spent: '>= ', '<= ', '~ ' (nothing when both always reached it)."""
    return {"lower": ">= ", "upper": "<= ", "lowerupper": "~ "}.get(bound, "")


def bound_of(row_reached: int, ref_reached: int, seeds: int) -> str:
    """``bound_sign``'s argument for a ratio row / reference."""
    return ("lower" if row_reached < seeds else "") + ("upper" if ref_reached < seeds else "")


TRUTH_AT = ("top-rung", "last")


def with_prompts(gt: GroundTruth, prompts: int, folder: Path) -> Path:
    """The table's recipe with ``search.tifa_prompts`` = ``prompts``, written into ``folder``: the searches then pay
    for scoring that many prompts and read the alignment of the first ``prompts`` of the table's (the replay
    executor's prefix read, ``GroundTruth.run_at``); the truth stays the table's, on all its prompts."""
    import yaml

    if prompts < 2:
        raise UserError(
            "must be at least 2 (a standard error needs 2 prompts)", field="--tifa-prompts", value=str(prompts)
        )
    source = gt.meta_path("recipe")
    if source is None:
        raise UserError("the table names no recipe to change the prompt count of", field="--tifa-prompts")
    data = yaml.safe_load(Path(source).read_text())
    data.setdefault("search", {})["tifa_prompts"] = prompts
    data["deepspeed"] = str((Path(source).parent / data.get("deepspeed", "deepspeed/cpu.json")).resolve())
    out = folder / f"recipe-p{prompts}.yaml"
    out.write_text(yaml.safe_dump(data, sort_keys=False))
    return out


def truth_flops(bench: Bench, truth_at: str) -> dict[str, float] | None:
    """design id -> the training FLOPs a design's truth is read at: the search's last rung (``top-rung``: the
    horizon every method trains to), or None for each run's last checkpoint (``last``)."""
    if truth_at == "last":
        return None
    return {bench.table.design(m).id: top_flops(bench, m) for m in bench.members}


def top_flops(bench: Bench, m) -> float:  # noqa: ANN001
    """Training FLOPs of member ``m`` at the plan's last rung (its steps there x batch x FLOPs per sample)."""
    per = cost(m).train_flops_per_sample
    return bench.plan.steps_at(bench.top, per) * bench.plan.batch_size * per


def floor(bench: Bench, scorers: dict[int, Scorer], noise: bool = False) -> float:
    """Mean relative regret (over the scorers' seeds) of the front of ALL members measured at the last rung: what
    exhausting the space at the full horizon answers (selection noise only)."""
    out = []
    for s, scorer in scorers.items():
        t = Trace("all", s)
        for m in bench.members:
            v = bench.table.at(m, top_flops(bench, m), s, bench.recipe.search.tifa_prompts)  # as the searches read
            t.done(0.0, bench.table.design(m).id, (v["alignment"], cost(m).gmacs))
        out.append(scorer.regret(t.events[-1][1], noise))
    return statistics.fmean(out)


# -- the benchmark ------------------------------------------------------------------------------------------------


def auto_epsilon(floor_regret: float) -> float:
    """``EPSILON``, or twice the floor regret where that is larger (rounded up to 0.01): a threshold that
    exhausting the space at the full horizon reaches despite measurement noise, so reaching it is a fair ask."""
    return max(EPSILON, math.ceil(200 * floor_regret) / 100)


def _mean_se(xs) -> tuple[float, float]:  # noqa: ANN001
    xs = list(xs)
    return statistics.fmean(xs), (statistics.stdev(xs) / math.sqrt(len(xs)) if len(xs) > 1 else 0.0)


def evaluate(
    bench: Bench,
    seeds: list[int],
    eps: float | None,
    methods: tuple[str, ...] = tuple(METHODS),
    progress: bool = False,
    protocol: str = "same-run",
    tuning: bool = False,
    truth_at: str = "top-rung",
) -> dict[str, Any]:
    """Run every method at every seed and summarise (the ``--json`` output; see the module docstring).
    ``eps`` None: ``auto_epsilon`` of the primary regret's floor. ``protocol``: ``bench.replay_noise.PROTOCOLS``;
    the primary regret (epsilon, compute, ratios, curves) is the noise-aware one under ``held-out`` and the plain
    one under ``same-run`` (issue 9's figures); the other is reported beside it (``plain_*`` / ``noise_*``)."""
    runners = {m: method(m) for m in methods}  # a peer without its package fails here, before anything runs
    if protocol == "held-out":
        RN.check_held_out(bench.table, bench.members)
    RN.check_seeds(protocol, seeds, tuning)
    noise = protocol == "held-out"
    scorers = {s: Scorer(bench, protocol, s, truth_at) for s in seeds}
    floor_regret = floor(bench, scorers, noise)
    other_floor = floor(bench, scorers, not noise)
    eps = auto_epsilon(floor_regret) if eps is None else eps
    other_eps = auto_epsilon(other_floor)
    traces: dict[str, list[Trace]] = {m: [] for m in methods}
    wall: dict[str, float] = {}
    for m in methods:
        t0 = time.perf_counter()
        for s in seeds:
            traces[m].append(runners[m](bench, s))
        wall[m] = time.perf_counter() - t0
        if progress:
            print(f"{m}: {len(seeds)} seeds in {wall[m]:.1f} s", file=sys.stderr, flush=True)
    hi = max(t.spent for ts in traces.values() for t in ts)
    lo = min(f for ts in traces.values() for t in ts for f, _ in t.events if f > 0)
    grid = np.geomspace(lo, hi, GRID)
    other = "plain" if noise else "noise"
    rows: dict[str, Any] = {}
    for m, ts in traces.items():
        curves = np.array([curve(t, scorers[t.seed], grid, noise) for t in ts])
        reach = [compute_to(t, scorers[t.seed], eps, noise) for t in ts]
        reach_o = [compute_to(t, scorers[t.seed], other_eps, not noise) for t in ts]
        comp = [f for f, _ in reach]
        final_o = [scorers[t.seed].regret(t.events[-1][1], not noise) for t in ts]
        rows[m] = {
            "label": label(m),
            "reached": sum(ok for _, ok in reach),
            "compute_to_epsilon": comp,
            "compute_mean": statistics.fmean(comp),
            "compute_se": _mean_se(comp)[1],
            "final_regret_mean": float(curves[:, -1].mean()),
            "final_regret_se": float(curves[:, -1].std(ddof=1) / math.sqrt(len(ts))) if len(ts) > 1 else 0.0,
            f"{other}_reached": sum(ok for _, ok in reach_o),
            f"{other}_compute_to_epsilon": [f for f, _ in reach_o],
            f"{other}_final_regret_mean": _mean_se(final_o)[0],
            f"{other}_final_regret_se": _mean_se(final_o)[1],
            "spent_mean": statistics.fmean(t.spent for t in ts),
            "runs_mean": statistics.fmean(t.runs for t in ts),
            "answer_size_mean": statistics.fmean(len(t.events[-1][1]) for t in ts),
            "front_recall_mean": statistics.fmean(
                len(set(t.events[-1][1]) & set(scorers[t.seed].front)) / len(scorers[t.seed].front) for t in ts
            ),  # share of the (seed's) true front in the final answer
            "regret_mean": curves.mean(0).tolist(),
            "regret_se": (curves.std(0, ddof=1) / math.sqrt(len(ts))).tolist() if len(ts) > 1 else [0.0] * GRID,
            "wall_s": wall[m],
        }
    first = scorers[seeds[0]]
    out: dict[str, Any] = {
        "table": str(bench.table.path),
        "table_digest": bench.table.digest,
        "complete": bool(bench.table.table.meta.get("complete", True)),
        "designs": len(bench.members),
        "protocol": protocol,
        "regret": "noise-aware" if noise else "plain",
        "seeds": len(seeds),
        "seed_list": list(seeds),
        "tuning_seeds": [RN.TUNING_SEEDS.start, RN.TUNING_SEEDS.stop - 1],
        "tuning": tuning,  # True: a run on the tuning seeds, not a report
        "truth_at": truth_at,
        "seed_sd": RN.seed_sd(bench.table, list(first.truth)),
        "epsilon": eps,
        f"{other}_epsilon": other_eps,
        "epsilon_hv": eps * first.best,
        "true_hv": first.best,
        "reference_point": {"alignment": first.ref[0], "gmacs": first.ref[1]},
        "true_front": first.front,  # at the first seed (under held-out each seed has its own)
        "true_front_sizes": sorted({len(sc.front) for sc in scorers.values()}),
        "budget": bench.budget,
        "tifa_prompts": bench.recipe.search.tifa_prompts,  # alignment prompts each search scores (and pays for)
        "caption_encoding": "excluded for every method (the study's one-off text charge)",
        "rungs": bench.plan.rungs,
        "eta": bench.plan.eta,
        "floor_regret": floor_regret,
        f"{other}_floor_regret": other_floor,
        "grid": grid.tolist(),
        "methods": rows,
        "compute_to_epsilon": {
            m: {"mean": r["compute_mean"], "se": r["compute_se"], "reached": r["reached"]} for m, r in rows.items()
        },
    }
    if "unetnas" in rows:
        ours = rows["unetnas"]["compute_to_epsilon"]
        for b in rows:
            if b == "unetnas":
                continue
            r, lo_, hi_ = ratio_ci(rows[b]["compute_to_epsilon"], ours)
            out[f"ratio_vs_{b}"] = r
            out[f"ratio_vs_{b}_ci"] = [lo_, hi_]
            # a baseline that missed epsilon at some seed was counted at what it spent: the ratio is then a
            # lower bound; where unetnas missed it, an upper bound (both flagged)
            out[f"ratio_vs_{b}_bound"] = bound_of(rows[b]["reached"], rows["unetnas"]["reached"], len(seeds))
        if all(b in rows for b in BASELINES):
            out["goal_met"] = bool(
                out["ratio_vs_random"] >= 5 and all(out[f"ratio_vs_{b}"] > 1 for b in rows if b != "unetnas")
            )
    return out


def markdown(res: dict[str, Any]) -> str:
    """The efficiency table (one row per method) as BENCHMARKS.md shows it: the primary regret (noise-aware under
    the held-out protocol) first, the other beside it."""
    n = res["seeds"]
    other = "plain" if res.get("regret", "plain") == "noise-aware" else "noise"  # key prefix of the other regret
    kind = res.get("regret", "plain")
    other_kind = {"noise": "noise-aware"}.get(other, other)
    lines = [
        f"| method | reached {kind} eps ({res['epsilon']:g}) | compute to eps, FLOPs (mean +- SE) | ratio to unetnas "
        f"[95% CI] | final {kind} regret | final {other_kind} regret | {other_kind} eps "
        f"({res.get(f'{other}_epsilon', 0):g}) "
        "reached | true front found | FLOPs spent | runs |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for m, r in res["methods"].items():
        ratio = "1 (reference)" if m == "unetnas" else "-"
        if f"ratio_vs_{m}" in res:
            lo, hi = res[f"ratio_vs_{m}_ci"]
            sign = bound_sign(res[f"ratio_vs_{m}_bound"])
            ratio = f"{sign}{res[f'ratio_vs_{m}']:.2f}x [{lo:.2f}, {hi:.2f}]"
        bound = "" if r["reached"] == n else " (>=)"
        lines.append(
            f"| {r['label']} | {r['reached']}/{n} | {r['compute_mean']:.3g} +- {r['compute_se']:.2g}{bound} "
            f"| {ratio} | {r['final_regret_mean']:.3f} +- {r['final_regret_se']:.3f} "
            f"| {r[f'{other}_final_regret_mean']:.3f} +- {r[f'{other}_final_regret_se']:.3f} "
            f"| {r[f'{other}_reached']}/{n} | {r['front_recall_mean']:.0%} | {r['spent_mean']:.3g} | {r['runs_mean']:.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = Parser(prog="python -m bench search-efficiency", description=__doc__.splitlines()[0])
    ap.add_argument("--table", default=str(DEFAULT_TABLE))
    ap.add_argument("--space", default=None, help="space file (default: the table's)")
    ap.add_argument("--seeds", type=int, default=20, help="how many search seeds (consecutive, from --first-seed)")
    ap.add_argument(
        "--first-seed",
        type=int,
        default=None,
        help=f"first search seed (default {RN.REPORT_FIRST_SEED} under held-out, whose reports never use the "
        f"tuning seeds {RN.TUNING_SEEDS.start}..{RN.TUNING_SEEDS.stop - 1}; 0 under same-run, issue 9's figures)",
    )
    ap.add_argument(
        "--protocol",
        choices=RN.PROTOCOLS,
        default="held-out",
        help="held-out: the search measures one seed of each design, the truth is the other seeds' mean "
        "(needs >= 2 seeds per design); same-run: the truth includes the run measured (issue 9)",
    )
    ap.add_argument(
        "--epsilon",
        type=float,
        default=None,
        help="relative regret threshold, a share of the true HV (default: 0.05, or twice the floor regret "
        "where that is larger)",
    )
    ap.add_argument("--budget", type=float, default=None, help="FLOPs per search (default: exhaust the space)")
    ap.add_argument(
        "--methods",
        default=",".join(METHODS),
        help=f"comma-separated, or 'all' (adds the peers: {', '.join(PEERS)}; they need scripts/setup_peers.sh)",
    )
    ap.add_argument("--plot", default=None, help="write the anytime plot here (.png via Chromium, or .html)")
    ap.add_argument(
        "--partial",
        action="store_true",
        help="a table still being written: use its designs with runs (and the widths they cover)",
    )
    ap.add_argument(
        "--truth-at",
        choices=TRUTH_AT,
        default="top-rung",
        help="where a design's true alignment is read: at the search's last rung (the horizon every method trains "
        "to; default) or at the table's last checkpoint",
    )
    ap.add_argument(
        "--tifa-prompts",
        type=int,
        default=None,
        help="alignment prompts each search scores (default: the table's recipe's); fewer than the table scored "
        "read a prefix of its prompts and cost less; the truth keeps all of them",
    )
    ap.add_argument(
        "--tuning",
        action="store_true",
        help=f"tune the scheduler: seeds from 0 (only {RN.TUNING_SEEDS.start}..{RN.TUNING_SEEDS.stop - 1}), output "
        "labelled as tuning, never a report",
    )
    ap.add_argument("--json", action="store_true", help="print the summary as JSON instead of the table")
    ap.add_argument("--out", default=None, help="also write the whole result (curves included) as JSON here")
    args = ap.parse_args(argv)
    try:
        res = run(args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.plot:
        from bench.efficiency_plot import write

        write(res, Path(args.plot))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(res, indent=1))
    if args.json:
        print(
            json.dumps(
                {k: v for k, v in res.items() if k != "grid"}
                | {
                    "methods": {
                        m: {k: v for k, v in r.items() if k not in ("regret_mean", "regret_se")}
                        for m, r in res["methods"].items()
                    }
                }
            )
        )
        return 0
    m = res["machine"]
    if res["tuning"]:
        print("TUNING run (seeds the scheduler is tuned on): not a report")
    print(
        f"command: python -m bench search-efficiency {' '.join(argv or [])}; {res['wall_s']:.0f} s on "
        f"{m['cpus']} CPUs ({m['platform']}, Python {m['python']}, Optuna {m['optuna']}), {res['date']}"
    )
    print(
        f"{res['designs']} designs, seeds {res['seed_list'][0]}..{res['seed_list'][-1]}, table {res['table']} "
        f"({'complete' if res['complete'] else 'PARTIAL'}); truth at {res['truth_at']}; protocol {res['protocol']} ({res['regret']} regret first; "
        f"seed sd of one run's alignment {res['seed_sd']:.3f}); true front {res['true_front']} (sizes over seeds "
        f"{res['true_front_sizes']}), HV {res['true_hv']:.4g}; epsilon {res['epsilon']:g} of it; regret floor (all "
        f"members measured at the last rung) {res['floor_regret']:.3f}; caption encoding {res['caption_encoding']}; "
        f"{res['tifa_prompts']} alignment prompts per scoring"
    )
    print(markdown(res))
    if "goal_met" in res:
        print(f"goal (>= 5x vs random, > 1x vs every baseline): {'met' if res['goal_met'] else 'NOT met'}")
    return 0


def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.seeds < 1:
        raise UserError("must be at least 1", field="--seeds", value=str(args.seeds))
    if args.epsilon is not None and not 0 < args.epsilon < 1:
        raise UserError(
            "must lie in (0, 1): a share of the true hypervolume", field="--epsilon", value=str(args.epsilon)
        )
    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    if methods == ("all",):
        methods = (*METHODS, *PEERS)
    if not methods or any(m not in METHODS and m not in PEERS for m in methods):
        raise UserError(
            f"must list some of {', '.join((*METHODS, *PEERS))} (or all)", field="--methods", value=args.methods
        )
    for m in methods:
        method(m)  # a peer whose package is missing: one line now, before anything runs
    first = args.first_seed
    if first is None:
        first = RN.REPORT_FIRST_SEED if args.protocol == "held-out" and not args.tuning else 0
    seeds = list(range(first, first + args.seeds))
    RN.check_seeds(args.protocol, seeds, args.tuning)
    if args.budget is not None and not args.budget > 0:
        raise UserError("must be a positive number of FLOPs", field="--budget", value=str(args.budget))
    if args.plot:
        from bench.efficiency_plot import check

        check(Path(args.plot))
    with tempfile.TemporaryDirectory() as tmp:
        table, space = Path(args.table), Path(args.space) if args.space else None
        try:
            raw = json.loads(table.read_text())
        except (OSError, ValueError):
            raw = None  # GroundTruth.load says what is wrong, in one line
        if raw is not None and not raw.get("meta", {}).get("complete", True):
            if not args.partial:
                have = len({r["design"] for r in raw.get("runs", [])})
                raise UserError(
                    f"is still being written ({have} of {len(raw.get('designs', []))} designs have runs); "
                    "pass --partial to benchmark its finished part",
                    field="--table",
                    value=str(table),
                )
            table, space = partial(raw, Path(tmp), space, min_runs=2 if args.protocol == "held-out" else 1)
        gt = GroundTruth.load(table)
        recipe = None if args.tifa_prompts is None else with_prompts(gt, args.tifa_prompts, Path(tmp))
        bench = make_bench(gt, space, args.budget, recipe)
        t0 = time.perf_counter()
        res = evaluate(
            bench,
            seeds,
            args.epsilon,
            methods,
            progress=not args.json,
            protocol=args.protocol,
            tuning=args.tuning,
            truth_at=args.truth_at,
        )
    return res | {
        "table": str(args.table),
        "wall_s": time.perf_counter() - t0,
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def machine() -> dict[str, Any]:
    import os
    import platform

    import optuna

    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "optuna": optuna.__version__,
        "cpus": os.cpu_count(),
        "load_avg_1min": round(os.getloadavg()[0], 2),
    }


def partial(raw: dict[str, Any], tmp: Path, space: Path | None, min_runs: int = 1) -> tuple[Path, Path]:
    """A complete table of the designs with at least ``min_runs`` finished runs (2 under the held-out protocol)
    and a space of the base widths whose members all have them; the text-blind control is kept."""
    import yaml

    from unetnas.io import load_space
    from unetnas.search.plan import members
    from unetnas.search.study import design_key

    runs = Counter(r["design"] for r in raw["runs"])
    ran = {d["id"] for d in raw["designs"] if runs[d["id"]] >= min_runs or (d["text_blind"] and runs[d["id"]])}
    raw = {
        **raw,
        "designs": [d for d in raw["designs"] if d["id"] in ran],
        "runs": [r for r in raw["runs"] if r["design"] in ran],
        "partial_runs": [],
    }
    covered = {design_key(d["spec"]) for d in raw["designs"]}
    sp = load_space(space or ROOT / raw["meta"]["space"])
    widths = [
        c for c in sp.base_channels if all(design_key(m) in covered for m in members(sp, 10**9) if m.base_channels == c)
    ]
    if not widths:
        rule = f"has no base width whose members all have {min_runs} runs yet"
        raise UserError(rule, field="--table", value="--partial")
    (tmp / "table.json").write_text(json.dumps(raw))
    (tmp / "space.yaml").write_text(
        yaml.safe_dump(sp.model_copy(update={"base_channels": widths}).model_dump(mode="json"))
    )
    print(
        f"warning: partial table: {len(ran)} designs with >= {min_runs} runs; benchmarking base widths {widths}",
        file=sys.stderr,
    )
    return tmp / "table.json", tmp / "space.yaml"


if __name__ == "__main__":
    raise SystemExit(main())
