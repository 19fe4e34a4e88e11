"""`unetnas export` and `unetnas dashboard`: results people use."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from unetnas.cli.app import app

console = Console()


@app.command()
def export(
    study: str = typer.Option(..., "--study", help="study name"),
    storage: str = typer.Option(None, "--storage", help="storage URL (default sqlite:///runs/<study>/study.db)"),
    out: Path = typer.Option(..., "--out", help="folder for one sub-folder per Pareto design"),
    top: int = typer.Option(None, "--top", min=1, help="at most this many designs, best alignment first"),
) -> None:
    """Export the Pareto designs: diffusers config + weights, spec YAML, metrics, model card."""
    from unetnas.export import export as run
    from unetnas.search.storage import existing_storage

    folders = run(existing_storage(storage, study), study, out, top)
    for f in folders:
        console.print(f"wrote {f}")


@app.command()
def report(
    study: str = typer.Option(..., "--study", help="study name"),
    storage: str = typer.Option(None, "--storage", help="storage URL (default sqlite:///runs/<study>/study.db)"),
    out: Path = typer.Option(None, "--out", help="HTML file (default runs/<study>/report.html)"),
) -> None:
    """Plotly report: Pareto front (alignment vs GMACs), learning curves, scaling-law fit of alignment vs FLOPs."""
    from unetnas.export import load_study
    from unetnas.report import write_report
    from unetnas.search.storage import existing_storage

    s, objectives = load_study(existing_storage(storage, study), study)
    path = write_report(s, objectives, out or Path("runs") / study / "report.html")
    console.print(f"wrote {path}")


@app.command()
def dashboard(
    study: str = typer.Option(None, "--study", help="study name, to find its default storage"),
    storage: str = typer.Option(None, "--storage", help="storage URL"),
    host: str = typer.Option("127.0.0.1", "--host", help="interface to bind (127.0.0.1 unless you need others)"),
    port: int = typer.Option(8080, "--port", help="port"),
) -> None:
    """Serve optuna-dashboard for the study (trial attributes show spec, GMACs, params, rung and FLOPs)."""
    from optuna_dashboard import run_server

    from unetnas.errors import UserError
    from unetnas.search.storage import existing_storage, open_storage, redact

    if storage is None and study is None:
        raise UserError("give --storage URL or --study NAME", field="--storage")
    url = existing_storage(storage, study)
    console.print(f"serving {redact(url)} at http://{host}:{port} (Ctrl-C stops)")
    run_server(open_storage(url, heartbeat_interval=None), host=host, port=port)
