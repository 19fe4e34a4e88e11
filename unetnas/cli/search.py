"""`unetnas search`, `unetnas ledger`: the budgeted search and its account."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from unetnas.cli import options as O
from unetnas.cli.registry import command
from unetnas.search.budget import format_flops
from unetnas.search.config import SearchConfig
from unetnas.search.plan import Bracket, describe_horizon

console = Console(stderr=True)


def _wall(plan, flops_per_s: float, gpus: int | None, gpus_per_trial: int = 1) -> dict:
    """The plan's wall time (``plan.wall_time``): ``gpus`` // ``gpus_per_trial`` workers, each trial on
    ``gpus_per_trial`` ranks at ``flops_per_s`` per GPU; without ``gpus``, one process at ``flops_per_s``."""
    from unetnas.errors import UserError
    from unetnas.search.plan import wall_time

    if gpus and gpus_per_trial > gpus:
        raise UserError(f"must be at most --gpus {gpus}", field="--gpus-per-trial", value=gpus_per_trial)
    return wall_time(plan, flops_per_s, max(1, (gpus or 1) // gpus_per_trial), gpus_per_trial if gpus else 1)


def _plan_tables(
    plan,
    flops_per_s: float,
    how: str,
    usd_per_gpu_hour: float | None,
    gpus: int | None,
    proxy: str = "TIFA",
    gpus_per_trial: int = 1,
) -> list[Table]:
    """The rungs (what a candidate gets at each) and the brackets (how many candidates the budget buys);
    ``proxy``: the alignment proxy's name, shown at the rungs it scores."""
    k = len(plan.rungs)
    samples_unit = plan.unit == "samples"
    rungs = Table(
        title=f"rungs (horizon unit: training {plan.unit}): the longest horizon is {describe_horizon(plan)} per "
        f"candidate, whatever the budget"
    )
    first = ("samples each", "steps", "train FLOPs (mean member)") if samples_unit else ("train FLOPs each",)
    rest = (
        ("scoring", "eval FLOPs each", "runs")
        if samples_unit
        else ("steps", "samples", "scoring", "eval FLOPs each", "runs")
    )
    for col in ("rung", *first, *rest):
        rungs.add_column(col, justify="right")
    for i, r in enumerate(plan.rungs):
        steps = plan.steps_at(i, plan.typical_train_per_sample)
        head = (
            (f"{r:,.0f}", f"{steps:,}", format_flops(plan.horizon_flops(i, plan.typical_train_per_sample)))
            if samples_unit
            else (format_flops(r), f"{steps:,}", f"{steps * plan.batch_size:,}")
        )
        rungs.add_row(
            str(i),
            *head,
            f"val loss + {proxy}" if i in plan.tifa_rungs else "val loss",
            format_flops(plan.eval_flops[i]),
            str(plan.runs_at(i)),
        )
    rungs.caption = (
        f"every candidate trains the same samples at batch {plan.batch_size}; a dearer member's rung costs more FLOPs"
        if samples_unit
        else f"steps and samples of the space's mean member at batch {plan.batch_size}; cheaper members take more"
    )
    shapes: dict[tuple, int] = {}
    for b in plan.brackets:
        shapes[(b.start, b.counts)] = shapes.get((b.start, b.counts), 0) + 1
    t = Table(
        title=f"plan for {format_flops(plan.budget)} FLOPs: {len(plan.brackets)} brackets, {plan.candidates} "
        f"candidates, {plan.top_candidates} trained to rung {k - 1}, eta {plan.eta}"
    )
    for col in ("brackets", "start rung", "candidates per rung", "FLOPs each", "wall time each"):
        t.add_column(col, justify="right")
    costs = plan.costs
    for (start, counts), n in shapes.items():
        each = costs.bracket(Bracket(start, counts))
        t.add_row(
            str(n),
            str(start),
            " -> ".join(map(str, counts)),
            format_flops(each),
            _dur(each / flops_per_s / (gpus_per_trial if gpus else 1)),
        )
    once = sum(plan.once_flops.values())
    wall = _wall(plan, flops_per_s, gpus, gpus_per_trial)
    total_s = wall["wall_s"]
    spread = f"{wall['workers']} worker(s) x {wall['ranks']} rank(s) per trial" if gpus else "one worker, one process"
    t.caption = (
        f"total {format_flops(plan.total)} FLOPs (train {plan.train_total / plan.total:.1%}, eval "
        f"{plan.eval_total / plan.total:.1%}, text encoding {once / plan.total:.1%}); expected wall time "
        f"{_dur(total_s)} on {spread} ({how}{'' if gpus else f', {flops_per_s / 1e12:.3g} TFLOP/s'}): the "
        f"larger of the "
        f"work per worker ({_dur(wall['work_s'])}) and the longest chain of rungs that cannot start before "
        f"the rung below finishes ({_dur(wall['span_s'])})"
    )
    if gpus:
        gpu_h = total_s * gpus / 3600
        t.caption += f"; {gpu_h:,.0f} GPU-hours" + (f", ${gpu_h * usd_per_gpu_hour:,.0f}" if usd_per_gpu_hour else "")
    return [rungs, t]


