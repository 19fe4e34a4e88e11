"""Retries with exponential backoff around database calls, so a restarted (or briefly unreachable) database server
pauses workers instead of killing them.

Retried: SQLAlchemy's ``OperationalError`` / ``InterfaceError`` and any DBAPI error that invalidated its connection
(the server went away), and Optuna's ``StorageInternalError`` (how ``RDBStorage`` reports them). Waits 0.25 s,
0.5 s, 1 s, ... up to ``MAX_WAIT_S`` between tries, for ``RETRY_FOR_S`` seconds in all, then raises the last error.
Every call retried must be safe to repeat: a transaction that failed was rolled back.
"""

from __future__ import annotations

import functools
import logging
import random
import time
from collections.abc import Callable
from typing import Any, TypeVar

import optuna
import sqlalchemy as sa

log = logging.getLogger("unetnas.search")
RETRY_FOR_S = 300.0  # give up after this long (a database restart takes seconds; a failover a minute or two)
FIRST_CONTACT_S = 5.0  # until this process has reached the database once: a wrong URL fails fast, not in 5 min
_reached = False  # set by the first call that succeeds
FIRST_WAIT_S = 0.25
MAX_WAIT_S = 15.0
F = TypeVar("F", bound=Callable[..., Any])


def transient(err: BaseException) -> bool:
    """Whether ``err`` says the database was unreachable or restarting (worth another try)."""
    if isinstance(err, optuna.exceptions.StorageInternalError):
        return True
    if isinstance(err, (sa.exc.OperationalError, sa.exc.InterfaceError)):
        return True
    return isinstance(err, sa.exc.DBAPIError) and bool(err.connection_invalidated)


def call(fn: Callable[..., Any], *args: Any, retry_for_s: float = RETRY_FOR_S, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)``, tried again after transient database errors (see the module docstring)."""
    global _reached
    t0, wait = time.monotonic(), FIRST_WAIT_S
    while True:
        try:
            out = fn(*args, **kwargs)
            _reached = True
            return out
        except Exception as err:
            limit = retry_for_s if _reached else min(retry_for_s, FIRST_CONTACT_S)
            if not transient(err) or time.monotonic() - t0 + wait > limit:
                raise
            # before first contact the retries are silent: an unreachable URL ends in one error line, not five
            level = logging.WARNING if _reached else logging.DEBUG
            log.log(level, "database unavailable (%s); retrying in %.1f s", str(err).splitlines()[0][:120], wait)
            time.sleep(wait * (1 + 0.25 * random.random()))  # jitter: workers do not all return at once
            wait = min(wait * 2, MAX_WAIT_S)


def retried(fn: F) -> F:
    """Decorator: retry the call (see ``call``); pass ``retry=False`` to try once."""

    @functools.wraps(fn)
    def wrapper(*args: Any, retry: bool = True, **kwargs: Any) -> Any:
        return call(fn, *args, **kwargs) if retry else fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


class RetryingStorage(optuna.storages.BaseStorage):
    """An Optuna storage whose every call is retried on transient database errors (wraps, e.g., the cached RDB
    storage Optuna itself would use). A state change that reached the database before its answer was lost is not
    redone: telling a trial the state it already has is accepted."""

    def __init__(self, inner: optuna.storages.BaseStorage) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:  # anything not in BaseStorage's interface (engine, url, ...)
        return getattr(self._inner, name)

    def set_trial_state_values(self, trial_id: int, state: Any, values: Any = None) -> bool:
        tries = []

        def once() -> bool:
            tries.append(1)
            return self._inner.set_trial_state_values(trial_id, state, values)

        try:
            return call(once)
        except optuna.exceptions.UpdateFinishedTrialError:
            if len(tries) < 2 or self._inner.get_trial(trial_id).state != state:
                raise  # not a retried write that had landed
            return True


def _wrap(name: str) -> Callable[..., Any]:
    def method(self: RetryingStorage, *args: Any, **kwargs: Any) -> Any:
        return call(getattr(self._inner, name), *args, **kwargs)

    method.__name__ = name
    return method


for _name, _value in list(vars(optuna.storages.BaseStorage).items()):
    if callable(_value) and not _name.startswith("_") and _name not in vars(RetryingStorage):
        setattr(RetryingStorage, _name, _wrap(_name))
RetryingStorage.__abstractmethods__ = frozenset()
