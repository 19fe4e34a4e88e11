"""The searches compared by `python -m bench search-efficiency`, all replayed on one ground-truth table.

Every method reads the same table through the same ``ReplayExecutor`` (``unetnas.search.replay``) with the same
seed, so a design's noise realisation (which of its runs is read) is common to all methods at a seed, and pays the
same FLOPs for the same work: training = optimizer steps x batch x the spec's training FLOPs per sample
(``unetnas.cost``), evaluation = the plan's validation loss at every rung plus TIFA-style scoring at the recipe's
``tifa_rungs`` (and the TIFA prompts' encoding once). Rungs are the plan's (``unetnas.search.plan``): the same
training FLOPs per rung for every method. The one-off caption encoding of a real search (the ledger's ``text``
kind) is the same for every method and is left out of ``Trace.events``' compute.

What each method answers at any moment is decided by one rule for all: the designs that are non-dominated by their
MEASURED values (alignment up, GMACs down) at the last rung, among those the method trained to the last rung.

Methods (``METHODS``):

- ``unetnas``: ``replay_search`` as shipped: asynchronous Hyperband brackets, noise-aware MO-ASHA promotion, TPE
  proposals from per-rung models.
- ``random`` / ``tpe``: the same runner with every bracket starting at the last rung (``cycle=(top,)``): each
  candidate trained straight to the full horizon; proposals by Optuna's RandomSampler / by the same TPE (no design
  twice in either).
- ``topk``: "train everyone briefly, keep the top-k, train those fully" (Egele et al. 2023, arXiv 2307.15422):
  every member of the space to rung 0, ranked there by ``promotion.rank`` (noise-aware non-dominated fronts, then
  hypervolume contribution), then trained to the last rung in that order. The trace after the j-th full training
  is top-k with k = j, so the anytime curve is top-k with the best k for each compute level (an oracle k).
- ``hyperband``: Optuna's ``HyperbandPruner`` (min resource 1 = rung 0, max resource eta^top, reduction factor eta)
  with the same TPE sampler on a single scalar: measured alignment (minus validation loss at rungs without TIFA)
  minus lambda x GMACs / max GMACs, lambda ~ U(0, ``LAMBDA_MAX``) drawn per seed. A design Optuna proposes again is
  answered from what it already has (training resumes from its last rung; nothing is paid twice).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import optuna

from unetnas.cost import cost
from unetnas.search import study as S
from unetnas.search.executor import Meter, RungJob
from unetnas.search.plan import Plan, members
from unetnas.search.promotion import pareto, rank
from unetnas.search.replay import GroundTruth, ReplayExecutor, replay_search
from unetnas.search.session import SearchConfig, prepare
from unetnas.space import SearchSpace
from unetnas.spec import UNetSpec
from unetnas.train.recipe import Recipe

OBJECTIVES = ("alignment", "gmacs")
LAMBDA_MAX = 0.1  # hyperband's scalarisation: up to 0.1 alignment traded for the space's whole GMACs range
MAX_FREE_TRIALS = 100  # hyperband stops after this many proposals in a row that cost nothing (all seen before)


@dataclass
class Bench:
    """The table, space, recipe and plan every method shares, and the budget (FLOPs) each may spend."""

    table: GroundTruth
    space: SearchSpace
    recipe: Recipe
    plan: Plan
    members: list[UNetSpec]
    budget: float
    space_path: Path | None = None
    recipe_path: Path | None = None  # None: the table's recipe

    @property
    def top(self) -> int:
        return len(self.plan.rungs) - 1


def make_bench(
    table: GroundTruth, space: Path | None = None, budget: float | None = None, recipe: Path | None = None
) -> Bench:
    """Everything the methods share. ``budget`` (FLOPs) defaults to one that trains every member of the space
    straight to the last rung with 10% to spare (random search can then exhaust the space); ``recipe``: the
    table's by default (another prompt count: ``search_efficiency.with_prompts``)."""
    p = prepare(SearchConfig(budget=1e30, space=space, recipe=recipe, replay=table.path), table=table)
    ms = members(p.space, 10**9)
    if budget is None:
        ex = ReplayExecutor(table, p.recipe, p.recipe.search)
        full = math.fsum(
            _train_flops(p.plan, m, p.plan.steps_at(len(p.plan.rungs) - 1, cost(m).train_flops_per_sample))
            + ex.eval_flops(_job(p.plan, m, len(p.plan.rungs) - 1, 0, 0))
            for m in ms
        )
        budget = float(f"{1.1 * (full + math.fsum(p.plan.once_flops.values())) / (1 - 0.05):.3g}")
    return Bench(table, p.space, p.recipe, p.plan, ms, budget, space, recipe)


