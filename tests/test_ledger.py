"""The FLOPs ledger: sequences, refusals, crashes mid-rung, stale workers, and many processes at once."""

from __future__ import annotations

import glob
import multiprocessing as mp
import os
import pwd
import random
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from unetnas.errors import UserError
from unetnas.search.ledger import Ledger, LedgerError, LedgerWarning, reservations
from unetnas.search.storage import engine_for, open_storage


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'study.db'}"


@pytest.fixture
def ledger(url: str) -> Ledger:
    book = Ledger(engine_for(url), "s")
    book.create(1000.0)
    return book


def _totals(book: Ledger) -> tuple[float, float, float]:
    s = book.summary()
    return s["spent"], s["reserved"], s["remaining"]


def test_reserve_settle_release_sequence(ledger: Ledger) -> None:
    a = ledger.reserve(0, "train", 400, note="rung 0")
    b = ledger.reserve(0, "eval", 100)
    c = ledger.reserve(1, "train", 300)
    assert a and b and c and a.flops == 400.0 and a.pid == os.getpid()
    assert _totals(ledger) == (0.0, 800.0, 200.0)
    ledger.settle(a, 250)  # partial: 150 go back
    ledger.release(c)
    ledger.settle(b, 100)
    s = ledger.summary()
    assert (s["spent"], s["reserved"], s["remaining"]) == (350.0, 0.0, 650.0)
    assert s["by_kind"] == {"eval": 100.0, "train": 250.0}
    assert s["by_trial"] == {0: 350.0, 1: 0.0}
    assert s["by_status"] == {"settled": 2, "released": 1} and s["n_reservations"] == 3


def test_reserve_refuses_what_does_not_fit(ledger: Ledger) -> None:
    assert ledger.reserve(0, "train", 1000.5) is None
    held = ledger.reserve(0, "train", 600)
    assert ledger.reserve(1, "train", 401) is None
    exact = ledger.reserve(1, "train", 400)  # exactly the remainder fits
    assert held and exact and ledger.reserve(2, "eval", 1e-9) is None
    ledger.release(held)
    assert ledger.reserve(2, "eval", 600) is not None
    assert ledger.summary()["n_reservations"] == 3  # refusals leave no rows


def test_settle_more_than_reserved_raises_and_changes_nothing(ledger: Ledger) -> None:
    res = ledger.reserve(0, "train", 100)
    assert res
    with pytest.raises(LedgerError, match="reserved"):
        ledger.settle(res, 101)
    assert _totals(ledger) == (0.0, 100.0, 900.0)
    ledger.settle(res, 100 * (1 + 1e-12))  # float rounding of steps x flops/step is clamped, not an overrun
    assert _totals(ledger) == (100.0, 0.0, 900.0)
    with pytest.raises(LedgerError, match="already settled"):
        ledger.release(res)
    with pytest.raises(ValueError):
        ledger.reserve(0, "train", float("nan"))
    with pytest.raises(ValueError):
        ledger.settle(res, -1)


def _rung(book: Ledger, trial: int, steps: int, flops_per_step: float, crash_at: int) -> None:
    """A training rung that reserves its steps, then fails at step ``crash_at``; settles what it did."""
    res = book.reserve(trial, "train", steps * flops_per_step)
    if res is None:
        return
    done = 0
    try:
        for step in range(steps):
            if step == crash_at:
                raise RuntimeError("CUDA out of memory (simulated)")
            done += 1
        book.settle(res, done * flops_per_step)
    except BaseException:
        book.settle(res, done * flops_per_step)
        raise


def test_trial_raising_mid_rung_settles_partial_work(ledger: Ledger) -> None:
    with pytest.raises(RuntimeError, match="out of memory"):
        _rung(ledger, 0, steps=10, flops_per_step=70.0, crash_at=4)
    assert _totals(ledger) == (280.0, 0.0, 720.0)
    _rung(ledger, 1, steps=10, flops_per_step=70.0, crash_at=-1)
    spent, reserved, _ = _totals(ledger)
    assert spent == 980.0 and reserved == 0.0 and spent <= ledger.summary()["budget"]
    assert ledger.reserve(2, "train", 70.0) is None


def test_numpy_scalars_are_plain_numbers_in_the_ledger(ledger: Ledger) -> None:
    import numpy as np

    res = ledger.reserve(np.int64(7), "train", np.int64(300))
    assert res and res.trial_number == 7 and type(res.trial_number) is int
    ledger.settle(res, np.float32(150.0))
    assert ledger.summary()["by_trial"] == {7: 150.0}
    with pytest.raises(TypeError):
        ledger.reserve(7.5, "train", 1)  # type: ignore[arg-type]


