"""Faults: workers killed mid-rung (SIGKILL), a database restarted under running workers, a run killed while
DeepSpeed JIT-builds its op, a recipe that trains to NaN. Nothing is lost, counted twice, overspent or left hanging.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from gt_tables import make_table
from reliability import run
from workers_util import ROOT, account, env, start

from unetnas.search.lease import Leases
from unetnas.search.storage import engine_for

DATA = Path(__file__).parent / "data"


def test_chaos_two_kills_and_a_database_restart(postgres, tmp_path) -> None:
    """3 workers on one PostgreSQL study; a random worker holding a rung is SIGKILLed twice (a new one started each
    time) and the server restarted once: every trial ends terminal, spent <= budget, no FLOP lost or counted twice,
    and the killed rungs were settled and resumed by the others."""
    table = make_table(tmp_path / "gt.json")
    out = run(
        postgres,
        table,
        tmp_path,
        study="chaos",
        workers=3,
        budget="1e14",
        pace="2e12",
        kills=2,
        restarts=1,
        lease_s=10.0,
        seed=1,
    )
    assert out["kills"] == 2 and out["db_restarts"] == 1, out["events"]
    assert out["recovered_rungs"] >= 2, out
    assert out["overshoot"] == 0.0 and out["flops_lost"] == pytest.approx(0.0, abs=1.0)


# -- one machine, real training ------------------------------------------------------------------------------------
def _search(tmp_path: Path, recipe: Path, study: str = "s", budget: str = "6e11") -> list[str]:
    return [
        "search",
        "--budget",
        budget,
        "--space",
        str(DATA / "micro.yaml"),
        "--recipe",
        str(recipe),
        "--storage",
        f"sqlite:///{tmp_path / 'study.db'}",
        "--study",
        study,
        "--json",
    ]


@pytest.mark.slow
def test_kill_9_mid_rung_then_rerun_continues_and_charges_what_ran(tmp_path) -> None:
    """The issue's repro: SIGKILL while trial 0 trains rung 0. The rerun settles the dead run at what ran (the last
    heartbeat's training FLOPs; its evaluation never ran and is released), resumes the trial, finishes the plan."""
    args = _search(tmp_path, DATA / "search_recipe.yaml")
    p = start(args, tmp_path / "first.log", tmp_path)
    url = f"sqlite:///{tmp_path / 'study.db'}"
    t0, leases = time.monotonic(), None
    while time.monotonic() - t0 < 300 and p.poll() is None:
        if (tmp_path / "study.db").is_file():  # wait for a heartbeat mid-rung: the meter has been written
            leases = leases or Leases(engine_for(url), "s")
            if any(x.key.startswith("trial:") and x.train_flops > 0 for x in leases.all()):
                break
        time.sleep(0.1)
    assert p.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
    p.send_signal(signal.SIGKILL)
    p.wait()
    again = subprocess.run(
        [sys.executable, "-m", "unetnas", *args], capture_output=True, text=True, cwd=tmp_path, env=env(), timeout=600
    )
    assert again.returncode == 0 and "Traceback" not in again.stderr, again.stderr[-3000:]
    acc = account(url, "s")
    t = next(t for t in acc["trials"] if t.number == 0)
    assert t.user_attrs.get("recovered"), t.user_attrs  # the dead rung was settled by the rerun
    led = acc["ledger"]
    assert "lost" not in led["by_status"]  # nothing charged at its whole reservation


def test_nan_recipe_fails_its_trials_with_the_reason_and_exports_nothing(tmp_path, run_cli) -> None:
    """lr 1e4 trains to a non-finite loss: each trial is told FAIL with the reason stored, the search goes on to
    its end (exit 0), and `unetnas export` finds no design to write."""
    recipe = tmp_path / "nan.yaml"
    recipe.write_text(
        (DATA / "search_recipe.yaml")
        .read_text()
        .replace("lr: 0.002", "lr: 1.0e+4")
        .replace("../../trials", str(ROOT / "trials"))
    )
    code, out, err = run_cli(_search(tmp_path, recipe, study="nan"))
    assert code == 0, err[-3000:]
    study = optuna.load_study(study_name="nan", storage=f"sqlite:///{tmp_path / 'study.db'}")
    failed = [t for t in study.get_trials() if t.state == optuna.trial.TrialState.FAIL]
    assert failed and all("TrainingDiverged" in t.user_attrs["reason"] for t in failed)
    assert not study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert all(t.state.is_finished() for t in study.get_trials())
    code, out, err = run_cli(
        [
            "export",
            "--study",
            "nan",
            "--storage",
            f"sqlite:///{tmp_path / 'study.db'}",
            "--out",
            str(tmp_path / "exported"),
        ]
    )
    assert code != 0 and not list((tmp_path / "exported").glob("**/*.safetensors"))


def test_a_run_killed_during_the_op_build_leaves_nothing_that_hangs(tmp_path) -> None:
    """A lock left in the extensions cache by a process killed mid-build (torch's FileBaton) is cleared by the next
    run, so DeepSpeed's init finishes instead of waiting forever."""
    from unetnas.train.source import cache_dir

    ext = Path(os.environ.get("TORCH_EXTENSIONS_DIR", cache_dir() / "torch_extensions"))
    op = ext / "deepspeed_shm_comm"
    op.mkdir(parents=True, exist_ok=True)
    dead = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    (ext / ".builders").mkdir(exist_ok=True)
    (ext / ".builders" / str(dead.pid)).touch()  # a builder that dies holding nothing
    (op / "lock").touch()  # what a killed build leaves
    dead.kill()
    dead.wait()
    code = "from unetnas.train.engine import ensure_distributed; print(ensure_distributed())"
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**env(), "TORCH_EXTENSIONS_DIR": str(ext)},
        timeout=900,
    )
    assert done.returncode == 0 and "(0, 1)" in done.stdout, done.stderr[-2000:]
    assert not (op / "lock").exists()


@pytest.mark.slow
def test_worker_with_two_cpu_ranks_runs_trials_and_reports_once(tmp_path, run_cli) -> None:
    """`unetnas worker --gpus 2`: each rung runs on two gloo ranks through the DeepSpeed launcher; only the worker
    talks to the study, so every rung is recorded and charged once."""
    url = f"sqlite:///{tmp_path / 'study.db'}"
    code, out, err = run_cli(
        [
            "study",
            "create",
            "--storage",
            url,
            "--study",
            "s",
            "--budget",
            "6e11",
            "--space",
            str(DATA / "micro.yaml"),
            "--recipe",
            str(DATA / "search_recipe.yaml"),
            "--runs-dir",
            str(tmp_path),
        ]
    )
    assert code == 0, err
    done = subprocess.run(
        [sys.executable, "-m", "unetnas", "worker", "--storage", url, "--study", "s", "--gpus", "2", "--json"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env(),
        timeout=1200,
    )
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-3000:]
    acc = account(url, "s")
    runs = json.loads(done.stdout.splitlines()[-1])["runs"]
    records = sum(1 for t in acc["trials"] for k in t.user_attrs if k.startswith("rung_") and k[5:].isdigit())
    assert runs["done"] == records > 0
    reservations = acc["ledger"]["n_reservations"]
    assert reservations == 2 * (runs["done"] + runs["failed"]) + 1  # train + eval per rung, captions once
    logs = list(tmp_path.glob("s/trials/*/ranks.log"))
    assert logs and all("rank" in x.read_text().lower() or x.stat().st_size >= 0 for x in logs)