@dataclass
class Trace:
    """One method's search at one seed: ``events`` = (compute spent so far in FLOPs, training + evaluation; the
    design ids it answers then), one per finished run; ``measured`` = design id -> its last-rung (alignment,
    GMACs) as the method measured it."""

    method: str
    seed: int
    events: list[tuple[float, tuple[str, ...]]] = field(default_factory=lambda: [(0.0, ())])
    measured: dict[str, tuple[float, float]] = field(default_factory=dict)
    runs: int = 0

    def done(self, spent: float, design: str | None = None, values: tuple[float, float] | None = None) -> None:
        """A run finished with ``spent`` FLOPs in all; ``design`` reached the last rung with ``values``."""
        self.runs += 1
        if design is not None and values is not None:
            self.measured[design] = values
        ids = list(self.measured)
        front = tuple(sorted(ids[i] for i in pareto([(-self.measured[d][0], self.measured[d][1]) for d in ids])))
        self.events.append((spent, front))

    @property
    def spent(self) -> float:
        return self.events[-1][0]


def _train_flops(plan: Plan, spec: UNetSpec, steps: int) -> float:
    return steps * plan.batch_size * cost(spec).train_flops_per_sample


def _job(plan: Plan, spec: UNetSpec, rung: int, prev_steps: int, number: int, seed: int = 0) -> RungJob:
    target = max(plan.steps_at(rung, cost(spec).train_flops_per_sample), prev_steps + 1, 1)
    return RungJob(number, spec, rung, target, prev_steps, rung in plan.tifa_rungs, seed=seed * 100_003 + number)


def _measure(record: dict) -> tuple[float, float]:
    a, g = S.objective_values(record, OBJECTIVES)
    return float(a), float(g)


# -- methods run by the search itself ---------------------------------------------------------------------------


def run_search(bench: Bench, seed: int, *, sampler: str, cycle: tuple[int, ...] | None, name: str) -> Trace:
    """``replay_search`` with ``sampler`` and bracket ``cycle``; the trace follows its ledger run by run."""
    trace = Trace(name, seed)

    def on_done(search, job, outcome) -> None:  # noqa: ANN001
        if outcome.status != "done":  # closed for budget before it began: nothing ran
            return
        kinds = search.ledger.summary()["by_kind"]
        spent = kinds.get("train", 0.0) + kinds.get("eval", 0.0)
        if job.rung == bench.top:
            spec = S.spec_of(search.store.get(job.trial_id))
            trace.done(spent, bench.table.design(spec).id, _measure(outcome.record))
        else:
            trace.done(spent)

    replay_search(
        bench.table,
        bench.budget,
        sampler=sampler,
        seed=seed,
        space=bench.space_path,
        recipe=bench.recipe_path,
        cycle=cycle,
        study=f"{name}-{seed}",
        on_done=on_done,
    )
    return trace


def unetnas(bench: Bench, seed: int) -> Trace:
    return run_search(bench, seed, sampler="tpe", cycle=None, name="unetnas")


def random_search(bench: Bench, seed: int) -> Trace:
    return run_search(bench, seed, sampler="random", cycle=(bench.top,), name="random")


def tpe(bench: Bench, seed: int) -> Trace:
    return run_search(bench, seed, sampler="tpe", cycle=(bench.top,), name="tpe")


# -- methods driven here, on the same executor -------------------------------------------------------------------


