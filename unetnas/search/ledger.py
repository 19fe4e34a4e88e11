"""The FLOPs ledger: every FLOP of training or evaluation is reserved before it is spent.

Two tables beside Optuna's in the study's database (``unetnas_budget``, one row per study;
``unetnas_reservation``, one row per claim) hold the account, so worker processes on one machine (SQLite) or
many (PostgreSQL) share one budget and survive crashes. A reservation goes ``reserved -> settled`` (actual <=
reserved; the rest returns to the pool), ``-> released`` (nothing spent) or ``-> lost`` (its worker died).
``spent`` sums the actual FLOPs of settled and lost ones, ``reserved`` the open ones; after every commit
``spent + reserved <= budget``. Every write first locks the study's budget row (``BEGIN IMMEDIATE`` on
SQLite, see ``storage.writer``; ``SELECT ... FOR UPDATE`` on PostgreSQL), so no two workers see the same
headroom.

Policies. Budget: ``create`` sets it once; a different number later keeps the stored one and warns
(``LedgerWarning``); ``set_budget`` changes it explicitly, never below what is spent or reserved.
Stale reservations: ``recover_stale`` charges them at the reserved amount (``lost``), because the work may
have run until the crash and the budget bounds compute actually used; ``charge=False`` releases them (only
when the work surely never ran). A worker that was merely slow may still settle a ``lost`` reservation,
which can only lower ``spent``.
"""

from __future__ import annotations

import math
import operator
import os
import socket
import time
import warnings
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from unetnas.errors import UserError
from unetnas.search.budget import format_flops
from unetnas.search.retry import retried
from unetnas.search.storage import writer

REL_TOL = 1e-9  # settle() accepts actual <= reserved * (1 + REL_TOL): float rounding of steps x flops/step
_PG_LOCK_KEY = 0x756E65746E6173  # advisory lock id ("unetnas") for creating tables and budget rows


class Status(StrEnum):
    """Life of a reservation."""

    RESERVED = "reserved"  # open: counted at its reserved amount
    SETTLED = "settled"  # done: counted at its actual amount
    RELEASED = "released"  # nothing spent: counted as 0
    LOST = "lost"  # worker died: charged at the reserved amount by recover_stale


class LedgerError(RuntimeError):
    """Misuse of the ledger by the program (not the user): no budget, double settle, overspending."""


class LedgerWarning(UserWarning):
    """The ledger kept a stored setting that differs from the one asked for."""


metadata = sa.MetaData()
budgets = sa.Table(
    "unetnas_budget",
    metadata,
    sa.Column("study_name", sa.String(512), primary_key=True),  # Optuna's own limit on study names
    sa.Column("budget", sa.Double, nullable=False),
    sa.Column("created_at", sa.Double, nullable=False),  # all times: Unix seconds of the writing host
    sa.Column("updated_at", sa.Double, nullable=False),
)
reservations = sa.Table(
    "unetnas_reservation",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("study_name", sa.String(512), sa.ForeignKey("unetnas_budget.study_name"), nullable=False),
    sa.Column("trial_number", sa.Integer, nullable=True),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("reserved", sa.Double, nullable=False),
    sa.Column("actual", sa.Double, nullable=True),  # set when finished
    sa.Column("note", sa.Text, nullable=False),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("pid_start", sa.String(32), nullable=False),  # process start time: tells a reused pid apart
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("touched_at", sa.Double, nullable=False),  # last heartbeat
    sa.Column("finished_at", sa.Double, nullable=True),
    sa.Index("ix_unetnas_reservation_study_status", "study_name", "status"),
)


@dataclass(frozen=True)
class Reservation:
    """A claim on ``flops`` of the budget, held by process ``pid`` on ``host``."""

    id: int
    study_name: str
    trial_number: int | None
    kind: str
    flops: float
    note: str
    host: str
    pid: int
    created_at: float


_RES_FIELDS = ("id", "study_name", "trial_number", "kind", "reserved", "note", "host", "pid", "created_at")


