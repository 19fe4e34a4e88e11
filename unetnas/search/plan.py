"""The search plan: Hyperband brackets of successive halving over rungs of training FLOPs or training samples.

Rungs come from the recipe and the space, never from the budget, in the recipe's ``horizon_unit``. Unit
``flops`` (the isoFLOP view): rung k gives every candidate the same training FLOPs ``r_k = r_0 x eta^k``
(k < ``max_rungs``), where ``r_0`` is ``min_steps`` optimizer steps of the recipe's batch for the space's typical
member (mean training FLOPs per sample) and at least 1.5x the recipe's warm-up FLOPs. Unit ``samples`` (Li et
al.: equal steps x batch): rung k gives every candidate the same training samples ``r_k = r_0 x eta^k``, ``r_0`` =
``min_steps`` batches and at least 1.5x the warm-up samples; a candidate's rung then costs ``r_k x`` its own
training FLOPs per sample (``Plan.horizon_flops``). The budget is in FLOPs either way: the bracket layout prices
rungs at the space's mean member, and the ledger charges what each candidate ran. The last rung is the longest
horizon any candidate gets. The budget buys candidates: brackets are laid out in
Hyperband's order (Li et al., JMLR 2018, Alg. 1) until the budget is spent. Bracket ``b`` starts
``n_b = ceil(K / (K - b) x eta^(K-1-b))`` candidates at rung ``b`` and keeps ``floor(n_b / eta^i)`` of them at rung
``b + i`` (successive halving), so every full bracket costs about the same. The first bracket takes the enqueued
presets on top; when a full bracket no longer fits, the largest part of it that does is taken (its last rungs may
be empty: those candidates inform the sampler only). Twice the budget buys about twice the brackets and
candidates at the same horizons.

FLOPs counted (all charged by the search's ledger, kinds in brackets): training (``train``), evaluation at every
rung: validation loss, and TIFA-style scoring where named: DDIM sampling with classifier-free guidance, the
pixel-reading answerer (``eval``); once per study, encoding the built-in world's training and validation captions,
and once per worker, the TIFA prompts (``text``; prepared data sets were encoded by ``unetnas data prepare``,
outside any search). The estimates use the space's mean member; the scheduler re-checks what is left before it
starts each candidate.
"""

from __future__ import annotations

import functools
import math
import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from unetnas.cost import cost
from unetnas.errors import UserError
from unetnas.search.budget import format_flops
from unetnas.space import SearchSpace
from unetnas.spec import UNetSpec
from unetnas.train.recipe import Recipe, SearchSettings, horizon_steps

# Share of the budget the plan leaves unallocated: members' evaluation costs differ from the mean member's, and
# the ledger refuses (rather than overspends) work that does not fit. Whatever is left when the plan is done is
# offered to one more bracket (see Scheduler.extend), so it is not lost.
MARGIN = 0.05
WORLD_VAL_CAPTIONS = 512  # the built-in world's validation scenes (unetnas.train.source.WorldSource)
SAMPLE_MEMBERS = 400  # members averaged for the typical cost (all of them in smaller spaces)


@dataclass(frozen=True)
class Bracket:
    """Successive halving from rung ``start``: ``counts[i]`` candidates run rung ``start + i``."""

    start: int
    counts: tuple[int, ...]

    @property
    def last(self) -> int:
        return self.start + len(self.counts) - 1

    def count_at(self, rung: int) -> int:
        i = rung - self.start
        return self.counts[i] if 0 <= i < len(self.counts) else 0