class Runner:
    """Runs rungs of designs on a ``ReplayExecutor`` within the budget, remembering each design's progress."""

    def __init__(self, bench: Bench, seed: int, trace: Trace) -> None:
        self.bench, self.seed, self.trace = bench, seed, trace
        self.ex = ReplayExecutor(bench.table, bench.recipe, bench.recipe.search, seed=seed)
        self.spent = 0.0
        self.steps: dict[str, int] = {}  # design id -> optimizer steps trained
        self.records: dict[str, dict[int, dict]] = {}  # design id -> rung -> record
        # what a search's ledger leaves for runs: the budget less the study's one-off caption encoding (the TIFA
        # prompts' encoding is charged with the first scoring, as in a search)
        self.budget = bench.budget - bench.plan.once_flops.get("captions", 0.0)

    def rung(self, spec: UNetSpec, k: int) -> dict | None:
        """The design's record at rung ``k`` (run now if it has none); None when the budget cannot pay for it."""
        d = self.bench.table.design(spec).id
        if k in self.records.get(d, {}):
            return self.records[d][k]
        prev = self.steps.get(d, 0)
        job = _job(self.bench.plan, spec, k, prev, len(self.steps), self.seed)
        price = _train_flops(self.bench.plan, spec, job.target_steps - prev) + self.ex.eval_flops(job)
        if self.spent + price > self.budget:
            return None
        meter = Meter()
        record = self.ex.run(job, meter, lambda: False).record
        self.spent += meter.train_flops + meter.eval_flops
        self.steps[d] = job.target_steps
        self.records.setdefault(d, {})[k] = record
        top = k == self.bench.top
        self.trace.done(self.spent, d if top else None, _measure(record) if top else None)
        return record


def top_k(bench: Bench, seed: int) -> Trace:
    """Every member at rung 0, then the last rung in rank order of rung 0 (see the module docstring)."""
    trace = Trace("topk", seed)
    run = Runner(bench, seed, trace)
    order = np.random.default_rng(seed).permutation(len(bench.members))  # rung-0 order (no answer before the end)
    firsts = []
    for i in order:
        rec = run.rung(bench.members[i], 0)
        if rec is None:
            return trace
        firsts.append((bench.members[i], rec))
    points = [S.to_minimise(S.objective_values(r, OBJECTIVES), OBJECTIVES) for _, r in firsts]
    ses = [S.objective_se(r, OBJECTIVES) for _, r in firsts]
    for i in rank(points, ses, keys=[bench.table.design(m).id for m, _ in firsts]):
        if run.rung(firsts[i][0], bench.top) is None:
            break
    return trace


def scalariser(bench: Bench, seed: int, lambda_max: float = LAMBDA_MAX) -> Callable[[dict], float]:
    """The single objective (to maximise) of the scalarised methods at ``seed``: measured alignment (minus validation
    loss at rungs without TIFA) - lambda x GMACs / the space's max GMACs, lambda ~ U(0, ``lambda_max``) drawn from
    the seed (the same lambda for every scalarised method at a seed)."""
    lam = float(np.random.default_rng([seed, 7]).uniform(0, lambda_max))
    gmax = max(cost(m).gmacs for m in bench.members)

    def scalar(record: dict) -> float:
        a, g = _measure(record)
        return a - lam * g / gmax

    return scalar


def hyperband(bench: Bench, seed: int, lambda_max: float = LAMBDA_MAX) -> Trace:
    """Optuna's HyperbandPruner and TPE on a scalarised objective (see the module docstring)."""
    trace = Trace("hyperband", seed)
    run = Runner(bench, seed, trace)
    eta, top = bench.plan.eta, bench.top
    scalar = scalariser(bench, seed, lambda_max)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="maximize",
        sampler=S.make_sampler("tpe", seed),
        pruner=optuna.pruners.HyperbandPruner(min_resource=1, max_resource=eta**top, reduction_factor=eta),
        study_name=f"hyperband-{seed}",
    )
    free, whole = 0, {bench.table.design(m).id for m in bench.members}
    while free < MAX_FREE_TRIALS and not whole <= set(trace.measured):
        before = run.spent
        trial = study.ask()
        spec = bench.space.suggest(trial)
        if bench.space.feasible(spec) is not None:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            free += 1
            continue
        for k in range(top + 1):
            rec = run.rung(spec, k)
            if rec is None:  # out of budget
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
                return trace
            trial.report(scalar(rec), step=eta**k)
            if k < top and trial.should_prune():
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                break
        else:
            study.tell(trial, scalar(rec))
        free = free + 1 if run.spent == before else 0
    return trace


METHODS: dict[str, Callable[[Bench, int], Trace]] = {
    "unetnas": unetnas,
    "random": random_search,
    "tpe": tpe,
    "topk": top_k,
    "hyperband": hyperband,
}