class Ledger:
    """The FLOPs account of one study, in the database behind ``engine`` (see ``storage.engine_for``)."""

    def __init__(self, engine: sa.Engine, study_name: str) -> None:
        self.engine = engine
        self.study_name = study_name
        self._writer = writer(engine)
        self._me = _this_process()
        with self._writer.begin() as conn:
            _pg_setup_lock(conn)
            metadata.create_all(conn, checkfirst=True)

    @retried
    def create(self, budget: float) -> float:
        """Set the study's budget if it has none; return the budget in force.

        If one is stored and differs, it is kept and a ``LedgerWarning`` says so (use ``set_budget``).
        """
        budget = _amount(budget, "budget", positive=True)
        with self._txn(setup=True) as (conn, stored):
            if stored is None:
                self._insert_budget(conn, budget)
                return budget
        if stored != budget:
            warnings.warn(
                f"study {self.study_name!r} keeps its budget of {format_flops(stored)} FLOPs (asked "
                f"for {format_flops(budget)}); change it with set_budget",
                LedgerWarning,
                stacklevel=2,
            )
        return stored

    @retried
    def set_budget(self, budget: float) -> None:
        """Change the budget (or create it). Refuses a budget below what is spent or reserved already."""
        budget = _amount(budget, "budget", positive=True)
        with self._txn(setup=True) as (conn, stored):
            if stored is None:
                self._insert_budget(conn, budget)
                return
            committed = math.fsum(self._counted(conn))
            if budget < committed:
                raise UserError(
                    f"must be at least the {format_flops(committed)} FLOPs already spent or reserved",
                    field="--budget",
                    value=budget,
                )
            conn.execute(
                budgets.update()
                .where(budgets.c.study_name == self.study_name)
                .values(budget=budget, updated_at=time.time())
            )

    @retried
    def reserve(self, trial_number: int | None, kind: str, flops: float, note: str = "") -> Reservation | None:
        """Claim ``flops`` for ``kind`` work (``train``, ``eval``) of a trial; None if it does not fit."""
        flops = _amount(flops, "flops")
        trial_number = None if trial_number is None else operator.index(trial_number)  # numpy ints too
        if not kind or len(kind) > 64:
            raise ValueError(f"kind must be 1 to 64 characters, got {kind!r}")
        host, pid, start = self._me
        with self._txn() as (conn, budget):
            if math.fsum([*self._counted(conn), flops]) > budget:
                return None
            now = time.time()
            result = conn.execute(
                reservations.insert().values(
                    study_name=self.study_name,
                    trial_number=trial_number,
                    kind=kind,
                    status=Status.RESERVED.value,
                    reserved=flops,
                    note=note,
                    host=host,
                    pid=pid,
                    pid_start=start,
                    created_at=now,
                    touched_at=now,
                )
            )
            rid = int(result.inserted_primary_key[0])
        return Reservation(rid, self.study_name, trial_number, kind, flops, note, host, pid, now)

    def settle(self, reservation: Reservation, actual_flops: float) -> None:
        """Record that ``actual_flops`` (<= reserved) were spent; the rest goes back to the budget.

        A trial interrupted mid-rung settles what it did (steps done x FLOPs per step). More than reserved
        raises ``LedgerError`` and changes nothing: the caller must stop before exceeding its reservation.
        """
        self._finish(reservation, actual_flops, Status.SETTLED)

    def release(self, reservation: Reservation) -> None:
        """Return the whole reservation: nothing was spent."""
        self._finish(reservation, 0.0, Status.RELEASED)

    @retried
    def heartbeat(self) -> int:
        """Mark this process's open reservations as alive now; returns how many. Call it during long work."""
        host, pid, start = self._me
        r = reservations.c
        with self._txn() as (conn, _):
            mine = reservations.update().where(
                r.study_name == self.study_name,
                r.status == Status.RESERVED.value,
                r.host == host,
                r.pid == pid,
                r.pid_start == start,
            )
            return conn.execute(mine.values(touched_at=time.time())).rowcount

    @retried
    def recover_stale(self, older_than_s: float, *, charge: bool = True) -> list[Reservation]:
        """Close open reservations of dead workers; return them.

        Stale: held by a process of this host that no longer runs (or whose pid now belongs to another
        process), or by anyone but this process with no heartbeat for ``older_than_s`` seconds (choose it
        above the longest work between heartbeats). Stale reservations become ``lost`` and stay charged at
        their reserved amount; with ``charge=False`` they are released.
        """
        now = time.time()
        r = reservations.c
        found = []
        with self._txn() as (conn, _):
            rows = conn.execute(
                sa.select(reservations).where(r.study_name == self.study_name, r.status == Status.RESERVED.value)
            ).all()
            for row in rows:
                reason = self._stale_reason(row, now, older_than_s)
                if reason is None:
                    continue
                status, actual = (Status.LOST, row.reserved) if charge else (Status.RELEASED, 0.0)
                verb = "charged" if charge else "released"
                conn.execute(
                    reservations.update()
                    .where(r.id == row.id)
                    .values(
                        status=status.value,
                        actual=actual,
                        finished_at=now,
                        note=f"{row.note} [recovered: {reason}; {verb}]".strip(),
                    )
                )
                found.append(Reservation(*(row._mapping[f] for f in _RES_FIELDS)))
        return found

    @retried
    def summary(self) -> dict[str, Any]:
        """Totals: budget, spent, reserved, remaining, by_kind and by_trial (spent), by_status (counts)."""
        r = reservations.c
        with self.engine.connect() as conn, conn.begin():  # one snapshot
            budget = self._budget(conn, lock=False)
            rows = conn.execute(
                sa.select(r.trial_number, r.kind, r.status, r.reserved, r.actual).where(r.study_name == self.study_name)
            ).all()
        if budget is None:
            raise self._no_budget()
        _check_rows(rows, budget, self.study_name)
        spent = [row.actual if row.status in (Status.SETTLED, Status.LOST) else 0.0 for row in rows]
        held = [row.reserved for row in rows if row.status == Status.RESERVED]
        by_kind: dict[str, list[float]] = defaultdict(list)
        by_trial: dict[int | None, list[float]] = defaultdict(list)
        for row, done in zip(rows, spent):
            by_kind[row.kind].append(done)
            by_trial[row.trial_number].append(done)
        return {
            "budget": budget,
            "spent": math.fsum(spent),
            "reserved": math.fsum(held),
            "remaining": budget - math.fsum(spent + held),
            "by_kind": {k: math.fsum(v) for k, v in sorted(by_kind.items())},
            "by_trial": {t: math.fsum(by_trial[t]) for t in sorted(by_trial, key=lambda t: (t is None, t or 0))},
            "by_status": dict(Counter(row.status for row in rows)),
            "n_reservations": len(rows),
        }

    # --- internals -------------------------------------------------------------------------------------

    def _no_budget(self) -> LedgerError:
        return LedgerError(f"study {self.study_name!r} has no budget: call Ledger.create(budget) first")

    def _budget(self, conn: sa.Connection, *, lock: bool = True) -> float | None:
        query = sa.select(budgets.c.budget).where(budgets.c.study_name == self.study_name)
        return conn.execute(query.with_for_update() if lock else query).scalar_one_or_none()

    def _insert_budget(self, conn: sa.Connection, budget: float) -> None:
        now = time.time()
        conn.execute(budgets.insert().values(study_name=self.study_name, budget=budget, created_at=now, updated_at=now))

    @contextmanager
    def _txn(self, *, setup: bool = False) -> Iterator[tuple[sa.Connection, Any]]:
        """A write transaction holding the study's budget row; yields it and the budget (None: not created,
        an error unless ``setup``)."""
        with self._writer.begin() as conn:
            if setup:
                _pg_setup_lock(conn)
            budget = self._budget(conn)
            if budget is None and not setup:
                raise self._no_budget()
            yield conn, budget

    def _counted(self, conn: sa.Connection) -> list[float]:
        """Every amount that counts against the budget: open reservations and spent FLOPs."""
        r = reservations.c
        rows = conn.execute(
            sa.select(r.status, r.reserved, r.actual).where(
                r.study_name == self.study_name, r.status != Status.RELEASED.value
            )
        ).all()
        _check_rows(rows, None, self.study_name)
        return [row.reserved if row.status == Status.RESERVED else row.actual for row in rows]

    @retried
    def settle_id(self, rid: int, actual_flops: float) -> bool:
        """Settle reservation ``rid`` at ``actual_flops`` (capped at what it reserved; 0 releases it), for a worker
        settling a dead one's lease; False if it was already finished."""
        r = reservations.c
        with self._txn() as (conn, _):
            row = conn.execute(
                sa.select(r.status, r.reserved).where(r.id == rid, r.study_name == self.study_name)
            ).first()
            if row is None or row.status != Status.RESERVED:
                return False
            actual = min(_amount(actual_flops, "actual_flops"), row.reserved)
            status = Status.SETTLED if actual > 0 else Status.RELEASED
            conn.execute(
                reservations.update()
                .where(r.id == rid)
                .values(status=status.value, actual=actual, finished_at=time.time())
            )
        return True

    @retried
    def trial_spent(self, trial_number: int) -> float:
        """FLOPs spent (settled or lost) by trial ``trial_number``: its account in the ledger."""
        r = reservations.c
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(r.status, r.actual).where(
                    r.study_name == self.study_name,
                    r.trial_number == trial_number,
                    r.status.in_([Status.SETTLED.value, Status.LOST.value]),
                )
            ).all()
        return math.fsum(row.actual for row in rows)

    def reserved_amount(self, rid: int) -> tuple[str, float, float | None]:
        """(status, reserved, actual) of reservation ``rid``."""
        r = reservations.c
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(r.status, r.reserved, r.actual).where(r.id == rid)).one()
        return row.status, row.reserved, row.actual

    @retried
    def _finish(self, res: Reservation, actual: float, status: Status) -> None:
        actual = _amount(actual, "actual_flops")
        r = reservations.c
        with self._txn() as (conn, _):
            row = conn.execute(
                sa.select(r.status, r.reserved, r.actual).where(r.id == res.id, r.study_name == self.study_name)
            ).first()
            if row is None:
                raise LedgerError(f"reservation {res.id} does not exist in study {self.study_name!r}")
            if row.status == status and row.actual == min(actual, row.reserved):
                return  # a retried call whose first try had landed: settling twice counts once
            if row.status not in (Status.RESERVED, Status.LOST):
                raise LedgerError(f"reservation {res.id} is already {row.status}")
            if actual > row.reserved:
                if actual > row.reserved * (1 + REL_TOL):
                    raise LedgerError(f"reservation {res.id}: spent {actual!r} > reserved {row.reserved!r} FLOPs")
                actual = row.reserved
            conn.execute(
                reservations.update()
                .where(r.id == res.id)
                .values(status=status.value, actual=actual, finished_at=time.time())
            )

    def _stale_reason(self, row: Any, now: float, older_than_s: float) -> str | None:
        host, pid, start = self._me
        if (row.host, row.pid, row.pid_start) == (host, pid, start):
            return None  # ours, and we are alive
        if row.host == host and not _alive(row.pid, row.pid_start):
            return f"process {row.pid} gone"
        if now - row.touched_at > older_than_s:
            return f"no heartbeat for {now - row.touched_at:.0f} s"
        return None


