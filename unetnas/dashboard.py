"""optuna-dashboard in the study's language: objective names, per-trial cards and image grids, the report's plots.

``sync_dashboard`` writes, idempotently, what optuna-dashboard shows:

- the objective names as Optuna metric names (``records.name_objectives``);
- the study's artifacts (``optuna.artifacts`` with a ``FileSystemArtifactStore``): each trial's ``samples.png`` and
  model card, uploaded at study level because Optuna refuses changes to finished trials (``UpdateFinishedTrialError``);
  a search that wants them on the trial itself must upload them before telling the trial;
- a note per trial (optuna-dashboard's Markdown notes, stored in study system attrs, so finished trials take them):
  the model card, with the image grid embedded from the artifact store;
- the report's figures as dashboard plots (``save_plotly_graph_object``, one fixed id per panel, overwritten).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import optuna

from unetnas.report.data import SAMPLES_FILE, ReportData, collect
from unetnas.report.records import Metric, TrialRecord, name_objectives, spec_text

CARD_FILE = "model_card.md"
PLOT_PANELS = ("pareto", "curves", "scaling", "sampling", "budget", "importance")


@dataclass(frozen=True)
class SyncSummary:
    objectives: tuple[str, ...]
    artifacts_uploaded: int
    notes_written: int
    plots: int
    artifact_dir: Path


def default_artifact_dir(url: str, study: str, runs_dir: str | Path = "runs") -> Path:
    """``<folder of the SQLite file>/artifacts``, or ``<runs_dir>/<study>/artifacts`` for server databases."""
    if url.startswith("sqlite:///"):
        return Path(url.removeprefix("sqlite:///")).resolve().parent / "artifacts"
    return Path(runs_dir).resolve() / study / "artifacts"


def trial_card(t: TrialRecord, metric: Metric, image_url: str | None = None) -> str:
    """A Markdown model card of one trial: design, costs, status and one row per finished rung."""
    lines = [
        f"## {t.name}",
        "",
        f"Trial {t.number}, {t.status}; last rung {t.rung}" + (" (top rung)" if t.top_rung else " (not the top rung)"),
        "",
        "| | |",
        "|---|---|",
        f"| inference GMACs (conv + linear) | {_g(t.gmacs)} |",
        f"| parameters | {t.params:,} |" if t.params else "| parameters | n/a |",
        f"| training FLOPs / sample | {_g(t.train_flops_per_sample)} |",
        f"| FLOPs spent (train + eval) | {_g(t.flops_spent)} |",
        f"| design | {_cell(spec_text(t.spec))} |",
    ]
    if t.preset:
        lines.append(f"| reference preset | {_cell(t.preset)} |")
    if t.rungs:
        lines += ["", f"| rung | training FLOPs | steps | val loss | {metric.field} | ± |", "|---|---|---|---|---|---|"]
        for r in t.rungs:
            s, se = r.score(metric), r.score_se(metric)
            lines.append(f"| {r.rung} | {r.train_flops:.3g} | {r.steps} | {_f(r.val_loss)} | {_f(s)} | {_f(se)} |")
    if image_url:
        lines += ["", "Samples on the search's fixed prompts:", "", f"![samples]({image_url})"]
    return "\n".join(lines) + "\n"


def sync_dashboard(study: optuna.Study, url: str, artifact_dir: str | Path) -> SyncSummary:
    """Write objective names, artifacts, notes and plots for ``study`` (storage ``url``); safe to repeat."""
    from optuna.artifacts import FileSystemArtifactStore, get_all_artifact_meta, upload_artifact

    names = name_objectives(study)
    d = collect(study, url)
    artifact_dir = Path(artifact_dir)
    artifact_dir.mkdir(parents=True, exist_ok=True)
    store = FileSystemArtifactStore(str(artifact_dir))
    have = {m.filename: m.artifact_id for m in get_all_artifact_meta(study)}
    uploaded = notes = 0
    with tempfile.TemporaryDirectory() as tmp:
        for t in d.trials:
            image = None
            png = t.folder / SAMPLES_FILE if t.folder else None
            if png is not None and png.is_file():
                fname = f"trial-{t.number:04d}-{SAMPLES_FILE}"
                if fname not in have:
                    have[fname] = _upload(upload_artifact, store, study, Path(tmp) / fname, png.read_bytes())
                    uploaded += 1
                image = f"/artifacts/{study._study_id}/{have[fname]}"
            card = trial_card(t, d.info.metric, image)
            fname = f"trial-{t.number:04d}-{CARD_FILE}"
            if fname not in have:
                have[fname] = _upload(upload_artifact, store, study, Path(tmp) / fname, card.encode())
                uploaded += 1
            notes += _note(study, t.number, card)
    notes += _note(study, None, _study_note(d))
    plots = _plots(study, d)
    return SyncSummary(names, uploaded, notes, plots, artifact_dir)


def _upload(upload_artifact, store, study: optuna.Study, path: Path, data: bytes) -> str:  # noqa: ANN001
    path.write_bytes(data)
    return upload_artifact(artifact_store=store, file_path=str(path), study_or_trial=study)


def _note(study: optuna.Study, number: int | None, body: str) -> int:
    """Save ``body`` as the note of the study (``number`` None) or of trial ``number`` unless it is already there."""
    from optuna_dashboard import get_note, save_note

    target = study if number is None else optuna.trial.Trial(study, study.trials[number]._trial_id)
    if get_note(target) == body:
        return 0
    save_note(target, body)
    return 1


def _study_note(d: ReportData) -> str:
    s = d.scaling
    fit = s.compute.formula() + f" (R² {s.compute.r2:.3f}, {s.compute.n} points)" if s.compute else s.compute_refused
    front = [p for p in d.points if p.on_front]
    lines = [
        f"## unetnas study {d.info.name}",
        "",
        f"Objectives: {', '.join(d.info.objectives)}; alignment = {d.info.metric.label}.",
        f"{len(d.trials)} designs tried; Pareto front: "
        + (", ".join(f"{p.name} ({p.alignment:.3f} at {p.gmacs:.3g} GMACs)" for p in front) or "none yet")
        + ".",
        f"Scaling law S = a C^b: {fit}.",
        "",
        "The report's plots are under *Plots*; each trial's card and image grid are in its note and the artifacts.",
    ]
    return "\n".join(lines) + "\n"


def _plots(study: optuna.Study, d: ReportData) -> int:
    from optuna_dashboard import save_plotly_graph_object

    from unetnas.report.figures import PANELS

    n = 0
    for pid in PLOT_PANELS:
        panel = PANELS[pid](d)
        if panel.figure is not None:
            fig = panel.figure.update_layout(title={"text": f"unetnas: {pid}"})
            save_plotly_graph_object(study, fig, graph_object_id=f"unetnas-{pid}")
            n += 1
    return n


def _cell(text: str) -> str:
    return text.replace("|", "\\|")  # a Markdown table cell


def _g(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.4g}"


def _f(v: float | None) -> str:
    return "" if v is None else f"{v:.4f}"