def test_budget_is_set_once_and_changed_only_explicitly(url: str) -> None:
    book = Ledger(engine_for(url), "s")
    with pytest.raises(LedgerError, match="no budget"):
        book.reserve(0, "train", 1)
    assert book.create(100.0) == 100.0
    assert Ledger(engine_for(url), "s").create(100.0) == 100.0  # reopening: fine, silent
    with pytest.warns(LedgerWarning, match="keeps its budget"):
        assert book.create(500.0) == 100.0
    res = book.reserve(0, "train", 80)
    assert res
    with pytest.raises(UserError, match="--budget"):
        book.set_budget(50.0)
    book.set_budget(200.0)
    assert book.summary()["remaining"] == 120.0
    other = Ledger(engine_for(url), "another study")  # studies share tables, not budgets
    assert other.create(5.0) == 5.0 and other.summary()["spent"] == 0.0


def _age(book: Ledger, res_id: int, **values: object) -> None:
    with book.engine.begin() as conn:
        conn.execute(reservations.update().where(reservations.c.id == res_id).values(**values))


def test_recover_stale_charges_dead_workers_and_spares_live_ones(ledger: Ledger) -> None:
    mine = ledger.reserve(0, "train", 100)
    dead_pid = ledger.reserve(1, "train", 200)  # a process of this host that is gone
    reused_pid = ledger.reserve(2, "train", 300)  # our pid, but a process started at another time
    remote = ledger.reserve(3, "eval", 50)  # another host, silent for an hour
    fresh_remote = ledger.reserve(4, "eval", 10)  # another host, heartbeat a second ago
    assert mine and dead_pid and reused_pid and remote and fresh_remote
    gone = subprocess.Popen(["true"])  # once reaped, its pid names no process
    gone.wait()
    _age(ledger, dead_pid.id, pid=gone.pid)
    _age(ledger, reused_pid.id, pid_start="1")
    _age(ledger, remote.id, host="elsewhere", touched_at=time.time() - 3600)
    _age(ledger, fresh_remote.id, host="elsewhere", touched_at=time.time() - 1)
    _age(ledger, mine.id, touched_at=time.time() - 3600)  # our own: never stale while we run

    recovered = ledger.recover_stale(older_than_s=600)
    assert sorted(r.id for r in recovered) == [dead_pid.id, reused_pid.id, remote.id]
    s = ledger.summary()
    assert (s["spent"], s["reserved"], s["by_status"]) == (550.0, 110.0, {"lost": 3, "reserved": 2})
    ledger.settle(remote, 20)  # the remote worker was only slow: its late settle lowers spent
    assert ledger.summary()["spent"] == 520.0
    assert ledger.heartbeat() == 1  # only ours: fresh_remote belongs to "elsewhere"
    released = ledger.recover_stale(older_than_s=0, charge=False)
    assert [r.id for r in released] == [fresh_remote.id]
    assert _totals(ledger) == (520.0, 100.0, 380.0)


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")  # Optuna: heartbeats beat only inside optimize()
def test_ledger_coexists_with_an_optuna_study(url: str) -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(storage=open_storage(url), study_name="s", directions=["minimize", "maximize"])
    trial = study.ask()
    study.tell(trial, [1.0, 2.0])
    tables_before = set(sa.inspect(sa.create_engine(url)).get_table_names())
    book = Ledger(engine_for(url), "s")
    book.create(1e20)
    assert book.reserve(trial.number, "train", 1e18) is not None
    tables_after = set(sa.inspect(sa.create_engine(url)).get_table_names())
    assert tables_after - tables_before == {"unetnas_budget", "unetnas_reservation"}
    again = optuna.load_study(study_name="s", storage=open_storage(url))
    assert [t.values for t in again.trials] == [[1.0, 2.0]]
    again.tell(again.ask(), [0.5, 3.0])
    assert book.summary()["reserved"] == 1e18 and len(again.trials) == 2


_ops = st.lists(
    st.tuples(st.sampled_from(["reserve", "settle", "release", "overrun"]), st.integers(0, 3), st.integers(0, 400)),
    max_size=14,
)


