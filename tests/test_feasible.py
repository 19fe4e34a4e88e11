"""Plans that fit the feasible space (issue 21, item 1): a search whose constraints, or whose space, leave fewer
members than the budget buys shrinks its plan to them, says so, spends what it can and ends; Ctrl-C ends it within
seconds in any phase with nothing reserved.

The quoted input is the shipped ground truth (bench/data/gt-tiny-v1.json, the 34 members of space/tiny.yaml),
replayed in this process: `unetnas search --replay bench/data/gt-tiny-v1.json --budget 3e13 --max-gmacs 0.05` ran
for 10 minutes and stored 8,836 FAIL trials before the fix.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from tests.workers_util import start, worker
from unetnas.cost import cost
from unetnas.io import load_space
from unetnas.search.lease import SCHEDULER, Leases
from unetnas.search.ledger import Ledger
from unetnas.search.proposer import MAX_DRAWS, model_name
from unetnas.search.replay import GroundTruth, replay_search
from unetnas.search.storage import engine_for

ROOT = Path(__file__).resolve().parents[1]
GT = ROOT / "bench" / "data" / "gt-tiny-v1.json"
MAX_GMACS = 0.05


@pytest.fixture(scope="module")
def gt() -> GroundTruth:
    return GroundTruth.load(GT)


def feasible_by_hand(max_gmacs: float | None) -> int:
    """Members of space/tiny.yaml within ``max_gmacs``, counted from the cost model directly."""
    space = load_space(ROOT / "space" / "tiny.yaml")
    return sum(1 for m in space.enumerate() if max_gmacs is None or cost(m).gmacs <= max_gmacs)


def run(gt: GroundTruth, budget: float, **kw) -> tuple[dict, optuna.storages.BaseStorage, float]:
    """(summary, storage, CPU seconds) of one in-process replayed search."""
    storage = optuna.storages.InMemoryStorage()
    t0 = time.process_time()
    out = replay_search(gt, budget, storage=storage, study="s", **kw)
    return out, storage, time.process_time() - t0


def stored_trials(storage) -> dict[str, list]:
    return {s.study_name: storage.get_all_trials(s._study_id) for s in storage.get_all_studies()}


@pytest.fixture(scope="module")
def unconstrained(gt):
    return run(gt, 3e13)


def check_ended(out: dict, storage, cpu_s: float, ref: tuple, feasible: int) -> None:
    """Ended within 2x the unconstrained run's CPU time per trial (CPU time: the machine is shared; per trial: a
    budget the space cannot use up now buys second chances), every feasible member counted and reported, one
    proposed trial per distinct design, a bounded number of rejected draws."""
    ref_out, _, reference_cpu_s = ref
    assert out["reason"].startswith("plan finished") and out["reserved"] == 0
    per_trial, ref_per_trial = cpu_s / out["n_trials"], reference_cpu_s / ref_out["n_trials"]
    assert per_trial <= 2 * ref_per_trial, (cpu_s, out["n_trials"], reference_cpu_s, ref_out["n_trials"])
    assert out["feasible_members"] == feasible and out["plan_shrunk"]
    trials = stored_trials(storage)
    search = trials["s"]
    designs = {t.user_attrs["design"] for t in search}
    firsts = [t for t in search if "continues" not in t.user_attrs]  # second chances continue a pruned trial
    assert len(firsts) == len(designs) == out["candidates"] <= feasible
    assert len(search) == out["n_trials"] == out["candidates"] + out["second_chances"]
    continued = [t.user_attrs["continues"] for t in search if "continues" in t.user_attrs]
    assert len(set(continued)) == len(continued) and all(search[n].state == TrialState.PRUNED for n in continued)
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in search)
    # rejected proposals are never stored: the proposer's per-rung models live in memory (any model study still in
    # the storage would hold at most MAX_DRAWS rejected draws per design proposed)
    draws = [t for k in range(out["top_rung"] + 1) for t in trials.get(model_name("s", k), ()) if t.state.is_finished()]
    assert sum(len(v) for v in trials.values()) == len(search) + len(draws)
    assert len(draws) <= MAX_DRAWS * len(designs)


def test_a_constraint_shrinks_the_plan_to_the_feasible_members(gt, unconstrained) -> None:
    """The quoted input: 13 of the 34 members meet --max-gmacs 0.05; the plan shrinks to them and the search ends
    (before the fix: 10 minutes, 8,836 FAIL trials, still going)."""
    ref, _, _ = unconstrained
    assert ref["feasible_members"] == ref["space_members"] == feasible_by_hand(None) == 34
    out, storage, cpu = run(gt, 3e13, max_gmacs=MAX_GMACS)
    feasible = feasible_by_hand(MAX_GMACS)
    assert 0 < feasible < 34
    check_ended(out, storage, cpu, unconstrained, feasible)
    assert out["candidates"] == feasible  # the budget buys more: every feasible member was proposed, once
    specs = {t.user_attrs["design"]: t.user_attrs["spec"] for t in stored_trials(storage)["s"]}
    assert all(t["gmacs"] <= MAX_GMACS for t in out["pareto"]) and len(specs) == feasible


def test_a_space_smaller_than_the_plan_is_tried_once_through(gt, unconstrained) -> None:
    """No constraint, but a budget that buys more candidates than the space has members."""
    out, storage, cpu = run(gt, 2e14)
    check_ended(out, storage, cpu, unconstrained, 34)
    assert out["candidates"] == 34


def test_designs_already_taken_leave_fewer_members(gt, tmp_path) -> None:
    """A finished constrained study resumed with the same command: nothing is left to try, it ends at once and
    stores nothing more."""
    url = f"sqlite:///{tmp_path / 's.db'}"
    first = replay_search(gt, 3e13, storage=url, study="s", max_gmacs=MAX_GMACS)
    before = {k: len(v) for k, v in stored_trials(optuna.storages.RDBStorage(url)).items()}
    t0 = time.monotonic()
    again = replay_search(gt, 3e13, storage=url, study="s", max_gmacs=MAX_GMACS)
    assert time.monotonic() - t0 < 30
    assert {k: len(v) for k, v in stored_trials(optuna.storages.RDBStorage(url)).items()} == before
    assert again["n_trials"] == first["n_trials"] and again["candidates"] == feasible_by_hand(MAX_GMACS)


def test_the_cli_says_how_many_members_are_feasible(run_cli, tmp_path) -> None:
    args = ["search", "--replay", str(GT), "--budget", "3e13", "--max-gmacs", str(MAX_GMACS)]
    code, out, err = run_cli([*args, "--dry-run", "--json", "--gpus", "1", "--tflops-per-gpu", "1"])
    assert code == 0, err
    plan = json.loads(out)
    feasible = feasible_by_hand(MAX_GMACS)
    assert plan["feasible_members"] == feasible and plan["space_members"] == 34 and plan["plan_shrunk"]
    assert plan["candidates"] <= feasible
    line = f"{feasible} of the space's 34 members are feasible"
    assert line in plan["feasible_note"]
    code, out, err = run_cli([*args, "--dry-run", "--gpus", "1", "--tflops-per-gpu", "1"])
    assert code == 0 and line in out and f"shrinks from the {plan['plan']['wanted']} candidates" in out
    db = tmp_path / "s.db"
    code, out, err = run_cli([*args, "--storage", f"sqlite:///{db}", "--study", "c", "--json"])
    assert code == 0, err[-2000:]
    assert line in err and json.loads(out)["feasible_members"] == feasible


# -- Ctrl-C in every phase ------------------------------------------------------------------------------------------
def _sigint(proc: subprocess.Popen, log: Path, *ended: str) -> float:
    """Send SIGINT; the seconds until the search says it stopped (one of ``ended`` in its log, else the process
    exits), failing after 10 s (scaled by the load per core when the shared machine is busier than its cores: a
    process still loading torch's libraries handles the signal only when the loader returns). The process must then exit without a traceback (its interpreter's teardown of
    torch and diffusers takes seconds more on a loaded machine, so the exit itself is allowed 60 s)."""
    limit = 10 * max(1.0, os.getloadavg()[0] / (os.cpu_count() or 1))  # 10 s of an idle machine's time
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    while not (proc.poll() is not None or any(e in log.read_text() for e in ended)):
        if time.monotonic() - t0 > limit:
            proc.kill()
            proc.wait()
            pytest.fail(f"still running {limit:.0f} s after SIGINT:\n{log.read_text()[-2000:]}")
        time.sleep(0.05)
    took = time.monotonic() - t0
    proc.wait(timeout=60)
    text = log.read_text()
    assert "Traceback" not in text, text[-3000:]
    assert proc.returncode in (0, 130, -signal.SIGINT), text[-2000:]  # -2: ended by the signal, as Python does
    return took


def _nothing_reserved(url: str, study: str) -> None:
    engine = engine_for(url)
    try:
        led = Ledger(engine, study).summary()
        assert led["reserved"] == 0 and set(led["by_status"]) <= {"settled", "released"}, led
        assert Leases(engine, study).all() == []
    finally:
        engine.dispose()


@pytest.fixture
def paced_study(run_cli, tmp_path):
    """A constrained replay study on SQLite whose worker runs each rung in real time (1e11 FLOP/s)."""
    url = f"sqlite:///{tmp_path / 'study.db'}"
    code, _, err = run_cli(
        ["study", "create", "--storage", url, "--study", "p", "--budget", "3e13", "--replay", str(GT)]
        + ["--max-gmacs", str(MAX_GMACS)]
    )
    assert code == 0, err
    return url


def _wait_for(pred, proc: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    t0 = time.monotonic()
    while not pred():
        assert proc.poll() is None, log.read_text()[-2000:]
        assert time.monotonic() - t0 < timeout, log.read_text()[-2000:]
        time.sleep(0.05)


@pytest.mark.slow
def test_sigint_while_starting_up(tmp_path) -> None:
    """Ctrl-C while the process is still loading and planning: it ends at once, nothing stored is reserved."""
    log = tmp_path / "a.log"
    url = f"sqlite:///{tmp_path / 's.db'}"
    args = ["search", "--replay", str(GT), "--budget", "3e13", "--max-gmacs", str(MAX_GMACS), "--storage", url]
    proc = start([*args, "--study", "c"], log, tmp_path)
    time.sleep(1.0)
    _sigint(proc, log, "interrupted", "stopped")
    if (tmp_path / "s.db").exists():
        try:
            _nothing_reserved(url, "c")
        except Exception as err:  # no ledger yet: stopped before the study was made
            assert "ledger" in str(err).lower() or "no such table" in str(err).lower(), err


@pytest.mark.slow
def test_sigint_while_a_rung_runs(paced_study, tmp_path) -> None:
    log = tmp_path / "w.log"
    proc = worker(paced_study, "p", log, tmp_path, "--replay-flops-per-s", "1e11")
    leases = Leases(engine_for(paced_study), "p")
    _wait_for(lambda: leases.busy_trials(), proc, log)
    _sigint(proc, log, "stopped")
    _nothing_reserved(paced_study, "p")


@pytest.mark.slow
def test_sigint_while_waiting_for_another_worker(paced_study, tmp_path) -> None:
    """Another worker holds the scheduler lease (it is deciding, or hangs): the waiting worker still stops."""
    other = Leases(engine_for(paced_study), "p", ttl_s=600)
    assert other.claim(SCHEDULER)
    log = tmp_path / "w.log"
    proc = worker(paced_study, "p", log, tmp_path, "--replay-flops-per-s", "1e11")
    try:
        _wait_for(lambda: "worker joined" in log.read_text(), proc, log)
        time.sleep(1)  # waiting for the scheduler lease
        _sigint(proc, log, "stopped")
    finally:
        other.release(SCHEDULER)
    _nothing_reserved(paced_study, "p")


@pytest.mark.slow
def test_sigint_while_proposing_under_a_constraint(tmp_path) -> None:
    """The quoted command itself, interrupted once it is running rungs: it stops within seconds."""
    log = tmp_path / "a.log"
    db = tmp_path / "s.db"
    url = f"sqlite:///{db}"
    args = ["search", "--replay", str(GT), "--budget", "3e13", "--max-gmacs", str(MAX_GMACS), "--storage", url]
    proc = start([*args, "--study", "c"], log, tmp_path)
    _wait_for(lambda: "rung-start" in log.read_text(), proc, log)
    _sigint(proc, log, "stopped (Ctrl-C)")
    _nothing_reserved(url, "c")
