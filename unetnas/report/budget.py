"""The FLOPs ledger of a study as records: what was spent, on which kind of work (training, evaluation), at which
rung and when. Read once from the ledger tables (``unetnas.search.ledger``), then summarised by pure functions."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

RUNG_NOTE = re.compile(r"\brung (\d+)\b")  # the search notes each reservation "rung K"
KIND_NAMES = {"train": "training", "eval": "evaluation"}


@dataclass(frozen=True)
class Spend:
    """One ledger reservation: ``flops`` counted against the budget (actual if finished, reserved while open)."""

    trial: int | None
    kind: str  # "train" | "eval" | other kinds a caller reserved
    rung: int | None
    status: str  # reserved | settled | released | lost
    flops: float
    started: float  # Unix seconds
    finished: float | None


@dataclass(frozen=True)
class BudgetRecords:
    budget: float | None  # None: the study has no ledger (not made by unetnas search)
    spends: tuple[Spend, ...]


def read_budget(url: str, study_name: str) -> BudgetRecords:
    """The ledger rows of ``study_name`` in the database at ``url`` (no ledger tables: budget None, no rows)."""
    import sqlalchemy as sa

    from unetnas.search.ledger import budgets, reservations
    from unetnas.search.storage import engine_for

    engine = engine_for(url)
    try:
        with engine.connect() as conn:
            tables = set(sa.inspect(conn).get_table_names())
            if not {budgets.name, reservations.name} <= tables:
                return BudgetRecords(None, ())
            budget = conn.execute(
                sa.select(budgets.c.budget).where(budgets.c.study_name == study_name)
            ).scalar_one_or_none()
            r = reservations.c
            rows = conn.execute(sa.select(reservations).where(r.study_name == study_name).order_by(r.id)).all()
    finally:
        engine.dispose()
    return BudgetRecords(budget, tuple(spend_of(row._mapping) for row in rows))


def spend_of(row) -> Spend:  # noqa: ANN001 (a row mapping of unetnas_reservation)
    status = row["status"]
    if status == "released":
        flops = 0.0
    elif status == "reserved":
        flops = float(row["reserved"])
    else:
        flops = float(row["actual"] if row["actual"] is not None else row["reserved"])
    m = RUNG_NOTE.search(row["note"] or "")
    return Spend(
        trial=row["trial_number"],
        kind=row["kind"],
        rung=int(m.group(1)) if m else None,
        status=status,
        flops=flops,
        started=float(row["created_at"]),
        finished=None if row["finished_at"] is None else float(row["finished_at"]),
    )


def burn_down(records: BudgetRecords) -> list[tuple[float, float]]:
    """(seconds since the first reservation, FLOPs remaining) after each spend, charged when it finished (open
    reservations when they were made). Starts at (0, budget)."""
    if records.budget is None:
        return []
    events = sorted((s.finished if s.finished is not None else s.started, s.flops) for s in records.spends)
    t0 = min((s.started for s in records.spends), default=0.0)
    out, left = [(0.0, records.budget)], records.budget
    for t, flops in events:
        if flops:
            left -= flops
            out.append((t - t0, left))
    return out


def spent_by_rung_and_kind(spends: Sequence[Spend]) -> dict[tuple[int | None, str], float]:
    """FLOPs counted per (rung, kind), rungs ascending (unknown rung last)."""
    acc: dict[tuple[int | None, str], float] = defaultdict(float)
    for s in spends:
        if s.flops:
            acc[(s.rung, s.kind)] += s.flops
    return dict(sorted(acc.items(), key=lambda kv: (kv[0][0] is None, kv[0][0] or 0, kv[0][1])))
