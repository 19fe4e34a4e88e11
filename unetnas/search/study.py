"""The Optuna study of a search: creation, stored settings, per-trial records, objectives and the Pareto set.

Each trial keeps its spec, costs and one record per rung in user attributes (so optuna-dashboard shows them), and
its validation loss per rung as intermediate values (learning curves). Optuna cannot prune multi-objective studies
(optuna#3450), so the search drives the study with ask/tell: a trial is told COMPLETE with its objective values only
when it finishes the LAST rung, so the study's values (and its Pareto front) hold one fidelity; a trial that stops
at a lower rung is told PRUNED and keeps its rung records (flagged with their rung), never values.
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState

from unetnas.errors import UserError
from unetnas.search.promotion import pareto
from unetnas.search.trials import nsga2_generation_key, storage_of
from unetnas.spec import UNetSpec

OBJECTIVES = {"alignment": "maximize", "gmacs": "minimize", "params": "minimize"}
SAMPLERS = ("tpe", "nsga2", "gp", "random")
SETTINGS_ATTR = "unetnas_settings"
NSGA2_POPULATION = 16
STARTUP_TRIALS = 8  # TPE's and GP's random start-up (observations before they model)


def parse_objectives(text: str) -> tuple[str, ...]:
    names = tuple(x.strip() for x in text.split(",") if x.strip())
    bad = [n for n in names if n not in OBJECTIVES]
    if bad or len(names) < 2 or len(set(names)) != len(names) or "alignment" not in names:
        raise UserError(
            "must list 'alignment' and one or more of gmacs, params (comma-separated, no repeats)",
            field="--objectives",
            value=text,
        )
    return names


def make_sampler(name: str, seed: int, stream: int = 0) -> optuna.samplers.BaseSampler:
    """The ``name`` sampler, seeded per trial (see ``TrialSeeded``) so a resumed search draws what an
    uninterrupted one would; ``stream`` separates the seeds of studies that share ``seed`` (one per rung)."""
    _sampler(name, seed)  # validate the name
    return TrialSeeded(name, seed, stream)


def min_observations(name: str) -> int:
    """Observations a sampler needs before it models rather than draws at random (BOHB's N_min)."""
    return {"tpe": STARTUP_TRIALS, "gp": STARTUP_TRIALS, "nsga2": NSGA2_POPULATION}.get(name, 1)


class TrialSeeded(optuna.samplers.BaseSampler):
    """A fresh ``name`` sampler for every trial, seeded from (seed, stream, trial number).

    A sampler seeded once per process restarts its random stream when the search is resumed (a new process):
    it would propose the designs the first session already drew (TPE's and NSGA-II's random start) and the
    resumed study would diverge from the uninterrupted one. Here trial n's draws depend only on the seed, n
    and the study's history.
    """

    def __init__(self, name: str, seed: int, stream: int = 0) -> None:
        self.name, self.seed, self.stream = name, seed, stream
        self._inner = _sampler(name, seed)

    def before_trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        key = [self.seed % 2**32, trial.number] if self.stream == 0 else [self.seed % 2**32, self.stream, trial.number]
        trial_seed = int(np.random.SeedSequence(key).generate_state(1)[0])
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

    def observation_attrs(self, n_observed: int) -> dict[str, Any]:
        """System attributes an observation added to a study needs for this sampler: NSGA-II reads each trial's
        generation (the n-th observation belongs to generation n // population size)."""
        if self.name != "nsga2":
            return {}
        return {nsga2_generation_key(): n_observed // NSGA2_POPULATION}


def _sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    if name == "tpe":
        # group=True: the space is conditional (levels, mid block), which plain multivariate TPE samples at random
        with warnings.catch_warnings():  # "group is experimental" (since Optuna 2.8), once per trial: noise
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.TPESampler(
                seed=seed, multivariate=True, group=True, constant_liar=True, n_startup_trials=STARTUP_TRIALS
            )
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=NSGA2_POPULATION)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=STARTUP_TRIALS, warn_independent_sampling=False)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise UserError(f"must be one of {', '.join(SAMPLERS)}", field="--sampler", value=name)


