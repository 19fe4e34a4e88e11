"""Many workers on one study: `unetnas study create` once, then `unetnas worker` processes that share the plan, the
ledger and the trials through leases (PostgreSQL, and SQLite on one machine). Rungs are replayed from a synthetic
ground-truth table (tests/gt_tables.py) and paced (``--replay-flops-per-s``) so that they overlap like trained ones.
"""

from __future__ import annotations

import subprocess
import time

import optuna
import pytest
from gt_tables import make_table
from workers_util import account, start, summaries, worker

from unetnas.search.lease import Leases
from unetnas.search.storage import engine_for

BUDGET = "1e14"  # 8 planned candidates of tests/data/replay_space.yaml (about 11 with the brackets added after)
PACE = "1e13"  # FLOP/s: about 10 s of rungs in all


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    return make_table(tmp_path_factory.mktemp("gt") / "gt.json")


def _create(run_cli, url: str, study: str, table, budget: str = BUDGET) -> None:
    code, out, err = run_cli(
        ["study", "create", "--storage", url, "--study", study, "--budget", budget, "--replay", str(table)]
    )
    assert code == 0, err
    assert "created" in out and "unetnas worker --storage" in out


def _wait(procs: list[subprocess.Popen], timeout: float = 240) -> None:
    t0 = time.monotonic()
    for p in procs:
        p.wait(timeout=max(1.0, timeout - (time.monotonic() - t0)))


def test_three_workers_on_postgres_share_one_study(postgres, table, run_cli, tmp_path) -> None:
    url = postgres.url("three")
    _create(run_cli, url, "three", table)
    code, out, _ = run_cli(
        ["study", "create", "--storage", url, "--study", "three", "--budget", BUDGET, "--replay", str(table)]
    )
    assert code == 0 and "exists (unchanged)" in out  # a second create changes nothing
    logs = [tmp_path / f"w{i}.log" for i in range(3)]
    procs = [
        worker(url, "three", log, tmp_path, "--replay-flops-per-s", PACE, "--lease-s", "10", "--json") for log in logs
    ]
    _wait(procs)
    for p, log in zip(procs, logs):
        text = log.read_text()
        assert p.returncode == 0 and "Traceback" not in text, text[-3000:]
    outs = summaries(logs)
    assert len(outs) == 3 and all(o["reason"].startswith("plan finished") for o in outs)
    assert sum(o["runs"]["done"] for o in outs) >= 8 and all(o["runs"]["done"] >= 1 for o in outs)  # all worked
    acc = account(url, "three")
    assert acc["lost"] == pytest.approx(0.0, abs=1.0)
    assert not Leases(engine_for(url), "three").all()  # every lease given back
    code, out, err = run_cli(["ledger", "--storage", url, "--study", "three", "--json"])
    assert code == 0 and '"reserved": 0.0' in out


def test_sqlite_searches_started_together_on_a_fresh_study(table, run_cli, tmp_path) -> None:
    """The issue's race: `unetnas search` twice at the same moment on a study that does not exist yet used to die
    ("table studies already exists") and leave a 0-byte study.db; now both run, and the ledger is exact."""
    url = f"sqlite:///{tmp_path / 'study.db'}"
    args = ["search", "--budget", "6e13", "--replay", str(table), "--storage", url, "--study", "race", "--json"]
    logs = [tmp_path / f"s{i}.log" for i in range(2)]
    procs = [start(args, log, tmp_path) for log in logs]
    _wait(procs)
    for p, log in zip(procs, logs):
        text = log.read_text()
        assert p.returncode == 0 and "Traceback" not in text and "Error" not in text, text[-3000:]
    acc = account(url, "race")
    assert acc["lost"] == pytest.approx(0.0, abs=1.0)


