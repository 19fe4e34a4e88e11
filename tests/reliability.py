"""Reliability of many workers on one PostgreSQL study, on paced replayed rungs: throughput from 1 to N workers, and
a chaos run (SIGKILL of a random worker mid-rung, a database restart) that must lose no FLOP, count none twice and
never overspend. Used by tests/test_chaos.py; run it alone for BENCHMARKS.md's Reliability figures:

    OMP_NUM_THREADS=1 nice -n 10 python tests/reliability.py [--budget 3e14] [--pace 2e13] [--workers 3]

(it starts a private PostgreSQL server: Debian's `postgresql` package, run as the `postgres` user when root).
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from workers_util import account, start, summaries, worker  # noqa: E402

from unetnas.search.lease import Leases  # noqa: E402
from unetnas.search.storage import engine_for  # noqa: E402


def create(url: str, study: str, table: Path, budget: str, folder: Path) -> None:
    p = start(
        ["study", "create", "--storage", url, "--study", study, "--budget", budget, "--replay", str(table)],
        folder / f"{study}-create.log",
        folder,
    )
    if p.wait(timeout=300):
        raise RuntimeError((folder / f"{study}-create.log").read_text()[-2000:])


def run(
    pg,
    table: Path,
    folder: Path,
    *,
    study: str,
    workers: int,
    budget: str,
    pace: str,
    kills: int = 0,
    restarts: int = 0,
    lease_s: float = 10.0,
    seed: int = 0,
    timeout_s: float = 600,
) -> dict:
    """Create a study, run ``workers`` worker processes to the end (replacing each killed one), SIGKILL a worker
    holding a rung mid-way ``kills`` times and restart the database ``restarts`` times (after the first kill);
    return the figures and the checked account (``workers_util.account``)."""
    url = pg.url(study)
    create(url, study, table, budget, folder)
    rng = random.Random(seed)
    extra = ("--replay-flops-per-s", pace, "--lease-s", str(lease_s), "--json")
    logs: list[Path] = []

    def launch() -> subprocess.Popen:
        logs.append(folder / f"{study}-w{len(logs)}.log")
        return worker(url, study, logs[-1], folder, *extra)

    t0 = time.monotonic()
    procs = [launch() for _ in range(workers)]
    leases = Leases(engine_for(url), study)
    killed = restarted = 0
    events: list[str] = []
    last_event = time.monotonic()
    while any(p.poll() is None for p in procs):
        if time.monotonic() - t0 > timeout_s:
            for p in procs:
                p.kill()
            raise TimeoutError(f"workers still running after {timeout_s:.0f} s (logs in {folder})")
        time.sleep(0.2)
        if killed < kills and time.monotonic() - last_event > 1.0:
            try:  # a rung under way: paid for and past its first heartbeat
                mid = [x for x in leases.all() if x.key.startswith("trial:") and x.reservations and x.train_flops > 0]
            except Exception:  # noqa: BLE001 (the database restarting)
                continue
            by_pid = {p.pid: p for p in procs if p.poll() is None}
            victims = [(x, by_pid[int(x.holder.split("|")[1])]) for x in mid if int(x.holder.split("|")[1]) in by_pid]
            if victims:
                lease, p = rng.choice(victims)
                p.send_signal(signal.SIGKILL)
                p.wait()
                killed += 1
                events.append(
                    f"{time.monotonic() - t0:.1f} s: SIGKILL worker {p.pid} mid-rung {lease.rung} of "
                    f"trial {lease.trial_number}"
                )
                procs.append(launch())
                last_event = time.monotonic()
        elif killed >= min(kills, 1) and restarted < restarts and time.monotonic() - last_event > 1.0:
            pg.restart()
            restarted += 1
            events.append(f"{time.monotonic() - t0:.1f} s: database restarted")
            last_event = time.monotonic()
    wall = time.monotonic() - t0
    outs = summaries(logs)
    bad = [log.name for p, log in zip(procs, logs) if p.returncode not in (0, -signal.SIGKILL)]
    if bad or any("Traceback" in log.read_text() for log in logs):
        raise RuntimeError(f"workers failed: {bad} (logs in {folder})")
    acc = account(url, study)
    led = acc["ledger"]
    done = sum(o["runs"]["done"] for o in outs)
    active = max((o["wall_s"] for o in outs), default=wall)  # in the search loop: process start-up left out
    return {
        "workers": workers,
        "trials": len(acc["trials"]),
        "rungs_done": done,
        "kills": killed,
        "db_restarts": restarted,
        "events": events,
        "recovered_rungs": sum(len(t.user_attrs.get("recovered", [])) for t in acc["trials"]),
        "spent": led["spent"],
        "budget": led["budget"],
        "overshoot": max(0.0, led["spent"] - led["budget"]),
        "flops_lost": acc["lost"],
        "wall_s": wall,
        "active_s": active,
        "rungs_per_min": done / active * 60,
        "train_flops_per_s": led["by_kind"].get("train", 0.0) / active,
    }


def main() -> None:
    from gt_tables import make_table
    from pg_server import private_server

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budget", default="3e14", help="FLOPs of each study (replay_space.yaml: ~25 candidates)")
    ap.add_argument("--pace", default="5e12", help="replayed FLOP/s per worker (how long a rung lasts)")
    ap.add_argument("--workers", type=int, default=3)
    ap.add_argument("--kills", type=int, default=2)
    ap.add_argument("--restarts", type=int, default=1)
    args = ap.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="unetnas-reliability-"))
    table = make_table(folder / "gt.json")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with private_server(port) as pg:
        common = {"budget": args.budget, "pace": args.pace}
        one = run(pg, table, folder, study="scale1", workers=1, **common)
        many = run(pg, table, folder, study=f"scale{args.workers}", workers=args.workers, **common)
        chaos = run(
            pg, table, folder, study="chaos", workers=args.workers, kills=args.kills, restarts=args.restarts, **common
        )
    out = {
        "machine": socket.gethostname(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": " ".join(sys.argv),
        "one": one,
        "many": many,
        "chaos": chaos,
        "speedup": many["rungs_per_min"] / one["rungs_per_min"],
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