def _check_rows(rows: list[Any], budget: float | None, study: str) -> None:
    """Ledger rows as this module writes them: a known status, finite non-negative amounts, an actual amount on
    every settled or lost row; a row edited or damaged outside unetnas is one ``UserError`` naming the database and
    the row, before any total is computed from it (a wrong total would let a search overspend)."""
    from unetnas.search.storage import last_opened

    def bad(what: str) -> UserError:
        return UserError(
            f"the ledger of study {study!r} holds {what}: edited or damaged outside unetnas; restore the database "
            "from a copy",
            field="--storage",
            value=last_opened(),
        )

    def amount(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0

    if budget is not None and not (amount(budget) and budget > 0):
        raise bad(f"budget {budget!r}")
    statuses = {s.value for s in Status}
    for row in rows:
        if row.status not in statuses:
            raise bad(f"a reservation of status {row.status!r}")
        if not amount(row.reserved):
            raise bad(f"a reservation of {row.reserved!r} FLOPs")
        if (row.status in (Status.SETTLED, Status.LOST) or row.actual is not None) and not amount(row.actual):
            raise bad(f"a {row.status} reservation that spent {row.actual!r} FLOPs")


def _pg_setup_lock(conn: sa.Connection) -> None:
    """On PostgreSQL, serialise creating tables and budget rows: ``FOR UPDATE`` cannot lock a missing row."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})


def _amount(value: float, name: str, *, positive: bool = False) -> float:
    """``value`` as a float (numpy and torch scalars welcome); finite, >= 0, or > 0 if ``positive``."""
    try:
        x = float(value)
    except (TypeError, ValueError, OverflowError):
        x = math.nan
    if not math.isfinite(x) or x < 0 or (positive and x == 0):
        raise ValueError(f"{name} must be a finite {'positive' if positive else 'non-negative'} number, got {value!r}")
    return x


def _this_process() -> tuple[str, int, str]:
    pid = os.getpid()
    return socket.gethostname(), pid, _proc_stat(pid)[1]


def _proc_stat(pid: int) -> tuple[str, str]:
    """(state, start time in clock ticks after boot) of a process from Linux /proc; ("", "") elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return "", ""
    return fields[0], fields[19]


def _alive(pid: int, start: str) -> bool:
    """Whether process ``pid`` of this host still runs and is the one that started at ``start``."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        pass
    if not start:  # recorded without /proc: the pid is all we know
        return True
    state, now_start = _proc_stat(pid)
    return state not in ("", "Z", "X") and now_start == start