def plan_json(plan, flops_per_s: float, presets: list[str], gpus: int | None = None, gpus_per_trial: int = 1) -> dict:
    """``flops_per_s``: per GPU with ``gpus`` (``wall_s`` from ``plan.wall_time``), else of the one process."""
    wall = _wall(plan, flops_per_s, gpus, gpus_per_trial)
    return {
        "plan": plan.as_dict(),
        "candidates": plan.candidates,
        "brackets": len(plan.brackets),
        "top_candidates": plan.top_candidates,
        "horizon_unit": plan.unit,
        "max_horizon": plan.rungs[-1],
        "max_horizon_flops": plan.max_horizon_flops,
        "min_rung_flops": plan.costs.rungs[0],
        "planned_flops": plan.total,
        "flops_per_s": flops_per_s * (gpus or 1),
        "wall_s": wall["wall_s"],
        "work_s": wall["work_s"],
        "span_s": wall["span_s"],
        "workers": wall["workers"],
        "ranks_per_trial": wall["ranks"],
        "presets": presets,
        "feasible_members": plan.members,
        "space_members": plan.space_size,
        "plan_shrunk": plan.shrunk,
        "feasible_note": plan.feasible_note,
    }


def _dur(s: float) -> str:
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h" if s < 172800 else f"{s / 86400:.1f} d"


def _pm(value, se) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" + (f" ± {se:.3f}" if se else "")


def _pareto_table(rows: list[dict], top: int) -> Table:
    t = Table(title=f"Pareto set: designs trained to the last rung (rung {top})")
    for col in ("trial", "rung", "alignment ± SE", "TIFA ± SE", "GMACs", "params", "FLOPs spent"):
        t.add_column(col, justify="right")
    for r in rows:
        t.add_row(
            str(r["trial"]),
            str(r["rung"]),
            _pm(r["alignment"], r["alignment_se"]),
            _pm(r["tifa"], r["tifa_se"]),
            f"{r['gmacs']:.3g}",
            f"{r['params'] / 1e6:.2f}M",
            format_flops(r["flops_spent"] or 0),
        )
    return t


def _lower_table(rows: list[dict], limit: int = 8) -> Table:
    t = Table(
        title=f"stopped below the last rung: not in the Pareto set ({len(rows)}; best {min(limit, len(rows))} shown)"
    )
    for col in ("trial", "rung", "score at that rung", "GMACs", "why"):
        t.add_column(col, justify="right")
    for r in rows[:limit]:
        score = (
            f"val loss {-r['alignment']:.3f}"
            if r["measure"] == "-val_loss"
            else f"alignment {_pm(r['alignment'], r['alignment_se'])}"
        )
        t.add_row(str(r["trial"]), str(r["rung"]), score, f"{r['gmacs']:.3g}", r.get("reason") or r.get("status") or "")
    return t