def halving(n: int, start: int, top: int, eta: int) -> tuple[int, ...]:
    """Candidates per rung of a bracket of ``n`` starting at ``start``: floor(n / eta^i), empty rungs dropped."""
    counts = [n // eta**i for i in range(top - start + 1)]
    return tuple(c for c in counts if c > 0)


def hyperband_size(start: int, n_rungs: int, eta: int) -> int:
    """Hyperband's bracket size: ceil(K / (s + 1) x eta^s) with s = K - 1 - start (Li et al. 2018, Alg. 1)."""
    s = n_rungs - 1 - start
    return math.ceil(n_rungs / (s + 1) * eta**s)


@dataclass(frozen=True)
class Costs:
    """What one run of each rung costs a typical candidate, and the one-off costs (FLOPs)."""

    rungs: tuple[float, ...]  # cumulative training FLOPs per candidate at each rung
    eval: tuple[float, ...]  # evaluation FLOPs of one run at each rung
    once: dict[str, float] = field(default_factory=dict)  # one-off costs by name

    def run(self, rung: int, start: int) -> float:
        """Training increment plus evaluation of one candidate's run of ``rung`` in a bracket starting at ``start``."""
        before = self.rungs[rung - 1] if rung > start else 0.0
        return self.rungs[rung] - before + self.eval[rung]

    def bracket(self, b: Bracket) -> float:
        return math.fsum(n * self.run(b.start + i, b.start) for i, n in enumerate(b.counts))


def _fits(start: int, n: int, costs: Costs, eta: int, available: float) -> Bracket | None:
    """The bracket of ``n`` candidates from ``start`` that fits ``available``, cut after the last rung that fits
    (its last candidates then stop below the top rung); None if not even its first rung fits."""
    counts = halving(n, start, len(costs.rungs) - 1, eta)
    for j in range(len(counts), 0, -1):
        b = Bracket(start, counts[:j])
        if costs.bracket(b) <= available:
            return b
    return None


def layout(
    available: float,
    costs: Costs,
    eta: int,
    *,
    cycle: tuple[int, ...] | None = None,
    after: int = -1,
    extra: int = 0,
    limit: int | None = None,
) -> list[Bracket]:
    """Brackets in the ``cycle`` of types (bracket starts; default Hyperband's, every rung from 0) after type
    ``after`` until ``available`` FLOPs are spent: full brackets while the next one fits, then the one partial
    bracket (fewer candidates, or cut after a lower rung) that trains most candidates to the last rung and, among
    those, spends most of what is left. ``extra`` candidates join the first bracket (presets); at most ``limit``
    candidates in all (a study trains each design once: a space of N members takes N candidates)."""
    k = len(costs.rungs)
    cycle = tuple(range(k)) if cycle is None else cycle
    out: list[Bracket] = []
    left = math.inf if limit is None else limit
    pos = cycle.index(after) if after in cycle else -1
    while left > 0:
        pos = (pos + 1) % len(cycle)
        start = cycle[pos]
        n = hyperband_size(start, k, eta) + (0 if out else extra)
        b = Bracket(start, halving(n, start, k - 1, eta))
        if n > left or costs.bracket(b) > available:
            break
        out.append(b)
        available -= costs.bracket(b)
        left -= n
    top = (hyperband_size(t, k, eta) + (0 if out else extra) for t in cycle)
    tail = [
        b
        for t, most in zip(cycle, top)
        for n in range(1, int(min(most, left)) + 1)
        if (b := _fits(t, n, costs, eta, available)) is not None
    ]
    if tail:
        out.append(max(tail, key=lambda b: (b.count_at(k - 1), costs.bracket(b), b.last, -b.start)))
    return out


@dataclass(frozen=True)
class Plan:
    budget: float
    eta: int
    rungs: list[float]  # cumulative horizon per candidate at each rung, in ``unit`` (equal for every design)
    eval_flops: list[float]  # evaluation FLOPs of one run at each rung (typical member)
    once_flops: dict[str, float]  # one-off costs: caption and prompt encoding
    tifa_rungs: list[int]  # rung indices scored by the TIFA proxy (validation loss at every rung)
    brackets: list[Bracket]
    typical_train_per_sample: float  # mean member's training FLOPs per sample
    batch_size: int
    n_top: int
    cycle: list[int]  # bracket types (first rungs) the plan cycles through: Hyperband's is every rung from 0
    members: int | None = None  # feasible members of the space (its rules and constraints); None: plans before it
    space_size: int | None = None  # members of the space by its rules alone
    wanted: int | None = None  # candidates the budget would buy in a space without a member limit

    @property
    def shrunk(self) -> bool:
        """Whether the feasible space cut the plan: fewer candidates than the budget buys."""
        return self.wanted is not None and self.wanted > self.candidates

    @property
    def feasible_note(self) -> str:
        """One line: how many members are feasible and, when that cut the plan, to how many candidates."""
        if self.members is None:
            return ""
        line = f"{self.members} of the space's {self.space_size} members are feasible (rules and constraints)"
        if self.shrunk:
            line += f": the plan shrinks from the {self.wanted} candidates the budget buys to {self.candidates}"
        return line

    unit: str = "flops"  # horizon unit of ``rungs``: "flops" (training FLOPs) or "samples" (training samples)

    @property
    def costs(self) -> Costs:
        """What a run costs the space's mean member (the bracket layout prices rungs at it), in FLOPs."""
        typical = self.typical_train_per_sample
        rungs = self.rungs if self.unit == "flops" else [r * typical for r in self.rungs]
        return Costs(tuple(rungs), tuple(self.eval_flops), dict(self.once_flops))

    @property
    def max_horizon_flops(self) -> float:
        """Training FLOPs of the last rung: every candidate's (flops unit) or the mean member's (samples unit)."""
        return self.costs.rungs[-1]

    def target_flops(self, rung: int) -> float | None:
        """Training FLOPs every candidate reaches at ``rung`` (flops unit); None in the samples unit (per member)."""
        return self.rungs[rung] if self.unit == "flops" else None

    def horizon_flops(self, rung: int, train_flops_per_sample: float) -> float:
        """Training FLOPs a member of this per-sample cost spends to reach ``rung`` (whole steps, never more)."""
        return self.steps_at(rung, train_flops_per_sample) * self.batch_size * train_flops_per_sample

    @property
    def candidates(self) -> int:
        return sum(b.counts[0] for b in self.brackets)

    @property
    def top_candidates(self) -> int:
        """Candidates trained to the last rung: the Pareto set is computed over them."""
        return sum(b.count_at(len(self.rungs) - 1) for b in self.brackets)

    def runs_at(self, rung: int) -> int:
        return sum(b.count_at(rung) for b in self.brackets)

    @property
    def train_total(self) -> float:
        c = self.costs
        return math.fsum(
            n * (c.run(b.start + i, b.start) - c.eval[b.start + i])
            for b in self.brackets
            for i, n in enumerate(b.counts)
        )

    @property
    def eval_total(self) -> float:
        return math.fsum(n * self.eval_flops[b.start + i] for b in self.brackets for i, n in enumerate(b.counts))

    @property
    def total(self) -> float:
        return self.train_total + self.eval_total + math.fsum(self.once_flops.values())

    def steps_at(self, rung: int, train_flops_per_sample: float) -> int:
        """Optimizer steps a member with this per-sample cost takes within ``rung``'s horizon (never more); in the
        samples unit the same for every member."""
        return horizon_steps(self.rungs[rung], self.unit, self.batch_size, train_flops_per_sample)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["brackets"] = [{"start": b.start, "counts": list(b.counts)} for b in self.brackets]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Plan:
        d = dict(d)
        d["brackets"] = [Bracket(int(b["start"]), tuple(int(n) for n in b["counts"])) for b in d["brackets"]]
        return cls(**d)


# -- costs of the typical member --------------------------------------------------------------------------------


WANTED_CAP = 4  # the plan without a member limit is laid out up to this many times the space's size
ENUMERATE_LIMIT = 20_000  # spaces up to this size have their feasible members counted exactly


def feasible_count(space: SearchSpace) -> int:
    """Members meeting the space's rules and constraints (``space.feasible``): counted exactly in spaces of up to
    ``ENUMERATE_LIMIT`` members, else estimated as size x the feasible share of a seeded sample of
    ``SAMPLE_MEMBERS`` (the search then also stops proposing once the proposer finds no unseen member)."""
    if space.size() <= ENUMERATE_LIMIT:
        return sum(1 for m in space.enumerate(ENUMERATE_LIMIT) if space.feasible(m) is None)
    sample = space.sample(SAMPLE_MEMBERS, seed=0)
    return math.ceil(space.size() * sum(1 for m in sample if space.feasible(m) is None) / len(sample))


def members(space: SearchSpace, n: int = SAMPLE_MEMBERS) -> list[UNetSpec]:
    """The space's members (feasible ones) or a seeded sample of ``n`` of them."""
    found = list(space.enumerate()) if space.size() <= n else space.sample(n, seed=0)
    ok = [m for m in found if space.feasible(m) is None]
    return ok or found


def val_flops(spec: UNetSpec, recipe: Recipe) -> float:
    """Validation loss: one forward per held-out sample and timestep (``unetnas.proxies.ValLoss.flops``)."""
    return float(cost(spec).flops * recipe.val_samples * len(recipe.val_timesteps))


def tifa_flops(spec: UNetSpec, recipe: Recipe, s: SearchSettings) -> float:
    """One TIFA-style score without prompt encoding (``unetnas.proxies.WorldTifa.flops`` less its one-off text
    part): DDIM steps x (2 with guidance) x forward FLOPs per image, plus the answerer's pixel parsing."""
    from unetnas.world.answerer import FLOPS_PER_PIXEL

    n = s.tifa_prompts * s.tifa_images
    sampling = recipe.sample_steps * (2 if recipe.cfg_scale != 1.0 else 1) * cost(spec).flops * n
    return float(sampling + FLOPS_PER_PIXEL * spec.resolution**2 * n)


def uses_tifa(data: str) -> bool:
    """The TIFA proxy reads the built-in world; prepared data sets are scored by validation loss only."""
    return data == "shapes"


@functools.lru_cache(maxsize=8)
def caption_flops(text_len: int) -> float:
    """Forward FLOPs to encode one caption with the packaged text encoder (``TextEncoder.text_flops_per_caption``)."""
    from unetnas.text import TextEncoder

    return float(TextEncoder.load(None, max_length=text_len).text_flops_per_caption)


def once_flops(space: SearchSpace, recipe: Recipe, s: SearchSettings, data: str, tifa: bool) -> dict[str, float]:
    """One-off costs: the world's training and validation captions (and "") once per study; the TIFA prompts
    (and "") once per worker. Nothing for prepared data (encoded by ``unetnas data prepare``)."""
    if not uses_tifa(data):
        return {}
    per = caption_flops(members(space, 1)[0].text_len)
    out = {"captions": per * (recipe.world_pool + WORLD_VAL_CAPTIONS + 1)}
    if tifa:
        out["tifa_prompts"] = per * (s.tifa_prompts + 1)
    return out


# The first rung is at least this many warm-up lengths: every candidate is past its warm-up (equal in FLOPs for
# all, see unetnas/train/recipe.py) by a third of the rung before it is measured and ranked.
WARMUP_FACTOR = 1.5


def rung_horizons(space: SearchSpace, recipe: Recipe, s: SearchSettings) -> tuple[list[float], float]:
    """(cumulative horizon of each rung in the recipe's ``horizon_unit``, mean training FLOPs per sample).

    flops: ``r_0 = max(min_steps x batch x mean FLOPs per sample, 1.5 x warmup_flops)``; samples: ``r_0 =
    max(min_steps x batch, 1.5 x warmup_samples)`` rounded up to whole batches; ``r_k = r_0 x eta^k``.
    """
    typical = statistics.fmean(cost(m).train_flops_per_sample for m in members(space))
    if recipe.horizon_unit == "samples":
        b = recipe.batch_size
        r0 = float(max(s.min_steps * b, math.ceil(WARMUP_FACTOR * recipe.warmup_samples / b) * b))
    else:
        r0 = max(s.min_steps * recipe.batch_size * typical, WARMUP_FACTOR * recipe.warmup_flops)
    return [r0 * s.eta**k for k in range(s.max_rungs)], typical


def make_plan(
    budget: float,
    space: SearchSpace,
    recipe: Recipe,
    s: SearchSettings,
    *,
    data: str = "shapes",
    extra: int = 0,
    cycle: tuple[int, ...] | None = None,
    score: bool = True,
    proxy_flops: Callable[[UNetSpec], float] | None = None,
) -> Plan:
    """The brackets ``budget`` buys (see the module docstring); ``extra`` presets join the first bracket.

    ``cycle``: the bracket types (first rungs) to lay out, Hyperband's (every rung) by default; benchmarks pass
    baselines through it: ``(K-1,)`` trains every candidate straight to the last rung (random search or plain
    Bayesian optimisation, with the matching sampler), ``(0,)`` is successive halving from rung 0 only.
    ``score=False``: no alignment rungs (validation loss only); ``proxy_flops``: a real alignment proxy's FLOPs per
    score of a member (``unetnas.proxies.select.plan_args``), scoring ``s.tifa_rungs`` on any data.
    Raises a one-line ``UserError`` when the budget cannot train ``n_top`` candidates to the last rung.
    """
    if s.eta < 2 or s.n_top < 1 or s.max_rungs < 1:
        raise UserError("eta >= 2, n_top >= 1 and max_rungs >= 1 are required", field="search settings")
    rungs, typical = rung_horizons(space, recipe, s)
    k = len(rungs)
    cycle = tuple(range(k)) if cycle is None else tuple(cycle)
    if not cycle or any(not 0 <= t < k for t in cycle) or len(set(cycle)) != len(cycle):
        raise ValueError(f"cycle must list distinct rungs in 0..{k - 1}, got {cycle}")
    scored = score and (uses_tifa(data) or proxy_flops is not None)
    tifa_idx = sorted({r % k for r in s.tifa_rungs if -k <= r < k}) if scored else []
    ms = members(space)
    val = statistics.fmean(val_flops(m, recipe) for m in ms)
    per_score = proxy_flops or (lambda m: tifa_flops(m, recipe, s))
    tifa = statistics.fmean(per_score(m) for m in ms) if tifa_idx else 0.0
    costs = Costs(
        tuple(rungs if recipe.horizon_unit == "flops" else [r * typical for r in rungs]),
        tuple(val + (tifa if i in tifa_idx else 0.0) for i in range(k)),
        once_flops(space, recipe, s, data, bool(tifa_idx) and proxy_flops is None),
    )

    feasible = feasible_count(space)
    limit = feasible + extra  # presets may lie outside the space's rules

    def plan_for(b: float, limit: int = limit) -> Plan:
        """Hyperband's cycle from its most exploratory bracket; when that gives fewer than n_top candidates at the
        last rung (budgets under one round), the cycle from the first type that does."""
        available = b * (1 - MARGIN) - math.fsum(costs.once.values())
        plans = [
            Plan(
                budget=b,
                eta=s.eta,
                rungs=rungs,
                eval_flops=list(costs.eval),
                once_flops=dict(costs.once),
                tifa_rungs=tifa_idx,
                brackets=layout(available, costs, s.eta, cycle=cycle, after=after, extra=extra, limit=limit),
                typical_train_per_sample=typical,
                batch_size=recipe.batch_size,
                n_top=s.n_top,
                cycle=list(cycle),
                members=feasible,
                space_size=space.size(),
                unit=recipe.horizon_unit,
            )
            for after in (-1, *cycle[:-1])
        ]
        return next((p for p in plans if p.top_candidates >= s.n_top), plans[0])

    plan = plan_for(budget)
    # what the budget would buy in a space without a member limit (capped: "at least" this many), so the plan can
    # say it shrank to the feasible members (a constraint, or a space smaller than the budget)
    plan = replace(plan, wanted=plan_for(budget, WANTED_CAP * (space.size() + extra + 1)).candidates)
    if plan.top_candidates < s.n_top:
        if plan_for(1e300).top_candidates < s.n_top:
            raise UserError(
                f"cannot train {s.n_top} candidates (n_top) to the last rung: brackets of the "
                f"{feasible} feasible members (of {space.size()}) of space {space.name!r} give at most "
                f"{plan_for(1e300).top_candidates}",
                field="search settings",
            )
        lo, hi = budget, max(budget, 1.0)
        while plan_for(hi).top_candidates < s.n_top:
            lo, hi = hi, hi * 2
        for _ in range(60):  # the smallest budget that gives n_top candidates at the last rung, to 2^-60
            mid = (lo + hi) / 2
            lo, hi = (lo, mid) if plan_for(mid).top_candidates >= s.n_top else (mid, hi)
        need = float(f"{hi * 1.005:.2e}")  # rounded up: the budget printed is one that works
        raise UserError(
            f"is too small for this space and recipe: training {s.n_top} candidates (n_top) to the "
            f"last rung of {_horizon(rungs[-1], recipe.horizon_unit, typical)}, with scoring and caption encoding, needs "
            f"about {format_flops(need)} FLOPs",
            field="--budget",
            value=format_flops(budget),
        )
    return plan


def _horizon(r: float, unit: str, typical: float) -> str:
    """A rung's horizon in words: "2.4e12 training FLOPs" or "8,192 training samples (3.1e12 FLOPs of the mean
    member)"."""
    if unit == "samples":
        return f"{r:,.0f} training samples ({format_flops(r * typical)} FLOPs of the mean member)"
    return f"{format_flops(r)} FLOPs"


def describe_horizon(plan: Plan, rung: int = -1) -> str:
    """The horizon of ``rung`` (default the last) in the plan's unit, for the dry run, report and model cards."""
    return _horizon(plan.rungs[rung], plan.unit, plan.typical_train_per_sample)


def wall_time_s(plan: Plan, flops_per_s: float) -> float:
    return plan.total / flops_per_s


def wall_time(plan: Plan, flops_per_s: float, workers: int = 1, ranks: int = 1) -> dict[str, float]:
    """How long the plan takes with ``workers`` trials running at once, each on ``ranks`` devices of
    ``flops_per_s`` sustained FLOP/s (data-parallel ranks assumed to scale linearly).

    Brent's bound for a task graph: the larger of the work per worker (all planned FLOPs / (workers x ranks x
    speed)) and the span, the longest chain that no number of workers shortens: in each bracket one candidate's
    rungs run one after another (a rung cannot start before its candidates finish the rung below), after the
    one-off caption encoding. Returns {"wall_s", "work_s", "span_s", "workers", "ranks"} (seconds).
    """
    if workers < 1 or ranks < 1 or not flops_per_s > 0:
        raise ValueError(f"workers, ranks and flops_per_s must be positive, got {workers}, {ranks}, {flops_per_s}")
    speed = flops_per_s * ranks
    costs = plan.costs
    chain = max(
        (math.fsum(costs.run(k, b.start) for k in range(b.start, b.last + 1)) for b in plan.brackets), default=0.0
    )
    work_s = plan.total / (workers * speed)
    span_s = (chain + sum(plan.once_flops.values())) / speed
    return {"wall_s": max(work_s, span_s), "work_s": work_s, "span_s": span_s, "workers": workers, "ranks": ranks}


# A member is measured on the CPU only up to this size; paper-scale members (billions of parameters, tens of GB
# of weights and optimizer state) would exhaust a laptop's memory for a number nobody plans a GPU search with.
CPU_MEASURE_MAX_PARAMS = 50e6


def measure_cpu_flops_per_s(space: SearchSpace, recipe: Recipe, steps: int = 3) -> float:
    """Achieved training FLOP/s on this machine (a few plain fwd+bwd steps of batch <= 8): of the space's median
    member when it has at most ``CPU_MEASURE_MAX_PARAMS`` parameters, else of the CPU-sized ``tiny`` preset."""
    import time

    import torch

    from unetnas.build import build_unet, example_inputs
    from unetnas.presets import get_preset

    ms = sorted(members(space, 50), key=lambda m: cost(m).flops)
    spec = ms[len(ms) // 2]
    if cost(spec).params > CPU_MEASURE_MAX_PARAMS:
        spec = get_preset("tiny")
    batch = min(recipe.micro_batch, 8)
    unet = build_unet(spec, seed=0)
    inputs = example_inputs(spec, batch=batch)
    opt = torch.optim.AdamW(unet.parameters())
    unet(**inputs).sample.mean().backward()  # warm-up
    t0 = time.perf_counter()
    for _ in range(steps):
        opt.zero_grad()
        unet(**inputs).sample.mean().backward()
        opt.step()
    dt = time.perf_counter() - t0
    return cost(spec).train_flops_per_sample * batch * steps / dt