def test_sqlite_second_worker_joins_mid_rung(table, run_cli, tmp_path) -> None:
    """The issue's repro on SQLite: a second worker started while the first is mid-rung never takes the first's
    trial over (no trial charged twice, no UpdateFinishedTrialError); both end with the plan finished."""
    url = f"sqlite:///{tmp_path / 'study.db'}"
    _create(run_cli, url, "join", table, budget="6e13")
    first = worker(url, "join", tmp_path / "a.log", tmp_path, "--replay-flops-per-s", "5e12", "--json")
    engine = engine_for(url)
    t0 = time.monotonic()
    while time.monotonic() - t0 < 120:
        leases = Leases(engine, "join").busy_trials() if (tmp_path / "study.db").exists() else set()
        if leases:
            break
        time.sleep(0.2)
    assert leases, "the first worker never started a rung"
    second = worker(url, "join", tmp_path / "b.log", tmp_path, "--replay-flops-per-s", "5e12", "--json")
    _wait([first, second])
    for p, name in ((first, "a.log"), (second, "b.log")):
        text = (tmp_path / name).read_text()
        assert p.returncode == 0 and "Traceback" not in text, text[-3000:]
    acc = account(url, "join")
    assert acc["lost"] == pytest.approx(0.0, abs=1.0)
    study = optuna.load_study(study_name="join", storage=url)
    assert not any(t.user_attrs.get("recovered") for t in study.get_trials())  # nobody's rung was taken over


def test_worker_needs_a_created_study(postgres, run_cli, assert_one_line_error) -> None:
    url = postgres.url("none")
    code, out, err = run_cli(["worker", "--storage", url, "--study", "nope"])
    assert_one_line_error(code, out, err, "--study", "study create")


def test_wall_time_follows_workers_ranks_and_the_chain_of_rungs() -> None:
    """Dry-run estimate (plan.wall_time): one worker does all the work; many workers cannot beat the longest
    chain of one candidate's rungs; N ranks per trial run that chain N times faster."""
    from pathlib import Path

    from unetnas.io import load_space
    from unetnas.search.plan import make_plan, wall_time
    from unetnas.train.recipe import load_recipe

    data = Path(__file__).parent / "data"
    recipe = load_recipe(data / "replay_recipe.yaml")
    plan = make_plan(3e14, load_space(data / "replay_space.yaml"), recipe, recipe.search)
    one = wall_time(plan, 1e12)
    assert one["wall_s"] == pytest.approx(plan.total / 1e12) and one["span_s"] < one["work_s"]
    many = wall_time(plan, 1e12, workers=10_000)
    assert many["wall_s"] == many["span_s"] > plan.total / 1e12 / 10_000
    ranks = wall_time(plan, 1e12, workers=10_000, ranks=4)
    assert ranks["wall_s"] == pytest.approx(many["wall_s"] / 4)
    assert wall_time(plan, 1e12, workers=3)["wall_s"] == pytest.approx(max(plan.total / 3e12, one["span_s"]))


@pytest.mark.slow
def test_sigint_stops_a_worker_gracefully(table, run_cli, tmp_path) -> None:
    """Ctrl-C (SIGINT) mid-rung: the rung stops and is settled at what ran, its trial is left `paused`, the lease is
    given back, the worker exits 0; the next worker resumes it and finishes the plan."""
    import signal

    url = f"sqlite:///{tmp_path / 'study.db'}"
    _create(run_cli, url, "int", table, budget="6e13")
    p = worker(url, "int", tmp_path / "a.log", tmp_path, "--replay-flops-per-s", "1e12")
    leases, t0 = Leases(engine_for(url), "int"), time.monotonic()
    while not leases.busy_trials() and time.monotonic() - t0 < 120:
        time.sleep(0.2)
    time.sleep(0.5)
    p.send_signal(signal.SIGINT)
    assert p.wait(timeout=60) == 0, (tmp_path / "a.log").read_text()[-2000:]
    assert "stopped" in (tmp_path / "a.log").read_text() and not leases.all()
    study = optuna.load_study(study_name="int", storage=url)
    assert [t.user_attrs["status"] for t in study.get_trials()].count("paused") == 1
    again = worker(url, "int", tmp_path / "b.log", tmp_path, "--replay-flops-per-s", "1e14")
    assert again.wait(timeout=240) == 0, (tmp_path / "b.log").read_text()[-2000:]
    account(url, "int")
