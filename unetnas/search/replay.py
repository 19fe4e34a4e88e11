"""Replay: a whole search answered from a ground-truth table instead of training, in this process (the benchmark
entry point ``replay_search``).

The table's model lives in ``groundtruth.py``, the executor that answers rungs from it in ``replay_executor.py``;
both are re-exported here. Imports point one way: ``groundtruth`` <- ``replay_executor`` <- ``session`` <- this.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from unetnas.report.summary import summary
from unetnas.search.groundtruth import EXTRAPOLATE, GroundTruth, Table  # noqa: F401 (re-exported)
from unetnas.search.replay_executor import ReplayExecutor  # noqa: F401 (re-exported)
from unetnas.search.runner import drive
from unetnas.search.session import SearchConfig, open_search, prepare
from unetnas.search.storage import memory_engine


def replay_search(
    table: GroundTruth | str | Path,
    budget: float,
    *,
    sampler: str = "tpe",
    seed: int = 0,
    objectives: tuple[str, ...] = ("alignment", "gmacs"),
    space: str | Path | None = None,
    recipe: str | Path | None = None,
    storage: Any = None,
    study: str = "replay",
    cycle: tuple[int, ...] | None = None,
    on_done: Callable[[Any, Any, Any], None] | None = None,
    max_gmacs: float | None = None,
    max_params: float | None = None,
    stop: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """Run one seeded search on the replayed table in this process and return its summary (``report.summary.summary``).

    ``storage``: None (in memory: an Optuna ``InMemoryStorage``, the ledger in a private in-memory SQLite database),
    an Optuna storage object (the ledger still in memory) or a URL (study and ledger there, e.g. a temporary SQLite
    file to inspect later). ``cycle``: the bracket types (see ``plan.make_plan``; baselines). ``on_done(search,
    job, outcome)`` is called after every run (anytime curves: ``search.ledger.summary()["spent"]``,
    ``outcome.record``). ``max_gmacs``/``max_params``: constraints, as ``--max-gmacs``; ``stop``: asked between
    jobs (Ctrl-C). No subprocess, no DeepSpeed; the table is read once if given as a ``GroundTruth``.
    """
    import optuna

    gt = table if isinstance(table, GroundTruth) else GroundTruth.load(table)
    url = storage if isinstance(storage, str) else None
    cfg = SearchConfig(
        budget=budget,
        space=Path(space) if space else None,
        recipe=Path(recipe) if recipe else None,
        study=study,
        objectives=tuple(objectives),
        sampler=sampler,
        seed=seed,
        replay=gt.path,
        storage=url,
        cycle=cycle,
        max_gmacs=max_gmacs,
        max_params=max_params,
    )
    p = prepare(cfg, table=gt)
    if url is not None:
        search, url = open_search(p)
    else:
        search, url = open_search(p, storage=storage or optuna.storages.InMemoryStorage(), engine=memory_engine())
    t0 = time.perf_counter()
    reason = drive(
        search, stop or (lambda: False), on_done=None if on_done is None else lambda job, out: on_done(search, job, out)
    )
    return summary(search, reason, time.perf_counter() - t0, url)
