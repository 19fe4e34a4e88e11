"""`unetnas export` and `unetnas dashboard`: results people use."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from unetnas.cli import options as O
from unetnas.cli.registry import command

console = Console()


@command()
def export(
    study: O.StudyName,
    storage: O.Storage = None,
    out: Path = typer.Option(..., "--out", help="folder for one sub-folder per Pareto design"),
    top: int = typer.Option(None, "--top", min=1, help="at most this many designs, best alignment first"),
    config_only: bool = typer.Option(
        False,
        "--config-only",
        help="write configs and model cards without weights (when trial checkpoints are gone); the cards say so",
    ),
    replace: bool = typer.Option(
        False, "--replace", help="replace another study's export in --out (refused without it, nothing written)"
    ),
) -> None:
    """Export the Pareto designs: diffusers config + weights, spec YAML, metrics, model card.

    Refuses (one line, nothing written) a design whose checkpoint is missing (unless --config-only) or whose weights
    do not match its design or are not all finite. Trial folders are looked up where the study recorded them, then
    beside its SQLite file (a moved study folder still exports). Folders are named <study>-trial-NNNN and written as
    one transaction: a re-export replaces the study's earlier one; another study's export in --out is refused
    unless --replace; a file in the way or an unwritable folder is refused with --out untouched."""
    from unetnas.export import export as run
    from unetnas.search.storage import existing_storage

    folders = run(existing_storage(storage, study), study, out, top, config_only=config_only, replace=replace)
    for f in folders:
        console.print(f"wrote {f}")


@command()
def report(
    study: O.StudyName,
    storage: O.Storage = None,
    out: Path = typer.Option(None, "--out", help="HTML file (default runs/<study>/report.html)"),
    layout: Path = typer.Option(None, "--layout", help="panel layout YAML (default dashboards/report.yaml)"),
    steps: str = typer.Option(
        None,
        "--steps",
        help="first score the top-rung Pareto designs at these DDIM step counts, e.g. 5,10,20,50 (sampling-"
        "efficiency panel; trained checkpoints needed; FLOPs outside the study's budget)",
    ),
) -> None:
    """One offline HTML report: Pareto front, learning curves, scaling laws, sampling efficiency, samples, budget."""
    from unetnas.export import load_study
    from unetnas.report import write_report
    from unetnas.report.layout import load_layout
    from unetnas.report.steps import parse_steps, sweep_steps
    from unetnas.search.storage import existing_storage

    load_layout(layout)  # a bad layout is refused before the study is opened
    sweep = parse_steps(steps) if steps is not None else None
    url = existing_storage(storage, study)
    s, _ = load_study(url, study)
    if sweep is not None:

        def said(number: int, by_steps: dict[int, float]) -> None:
            shown = ", ".join(f"{k}: {v:.3f}" for k, v in by_steps.items())
            console.print(f"trial {number}: alignment by DDIM steps {shown}", soft_wrap=True, markup=False)

        spent = sweep_steps(s, url, sweep, on_design=said)
        console.print(f"DDIM step sweep: {spent:.3g} FLOPs (outside the study's budget)", markup=False)
    path = write_report(s, out or Path("runs") / study / "report.html", url=url, layout_path=layout)
    console.print(f"wrote {path.resolve()}", soft_wrap=True, markup=False, highlight=False)


@command()
def fit(
    study: O.StudyName,
    storage: O.Storage = None,
    at: str = typer.Option(None, "--at", help="predict alignment at these training FLOPs, comma-separated"),
    json_out: O.JsonObject = False,
) -> None:
    """Scaling-law fits of a study: S = a C^b, S = a N^b, isoFLOP optimum, with intervals and R^2."""
    import json

    from unetnas.errors import UserError
    from unetnas.export import load_study
    from unetnas.report.records import study_records
    from unetnas.report.scaling import scaling
    from unetnas.search.budget import parse_budget
    from unetnas.search.storage import existing_storage

    predict_at = [parse_budget(x, field="--at") for x in at.split(",")] if at is not None else None
    url = existing_storage(storage, study)
    s, _ = load_study(url, study)
    info, trials = study_records(s)
    result = scaling(info, trials, predict_at)
    if result.compute is None:
        raise UserError(f"cannot fit S = a C^b: {result.compute_refused}", field="--study", value=study)
    if json_out:
        print(json.dumps(result.as_dict()))
        return
    console.print(_fit_text(result), soft_wrap=True, highlight=False, markup=False)


def _fit_text(result) -> str:  # noqa: ANN001 (a unetnas.report.scaling.Scaling)
    lines = [f"alignment metric: {result.metric.label}"]
    for law, f, why in (
        ("S = a C^b (training compute frontier)", result.compute, result.compute_refused),
        ("S = a N^b (parameters, top rung)", result.params, result.params_refused),
        ("N_opt = a C^b (isoFLOP optimum)", result.isoflop.optimal, result.isoflop.refused),
    ):
        if f is None:
            lines.append(f"{law}: refused: {why}")
            continue
        lines.append(
            f"{law}: a = {f.a:.4g} [{f.a_ci[0]:.4g}, {f.a_ci[1]:.4g}], b = {f.b:.4g} [{f.b_ci[0]:.4g}, "
            f"{f.b_ci[1]:.4g}] ({f.level:.0%} CI), R^2 = {f.r2:.3f}, {f.n} points, x {f.x_range[0]:.3g} to "
            f"{f.x_range[1]:.3g}"
        )
    for c in result.isoflop.curves:
        where = f"N_opt = {c.n_opt:.3g}" if c.n_opt else f"no optimum ({c.refused})"
        lines.append(f"isoFLOP C = {c.budget:.3g}: {len(c.points)} designs, {where}")
    for c, y, lo, hi in result.predictions:
        lines.append(f"predicted S at C = {c:.3g} FLOPs: {y:.4f} (95% prediction interval {lo:.4f} to {hi:.4f})")
    return "\n".join(lines)


@command()
def dashboard(
    study: str = typer.Option(None, "--study", help="study name, to find its default storage"),
    storage: str = typer.Option(None, "--storage", help="storage URL"),
    host: str = typer.Option("127.0.0.1", "--host", help="interface to bind (127.0.0.1 unless you need others)"),
    port: int = typer.Option(8080, "--port", min=1, max=65535, help="port"),
    artifacts: Path = typer.Option(None, "--artifacts", help="artifact folder (default: beside the SQLite file)"),
    sync: bool = typer.Option(True, "--sync/--no-sync", help="write objective names, notes, artifacts and plots"),
) -> None:
    """Serve optuna-dashboard for a study, with objective names, trial cards, image grids and the report's plots."""
    import optuna
    from optuna.artifacts import FileSystemArtifactStore
    from optuna_dashboard import run_server

    from unetnas.dashboard import default_artifact_dir, sync_dashboard
    from unetnas.errors import UserError
    from unetnas.search.storage import existing_storage, open_storage, redact

    if storage is None and study is None:
        raise UserError("give --storage URL or --study NAME", field="--storage")
    url = existing_storage(storage, study)
    opened = open_storage(url, heartbeat_interval=None)
    names = [study] if study else optuna.get_all_study_names(storage=opened)
    folder = artifacts or default_artifact_dir(url, names[0] if names else "dashboard")
    if sync:
        for name in names:
            try:
                s = optuna.load_study(study_name=name, storage=opened)
            except KeyError:
                raise UserError(f"no such study in {redact(url)}", field="--study", value=name) from None
            done = sync_dashboard(s, url, folder)
            console.print(
                f"study {name}: objectives {', '.join(done.objectives)}; {done.notes_written} notes, "
                f"{done.artifacts_uploaded} artifacts, {done.plots} plots",
                soft_wrap=True,
                markup=False,
            )
    folder.mkdir(parents=True, exist_ok=True)
    console.print(
        f"serving {redact(url)} at http://{host}:{port} (artifacts in {folder.resolve()}; Ctrl-C stops)",
        soft_wrap=True,
        markup=False,
        highlight=False,
    )
    run_server(opened, host=host, port=port, artifact_store=FileSystemArtifactStore(str(folder)))
