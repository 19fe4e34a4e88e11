"""The Optuna study of a search: creation, stored settings, per-trial records, objectives and the Pareto set.

Each trial keeps its spec, costs and one record per rung in user attributes (so optuna-dashboard shows them),
and its validation loss per rung as intermediate values (learning curves). Optuna cannot prune multi-objective
studies, so the search drives the study with ask/tell: a trial is told COMPLETE with its objective values when it
finishes the last rung and PRUNED when its rung can no longer promote it.
"""

from __future__ import annotations

import json
from typing import Any

import optuna
from optuna.trial import TrialState

from unetnas.errors import UserError
from unetnas.search.promotion import pareto
from unetnas.spec import UNetSpec

OBJECTIVES = {"alignment": "maximize", "gmacs": "minimize", "params": "minimize"}
SAMPLERS = ("tpe", "nsga2", "gp", "random")
SETTINGS_ATTR = "unetnas_settings"


def parse_objectives(text: str) -> tuple[str, ...]:
    names = tuple(x.strip() for x in text.split(",") if x.strip())
    bad = [n for n in names if n not in OBJECTIVES]
    if bad or len(names) < 2 or len(set(names)) != len(names) or "alignment" not in names:
        raise UserError(f"must list 'alignment' and one or more of gmacs, params (comma-separated, no repeats)",
                        field="--objectives", value=text)  # fmt: skip
    return names


def make_sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    """The ``name`` sampler, seeded per trial (see ``TrialSeeded``) so a resumed search draws what an
    uninterrupted one would."""
    _sampler(name, seed)  # validate the name
    return TrialSeeded(name, seed)


class TrialSeeded(optuna.samplers.BaseSampler):
    """A fresh ``name`` sampler for every trial, seeded from (seed, trial number).

    A sampler seeded once per process restarts its random stream when the search is resumed (a new process):
    it would propose the designs the first session already drew (TPE's and NSGA-II's random start) and the
    resumed study would diverge from the uninterrupted one. Here trial n's draws depend only on the seed, n
    and the study's history.
    """

    def __init__(self, name: str, seed: int) -> None:
        self.name, self.seed = name, seed
        self._inner = _sampler(name, seed)

    def before_trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        import numpy as np

        trial_seed = int(np.random.SeedSequence([self.seed % 2**32, trial.number]).generate_state(1)[0])
        self._inner = _sampler(self.name, trial_seed)
        self._inner.before_trial(study, trial)

    def infer_relative_search_space(self, study, trial):  # noqa: ANN001, ANN201
        return self._inner.infer_relative_search_space(study, trial)

    def sample_relative(self, study, trial, search_space):  # noqa: ANN001, ANN201
        return self._inner.sample_relative(study, trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):  # noqa: ANN001, ANN201
        return self._inner.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study, trial, state, values) -> None:  # noqa: ANN001
        self._inner.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self._inner.reseed_rng()


def _sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True, n_startup_trials=8)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=16)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=8)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise UserError(f"must be one of {', '.join(SAMPLERS)}", field="--sampler", value=name)


def open_study(storage: Any, name: str, objectives: tuple[str, ...], sampler: optuna.samplers.BaseSampler,
               settings: dict[str, Any]) -> optuna.Study:  # fmt: skip
    """Create the study, or load it and check it was made with the same space, data and objectives."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    directions = [OBJECTIVES[o] for o in objectives]
    try:
        study = optuna.load_study(study_name=name, storage=storage, sampler=sampler)
    except KeyError:
        study = optuna.create_study(study_name=name, storage=storage, directions=directions, sampler=sampler)
        study.set_user_attr(SETTINGS_ATTR, settings)
        return study
    stored = study.user_attrs.get(SETTINGS_ATTR)
    if stored is None:
        raise UserError("exists but was not made by unetnas search; choose another --study", field="--study", value=name)
    for key in ("space", "data", "objectives", "recipe"):
        if stored.get(key) != settings.get(key):
            raise UserError(f"was started with {key} {stored.get(key)!r}; resume with the same settings or use "
                            f"another --study", field="--study", value=name)  # fmt: skip
    return study


def set_attrs(study: optuna.Study, trial_id: int, **attrs: Any) -> None:
    for key, value in attrs.items():
        study._storage.set_trial_user_attr(trial_id, key, json.loads(json.dumps(value)))


def objective_values(record: dict[str, Any], objectives: tuple[str, ...]) -> list[float]:
    """A rung record's objective values in the study's directions (alignment: TIFA, else -validation loss)."""
    out = []
    for o in objectives:
        if o == "alignment":
            out.append(record["tifa"] if record.get("tifa") is not None else -record["val_loss"])
        else:
            out.append(float(record[o]))
    return out


def to_minimise(values: list[float], objectives: tuple[str, ...]) -> list[float]:
    return [-v if OBJECTIVES[o] == "maximize" else v for v, o in zip(values, objectives)]


def trials_by_state(study: optuna.Study) -> dict[str, list[optuna.trial.FrozenTrial]]:
    out: dict[str, list] = {"running": [], "complete": [], "pruned": [], "fail": []}
    for t in study.get_trials(deepcopy=False):
        key = {TrialState.RUNNING: "running", TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned"}.get(
            t.state, "fail" if t.state == TrialState.FAIL else None
        )
        if key:
            out[key].append(t)
    return out


def pareto_rows(study: optuna.Study, objectives: tuple[str, ...]) -> list[dict[str, Any]]:
    """The non-dominated completed trials, best alignment first."""
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.values]
    points = [to_minimise(list(t.values), objectives) for t in done]
    rows = []
    for i in pareto(points):
        t = done[i]
        rows.append({"trial": t.number, "alignment": t.values[objectives.index("alignment")],
                     "gmacs": t.user_attrs.get("gmacs"), "params": t.user_attrs.get("params"),
                     "rung": t.user_attrs.get("rung"), "flops_spent": t.user_attrs.get("flops_spent"),
                     "spec": t.user_attrs.get("spec", {}).get("name")})  # fmt: skip
    return sorted(rows, key=lambda r: -r["alignment"])


def spec_of(trial: optuna.trial.FrozenTrial) -> UNetSpec:
    return UNetSpec.model_validate(trial.user_attrs["spec"])