@command()
@O.study_options
def search(
    cfg: SearchConfig,
    storage: str = typer.Option(None, "--storage", help="Optuna storage URL (default sqlite:///runs/<study>/study.db)"),
    study: str = typer.Option("demo", "--study", help="study name; running again resumes it"),
    dry_run: bool = typer.Option(False, "--dry-run", help="print the plan; train nothing"),
    gpus: int = typer.Option(None, "--gpus", min=1, help="dry run: GPUs for the wall-time estimate"),
    gpus_per_trial: int = typer.Option(
        1,
        "--gpus-per-trial",
        min=1,
        help="dry run: ranks per trial (`unetnas worker --gpus`); --gpus / this many workers",
    ),
    tflops_per_gpu: float = typer.Option(None, "--tflops-per-gpu", help="dry run: sustained TFLOP/s per GPU"),
    usd_per_gpu_hour: float = typer.Option(3.75, "--usd-per-gpu-hour", help="dry run: price for the cost line"),
    workers: int = typer.Option(
        1, "--workers", help="local worker processes on the study, ceil(cores/N) threads each (1: one, deterministic)"
    ),
    oversubscribe: bool = typer.Option(False, "--oversubscribe", help="allow --workers above the CPU cores"),
    json_out: O.Json = False,
) -> None:
    """FLOPs-budgeted multi-fidelity search (asynchronous Hyperband): the budget buys candidates; each is trained,
    scored and promoted or stopped; ends with the Pareto set of the designs trained to the last rung."""
    from unetnas.search.local import check_workers
    from unetnas.search.plan import measure_cpu_flops_per_s
    from unetnas.search.session import prepare

    check_workers(workers, oversubscribe)
    p = prepare(cfg)
    if dry_run:
        if gpus and tflops_per_gpu:
            fps, how = tflops_per_gpu * 1e12, f"{gpus} GPUs x {tflops_per_gpu:g} TFLOP/s"
        else:
            fps, how = measure_cpu_flops_per_s(p.space, p.recipe), "measured on this CPU"
        if json_out:
            print(
                json.dumps(
                    {
                        **plan_json(p.plan, fps, p.presets, gpus if tflops_per_gpu else None, gpus_per_trial),
                        "proxy": getattr(p.proxy, "name", None),
                    }
                )
            )
        else:
            if p.plan.shrunk:
                _hint(p.plan.feasible_note, Console())
            for table in _plan_tables(
                p.plan,
                fps,
                how,
                usd_per_gpu_hour,
                gpus if tflops_per_gpu else None,
                PROXY_LABELS.get(getattr(p.proxy, "name", None), "TIFA"),
                gpus_per_trial,
            ):
                Console().print(table)
        return
    _run(p, json_out, workers)


def _hint(text: str, out=None) -> None:
    """A hint line: one command, never wrapped (copy-paste must work whatever the terminal width)."""
    (out or console).print(text, soft_wrap=True, highlight=False, markup=False)


PROXY_LABELS = {"tifa": "TIFA", "vqa_tifa": "VQA-TIFA", "clipscore": "CLIPScore"}


