"""Proposals that learn from every rung: one model study per rung, BOHB's rule for which one proposes.

Optuna's samplers model the COMPLETE trials of the study they sample for, and the search study holds values of the
last rung only (``study.py``), so on its own a sampler would learn from a handful of finished candidates, late. The
proposer keeps, beside the search study and in the same storage, one model study per rung (``<study>@rung<k>``,
same objectives): each time a candidate finishes rung k, its parameters and rung-k objective values are added there
as a COMPLETE trial. A new candidate is drawn by the chosen sampler (TPE, NSGA-II, GP or random, unchanged) in the
model study of the highest rung with at least the sampler's start-up number of observations, else of the rung with
the most (Falkner et al. 2018, BOHB: "model the highest budget with enough observations"). One fidelity per model:
low-rung values never mix with high-rung ones, yet the first results reach the sampler as soon as rung 0 ends.

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
        directions = study.directions
        storage = study._storage
        self.models = []
        for k, sampler in enumerate(self.samplers):
            model = optuna.create_study(
                study_name=model_name(study.study_name, k),
                storage=storage,
                directions=directions,
                sampler=sampler,
                load_if_exists=True,
            )
            if "unetnas_model_of" not in model.user_attrs:
                model.set_user_attr("unetnas_model_of", {"study": study.study_name, "rung": k})
            self.models.append(model)
        self._members: list[UNetSpec] | None = None

    # -- observations -------------------------------------------------------------------------------------------
    def observations(self) -> list[int]:
        return [len(m.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))) for m in self.models]

    def feed(self, trial: optuna.trial.FrozenTrial, rung: int, values: list[float]) -> None:
        """Tell rung ``rung``'s model that ``trial``'s design scored ``values`` there (idempotent per trial, rung)."""
        if rung in trial.user_attrs.get("fed", []):
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
        S.set_attrs(self.study, trial._trial_id, fed=[*trial.user_attrs.get("fed", []), rung])

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
        k, n = self.modelled_rung()
        model = self.models[k]
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
