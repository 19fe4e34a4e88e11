"""A replay that can be fooled: the search measures one held-out seed of each design, the truth is the others' mean.

Protocols (``--protocol`` of ``python -m bench search-efficiency``):

- ``held-out`` (default): at search seed s, a design's measurements (every rung) come from ONE of its runs, the
  run ``GroundTruth.run_for(spec, s)`` picks by hashing (s, design) - exactly what ``ReplayExecutor`` reads; the
  design's TRUE alignment is the mean of its OTHER runs at the search's last rung (``--truth-at top-rung``, the
  default: the horizon the search trains to, interpolated as the replay reads it) or at the table's last
  checkpoint (``--truth-at last``). A search is scored against values
  it never saw, so measurement noise can fool it (as it would on real training). Needs >= 2 runs for every member;
  a table without them is refused with one line (``check_held_out``).
- ``same-run``: issue 9's replay: the truth is the mean over ALL runs, including the one the search reads (for a
  single-seed design the measurements ARE the truth; it cannot be fooled). Kept to reproduce v1's figures.

Noise-aware regret. The truth of design d is the mean of n_d runs, so it is known to within
SE_d = s_seed / sqrt(n_d), where s_seed is the table's pooled within-design sd of one run's final alignment
(pooled variance over designs with >= 2 runs, ddof 1; ``seed_sd``). An answered design d counts as ON the front
when the front's best true alignment at d's cost or less, a_f (design f), exceeds a_d by at most
``NOISE_Z`` x sqrt(SE_d^2 + SE_f^2) (2 SE of the difference): it is then credited with a_f at its own GMACs.
Otherwise it keeps its true alignment. Noise-aware regret = relative HV regret of the credited answer
(``bench.search_efficiency.Scorer``); it is <= the plain regret, and 0 when every front design is matched within
noise. Plain regret is reported beside it.

Seeds. Seeds 0..19 (``TUNING_SEEDS``) are the ones the scheduler's settings were tuned on (issue 9's
benchmark, whose figures BENCHMARKS.md shows); the held-out protocol reports seeds from ``REPORT_FIRST_SEED`` = 100
on and refuses any seed in 0..19, so tuning and reporting never share a seed.
"""

from __future__ import annotations

import math
import statistics

from unetnas.errors import UserError
from unetnas.search.replay import GroundTruth
from unetnas.spec import UNetSpec

PROTOCOLS = ("held-out", "same-run")
NOISE_Z = 2.0  # an answer within this many SE of the difference from the front counts as on it
TUNING_SEEDS = range(0, 20)  # seeds the scheduler was tuned on (issue 9): never reported under held-out
REPORT_FIRST_SEED = 100  # held-out reporting seeds start here


def final_alignments(gt: GroundTruth, design_id: str, at: float | None = None) -> list[float]:
    """Each of the design's runs' alignment, in seed order: at its last checkpoint, or (``at``, training FLOPs)
    interpolated there as the replay reads a rung (``GroundTruth.run_at``). Refuses a missing one."""
    out = []
    for r in gt.runs[design_id]:
        a = r.checkpoints[-1].alignment if at is None else gt.run_at(r, at, design_id)["alignment"]
        if a is None:
            raise UserError(
                f"design {design_id} has no alignment at {'its last checkpoint' if at is None else f'{at:.3g} FLOPs'}"
                f" (seed {r.seed})",
                field="--table",
                value=str(gt.path),
            )
        out.append(a)
    return out


def seed_sd(gt: GroundTruth, design_ids: list[str], at: dict[str, float] | None = None) -> float:
    """Pooled within-design sd of one run's final alignment over designs with >= 2 runs (0.0 if none has two);
    ``at``: design id -> training FLOPs the truth is read at (None: the last checkpoint)."""
    ss, dof = 0.0, 0
    for d in design_ids:
        a = final_alignments(gt, d, None if at is None else at[d])
        if len(a) >= 2:
            ss += statistics.variance(a) * (len(a) - 1)
            dof += len(a) - 1
    return math.sqrt(ss / dof) if dof else 0.0


def check_held_out(gt: GroundTruth, members: list[UNetSpec]) -> None:
    """Every member has >= 2 runs, else one ``UserError`` line saying how many do."""
    ids = [gt.design(m).id for m in members]
    two = sum(len(gt.runs.get(d, [])) >= 2 for d in ids)
    if two < len(ids):
        raise UserError(
            f"the held-out replay needs >= 2 seeds for every design; {two} of {len(ids)} have them "
            "(pass --protocol same-run for the single-seed replay of issue 9)",
            source=gt.path,
            field="--protocol",
            value="held-out",
        )


def check_seeds(protocol: str, seeds: list[int], tuning: bool = False) -> None:
    """Held-out reporting never uses a tuning seed; ``tuning`` (a run that tunes the scheduler, labelled so in
    its output) uses only tuning seeds."""
    if tuning:
        if any(s not in TUNING_SEEDS for s in seeds):
            last = TUNING_SEEDS.stop - 1
            field, value = ("--first-seed", seeds[0]) if seeds[0] not in TUNING_SEEDS else ("--seeds", len(seeds))
            raise UserError(
                f"--tuning runs only the tuning seeds {TUNING_SEEDS.start}..{last} (asked for {seeds[0]}..{seeds[-1]})",
                field=field,
                value=str(value),
            )
        return
    if protocol == "held-out" and any(s in TUNING_SEEDS for s in seeds):
        raise UserError(
            f"seeds {TUNING_SEEDS.start}..{TUNING_SEEDS.stop - 1} tuned the scheduler; report on seeds from "
            f"{REPORT_FIRST_SEED} on (the default)",
            field="--first-seed",
            value=str(seeds[0]),
        )


def truth(
    gt: GroundTruth, members: list[UNetSpec], protocol: str, seed: int, at: dict[str, float] | None = None
) -> dict[str, tuple[float, int]]:
    """design id -> (true final alignment, number of runs it averages) under ``protocol`` at search seed ``seed``;
    ``at``: design id -> training FLOPs the truth is read at (None: each run's last checkpoint)."""
    out = {}
    for m in members:
        d = gt.design(m).id
        finals = final_alignments(gt, d, None if at is None else at[d])
        if protocol == "held-out":
            held = gt.run_for(m, seed)
            finals = [a for a, r in zip(finals, gt.runs[d]) if r is not held]
        out[d] = (statistics.fmean(finals), len(finals))
    return out


def credited(
    ids: tuple[str, ...], truth_: dict[str, tuple[float, float]], se: dict[str, float], z: float = NOISE_Z
) -> dict[str, tuple[float, float]]:
    """The answer's (alignment, GMACs) points with every design within ``z`` SE of the front credited with the
    front's alignment at its cost (see the module docstring). ``truth_``: id -> (true alignment, GMACs)."""
    out = {}
    for d in ids:
        a, g = truth_[d]
        f = max((e for e, (_, ge) in truth_.items() if ge <= g), key=lambda e: truth_[e][0])
        af = truth_[f][0]
        out[d] = (af if af - a <= z * math.hypot(se[d], se[f]) else a, g)
    return out
