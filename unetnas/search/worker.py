"""One worker joining a study that ``unetnas study create`` made: the library functions behind `unetnas study create`
and `unetnas worker`.

Any number of workers, on any machines that reach the study's database, share its plan, ledger and trials (see
``runner.drive`` and ``lease.py``). A worker reads the configuration the study was created with (space, recipe,
data, objectives, sampler, seed), so `unetnas worker` takes only the storage URL and the study name.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from unetnas.errors import UserError
from unetnas.search.executor import Meter, OnStep, RungJob, RungResult, ShouldStop, Wrapper
from unetnas.search.lease import DEFAULT_TTL_S
from unetnas.search.study import SETTINGS_ATTR


def create_study(cfg: Any) -> dict[str, Any]:
    """Create the study, its plan and its ledger once (``cfg``: a ``session.SearchConfig`` with a storage URL);
    returns {"study", "storage", "budget", "candidates", "brackets", "created", "runs_dir" (the stored one)}. Running it again with the same
    settings changes nothing; other settings are refused (one line)."""
    from unetnas.search.session import open_search, prepare

    if cfg.storage is None:
        raise UserError(
            "is needed: workers on other machines must reach the study (e.g. postgresql+psycopg://"
            "user:password@host/db)",
            field="--storage",
        )
    from unetnas.search.session import close_storage, rdb_storage
    from unetnas.search.storage import creation_lock

    p = prepare(cfg)
    with creation_lock(cfg.storage):
        storage = rdb_storage(cfg.storage)
        existed = cfg.study in {s.study_name for s in storage.get_all_studies()}
        close_storage(storage)
    search, url = open_search(p)
    return {
        "study": cfg.study,
        "storage": url,
        "budget": search.ledger.summary()["budget"],
        "candidates": search.plan.candidates,
        "brackets": len(search.plan.brackets),
        "created": not existed,
        "runs_dir": (search.study.user_attrs.get(SETTINGS_ATTR, {}).get("launch") or {}).get("runs_dir"),
    }


def open_worker(
    url: str,
    study: str,
    *,
    replay: Path | None = None,
    lease_s: float = DEFAULT_TTL_S,
    gpus: int = 1,
    replay_flops_per_s: float | None = None,
):
    """(Search, redacted url) of a worker on an existing study; ``gpus`` > 1 runs each trial on that many ranks
    (``launch.LaunchedExecutor``); ``replay_flops_per_s`` makes replayed rungs last as long as their FLOPs take at
    that speed (``PacedExecutor``: scaling and fault tests on the replay)."""
    from unetnas.search.ledger import Ledger, LedgerError
    from unetnas.search.session import config_of_study, open_search, prepare
    from unetnas.search.storage import engine_for, redact

    engine = engine_for(url)
    try:
        budget = Ledger(engine, study).summary()["budget"]
    except LedgerError:
        raise UserError(
            f"has no FLOPs ledger in {redact(url)}; create it first with `unetnas study create`",
            field="--study",
            value=study,
        ) from None
    finally:
        engine.dispose()
    cfg = config_of_study(url, study, budget, replay)
    p = prepare(cfg)
    search, red = open_search(p, lease_ttl_s=lease_s)
    if gpus > 1:
        if p.table is not None:
            raise UserError("a replay trains nothing: run it without --gpus", field="--gpus", value=gpus)
        from unetnas.search.launch import LaunchedExecutor

        search.executor = LaunchedExecutor(search.executor, cfg, gpus)
    if replay_flops_per_s is not None:
        if p.table is None:
            raise UserError("paces replayed rungs only (the study trains)", field="--replay-flops-per-s")
        search.executor = PacedExecutor(search.executor, replay_flops_per_s)
    return search, red


class PacedExecutor(Wrapper):
    """Wraps an executor so each rung takes (its FLOPs / ``flops_per_s``) seconds, its meter rising as it goes and
    ``should_stop`` honoured every 50 ms: a replayed rung that behaves like a trained one in time (scaling and
    fault-injection tests)."""

    def __init__(self, inner: Any, flops_per_s: float) -> None:
        super().__init__(inner)
        self.flops_per_s = flops_per_s

    def run(self, job: RungJob, meter: Meter, should_stop: ShouldStop, on_step: OnStep | None = None) -> RungResult:
        full = Meter()
        result = self.inner.run(job, full, lambda: False, None)
        t0 = time.monotonic()
        for share, phase in ((full.train_flops, "train"), (full.eval_flops, "eval")):
            seconds, start = share / self.flops_per_s, time.monotonic()
            while (done := time.monotonic() - start) < seconds:
                if should_stop():
                    return RungResult("stopped")
                if phase == "train":  # evaluation counts once it finishes
                    meter.train_flops = share * done / seconds
                time.sleep(min(0.05, seconds - done))
            setattr(meter, f"{phase}_flops", share)
        self.inner.wall["train"] += time.monotonic() - t0
        return result