def _run(p, json_out: bool, workers: int = 1) -> None:
    """Run the search with progress: plain timestamped lines where stdout is not a terminal (one per rung event,
    a budget line at most every minute, or every $UNETNAS_PROGRESS_INTERVAL_S seconds; on stderr with --json,
    whose stdout is the summary), a live view on one."""
    import os
    import shlex
    import sys

    from unetnas.cli.progress import INTERVAL_S, BudgetState, make_reporter
    from unetnas.report.records import name_objectives
    from unetnas.report.summary import summary
    from unetnas.search.local import drive_local
    from unetnas.search.runner import STOPPED, drive
    from unetnas.search.session import open_search
    from unetnas.search.study import lower_rung_rows, pareto_rows
    from unetnas.stop import graceful_stop

    search, url = open_search(p)
    name_objectives(search.study)  # optuna-dashboard shows the objectives' names
    plan = search.plan
    t_start = time.perf_counter()
    ended: set[int] = set()

    def state() -> BudgetState:
        led = search.ledger.summary()
        cands = search.candidates()
        counts = {
            k: sum(1 for c in cands if c.status == k)
            for k in ("training", "waiting", "complete", "pruned", "closed", "failed")
        }
        return BudgetState(led["spent"], led["reserved"], led["budget"], {k: v for k, v in counts.items() if v})

    def report_ended(rep) -> None:
        for t in search.study.get_trials(deepcopy=False):
            a = t.user_attrs
            if t.number not in ended and a.get("status") in ("complete", "pruned", "closed", "failed"):
                ended.add(t.number)
                rep.trial_ended(t.number, a["status"], rung=a.get("rung"), reason=a.get("reason"))

    def on_job(rep, job) -> None:
        report_ended(rep)
        rep.rung_started(job.number, job.rung, job.kind, target_flops=plan.target_flops(job.rung))

    def on_done(rep, job, out) -> None:
        if out.status == "done":
            rep.rung_finished(job.number, job.rung, out.record)
        report_ended(rep)
        rep.tick(state)

    def pareto():
        return _pareto_table(pareto_rows(search.study, search.objectives), search.top)

    stream = sys.stderr if json_out else sys.stdout
    every = float(os.environ.get("UNETNAS_PROGRESS_INTERVAL_S", INTERVAL_S))  # seconds between budget lines
    with (
        graceful_stop() as stop,
        make_reporter(stream, extra=pareto, interval_s=every, plain=True if json_out else None) as rep,
    ):
        name = getattr(p.proxy, "name", None) or "val_loss (no alignment proxy)"
        rep.message(f"study {search.study.study_name}: alignment proxy {name}, storage {url}")
        if plan.shrunk:
            rep.message(plan.feasible_note)
        rep.tick(state, force=True)

        def should_stop() -> bool:  # asked between jobs and at every training step
            rep.tick(state)
            return stop()

        if workers > 1:  # N `unetnas worker` processes on this study (unetnas/search/local.py)
            ticks = lambda: (report_ended(rep), rep.tick(state))  # noqa: E731
            reason = drive_local(search, p.cfg, workers, should_stop, on_poll=ticks, say=rep.message)
        else:
            reason = drive(
                search,
                should_stop,
                on_job=lambda job: on_job(rep, job),
                on_done=lambda job, out: on_done(rep, job, out),
            )
        report_ended(rep)
        rep.tick(state, force=True)
    out = summary(search, reason, time.perf_counter() - t_start, url)
    out["proxy"], out["workers"] = getattr(p.proxy, "name", None), workers
    if json_out:
        print(json.dumps(out))
        return
    if not (hasattr(stream, "isatty") and stream.isatty()):  # a live view already shows it
        console.print(pareto())
    lower = lower_rung_rows(search.study)
    if lower:
        console.print()
        console.print(_lower_table(lower))
    console.print(
        f"{reason}: {format_flops(out['spent'])} of {format_flops(out['budget'])} FLOPs spent "
        f"({out['unused_share']:.1%} unused) in {_dur(out['wall_s'])}; {out['candidates']} candidates, "
        f"{out['n_complete']} trained to rung {search.top}, {out['n_pruned']} pruned"
        + (f" ({out['second_chances']} of them continued: second chances)" if out["second_chances"] else "")
        + f", {out['n_closed']} closed, {out['n_failed']} failed."
    )
    if reason != STOPPED:
        study = search.study.study_name
        home = search.runs_dir or Path(p.cfg.runs_dir) / study
        q = shlex.quote
        _hint(f"export:    unetnas export --study {q(study)} --storage {q(url)} --out {q(str(home / 'export'))}")
        _hint(f"report:    unetnas report --study {q(study)} --storage {q(url)}")
        _hint(f"dashboard: unetnas dashboard --storage {q(url)}   (then open http://127.0.0.1:8080)")


@command()
def ledger(
    study: O.StudyName,
    storage: O.Storage = None,
    json_out: O.JsonObject = False,
) -> None:
    """FLOPs spent, reserved and remaining, by kind and by trial."""
    from unetnas.errors import UserError
    from unetnas.search.ledger import Ledger, LedgerError
    from unetnas.search.storage import engine_for, existing_storage, open_storage, redact

    url = existing_storage(storage, study)
    open_storage(url, heartbeat_interval=None)
    try:
        s = Ledger(engine_for(url), study).summary()
    except LedgerError:  # no budget row: not a study of this database (or not a unetnas search)
        raise UserError(f"has no FLOPs ledger in {redact(url)}", field="--study", value=study) from None
    if json_out:
        print(json.dumps(s))
        return
    t = Table(title=f"ledger of study {study!r}")
    t.add_column("item")
    t.add_column("FLOPs", justify="right")
    for key in ("budget", "spent", "reserved", "remaining"):
        t.add_row(key, format_flops(s[key]))
    for kind, v in s["by_kind"].items():
        t.add_row(f"spent on {kind}", format_flops(v))
    for trial, v in sorted(s["by_trial"].items(), key=lambda kv: int(kv[0]) if str(kv[0]).isdigit() else -1):
        t.add_row(f"trial {trial}", format_flops(v))
    Console().print(t)
