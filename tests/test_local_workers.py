"""`unetnas search --workers N` (unetnas/search/local.py): N local `unetnas worker` processes on one study. A
replayed search on 2 workers finishes the plan one worker finishes, within budget and with an exact ledger; a real
(micro, built-in world) search on 2 workers runs end to end; Ctrl-C stops every worker cleanly and the same
command resumes; a bad N is one line, exit 2, nothing stored."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import cli_args
from tests.workers_util import account, env
from unetnas.search.lease import Leases
from unetnas.search.local import cores
from unetnas.search.storage import engine_for

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
GT = ROOT / "bench" / "data" / "gt-tiny-v1.json"


def replay_args(db: Path, *extra: str) -> list[str]:
    return [*cli_args("search", replay=GT, budget="3e13", storage=f"sqlite:///{db}", study="r"), *extra]


def train_args(db: Path, *extra: str) -> list[str]:
    micro = dict(space=DATA / "micro.yaml", recipe=DATA / "search_recipe.yaml")
    return [*cli_args("search", budget="6e11", **micro, storage=f"sqlite:///{db}", study="s", json=True), *extra]


TWO = ("--workers", "2", "--oversubscribe")  # 2 workers even on a 1-core machine


@pytest.fixture
def child_env(monkeypatch) -> None:
    """The workers import this checkout (they are `python -m unetnas worker` processes)."""
    monkeypatch.setenv("PYTHONPATH", str(ROOT))


@pytest.mark.parametrize(("n", "rule"), [("0", "must be at least 1"), (str(cores() + 1), "exceeds the")])
def test_a_bad_worker_count_is_one_line_and_stores_nothing(run_cli, assert_one_line_error, tmp_path, n, rule) -> None:
    db = tmp_path / "s.db"
    code, out, err = run_cli(replay_args(db, "--workers", n))
    assert_one_line_error(code, out, err, f"--workers={n}: {rule}")
    assert not db.exists() and not list(tmp_path.iterdir())


def test_a_replayed_search_on_two_workers_finishes_the_plan_within_budget(run_cli, child_env, tmp_path) -> None:
    one, two = tmp_path / "one.db", tmp_path / "two.db"
    code, out1, err = run_cli([*replay_args(one), "--json"])
    assert code == 0, err[-2000:]
    code, out2, err = run_cli([*replay_args(two, *TWO), "--json"])
    assert code == 0, err[-3000:]
    s1, s2 = json.loads(out1), json.loads(out2)
    assert s2["reason"].startswith("plan finished") and s2["workers"] == 2
    assert s2["reserved"] == 0 and 0 < s2["spent"] <= s2["budget"] == 3e13
    # the same plan: its Hyperband brackets, so as many designs trained to the top rung; the budget left over is
    # filled by extra brackets either way (with 2 workers they may be split differently)
    assert s2["bracket_sizes"][:3] == s1["bracket_sizes"][:3] and s2["n_complete"] == s1["n_complete"]
    assert s2["unused_share"] < 0.02 and s1["unused_share"] < 0.02
    acc = account(f"sqlite:///{two}", "r")  # every trial terminal, its account equal to the ledger's charges
    assert acc["lost"] == pytest.approx(0.0, abs=1.0)
    logs = [(tmp_path / "r" / f"worker-{k}.log").read_text() for k in (1, 2)]  # the study folder beside its db
    recorded = sum(1 for t in acc["trials"] for k in t.user_attrs if re.fullmatch(r"rung_\d+", k))
    assert sum(log.count(": done") for log in logs) == recorded  # each rung run once, by one worker
    assert "worker 1: trial" in err or "worker 2: trial" in err  # their rungs shown in the search's progress


def test_a_real_search_on_two_workers_runs_end_to_end(run_cli, child_env, tmp_path) -> None:
    db = tmp_path / "study.db"
    code, out, err = run_cli(train_args(db, *TWO))
    assert code == 0, err[-3000:]
    s = json.loads(out)
    assert s["reason"].startswith("plan finished") and s["workers"] == 2, s["reason"]
    assert s["n_failed"] == 0 and s["n_complete"] >= 1 and s["pareto"]
    assert s["train_s"] > 0  # the workers' training seconds, summed
    account(f"sqlite:///{db}", "s")
    logs = [(tmp_path / "s" / f"worker-{k}.log").read_text() for k in (1, 2)]
    assert all("worker joined study s" in log for log in logs)


@pytest.mark.slow
def test_ctrl_c_stops_every_worker_cleanly_and_the_same_command_resumes(tmp_path) -> None:
    db = tmp_path / "study.db"
    url = f"sqlite:///{db}"
    args = [sys.executable, "-m", "unetnas", *train_args(db, *TWO)]
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=env())
    t0, leases = time.monotonic(), None
    while time.monotonic() - t0 < 300 and p.poll() is None:  # wait for a rung mid-training
        if db.is_file():
            leases = leases or Leases(engine_for(url), "s")
            try:
                if any(x.key.startswith("trial:") and x.train_flops > 0 for x in leases.all()):
                    break
            except Exception:  # noqa: BLE001 (tables not created yet)
                pass
        time.sleep(0.1)
    assert p.poll() is None, p.communicate()[1][-3000:]
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0 and "Traceback" not in err, err[-3000:]
    s = json.loads(out)
    assert s["reason"].startswith("stopped"), s["reason"]
    assert s["reserved"] == 0  # every reservation settled
    assert not [x for x in Leases(engine_for(url), "s").all() if x.key.startswith("trial:")]  # leases released
    logs = [(tmp_path / "s" / f"worker-{k}.log").read_text() for k in (1, 2)]
    assert any(": stopped" in log for log in logs), logs  # the rung that was training was checkpointed
    assert "exited with code" not in err  # every worker ended cleanly (between rungs too)
    again = subprocess.run(args, capture_output=True, text=True, cwd=tmp_path, env=env(), timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads(again.stdout)["reason"].startswith("plan finished")
    account(url, "s")