def open_study(
    storage: Any,
    name: str,
    objectives: tuple[str, ...],
    settings: dict[str, Any],
    changed: Callable[[dict[str, Any]], list[str]] | None = None,
) -> optuna.Study:
    """Create the study, or load it and check it was made with the same settings: ``changed(stored launch)`` lists
    the options that differ (``config.SearchConfig.changed``), then space, data, objectives, recipe and table are
    compared as resolved. Any difference is one ``UserError`` naming it, raised before anything is written.

    Its own sampler never draws: every candidate's parameters are enqueued (see ``proposer.Proposer``).
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    directions = [OBJECTIVES[o] for o in objectives]
    sampler = optuna.samplers.RandomSampler(seed=0)
    try:
        study = optuna.load_study(study_name=name, storage=storage, sampler=sampler)
    except KeyError:
        try:
            study = optuna.create_study(study_name=name, storage=storage, directions=directions, sampler=sampler)
        except optuna.exceptions.DuplicatedStudyError:  # another worker created it a moment ago
            return open_study(storage, name, objectives, settings, changed)
        study.set_user_attr(SETTINGS_ATTR, settings)
        return study
    stored = study.user_attrs.get(SETTINGS_ATTR)
    if stored is None:
        raise UserError(
            "exists but was not made by unetnas search; choose another --study", field="--study", value=name
        )
    if not isinstance(stored, dict) or not isinstance(stored.get("launch", {}), dict):
        raise UserError(
            f"its stored settings ({SETTINGS_ATTR}) are not a mapping: edited or damaged outside unetnas",
            field="--study",
            value=name,
        )
    diffs = [] if changed is None else changed(stored.get("launch") or {})
    if diffs:
        raise UserError(
            f"was made with other settings ({'; '.join(diffs)}); run it with the settings it was made with, "
            f"or use another --study",
            field="--study",
            value=name,
        )
    for key in ("space", "data", "objectives", "recipe", "replay"):
        mine, theirs = settings.get(key), stored.get(key)
        if key == "replay":  # the table's content, wherever it lies and whatever its file is called
            mine, theirs = (mine or {}).get("digest"), (theirs or {}).get("digest")
        if mine != theirs:
            raise UserError(
                f"was made with other settings ({_difference(key, theirs, mine)}); run it with the settings it was "
                "made with, or use another --study",
                field="--study",
                value=name,
            )
    return study


def _difference(key: str, stored: Any, asked: Any) -> str:
    """``key.field stored -> asked`` for the first field in which two stored mappings differ (nested), else the
    stored value."""
    if isinstance(stored, dict) and isinstance(asked, dict):
        for k in [*stored, *(k for k in asked if k not in stored)]:
            if stored.get(k) != asked.get(k):
                return _difference(f"{key}.{k}", stored.get(k), asked.get(k))
    return f"{key} {_short(stored)} -> {_short(asked)}"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def set_attrs(study: optuna.Study, trial_id: int, **attrs: Any) -> None:
    for key, value in attrs.items():
        storage_of(study).set_trial_user_attr(trial_id, key, json.loads(json.dumps(value)))


def design_key(spec: UNetSpec | dict[str, Any]) -> str:
    """A design's identity: its spec without the name (two trials of one design share it)."""
    d = spec.model_dump(mode="json") if isinstance(spec, UNetSpec) else dict(spec)
    d.pop("name", None)
    return hashlib.blake2b(json.dumps(d, sort_keys=True).encode(), digest_size=8).hexdigest()


def alignment_of(record: dict[str, Any]) -> tuple[float, float, str]:
    """(value, standard error, what it is) of a rung record's alignment objective: the text-blind-corrected
    alignment where scored, else raw TIFA, else minus the validation loss (standard error 0: a fixed batch)."""
    for key in ("alignment", "tifa"):
        if record.get(key) is not None:
            se = record.get(f"{key}_se")
            return float(record[key]), float(se) if se is not None and math.isfinite(se) else 0.0, key
    return -float(record["val_loss"]), 0.0, "-val_loss"


def objective_values(record: dict[str, Any], objectives: tuple[str, ...]) -> list[float]:
    """A rung record's objective values in the study's directions."""
    return [alignment_of(record)[0] if o == "alignment" else float(record[o]) for o in objectives]


def objective_se(record: dict[str, Any], objectives: tuple[str, ...]) -> list[float]:
    """Standard errors of ``objective_values`` (only alignment is measured with noise)."""
    return [alignment_of(record)[1] if o == "alignment" else 0.0 for o in objectives]


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


def _row(t: optuna.trial.FrozenTrial, rec: dict[str, Any]) -> dict[str, Any]:
    value, se, kind = alignment_of(rec)
    return {
        "trial": t.number,
        "rung": rec["rung"],
        "alignment": value,
        "alignment_se": se,
        "measure": kind,
        "tifa": rec.get("tifa"),
        "tifa_se": rec.get("tifa_se"),
        "val_loss": rec.get("val_loss"),
        "gmacs": t.user_attrs.get("gmacs"),
        "params": t.user_attrs.get("params"),
        "train_flops": rec.get("train_flops"),
        "flops_spent": t.user_attrs.get("flops_spent"),
        "spec": t.user_attrs.get("spec", {}).get("name"),
        "status": t.user_attrs.get("status"),
    }


def pareto_rows(study: optuna.Study, objectives: tuple[str, ...]) -> list[dict[str, Any]]:
    """The non-dominated designs among those trained to the last rung (COMPLETE), best alignment first; each row
    holds its rung and the alignment's standard error."""
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.values]
    points = [to_minimise(list(t.values), objectives) for t in done]
    rows = [_row(done[i], done[i].user_attrs[f"rung_{done[i].user_attrs['rung']}"]) for i in pareto(points)]
    return sorted(rows, key=lambda r: -r["alignment"])


def lower_rung_rows(study: optuna.Study) -> list[dict[str, Any]]:
    """Candidates that stopped below the last rung (or are still under way): their last rung's values, flagged with
    that rung and why they stopped. Never part of the Pareto set. A pruned trial a second chance continues is
    left out (its continuation stands for the design)."""
    rows = []
    trials = study.get_trials(deepcopy=False)
    continued = {t.user_attrs["continues"] for t in trials if "continues" in t.user_attrs}
    for t in trials:
        rung = t.user_attrs.get("rung", -1)
        if t.state == TrialState.COMPLETE or rung is None or rung < 0 or t.number in continued:
            continue
        rows.append({**_row(t, t.user_attrs[f"rung_{rung}"]), "reason": t.user_attrs.get("reason")})
    return sorted(rows, key=lambda r: (-r["rung"], -r["alignment"]))


def spec_of(trial: optuna.trial.FrozenTrial) -> UNetSpec:
    return UNetSpec.model_validate(trial.user_attrs["spec"])
