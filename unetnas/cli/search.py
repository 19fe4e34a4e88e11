"""`unetnas search`, `unetnas ledger`: the budgeted search and its account."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer
from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from unetnas.cli.app import app
from unetnas.search.budget import format_flops

console = Console(stderr=True)


def _plan_table(plan, flops_per_s: float, how: str, usd_per_gpu_hour: float | None, gpus: int | None) -> Table:
    t = Table(title=f"plan for {format_flops(plan.budget)} FLOPs: {len(plan.rungs)} rungs, eta {plan.eta}")
    for col in ("rung", "candidates", "train FLOPs each", "train FLOPs", "eval FLOPs", "scoring", "wall time"):
        t.add_column(col, justify="right")
    for k, (r, n, tr, ev) in enumerate(zip(plan.rungs, plan.trials, plan.train_flops, plan.eval_flops)):
        steps = int(r // (plan.typical_train_per_sample * plan.batch_size))
        t.add_row(str(k), str(n), f"{format_flops(r)} (~{steps} steps)", format_flops(tr), format_flops(ev),
                  "val loss + TIFA" if k in plan.tifa_rungs else "val loss", _dur((tr + ev) / flops_per_s))  # fmt: skip
    total_s = plan.total / flops_per_s
    t.caption = (f"total {format_flops(plan.total)} FLOPs (train {1 - plan.eval_share:.1%}, eval {plan.eval_share:.1%}); "
                 f"expected wall time {_dur(total_s)} at {flops_per_s / 1e12:.3g} TFLOP/s ({how})")  # fmt: skip
    if gpus:
        gpu_h = total_s * gpus / 3600
        t.caption += f"; {gpu_h:,.0f} GPU-hours" + (f", ${gpu_h * usd_per_gpu_hour:,.0f}" if usd_per_gpu_hour else "")
    return t


def _dur(s: float) -> str:
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h" if s < 172800 else f"{s / 86400:.1f} d"


def _pareto_table(rows: list[dict]) -> Table:
    t = Table(title="Pareto set (completed candidates)")
    for col in ("trial", "alignment", "GMACs", "params", "FLOPs spent"):
        t.add_column(col, justify="right")
    for r in rows:
        t.add_row(str(r["trial"]), f"{r['alignment']:.3f}", f"{r['gmacs']:.3g}", f"{r['params'] / 1e6:.2f}M",
                  format_flops(r["flops_spent"] or 0))  # fmt: skip
    return t


@app.command()
def search(
    budget: str = typer.Option(..., "--budget", help="total FLOPs of training and evaluation, e.g. 2e20"),
    space: Path = typer.Option(None, "--space", help="space YAML (default space/tiny.yaml)"),
    data: str = typer.Option("shapes", "--data", help="'shapes' (the built-in world) or a prepared data folder"),
    recipe: Path = typer.Option(None, "--recipe", help="recipe YAML (default trials/short.yaml)"),
    storage: str = typer.Option(None, "--storage", help="Optuna storage URL (default sqlite:///runs/<study>/study.db)"),
    study: str = typer.Option("demo", "--study", help="study name; running again resumes it"),
    objectives: str = typer.Option("alignment,gmacs", "--objectives", help="alignment plus gmacs and/or params"),
    max_gmacs: float = typer.Option(None, "--max-gmacs", help="constraint: inference GMACs at most"),
    max_params: float = typer.Option(None, "--max-params", help="constraint: parameters at most"),
    sampler: str = typer.Option("tpe", "--sampler", help="tpe | nsga2 | gp | random"),
    seed: int = typer.Option(0, "--seed", min=0, max=2**32 - 1, help="sampler and training seed"),
    enqueue_presets: bool = typer.Option(False, "--enqueue-presets", help="add presets that fit the space"),
    dry_run: bool = typer.Option(False, "--dry-run", help="print the plan; train nothing"),
    gpus: int = typer.Option(None, "--gpus", min=1, help="dry run: GPUs for the wall-time estimate"),
    tflops_per_gpu: float = typer.Option(None, "--tflops-per-gpu", help="dry run: sustained TFLOP/s per GPU"),
    usd_per_gpu_hour: float = typer.Option(3.75, "--usd-per-gpu-hour", help="dry run: price for the cost line"),
    json_out: bool = typer.Option(False, "--json", help="print one JSON summary at the end"),
) -> None:
    """FLOPs-budgeted multi-fidelity search: train, score, promote, prune; ends with the Pareto set."""
    from unetnas.search.budget import parse_budget
    from unetnas.search.plan import measure_cpu_flops_per_s
    from unetnas.search.session import DEFAULT_SPACE, SearchConfig, prepare
    from unetnas.search.study import make_sampler, parse_objectives

    cfg = SearchConfig(budget=parse_budget(budget), space=space or DEFAULT_SPACE, data=data, recipe=recipe,
                       storage=storage, study=study, objectives=parse_objectives(objectives), max_gmacs=max_gmacs,
                       max_params=max_params, sampler=sampler, seed=seed, enqueue_presets=enqueue_presets)  # fmt: skip
    make_sampler(sampler, seed)  # validate before anything is opened
    p = prepare(cfg)
    if dry_run:
        if gpus and tflops_per_gpu:
            fps, how = gpus * tflops_per_gpu * 1e12, f"{gpus} GPUs x {tflops_per_gpu:g} TFLOP/s"
        else:
            fps, how = measure_cpu_flops_per_s(p.space, p.recipe), "measured on this CPU"
        table = _plan_table(p.plan, fps, how, usd_per_gpu_hour, gpus)
        if json_out:
            print(json.dumps({"plan": p.plan.as_dict(), "flops_per_s": fps, "wall_s": p.plan.total / fps,
                              "presets": p.presets}))  # fmt: skip
        else:
            Console().print(table)
        return
    _run(p, json_out)


def _run(p, json_out: bool) -> None:
    from unetnas.search.session import open_search
    from unetnas.search.study import pareto_rows, trials_by_state
    from unetnas.stop import graceful_stop

    search, url = open_search(p)
    plan = search.plan
    t_start = time.perf_counter()
    bar = Progress(TextColumn("[bold]budget"), BarColumn(), TextColumn("{task.fields[text]}"), TimeElapsedColumn(),
                   console=console)  # fmt: skip
    task = bar.add_task("budget", total=plan.budget, text="")
    status = Progress(TextColumn("{task.fields[text]}"), console=console)
    st = status.add_task("", text="")

    def refresh(extra: str = "") -> Group:
        led = search.ledger.summary()
        states = trials_by_state(search.study)
        waiting = sum(1 for t in states["running"] if t.user_attrs.get("status") == "waiting")
        promoted = sum(1 for v in states.values() for t in v if t.user_attrs.get("target_rung", 0) > 0)
        bar.update(task, completed=led["spent"] + led["reserved"],
                   text=f"{format_flops(led['spent'])} spent, {format_flops(led['remaining'])} left")  # fmt: skip
        status.update(st, text=f"running {len(states['running']) - waiting}, waiting {waiting}, promoted {promoted}, complete "
                      f"{len(states['complete'])}, pruned {len(states['pruned'])}, failed {len(states['fail'])} {extra}")  # fmt: skip
        return Group(bar, status, _pareto_table(pareto_rows(search.study, search.objectives)))

    reason = "plan finished"
    with graceful_stop() as stop, Live(refresh(), console=console, transient=json_out, refresh_per_second=2) as live:
        while True:
            search.prune_decided()
            if stop():
                reason = "stopped (Ctrl-C): rerun the same command to resume"
                break
            job = search.next_job()
            if job is None:
                break
            live.update(refresh(f"| trial {job.number} -> rung {job.rung} ({job.kind})"))
            out = search.run(job, should_stop=stop)
            if out.status == "budget":
                reason = "budget exhausted"
                break
            live.update(refresh())
        if reason != "stopped (Ctrl-C): rerun the same command to resume":
            search.finish()
        live.update(refresh())
    wall = time.perf_counter() - t_start
    led = search.ledger.summary()
    states = trials_by_state(search.study)
    rows = pareto_rows(search.study, search.objectives)
    summary = {"study": search.study.study_name, "storage": url, "budget": led["budget"], "spent": led["spent"],
               "reserved": led["reserved"], "n_trials": sum(len(v) for v in states.values()) - _n_infeasible(states),
               "n_pruned": len(states["pruned"]), "n_complete": len(states["complete"]), "n_failed": len(states["fail"]),
               "pareto": [{k: r[k] for k in ("trial", "alignment", "gmacs", "params")} for r in rows],
               "reason": reason, "wall_s": wall, "train_s": search.wall["train"], "eval_s": search.wall["eval"],
               "overhead_share": max(0.0, 1 - (search.wall["train"] + search.wall["eval"]) / wall)}  # fmt: skip
    if json_out:
        print(json.dumps(summary))
        return
    console.print(f"{reason}: {format_flops(led['spent'])} of {format_flops(led['budget'])} FLOPs spent in "
                  f"{_dur(wall)}; {summary['n_complete']} complete, {summary['n_pruned']} pruned.")  # fmt: skip
    console.print(f"export:    unetnas export --study {search.study.study_name} --storage '{url}' --out exported")
    console.print(f"dashboard: unetnas dashboard --storage '{url}'   (then open http://127.0.0.1:8080)")


def _n_infeasible(states) -> int:
    return sum(1 for t in states["fail"] if "infeasible" in t.user_attrs)


@app.command()
def ledger(
    study: str = typer.Option(..., "--study", help="study name"),
    storage: str = typer.Option(None, "--storage", help="storage URL (default sqlite:///runs/<study>/study.db)"),
    json_out: bool = typer.Option(False, "--json", help="print one JSON object"),
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
