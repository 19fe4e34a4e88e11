"""`unetnas study create`, `unetnas worker`: one study, any number of workers on any number of machines."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from unetnas.cli import options as O
from unetnas.cli.registry import command, group
from unetnas.search.budget import format_flops
from unetnas.search.config import SearchConfig

study_app = group(
    "study",
    typer.Typer(
        help="Create a study that many workers share (then start `unetnas worker` on each node).", no_args_is_help=True
    ),
)


@study_app.command("create")
@O.study_options
def create(
    storage: Annotated[
        str,
        typer.Option(
            "--storage",
            help="database URL every worker reaches, e.g. postgresql+psycopg://user:password@host:5432/db",
        ),
    ],
    study: O.StudyName,
    cfg: SearchConfig,
    runs_dir: Path = typer.Option(
        Path("runs"),
        "--runs-dir",
        help="trial checkpoints go to <it>/<study>/trials with a server database (a folder every worker sees: "
        "a shared filesystem across nodes); an SQLite study keeps them beside its file",
    ),
    json_out: O.JsonObject = False,
) -> None:
    """Create the study, its plan and its FLOPs ledger once, before any worker starts."""
    from unetnas.search.worker import create_study

    out = create_study(cfg)
    if storage.startswith("sqlite:///") and Path(runs_dir) != Path("runs"):
        from unetnas.search.session import _trials_home

        home = _trials_home(storage, cfg)
        print(
            f"note: --runs-dir is for server databases; this SQLite study keeps trial folders in {home}/trials",
            file=sys.stderr,
        )
    if not out["created"] and out["runs_dir"] and out["runs_dir"] != str(Path(runs_dir).resolve()):
        print(
            f"note: --runs-dir {runs_dir} is not applied: the study keeps its trial folders under {out['runs_dir']}",
            file=sys.stderr,
        )
    if json_out:
        print(json.dumps(out))
        return
    what = "created" if out["created"] else "exists (unchanged)"
    print(
        f"study {study} {what} in {out['storage']}: budget {format_flops(out['budget'])} FLOPs, "
        f"{out['candidates']} candidates in {out['brackets']} brackets"
    )
    print(f"start workers: unetnas worker --storage '{out['storage']}' --study {study}")


@command()
def worker(
    storage: Annotated[str, typer.Option("--storage", help="the study's database URL (as given to study create)")],
    study: O.StudyName,
    gpus: int = typer.Option(1, "--gpus", min=1, help="ranks per trial (DeepSpeed launcher; gloo on CPU)"),
    replay: Path = typer.Option(None, "--replay", help="where the study's ground-truth table lies on this machine"),
    lease_s: float = typer.Option(
        120.0,
        "--lease-s",
        min=1.0,
        help="seconds without a heartbeat after which another worker takes this one's rung over",
    ),
    replay_flops_per_s: float = typer.Option(
        None,
        "--replay-flops-per-s",
        min=1.0,
        help="replay: make each rung last its FLOPs at this speed (scaling and fault tests)",
    ),
    json_out: O.Json = False,
) -> None:
    """Join a study and run rungs until its plan is done (or Ctrl-C: the rung is checkpointed, its lease released)."""
    from unetnas.report.summary import summary
    from unetnas.search.runner import STOPPED, drive
    from unetnas.search.worker import open_worker
    from unetnas.stop import graceful_stop

    search, url = open_worker(
        storage, study, replay=replay, lease_s=lease_s, gpus=gpus, replay_flops_per_s=replay_flops_per_s
    )
    t0 = time.perf_counter()
    runs = {"done": 0, "failed": 0, "budget": 0, "lost": 0, "stopped": 0}

    def on_done(job, out) -> None:
        runs[out.status] = runs.get(out.status, 0) + 1
        print(f"trial {job.number} rung {job.rung}: {out.status}", file=sys.stderr, flush=True)

    with graceful_stop() as stop:
        print(f"worker joined study {study} in {url}", file=sys.stderr, flush=True)
        reason = drive(search, stop, on_done=on_done)
    out = summary(search, reason, time.perf_counter() - t0, url)
    out["runs"] = runs
    if json_out:
        print(json.dumps(out))
        return
    print(
        f"{reason}: this worker ran {runs['done']} rungs ({runs['failed']} failed); the study has spent "
        f"{format_flops(out['spent'])} of {format_flops(out['budget'])} FLOPs, {out['n_complete']} trained to the "
        f"last rung.",
        file=sys.stderr,
    )
    if reason == STOPPED:
        print(
            "stopped: the rung was checkpointed and its lease released; start a worker again to continue",
            file=sys.stderr,
        )
