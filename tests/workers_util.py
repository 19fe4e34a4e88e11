"""Helpers shared by the multi-worker and fault tests (tests/test_workers.py, tests/test_chaos.py): start worker
processes, and check a finished study's account."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import optuna

from tests.helpers import clean_env
from unetnas.search.ledger import Ledger
from unetnas.search.storage import engine_for

ROOT = Path(__file__).resolve().parents[1]
TERMINAL = {"complete", "pruned", "closed", "failed"}


def env() -> dict[str, str]:
    """This process's environment for a child: one thread, the repo importable, no torch.distributed rendezvous."""
    return clean_env(PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")


def start(args: list[str], log: Path, cwd: Path) -> subprocess.Popen:
    """``python -m unetnas ARGS`` in the background at low priority; stdout and stderr to ``log``."""
    fh = open(log, "ab")  # noqa: SIM115 (closed with the process)
    return subprocess.Popen(
        ["nice", "-n", "10", sys.executable, "-m", "unetnas", *args],
        stdout=fh,
        stderr=subprocess.STDOUT,
        cwd=cwd,
        env=env(),
    )


def worker(url: str, study: str, log: Path, cwd: Path, *extra: str) -> subprocess.Popen:
    return start(["worker", "--storage", url, "--study", study, *extra], log, cwd)


def account(url: str, study: str) -> dict:
    """The finished study's account and its checks: {"ledger", "trials", "per_trial_sum", "running", "open"}.

    Asserts what must hold after any run, faults or not: every trial terminal (Optuna state and unetnas status),
    spent <= budget, no reservation left open, and each trial's own account (``flops_spent``) equal to what the
    ledger charged it, so the ledger equals the sum of per-trial accounts plus the one-off caption encoding.
    """
    led = Ledger(engine_for(url), study).summary()
    st = optuna.load_study(study_name=study, storage=url)
    trials = [t for t in st.get_trials() if "bracket" in t.user_attrs]
    assert trials
    for t in trials:
        assert t.state.is_finished(), (t.number, t.state, t.user_attrs.get("status"))
        assert t.user_attrs["status"] in TERMINAL, (t.number, t.user_attrs["status"])
        charged = led["by_trial"].get(t.number, 0.0)
        assert math.isclose(t.user_attrs["flops_spent"], charged, rel_tol=1e-9, abs_tol=1.0), (t.number, charged)
    assert led["spent"] <= led["budget"] and led["reserved"] == 0
    assert set(led["by_status"]) <= {"settled", "released"}, led["by_status"]
    per_trial = math.fsum(t.user_attrs["flops_spent"] for t in trials)
    once = led["by_trial"].get(None, 0.0)
    assert math.isclose(per_trial + once, led["spent"], rel_tol=1e-9), (per_trial, once, led["spent"])
    return {"ledger": led, "trials": trials, "per_trial_sum": per_trial, "lost": led["spent"] - per_trial - once}


def summaries(logs: list[Path]) -> list[dict]:
    """The --json summaries (last stdout line) of finished workers."""
    out = []
    for log in logs:
        lines = [x for x in log.read_text().splitlines() if x.startswith("{")]
        if lines:
            out.append(json.loads(lines[-1]))
    return out
