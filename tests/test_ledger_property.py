"""Property test of the FLOPs ledger (Hypothesis, stateful): any interleaving of reserve / settle / release / expire
(``recover_stale``, charged or released) / late settles of expired claims / a peer settling a dead worker's claim
(``settle_id``) / heartbeats / budget changes, by three workers sharing one study in a real SQLite database, keeps

* ``spent + reserved <= budget`` after every step,
* ``spent`` = the sum of every trial's account (``trial_spent``) + the caption encoding (trial None, kind "text"),
* ``spent``, ``reserved`` and the count of claims by status equal to a plain model of the rules.

Amounts are whole multiples of 1e9 FLOPs, so float sums are exact and the comparisons can be exact too.
"""

from __future__ import annotations

import math
import time
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, consumes, initialize, invariant, multiple, rule

from unetnas.errors import UserError
from unetnas.search.ledger import Ledger, LedgerError, Reservation, Status, reservations
from unetnas.search.storage import engine_for

UNIT = 1e9
WORKERS = 3
EXAMPLES = 150
STEPS = 30
RUNS = {"examples": 0, "steps": 0}


class Claim:
    """The model of one reservation: who holds it and where it stands."""

    def __init__(self, res: Reservation, worker: int) -> None:
        self.res, self.worker, self.status, self.actual = res, worker, Status.RESERVED, 0.0

    @property
    def counted(self) -> float:
        """What it counts against the budget."""
        return self.res.flops if self.status == Status.RESERVED else self.actual


