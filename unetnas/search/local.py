"""`unetnas search --workers N`: one study driven by N local `unetnas worker` processes, each on its own cores.

On a small CPU one trial cannot use the cores well: the tiny space's shapes (24-48 channels, heads of 8) run two
intra-op threads at ~0.77 parallel efficiency, while two single-thread trial processes keep both cores busy
(BENCHMARKS.md, "CPU speed of trials and scoring", `python -m bench parallel-trials`). This module reuses the
multi-worker machinery as it is: the search process has created the study, its plan and its ledger
(``session.open_search``); it then starts N ``python -m unetnas worker --storage URL --study NAME --json`` processes
(``OMP_NUM_THREADS`` = ceil(cores / N), ``OMP_WAIT_POLICY=PASSIVE`` unless set), which claim rungs under leases and
pay for them in the ledger (``runner.drive``), so nothing is run or spent twice, and waits for them, reporting the
study's progress as it goes.

- Ctrl-C: the workers run in their own session (a terminal's Ctrl-C reaches only this process), and this process
  sends each one SIGINT once: every rung is checkpointed and its lease released (a second Ctrl-C is forwarded too,
  and aborts them as it aborts one worker).
- A worker that exits with an error is reported in one line (its log: ``<study folder>/worker-<k>.log``); its
  lease counts as expired at once (a dead process of this host, ``lease.py``), so another worker resumes its rung
  from the checkpoint. When every worker has died before the plan is done, the search ends with that reason.
- The reason the search ended is the last worker's ("plan finished ..."); the summary is the study's.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from unetnas.errors import UserError

POLL_S = 0.5  # seconds between looks at the workers (their exit, their logs)
PROGRESS_S = 2.0  # seconds between progress updates from the study (reads every trial: ~1% of a core at 0.5 s)
RELAYED = ("trial ", "warning", "error", "note")  # worker stderr lines shown in the search's progress


def cores() -> int:
    """CPU cores this process may run on (its affinity mask; ``os.cpu_count()`` where that is unknown)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def check_workers(n: int, force: bool = False) -> int:
    """``n`` if it is a valid ``--workers``: at least 1, at most the cores (unless ``force``); else UserError."""
    if n < 1:
        raise UserError("must be at least 1", field="--workers", value=n)
    if n > cores() and not force:
        raise UserError(
            f"exceeds the {cores()} CPU cores of this machine (add --oversubscribe to run them anyway)",
            field="--workers",
            value=n,
        )
    return n


def threads_per_worker(n: int) -> int:
    """Intra-op threads of each of ``n`` workers: ceil(cores / n)."""
    return max(1, math.ceil(cores() / n))


def worker_env(n: int) -> dict[str, str]:
    """A worker's environment: this one, its threads set, no torch.distributed rendezvous of this process."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
    }
    env["OMP_NUM_THREADS"] = str(threads_per_worker(n))
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # an idle OpenMP team spinning steals the other worker's core
    env["PYTHONUNBUFFERED"] = "1"
    return env


@dataclass
class Worker:
    k: int
    proc: subprocess.Popen
    log: Path
    out: IO[bytes]  # its stdout (the --json summary)
    read: int = 0  # bytes of its log already relayed
    ended_at: float | None = None
    summary: dict[str, Any] = field(default_factory=dict)

    def relay(self, say: Callable[[str], None]) -> None:
        """Show the log's new complete lines that matter (rung results, warnings, errors)."""
        try:
            with open(self.log, "rb") as fh:
                fh.seek(self.read)
                chunk = fh.read()
        except OSError:
            return
        end = chunk.rfind(b"\n") + 1
        self.read += end
        for line in chunk[:end].decode(errors="replace").splitlines():
            if line.lower().startswith(RELAYED):
                say(f"worker {self.k}: {line}")

    def last_line(self) -> str:
        try:
            lines = self.log.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return lines[-1][-300:] if lines else ""


