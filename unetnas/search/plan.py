"""The search plan: geometric rungs of training FLOPs derived from the budget.

Successive halving with reduction factor eta: ``n0 = n_top x eta^(K-1)`` candidates start at rung 0 with ``r0``
training FLOPs each; the best 1/eta of each rung continue (from their checkpoints, paying only the increment) to
``r_k = r0 x eta^k``. The plan takes the most rungs (up to ``max_rungs``) whose rung 0 still gets at least
``min_steps`` optimizer steps of a typical member, after the evaluation FLOPs are set aside.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass

from unetnas.cost import cost
from unetnas.errors import UserError
from unetnas.search.budget import format_flops
from unetnas.space import SearchSpace
from unetnas.train.recipe import Recipe, SearchSettings

# Share of the budget the plan leaves unallocated: members' evaluation costs differ from the median member's,
# and the ledger refuses (rather than overspends) work that does not fit.
MARGIN = 0.05


@dataclass(frozen=True)
class Plan:
    budget: float
    eta: int
    rungs: list[float]  # cumulative training FLOPs per candidate at each rung
    trials: list[int]  # candidates per rung
    train_flops: list[float]  # training FLOPs spent in each rung (increments)
    eval_flops: list[float]  # evaluation FLOPs in each rung (val loss always, TIFA where named)
    tifa_rungs: list[int]  # non-negative rung indices that run TIFA
    typical_train_per_sample: float  # median member's training FLOPs per sample
    batch_size: int

    @property
    def total(self) -> float:
        return sum(self.train_flops) + sum(self.eval_flops)

    @property
    def eval_share(self) -> float:
        return sum(self.eval_flops) / self.total

    def steps_at(self, rung: int, train_flops_per_sample: float) -> int:
        """Optimizer steps a member with this per-sample cost takes to reach ``rung``."""
        return int(self.rungs[rung] // (train_flops_per_sample * self.batch_size))

    def as_dict(self) -> dict:
        return asdict(self)


def _members(space: SearchSpace, n: int = 400) -> list:
    return list(space.enumerate()) if space.size() <= n else space.sample(n, seed=0)


def eval_flops_per_trial(space: SearchSpace, recipe: Recipe, s: SearchSettings) -> tuple[float, float]:
    """(validation-loss FLOPs, TIFA FLOPs) for a typical member (median forward FLOPs)."""
    fwd = statistics.median(cost(m).flops for m in _members(space))
    val = fwd * recipe.val_samples * len(recipe.val_timesteps)
    tifa = recipe.sample_steps * 2 * fwd * s.tifa_prompts * s.tifa_images
    return float(val), float(tifa)


def make_plan(budget: float, space: SearchSpace, recipe: Recipe, s: SearchSettings, extra: int = 0) -> Plan:
    """The plan with the most rungs that fits ``budget`` with at least ``min_steps`` at rung 0.

    ``extra`` reference candidates (enqueued presets) join rung 0 on top of the searched ones.
    """
    if s.eta < 2 or s.n_top < 1 or s.max_rungs < 1:
        raise UserError("eta >= 2, n_top >= 1 and max_rungs >= 1 are required", field="search settings")
    per_sample = statistics.median(cost(m).train_flops_per_sample for m in _members(space))
    min_r0 = s.min_steps * recipe.batch_size * per_sample
    val, tifa = eval_flops_per_trial(space, recipe, s)
    best = None
    for k in range(1, s.max_rungs + 1):
        trials = [s.n_top * s.eta ** (k - 1 - i) for i in range(k)]
        trials[0] += extra
        tifa_idx = sorted({r % k for r in s.tifa_rungs if -k <= r < k})
        evals = [n * (val + (tifa if i in tifa_idx else 0.0)) for i, n in enumerate(trials)]
        # training: rung 0 costs n0 x r0; rung i>0 costs n_i x (r_i - r_{i-1}) = n_i x r0 x (eta^i - eta^(i-1))
        units = trials[0] + sum(trials[i] * (s.eta**i - s.eta ** (i - 1)) for i in range(1, k))
        r0 = (budget * (1 - MARGIN) - sum(evals)) / units
        if r0 < min_r0:
            break
        rungs = [r0 * s.eta**i for i in range(k)]
        train = [trials[0] * r0] + [trials[i] * (rungs[i] - rungs[i - 1]) for i in range(1, k)]
        best = Plan(budget, s.eta, rungs, trials, train, evals, tifa_idx, per_sample, recipe.batch_size)
    if best is None:
        need = s.n_top * (min_r0 + val + tifa)
        raise UserError(f"is too small for this space: one rung of {s.n_top} candidates with {s.min_steps} steps "
                        f"and scoring needs about {format_flops(need)} FLOPs", field="--budget", value=format_flops(budget))  # fmt: skip
    return best


def wall_time_s(plan: Plan, flops_per_s: float) -> float:
    return plan.total / flops_per_s


def measure_cpu_flops_per_s(space: SearchSpace, recipe: Recipe, steps: int = 3) -> float:
    """Achieved training FLOP/s of the median member on this machine (a few plain fwd+bwd steps)."""
    import time

    import torch

    from unetnas.build import build_unet, example_inputs

    members = sorted(_members(space, 50), key=lambda m: cost(m).flops)
    spec = members[len(members) // 2]
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
