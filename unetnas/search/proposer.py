"""Proposals that learn from every rung: one model study per rung, BOHB's rule for which one proposes.

Optuna's samplers model the COMPLETE trials of the study they sample for, and the search study holds values of the
last rung only (``study.py``), so on its own a sampler would learn from a handful of finished candidates, late. The
proposer keeps one model study per rung (same objectives): each time a candidate finishes rung k, its parameters and
rung-k objective values are added there as a COMPLETE trial. A new candidate is drawn by the chosen sampler (TPE,
NSGA-II, GP or random, unchanged) in the model study of the highest rung with at least the sampler's start-up number
of observations, else of the rung with the most (Falkner et al. 2018, BOHB: "model the highest budget with enough
observations"). One fidelity per model: low-rung values never mix with high-rung ones, yet the first results reach
the sampler as soon as rung 0 ends.

The model studies are derived state, kept in this process's memory (``optuna.storages.InMemoryStorage``), so the
study's database, and optuna-dashboard's study list, hold one study per search. The search study is their record:
``feed`` marks the trial (user attr ``fed``: the rungs fed) and its rung record holds the values, so before each
proposal the models take in what other workers (or an earlier run of this search, on resume) fed since
(``sync``), and a fresh process rebuilds them from the study alone.

The draw is then enqueued in the search study. A draw of a design the study already holds (any state: trained,
training, stopped or failed) is not trained again: the sampler is asked again, with the rejected draws left
RUNNING meanwhile (TPE's constant liar then counts them among the bad trials and moves elsewhere), and after
``MAX_DRAWS`` draws a random member the study lacks is taken. Draws are finally told FAIL in the model study (a
proposal, not an observation), so only measured results ever shape the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState

from unetnas.search import study as S
from unetnas.search.trials import trial_id
from unetnas.space import SearchSpace
from unetnas.spec import UNetSpec

MAX_DRAWS = 20  # sampler draws per candidate before a random unseen member is taken
ENUMERATE_LIMIT = 20_000  # spaces up to this size are listed to find unseen members


@dataclass(frozen=True)
class Proposal:
    params: dict[str, Any]
    spec: UNetSpec
    info: dict[str, Any]  # rung modelled, its observations, whether the sampler modelled or drew at random, ...


class Proposer:
    """Draws new candidates for ``study`` over ``space`` with sampler ``name`` (seeded) from per-rung models."""

    def __init__(self, study: optuna.Study, space: SearchSpace, name: str, seed: int, n_rungs: int) -> None:
        self.study, self.space, self.name, self.seed = study, space, name, seed
        self.samplers = [S.make_sampler(name, seed, stream=k + 1) for k in range(n_rungs)]
        memory = optuna.storages.InMemoryStorage()  # derived state: never stored, never listed by the dashboard
        self.models = [
            optuna.create_study(
                study_name=model_name(study.study_name, k), storage=memory, directions=study.directions, sampler=sampler
            )
            for k, sampler in enumerate(self.samplers)
        ]
        self._fed: set[tuple[int, int]] = set()  # (trial number, rung) already in the models
        self._members: list[UNetSpec] | None = None
        self.sync()

    # -- observations -------------------------------------------------------------------------------------------
    def observations(self) -> list[int]:
        return [len(m.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))) for m in self.models]

    def feed(self, trial: optuna.trial.FrozenTrial, rung: int, values: list[float]) -> None:
        """Tell rung ``rung``'s model that ``trial``'s design scored ``values`` there (idempotent per trial, rung)."""
        if rung not in trial.user_attrs.get("fed", []):
            S.set_attrs(self.study, trial_id(trial), fed=[*trial.user_attrs.get("fed", []), rung])
        self._observe(trial, rung, values)

    def sync(self) -> int:
        """Add to the models what the study records as fed but they lack (other workers' rungs; an earlier run's,
        on resume): each trial's rung-k record, as ``objective_values``. Returns how many observations came in."""
        objectives = tuple(self.study.user_attrs.get(S.SETTINGS_ATTR, {}).get("objectives", ()))
        n = 0
        for t in self.study.get_trials(deepcopy=False):
            for k in t.user_attrs.get("fed", []):
                record = t.user_attrs.get(f"rung_{k}")
                if (t.number, k) not in self._fed and record is not None and objectives and k < len(self.models):
                    self._observe(t, k, S.objective_values(record, objectives))
                    n += 1
        return n

    def _observe(self, trial: optuna.trial.FrozenTrial, rung: int, values: list[float]) -> None:
        if (trial.number, rung) in self._fed:
            return
        model = self.models[rung]
        n = len(model.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
        model.add_trial(
            optuna.trial.create_trial(
                params=trial.params,
                distributions=trial.distributions,
                values=values,
                user_attrs={"trial": trial.number},
                system_attrs=self.samplers[rung].observation_attrs(n),
            )
        )
        self._fed.add((trial.number, rung))

    def modelled_rung(self) -> tuple[int, int]:
        """(rung whose model proposes, its observations): the highest rung with enough observations for the sampler
        to model, else the rung with the most (the lowest on ties)."""
        obs = self.observations()
        enough = [k for k, n in enumerate(obs) if n >= S.min_observations(self.name)]
        k = enough[-1] if enough else max(range(len(obs)), key=lambda i: (obs[i], -i))
        return k, obs[k]

    # -- proposals ----------------------------------------------------------------------------------------------
    def propose(self, taken: set[str]) -> Proposal | None:
        """A feasible design whose key is not in ``taken``; None when the space has no such member left."""
        self.sync()
        k, n = self.modelled_rung()
        model = self.models[k]
        self._align_numbers(k)
        info = {
            "rung": k,
            "observations": n,
            "sampler": self.name,
            "modelled": self.name != "random" and n >= S.min_observations(self.name),
        }
        pending = []  # rejected draws stay RUNNING until the proposal is made: TPE's constant liar counts them
        try:  # among the bad ("above") trials, so it moves away from designs already taken instead of insisting
            for draw in range(1, MAX_DRAWS + 1):
                t = model.ask()
                spec = self.space.suggest(t)
                why = self.space.feasible(spec)
                if why is None and S.design_key(spec) in taken:
                    why = "duplicate"
                if why is None:
                    model.tell(t, state=TrialState.FAIL)
                    return Proposal(dict(t.params), spec, {**info, "draws": draw})
                t.set_user_attr("rejected", why)
                pending.append(t)
        finally:
            for t in pending:
                model.tell(t, state=TrialState.FAIL)
        spec = self._unseen(taken)
        if spec is None:
            return None
        return Proposal(
            self.space.params_of(spec),
            spec,
            {**info, "draws": MAX_DRAWS, "modelled": False, "fallback": "random unseen member"},
        )

    def _align_numbers(self, k: int) -> None:
        """Give rung ``k``'s model the trial count it has in a process that ran the whole search: its observations
        plus every draw a proposal made there (the search trials' ``proposal`` attr records the rung and draws).
        A rebuilt model (a resumed search, another worker) lacks the draws, and the samplers are seeded by trial
        number (``study.TrialSeeded``), so the missing numbers are filled with FAIL trials, which no sampler reads.
        """
        drawn = sum(
            int(info.get("draws", 0))
            for t in self.study.get_trials(deepcopy=False)
            if isinstance(info := t.user_attrs.get("proposal"), dict) and info.get("rung") == k
        )
        model = self.models[k]
        missing = self.observations()[k] + drawn - len(model.get_trials(deepcopy=False))
        for _ in range(max(0, missing)):
            model.add_trial(optuna.trial.create_trial(state=TrialState.FAIL, user_attrs={"filler": True}))

    def _unseen(self, taken: set[str]) -> UNetSpec | None:
        """A random feasible member not in ``taken``, seeded by the study's size (deterministic on resume)."""
        rng = np.random.default_rng([self.seed % 2**32, len(self.study.get_trials(deepcopy=False))])
        if self.space.size() <= ENUMERATE_LIMIT:
            if self._members is None:
                self._members = [m for m in self.space.enumerate(ENUMERATE_LIMIT) if self.space.feasible(m) is None]
            left = [m for m in self._members if S.design_key(m) not in taken]
            return left[int(rng.integers(len(left)))] if left else None
        for m in self.space.sample(200, seed=int(rng.integers(2**31))):
            if self.space.feasible(m) is None and S.design_key(m) not in taken:
                return m
        return None


def model_name(study: str, rung: int) -> str:
    return f"{study}@rung{rung}"
