"""SMAC3's multi-fidelity facade (``smac`` 2.4: random forest + the ``Hyperband`` intensifier) on the replay.

Driven through SMAC's ask/tell interface (``facade.ask()`` -> ``TrialInfo(config, budget)``, ``facade.tell(info,
TrialValue(cost=loss))``), one trial at a time, the loss being the shared scalar of ``bench.baselines.scalariser``.
Budgets are the plan's fidelities (``min_budget`` 1, ``max_budget`` eta^top, Hyperband's ``eta`` = the plan's), so
SMAC's brackets run the same rungs. The configuration space is the space's categorical parameters
(``ConfigSpace``); SMAC's output goes to a temporary folder. The search ends when the budget cannot pay for
the next rung, when every member has its last rung, or when SMAC has tried every configuration.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from ConfigSpace import Categorical, ConfigurationSpace
from smac import MultiFidelityFacade, Scenario
from smac.main.exceptions import ConfigurationSpaceExhaustedException
from smac.runhistory.dataclasses import TrialValue

from bench.baselines import Bench, Trace
from bench.peers.common import Replay, Spent

N_TRIALS = 100_000  # SMAC's own trial limit, never reached: the budget or the replay's end stops first


def config_space(rep: Replay, seed: int) -> ConfigurationSpace:
    cs = ConfigurationSpace(seed=seed)
    cs.add([Categorical(name, values) for name, values in rep.encoding.params.items()])
    return cs


def _never_called(config, seed: int = 0, budget: float = 0.0) -> float:  # noqa: ANN001
    raise RuntimeError("the replay drives SMAC through ask/tell")


def smac_hyperband(bench: Bench, seed: int) -> Trace:
    rep = Replay(bench, seed, "smac")
    with tempfile.TemporaryDirectory() as tmp:
        scenario = Scenario(
            config_space(rep, seed),
            deterministic=True,
            n_trials=N_TRIALS,
            min_budget=1,
            max_budget=rep.fidelities[-1],
            seed=seed,
            output_directory=Path(tmp) / "smac",
        )
        smac = MultiFidelityFacade(
            scenario,
            _never_called,
            intensifier=MultiFidelityFacade.get_intensifier(scenario, eta=rep.eta),
            logging_level=logging.ERROR,
            overwrite=True,
        )
        try:
            while not rep.finished:
                info = smac.ask()
                loss = rep.evaluate(dict(info.config), info.budget)
                smac.tell(info, TrialValue(cost=loss))
        except (Spent, ConfigurationSpaceExhaustedException):  # out of budget, or SMAC has tried every config
            pass
    return rep.trace