def ledger_machine(engine: sa.Engine) -> type[RuleBasedStateMachine]:
    class LedgerMachine(RuleBasedStateMachine):
        claims = Bundle("claims")

        @initialize(budget=st.integers(1, 60))
        def setup(self, budget: int) -> None:
            RUNS["examples"] += 1
            study = uuid.uuid4().hex
            self.books = [Ledger(engine, study) for _ in range(WORKERS)]
            for i, book in enumerate(self.books):  # three workers: one host each, so only heartbeats tell staleness
                book._me = (f"worker-{i}", 1000 + i, "1")
            self.budget = self.books[0].create(budget * UNIT)
            self.all: list[Claim] = []

        # -- the model -------------------------------------------------------------------------------------
        def spent(self) -> float:
            return math.fsum(c.actual for c in self.all if c.status in (Status.SETTLED, Status.LOST))

        def reserved(self) -> float:
            return math.fsum(c.res.flops for c in self.all if c.status == Status.RESERVED)

        # -- rules -----------------------------------------------------------------------------------------
        @rule(target=claims, worker=st.integers(0, WORKERS - 1), trial=st.integers(0, 4), amount=st.integers(0, 30))
        def reserve(self, worker: int, trial: int, amount: int):  # noqa: ANN201 (a Bundle value or multiple())
            kind = "train" if amount % 3 else "eval"
            res = self.books[worker].reserve(trial, kind, amount * UNIT, note=f"trial {trial}")
            fits = self.spent() + self.reserved() + amount * UNIT <= self.budget
            assert (res is not None) == fits, (amount, self.spent(), self.reserved(), self.budget)
            if res is None:
                return multiple()
            claim = Claim(res, worker)
            self.all.append(claim)
            return claim

        @rule(worker=st.integers(0, WORKERS - 1), amount=st.integers(0, 10))
        def encode_captions(self, worker: int, amount: int) -> None:
            """The search's caption encoding: reserved and settled at once, on no trial."""
            res = self.books[worker].reserve(None, "text", amount * UNIT, note="captions")
            if res is None:
                assert self.spent() + self.reserved() + amount * UNIT > self.budget
                return
            self.books[worker].settle(res, amount * UNIT)
            claim = Claim(res, worker)
            claim.status, claim.actual = Status.SETTLED, amount * UNIT
            self.all.append(claim)

        @rule(claim=consumes(claims), share=st.integers(0, 10))
        def settle(self, claim: Claim, share: int) -> None:
            """The holder settles what it spent (a share of the claim); an expired claim may still be settled."""
            actual = float(math.floor(claim.res.flops * share / 10 / UNIT) * UNIT)
            book = self.books[claim.worker]
            if claim.status in (Status.RESERVED, Status.LOST):
                book.settle(claim.res, actual)
                claim.status, claim.actual = Status.SETTLED, actual
            else:  # finished: settling again either raises or repeats the same settle; the account never moves
                try:
                    book.settle(claim.res, actual)
                except LedgerError:
                    pass

        @rule(claim=consumes(claims))
        def release(self, claim: Claim) -> None:
            if claim.status in (Status.RESERVED, Status.LOST):
                self.books[claim.worker].release(claim.res)
                claim.status, claim.actual = Status.RELEASED, 0.0

        @rule(claim=claims, extra=st.integers(1, 5))
        def overrun(self, claim: Claim, extra: int) -> None:
            """Settling more than reserved raises and changes nothing."""
            if claim.status in (Status.RESERVED, Status.LOST):
                with pytest.raises(LedgerError):
                    self.books[claim.worker].settle(claim.res, claim.res.flops + extra * UNIT)

        @rule(victim=st.integers(0, WORKERS - 1), by=st.integers(0, WORKERS - 1), charge=st.booleans())
        def expire(self, victim: int, by: int, charge: bool) -> None:
            """The victim stops heartbeating for an hour; another worker recovers its open claims."""
            if victim == by:
                return
            host = f"worker-{victim}"
            r = reservations.c
            with engine.begin() as conn:
                conn.execute(
                    reservations.update()
                    .where(r.study_name == self.books[0].study_name, r.host == host, r.status == "reserved")
                    .values(touched_at=time.time() - 3600)
                )
            for i, book in enumerate(self.books):  # everyone else is alive
                if i != victim:
                    book.heartbeat()
            found = self.books[by].recover_stale(older_than_s=600, charge=charge)
            mine = [c for c in self.all if c.worker == victim and c.status == Status.RESERVED]
            assert sorted(x.id for x in found) == sorted(c.res.id for c in mine)
            for c in mine:
                c.status, c.actual = (Status.LOST, c.res.flops) if charge else (Status.RELEASED, 0.0)

        @rule(claim=consumes(claims), by=st.integers(0, WORKERS - 1), share=st.integers(0, 12))
        def settle_for_dead_worker(self, claim: Claim, by: int, share: int) -> None:
            """A peer settles a dead worker's claim from its checkpoint (``settle_id``: capped, 0 releases)."""
            actual = float(math.floor(claim.res.flops * share / 10 / UNIT) * UNIT)
            done = self.books[by].settle_id(claim.res.id, actual)
            assert done == (claim.status == Status.RESERVED)
            if done:
                capped = min(actual, claim.res.flops)
                claim.status, claim.actual = (Status.SETTLED, capped) if capped > 0 else (Status.RELEASED, 0.0)

        @rule(worker=st.integers(0, WORKERS - 1))
        def heartbeat(self, worker: int) -> None:
            n = self.books[worker].heartbeat()
            assert n == sum(c.worker == worker and c.status == Status.RESERVED for c in self.all)

        @rule(budget=st.integers(1, 80))
        def set_budget(self, budget: int) -> None:
            committed = self.spent() + self.reserved()
            if budget * UNIT < committed:
                with pytest.raises(UserError, match="already spent or reserved"):
                    self.books[0].set_budget(budget * UNIT)
            else:
                self.books[0].set_budget(budget * UNIT)
                self.budget = budget * UNIT

        # -- invariants ------------------------------------------------------------------------------------
        @invariant()
        def account_adds_up(self) -> None:
            if not hasattr(self, "books"):
                return
            RUNS["steps"] += 1
            s = self.books[0].summary()
            assert s["budget"] == self.budget
            assert s["spent"] + s["reserved"] <= s["budget"]
            assert (s["spent"], s["reserved"]) == (self.spent(), self.reserved())
            trials = {c.res.trial_number for c in self.all if c.res.trial_number is not None}
            per_trial = math.fsum(self.books[0].trial_spent(t) for t in trials)
            assert s["spent"] == per_trial + s["by_kind"].get("text", 0.0)
            want = {}
            for c in self.all:
                want[c.status.value] = want.get(c.status.value, 0) + 1
            assert s["by_status"] == want and s["n_reservations"] == len(self.all)

    return LedgerMachine


def test_any_interleaving_keeps_the_account(tmp_path: Path) -> None:
    engine = engine_for(f"sqlite:///{tmp_path / 'ledger.db'}")
    machine = ledger_machine(engine)
    machine.TestCase.settings = settings(
        max_examples=EXAMPLES,
        stateful_step_count=STEPS,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        database=None,
    )
    RUNS.update(examples=0, steps=0)
    machine.TestCase().runTest()
    print(f"ledger property: {RUNS['examples']} examples, {RUNS['steps']} checked states")  # pytest -s shows it
    assert RUNS["examples"] >= EXAMPLES
