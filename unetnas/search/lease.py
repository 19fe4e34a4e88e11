"""Leases: which worker runs which rung, in a small table beside the ledger (``unetnas_lease``).

A lease is a row (study, key) held by one worker (``holder``: host, pid, process start time, a random token) until
``expires_at`` (Unix seconds). ``claim`` is atomic: inside one write transaction (``BEGIN IMMEDIATE`` on SQLite,
``SELECT ... FOR UPDATE`` on PostgreSQL, where two first inserts of one key collide on the primary key) the row is
taken only when it is free, expired, or already ours. The holder renews it (``renew``, from a ``Heartbeat`` thread)
and writes the FLOPs its meter shows, so when the holder dies the next worker settles exactly what ran. A lease
held by a process of this host that no longer runs counts as expired at once; elsewhere it expires after its
time-to-live (choose it above the longest pause of a heartbeat: a database restart, a slow disk).

Keys: ``trial:<number>`` (the rung a worker runs: its reservation ids, the steps it started from and FLOPs per
step ride along) and ``scheduler`` (a short mutual exclusion around deciding and claiming the next job, so two
workers never promote past a rung's quota).
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from unetnas.search.ledger import _alive, _pg_setup_lock, _this_process
from unetnas.search.retry import retried
from unetnas.search.storage import writer

log = logging.getLogger("unetnas.search")
SCHEDULER = "scheduler"
DEFAULT_TTL_S = 120.0  # a lease not renewed for this long is taken over
BEAT_S = 2.0  # heartbeats every min(TTL/4, this): a dead worker's rung is charged up to its last one

metadata = sa.MetaData()  # apart from the ledger's: a ledger alone (tests, benchmarks) makes only its own tables
leases = sa.Table(
    "unetnas_lease",
    metadata,
    sa.Column("study_name", sa.String(512), primary_key=True),
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("holder", sa.String(320), nullable=False),  # host|pid|pid_start|token
    sa.Column("expires_at", sa.Double, nullable=False),
    sa.Column("trial_number", sa.Integer, nullable=True),
    sa.Column("trial_id", sa.Integer, nullable=True),
    sa.Column("rung", sa.Integer, nullable=True),
    sa.Column("reservations", sa.Text, nullable=False, default="{}"),  # {"train": id, "eval": id}
    sa.Column("start_steps", sa.Integer, nullable=True),  # steps of the checkpoint the rung began from
    sa.Column("per_step", sa.Double, nullable=True),  # training FLOPs per optimizer step
    sa.Column("folder", sa.Text, nullable=True),  # the trial's checkpoint folder (training)
    sa.Column("train_flops", sa.Double, nullable=False, default=0.0),  # the holder's meter at its last renewal
    sa.Column("eval_flops", sa.Double, nullable=False, default=0.0),
    sa.Column("touched_at", sa.Double, nullable=False),
)


@dataclass(frozen=True)
class Lease:
    """A lease row as read (see the module docstring for the fields)."""

    key: str
    holder: str
    expires_at: float
    trial_number: int | None
    trial_id: int | None
    rung: int | None
    reservations: dict[str, int]
    start_steps: int | None
    per_step: float | None
    folder: str | None
    train_flops: float
    eval_flops: float

    @classmethod
    def of(cls, row: Any) -> Lease:
        m = row._mapping
        return cls(
            m["key"],
            m["holder"],
            m["expires_at"],
            m["trial_number"],
            m["trial_id"],
            m["rung"],
            json.loads(m["reservations"] or "{}"),
            m["start_steps"],
            m["per_step"],
            m["folder"],
            m["train_flops"] or 0.0,
            m["eval_flops"] or 0.0,
        )


class Stopped(Exception):
    """A wait for a lease ended by a stop request (``Leases.held``)."""


def trial_key(number: int) -> str:
    return f"trial:{number}"


class Leases:
    """The leases of one study in the database behind ``engine``, held as this process (one token per object)."""

    def __init__(self, engine: sa.Engine, study_name: str, ttl_s: float = DEFAULT_TTL_S) -> None:
        if not ttl_s > 0:
            raise ValueError(f"ttl_s must be positive, got {ttl_s!r}")
        self.engine, self.study_name, self.ttl_s = engine, study_name, float(ttl_s)
        self._writer = writer(engine)
        host, pid, start = _this_process()
        self.me = f"{host}|{pid}|{start}|{secrets.token_hex(4)}"
        with self._writer.begin() as conn:
            _pg_setup_lock(conn)
            metadata.create_all(conn, tables=[leases], checkfirst=True)

    # -- holding ----------------------------------------------------------------------------------------------------
    @retried
    def claim(self, key: str, **fields: Any) -> bool:
        """Take lease ``key`` if it is free, expired (or its holder is gone) or ours; True if we hold it now."""
        now = time.time()
        values = {
            "holder": self.me,
            "expires_at": now + self.ttl_s,
            "touched_at": now,
            "train_flops": 0.0,
            "eval_flops": 0.0,
            **fields,
        }
        if "reservations" in values:
            values["reservations"] = json.dumps(values["reservations"])
        c = leases.c
        try:
            with self._writer.begin() as conn:
                row = conn.execute(
                    sa.select(leases).where(c.study_name == self.study_name, c.key == key).with_for_update()
                ).first()
                if row is None:
                    conn.execute(leases.insert().values(study_name=self.study_name, key=key, **values))
                    return True
                if row.holder != self.me and not self._gone(Lease.of(row), now):
                    return False
                conn.execute(leases.update().where(c.study_name == self.study_name, c.key == key).values(**values))
                return True
        except sa.exc.IntegrityError:  # PostgreSQL: another worker inserted the same key first
            return False

    @retried
    def renew(self, key: str, **fields: Any) -> bool:
        """Extend our lease ``key`` by the time-to-live (and store ``fields``); False if it is no longer ours."""
        now = time.time()
        if "reservations" in fields:
            fields["reservations"] = json.dumps(fields["reservations"])
        c = leases.c
        with self._writer.begin() as conn:
            n = conn.execute(
                leases.update()
                .where(c.study_name == self.study_name, c.key == key, c.holder == self.me)
                .values(expires_at=now + self.ttl_s, touched_at=now, **fields)
            ).rowcount
        return n == 1

    @retried
    def release(self, key: str) -> None:
        """Give up our lease ``key`` (nothing happens if it is no longer ours)."""
        c = leases.c
        with self._writer.begin() as conn:
            conn.execute(leases.delete().where(c.study_name == self.study_name, c.key == key, c.holder == self.me))

    @contextmanager
    def held(
        self,
        key: str,
        poll_s: float = 0.05,
        timeout_s: float | None = None,
        stop: Callable[[], bool] | None = None,
    ) -> Iterator[None]:
        """Hold lease ``key`` for the duration of a block, waiting for it (mutual exclusion between workers);
        raises ``Stopped`` when ``stop()`` turns true while waiting (Ctrl-C)."""
        t0 = time.monotonic()
        while not self.claim(key):
            if stop is not None and stop():
                raise Stopped(f"stopped while waiting for lease {key!r}")
            if timeout_s is not None and time.monotonic() - t0 > timeout_s:
                raise TimeoutError(f"lease {key!r} of study {self.study_name!r} not free after {timeout_s:.0f} s")
            time.sleep(poll_s)
        try:
            yield
        finally:
            self.release(key)

    # -- reading and taking over -----------------------------------------------------------------------------------
    @retried
    def all(self) -> list[Lease]:
        c = leases.c
        with self.engine.connect() as conn:
            return [Lease.of(r) for r in conn.execute(sa.select(leases).where(c.study_name == self.study_name))]

    def busy_trials(self) -> set[int]:
        """Numbers of the trials whose rung a live worker (any, this one included) holds."""
        now = time.time()
        return {
            x.trial_number
            for x in self.all()
            if x.key.startswith("trial:") and x.trial_number is not None and not self._gone(x, now)
        }

    def abandoned(self) -> list[Lease]:
        """Trial leases whose holder is gone (expired, or a dead process of this host)."""
        now = time.time()
        return [x for x in self.all() if x.key.startswith("trial:") and x.holder != self.me and self._gone(x, now)]

    @retried
    def take_over(self, lease: Lease) -> bool:
        """Delete an abandoned lease (still as read: same holder and expiry) so its work can be settled by us;
        False if someone else changed or took it first."""
        c = leases.c
        with self._writer.begin() as conn:
            n = conn.execute(
                leases.delete().where(
                    c.study_name == self.study_name,
                    c.key == lease.key,
                    c.holder == lease.holder,
                    c.expires_at == lease.expires_at,
                )
            ).rowcount
        return n == 1

    def _gone(self, lease: Lease, now: float) -> bool:
        if lease.expires_at < now:
            return True
        host, pid, start, _token = (lease.holder.split("|") + ["", "", "", ""])[:4]
        me_host = self.me.split("|")[0]
        if host == me_host and pid.isdigit() and lease.holder.rsplit("|", 1)[0] != self.me.rsplit("|", 1)[0]:
            return not _alive(int(pid), start)
        return False


class Heartbeat(threading.Thread):
    """Renews lease ``key`` every min(TTL/4, ``BEAT_S``) with the FLOPs ``meter`` shows (and touches the ledger's reservations);
    sets ``lost`` when the lease is no longer ours or could not be renewed within its time-to-live."""

    def __init__(self, leases_: Leases, key: str, meter: Any, ledger: Any = None) -> None:
        super().__init__(name=f"heartbeat-{key}", daemon=True)
        self.leases, self.key, self.meter, self.ledger = leases_, key, meter, ledger
        self.lost = False
        self._halt = threading.Event()
        self._last_ok = time.monotonic()

    def beat(self) -> None:
        try:
            ok = self.leases.renew(
                self.key,
                train_flops=float(self.meter.train_flops),
                eval_flops=float(self.meter.eval_flops),
                retry=False,
            )
            if self.ledger is not None:
                self.ledger.heartbeat(retry=False)
        except sa.exc.SQLAlchemyError as err:  # the database is away: keep trying until the lease runs out
            log.warning("heartbeat of %s failed: %s", self.key, str(err).splitlines()[0])
            if time.monotonic() - self._last_ok > self.leases.ttl_s:
                self.lost = True
            return
        if ok:
            self._last_ok = time.monotonic()
        else:
            self.lost = True

    def run(self) -> None:
        if isinstance(self.leases.engine.pool, sa.pool.StaticPool):
            return  # one shared connection (a private in-memory study): no other worker, and no thread may share it
        while not self._halt.wait(min(self.leases.ttl_s / 4, BEAT_S)):
            self.beat()

    def stop(self) -> None:
        self._halt.set()
        if self.is_alive():
            self.join()