def start_workers(url: str, study: str, n: int, logs: Path, replay: Path | None = None) -> list[Worker]:
    """Start ``n`` `unetnas worker` processes on ``study`` at ``url`` (unredacted), logs under ``logs``."""
    logs.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "unetnas", "worker", "--storage", url, "--study", study, "--json"]
    if replay is not None:
        cmd += ["--replay", str(replay)]
    env = worker_env(n)
    out = []
    for k in range(1, n + 1):
        log = logs / f"worker-{k}.log"
        log.write_bytes(b"")
        stdout = tempfile.TemporaryFile()  # noqa: SIM115 (closed when the worker is collected)
        with open(log, "ab") as err:
            proc = subprocess.Popen(cmd, stdout=stdout, stderr=err, env=env, start_new_session=True)
        out.append(Worker(k, proc, log, stdout))
    return out


def _interrupt(workers: list[Worker]) -> None:
    for w in workers:
        if w.proc.poll() is None:
            try:
                os.kill(w.proc.pid, signal.SIGINT)
            except ProcessLookupError:
                pass


def _collect(w: Worker) -> None:
    w.ended_at = time.monotonic()
    w.out.seek(0)
    lines = w.out.read().decode(errors="replace").strip().splitlines()
    w.out.close()
    try:
        w.summary = json.loads(lines[-1]) if lines else {}
    except ValueError:
        w.summary = {}


def drive_local(
    search: Any,
    cfg: Any,
    n: int,
    stop: Callable[[], bool],
    on_poll: Callable[[], None] = lambda: None,
    say: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True),
    poll_s: float = POLL_S,
) -> str:
    """Run the study of ``search`` (opened by ``session.open_search`` from ``cfg``) on ``n`` local workers until
    they end; returns the reason the search ended (``runner.drive``'s words). ``on_poll`` is called every
    ``PROGRESS_S`` (progress), ``say`` shows a line. The workers' training and evaluation seconds are added to
    ``search.wall`` (summed over workers)."""
    from unetnas.search.runner import STOPPED
    from unetnas.search.session import _trials_home
    from unetnas.search.storage import resolve_storage

    url = resolve_storage(cfg.storage, cfg.study, cfg.runs_dir)
    logs = search.runs_dir or _trials_home(url, cfg)  # the study's folder (a replay: beside its database)
    workers = start_workers(url, cfg.study, n, logs, cfg.replay)
    say(f"{n} local workers, {threads_per_worker(n)} thread(s) each; logs {logs}/worker-<k>.log")
    stopped, shown = False, time.monotonic()
    try:
        while any(w.ended_at is None for w in workers):
            if stop() and not stopped:
                stopped = True
                _interrupt(workers)
            for w in workers:
                w.relay(say)
                if w.ended_at is None and w.proc.poll() is not None:
                    _collect(w)
                    if w.proc.returncode != 0 and not (stopped and w.proc.returncode == 130):  # 130: Ctrl-C'd early
                        say(
                            f"worker {w.k} (pid {w.proc.pid}) exited with code {w.proc.returncode}: "
                            f"{w.last_line()} (log {w.log}); the others resume its rung"
                        )
            if time.monotonic() - shown >= PROGRESS_S:
                on_poll()
                shown = time.monotonic()
            time.sleep(poll_s)
    except BaseException:  # a second Ctrl-C (KeyboardInterrupt) or an error here: the workers stop too
        _interrupt(workers)
        for w in workers:
            w.proc.wait()
        raise
    for w in workers:
        w.relay(say)
    for w in workers:
        for kind in ("train", "eval"):
            search.wall[kind] += float(w.summary.get(f"{kind}_s") or 0.0)
    if stopped:
        return STOPPED
    done = [w for w in workers if w.proc.returncode == 0 and w.summary.get("reason")]
    if not done:
        raise RuntimeError(f"all {n} workers exited with an error before the plan was done; see {logs}/worker-*.log")
    return max(done, key=lambda w: w.ended_at or 0.0).summary["reason"]
