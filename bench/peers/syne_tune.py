"""Syne Tune's MOASHA, ASHA and BOHB (``syne-tune`` 0.16) on the replay, driven by our own loop.

We drive each scheduler exactly as Syne Tune's ``Tuner`` does with one worker, without its simulator backend:
``suggest()`` -> ``Trial`` -> ``on_trial_add``; then one result per rung (``time_attr`` = the fidelity 1, eta, ...,
eta^top) through ``on_trial_result``; on ``SchedulerDecision.STOP`` (which Syne Tune also returns at ``max_t``)
``on_trial_remove``, as the Tuner does for a stopped trial. The rungs are the plan's (``grace_period`` 1,
``reduction_factor`` eta, ``max_t`` eta^top), so Syne Tune's stopping-type ASHA brackets line up with unetnas's.
ASHA (random search proposals) and BOHB (KDE proposals) minimise the shared scalar loss; MOASHA (random proposals,
non-dominated-sorting priority) minimises (-alignment, GMACs). Syne Tune draws brackets from NumPy's global
generator, so it is seeded with the search seed.
"""

from __future__ import annotations

import logging
from datetime import datetime

import numpy as np
from syne_tune.backend.trial_status import Trial
from syne_tune.config_space import choice
from syne_tune.optimizer.baselines import ASHA, BOHB
from syne_tune.optimizer.scheduler import SchedulerDecision
from syne_tune.optimizer.schedulers.multiobjective.moasha import MOASHA

from bench.baselines import Bench, Trace
from bench.peers.common import Replay, Spent

TIME_ATTR = "rung_resource"  # 1, eta, ..., eta^top
LOSS = "loss"  # minus the shared scalar (bench.baselines.scalariser)
MO = ("neg_alignment", "gmacs")
logging.getLogger("syne_tune").setLevel(logging.ERROR)  # its searchers warn about defaults we leave as they are


def _drive(rep: Replay, scheduler, report) -> Trace:  # noqa: ANN001
    """Run ``scheduler`` until the replay is finished or spent; ``report(config, fidelity)`` -> result metrics."""
    np.random.seed(rep.seed)
    trial_id = 0
    try:
        while not rep.finished:
            suggestion = scheduler.suggest()
            if suggestion is None:
                break
            trial = Trial(trial_id=trial_id, config=suggestion.config, creation_time=datetime.now())
            trial_id += 1
            scheduler.on_trial_add(trial)
            for r in rep.fidelities:
                result = {TIME_ATTR: r, **report(trial.config, r)}
                if scheduler.on_trial_result(trial, result) == SchedulerDecision.STOP:
                    scheduler.on_trial_remove(trial)
                    break
    except Spent:
        pass
    return rep.trace


def _space(rep: Replay) -> dict:
    return {name: choice(values) for name, values in rep.encoding.params.items()}


def _single(bench: Bench, seed: int, name: str, cls) -> Trace:  # noqa: ANN001
    rep = Replay(bench, seed, name)
    scheduler = cls(
        _space(rep),
        metric=LOSS,
        time_attr=TIME_ATTR,
        max_t=rep.fidelities[-1],
        do_minimize=True,
        random_seed=seed,
        grace_period=1,
        reduction_factor=rep.eta,
    )
    return _drive(rep, scheduler, lambda config, r: {LOSS: rep.evaluate(config, r)})


def asha(bench: Bench, seed: int) -> Trace:
    return _single(bench, seed, "asha", ASHA)


def bohb(bench: Bench, seed: int) -> Trace:
    return _single(bench, seed, "bohb", BOHB)


def moasha(bench: Bench, seed: int) -> Trace:
    rep = Replay(bench, seed, "moasha")
    scheduler = MOASHA(
        _space(rep),
        metrics=list(MO),
        do_minimize=True,
        time_attr=TIME_ATTR,
        max_t=rep.fidelities[-1],
        grace_period=1,
        reduction_factor=rep.eta,
        random_seed=seed,
    )

    def report(config, r):  # noqa: ANN001, ANN202
        v = rep.objectives(config, r)
        return {MO[0]: -v["alignment"], MO[1]: v["gmacs"]}

    return _drive(rep, scheduler, report)