def test_random_sequences_keep_the_invariants(tmp_path: Path) -> None:
    engine = engine_for(f"sqlite:///{tmp_path / 'h.db'}")

    @settings(max_examples=25, deadline=None)
    @given(budget=st.integers(1, 1000), ops=_ops)
    def run(budget: int, ops: list[tuple[str, int, int]]) -> None:
        book = Ledger(engine, uuid.uuid4().hex)
        book.create(float(budget))
        open_, spent = [], 0
        for op, trial, amount in ops:
            if op == "reserve":
                res = book.reserve(trial, "train" if amount % 2 else "eval", amount)
                fits = spent + sum(r.flops for r in open_) + amount <= budget
                assert (res is not None) == fits
                open_ += [res] if res else []
            elif open_:
                res = open_[trial % len(open_)]
                if op == "overrun":
                    with pytest.raises(LedgerError):
                        book.settle(res, res.flops + 1)
                    continue
                actual = min(amount, res.flops) if op == "settle" else 0
                book.settle(res, actual) if op == "settle" else book.release(res)
                open_.remove(res)
                spent += actual
            s = book.summary()
            assert s["spent"] == spent and s["reserved"] == sum(r.flops for r in open_)
            assert s["spent"] + s["reserved"] <= s["budget"]
            assert s["remaining"] == s["budget"] - s["spent"] - s["reserved"]

    run()


def _hammer(url: str, study: str, seed: int, attempts: int, barrier: Any, out: Any) -> None:
    """Worker: reserve random amounts, settle all / part / nothing; report what it settled."""
    try:
        book = Ledger(engine_for(url), study)
        rng = random.Random(seed)
        settled: list[float] = []
        barrier.wait(timeout=60)
        for i in range(attempts):
            res = book.reserve(seed * 1000 + i, rng.choice(["train", "eval"]), float(rng.randint(1, 100)))
            if res is None:
                continue
            choice = rng.random()
            actual = res.flops if choice < 0.6 else float(int(res.flops // 2)) if choice < 0.8 else 0.0
            book.settle(res, actual) if actual else book.release(res)
            settled.append(actual)
        out.put(settled)
    except BaseException as err:  # surface the child's failure in the parent's assertion
        out.put(repr(err))


def _run_concurrently(url: str, budget: float, workers: int = 4, attempts: int = 40) -> None:
    setup = Ledger(engine_for(url), "race")
    setup.create(budget)
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(workers), ctx.Queue()
    procs = [ctx.Process(target=_hammer, args=(url, "race", seed, attempts, barrier, out)) for seed in range(workers)]
    for proc in procs:
        proc.start()
    results = [out.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(timeout=30)
    assert all(isinstance(r, list) for r in results), results
    s = setup.summary()
    settled = [x for r in results for x in r]
    assert s["spent"] == sum(settled) and s["reserved"] == 0.0
    assert s["spent"] <= budget and s["remaining"] == budget - s["spent"]
    assert s["n_reservations"] == len(settled) and 0 < len(settled) < workers * attempts  # some were refused
    assert sum(s["by_kind"].values()) == s["spent"]


def test_four_processes_never_overcommit_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    open_storage(url)  # as the CLI does: storage first, then workers
    _run_concurrently(url, budget=2500.0)


@pytest.fixture(scope="module")
def postgres_url(free_port) -> Iterator[str]:
    """A throwaway PostgreSQL cluster, if the server binaries are here; else skip."""
    found = shutil.which("initdb") or next(iter(sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))), None)
    if not found:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found")
    bindir = Path(os.path.realpath(found)).parent
    root = Path(tempfile.mkdtemp(prefix="unetnas-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb refuses root: run the cluster as the postgres user
        if not shutil.which("runuser"):
            shutil.rmtree(root)
            pytest.skip("running as root without runuser")
        try:
            entry = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(root)
            pytest.skip("running as root and there is no postgres user")
        os.chown(root, entry.pw_uid, entry.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    data = root / "data"
    opts = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
    try:
        subprocess.run(
            [*as_user, str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "-N"],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(root / "log"), "-w", "start"],
            check=True,
            capture_output=True,
        )
    except subprocess.CalledProcessError as err:
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"could not start a PostgreSQL cluster: {err.stderr.decode(errors='replace')[-200:]}")
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], capture_output=True
        )
        shutil.rmtree(root, ignore_errors=True)


def test_four_processes_never_overcommit_postgres(postgres_url: str) -> None:
    open_storage(postgres_url)
    _run_concurrently(postgres_url, budget=2500.0)
