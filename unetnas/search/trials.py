"""The trial store: the search's one door to Optuna's storage (trials, their attributes, the study's own attributes).

Everything else in the search reads and writes trials through ``TrialStore`` (or the ``Study`` API). Optuna's public
API reaches trials by number through a ``Study``; the search also works by trial id (the storage's key) on trials
another worker made or a recovered lease names: user attributes, intermediate values, one trial read without
loading the whole study. Those are public ``BaseStorage`` methods; what Optuna keeps private is the way to them
from a ``Study`` or a ``FrozenTrial``, and its cache in front of an RDB storage. The adapter functions below
are the only code in ``unetnas/`` that touches a private Optuna attribute (``tests/test_architecture.py`` greps
for it), and each says why:

- ``storage_of(study)``: ``Study._storage``. A ``Study`` has no public accessor for the storage it was loaded from;
  the search writes by trial id, and the proposer opens its per-rung model studies in the same storage.
- ``trial_id(trial)``: ``FrozenTrial._trial_id``. The public way (``get_trial_id_from_study_id_trial_number``)
  costs one query per trial, and the scheduler reads every candidate's id on every decision.
- ``study_id(study)``: ``Study._study_id``, for the same reason (artifact URLs of the dashboard name it).
- ``cached(storage)`` / ``dispose(storage)`` / ``backend(study)``: ``optuna.storages._cached_storage._CachedStorage``, the cache that
  ``optuna.load_study(storage=url)`` puts in front of an ``RDBStorage`` (finished trials read once, not on every
  ``get_trials``), and the SQLAlchemy engine below it, closed before this process opens the SQLite file again; optuna-dashboard's artifact API takes the storage below
  the cache.
- ``set_finished_trial_system_attr(storage, trial_id, key, value)``: ``optuna.storages._rdb`` (its models and
  scoped session). Optuna refuses attribute changes to a finished trial, but a trial's samples are uploaded as an
  artifact after its rung is told, and the artifact record is a system attribute (optuna-dashboard lists it).
- ``nsga2_generation_key()``: ``NSGAIISampler._get_generation_key``: an observation added to a study must carry the
  generation NSGA-II reads, under the key the sampler itself uses.
"""

from __future__ import annotations

import json
from typing import Any

import optuna


# -- the adapter: the only private Optuna attributes used (see the module docstring) ---------------------------------
def storage_of(study: optuna.Study) -> optuna.storages.BaseStorage:
    return study._storage


def trial_id(trial: optuna.trial.FrozenTrial | optuna.trial.Trial) -> int:
    return trial._trial_id


def study_id(study: optuna.Study) -> int:
    return study._study_id


def cached(storage: optuna.storages.RDBStorage) -> optuna.storages.BaseStorage:
    """``storage`` behind Optuna's own trial cache, as ``optuna.load_study(storage=url)`` builds it."""
    from optuna.storages._cached_storage import _CachedStorage

    return _CachedStorage(storage)


def backend(study: optuna.Study) -> optuna.storages.BaseStorage:
    """The storage below Optuna's cache and unetnas' retry wrapper (``RetryingStorage``): what
    optuna-dashboard's artifact functions take (they read trials through it, without the cache's view)."""
    storage = getattr(storage_of(study), "_inner", storage_of(study))  # retry.RetryingStorage (ours)
    return getattr(storage, "_backend", storage)


def dispose(storage: Any) -> None:
    """Close the database connections of a storage from ``cached`` (also through ``retry.RetryingStorage``)."""
    inner = getattr(storage, "_inner", storage)  # retry.RetryingStorage (ours)
    backend = getattr(inner, "_backend", inner)
    engine = getattr(backend, "engine", None)
    if engine is not None:
        engine.dispose()


def set_finished_trial_system_attr(storage: optuna.storages.BaseStorage, trial_id: int, key: str, value: Any) -> None:
    """A system attribute on a trial, also a finished one (written through the RDB storage's session directly)."""
    from optuna.storages import RDBStorage
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session

    if not isinstance(storage, RDBStorage) or not storage.get_trial(trial_id).state.is_finished():
        storage.set_trial_system_attr(trial_id, key, value)
        return
    with _create_scoped_session(storage.scoped_session, True) as session:
        session.add(models.TrialSystemAttributeModel(trial_id=trial_id, key=key, value_json=json.dumps(value)))


def nsga2_generation_key() -> str:
    """The system attribute NSGA-II stores a trial's generation under."""
    return optuna.samplers.NSGAIISampler._get_generation_key()


# -- the store ----------------------------------------------------------------------------------------------------
class TrialStore:
    """Reads and writes of one study's trials and attributes by trial id (values stored as JSON)."""

    def __init__(self, study: optuna.Study) -> None:
        self.study = study
        self.storage = storage_of(study)

    @property
    def name(self) -> str:
        return self.study.study_name

    def trials(self, states: tuple[optuna.trial.TrialState, ...] | None = None) -> list[optuna.trial.FrozenTrial]:
        return self.study.get_trials(deepcopy=False, states=states)

    def get(self, tid: int) -> optuna.trial.FrozenTrial:
        return self.storage.get_trial(tid)

    def set_attrs(self, tid: int, **attrs: Any) -> None:
        for key, value in attrs.items():
            self.storage.set_trial_user_attr(tid, key, json.loads(json.dumps(value)))

    def set_intermediate(self, tid: int, step: int, value: float) -> None:
        self.storage.set_trial_intermediate_value(tid, step, value)

    def attr(self, key: str, default: Any = None) -> Any:
        return self.study.user_attrs.get(key, default)

    def set_attr(self, key: str, value: Any) -> None:
        self.study.set_user_attr(key, value)

    def ask(self) -> optuna.trial.Trial:
        return self.study.ask()

    def enqueue(self, params: dict[str, Any], **kw: Any) -> None:
        self.study.enqueue_trial(params, **kw)

    def tell(self, number: int, values: list[float] | None = None, state: Any = None) -> None:
        self.study.tell(number, values, state=state)
