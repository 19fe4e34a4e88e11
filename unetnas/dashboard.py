"""optuna-dashboard in the study's language: objective names, per-trial cards and labelled samples, the report's plots.

``sync_dashboard`` writes, idempotently, what optuna-dashboard shows:

- the objective names as Optuna metric names (``records.name_objectives``);
- each trial's artifacts, on the trial itself so its *Artifacts* panel lists them (``optuna.artifacts`` with a
  ``FileSystemArtifactStore``): the labelled samples sheet ``samples.png`` (each image with its prompt and the
  judge's answers, ``report.samples``), the same as ``samples.json``, and the model card. Optuna refuses attribute
  changes to finished trials (``UpdateFinishedTrialError``), and a dashboard is usually synced after the search, so
  the artifact's record (a trial system attribute, exactly what ``upload_artifact`` writes) is added to a finished
  trial through the RDB storage directly (``_attach``); artifact files and records are otherwise Optuna's own;
- a note per trial (optuna-dashboard's Markdown notes, stored in study system attrs, so finished trials take them):
  the model card, the samples sheet embedded from the artifact store, and the judge's answers as a table;
- the report's figures as dashboard plots (``save_plotly_graph_object``, one fixed id per panel, overwritten).
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import optuna

from unetnas.report.data import ReportData, collect
from unetnas.report.records import Metric, TrialRecord, name_objectives, spec_text
from unetnas.report.samples import SAMPLES_FILE, SAMPLES_JSON
from unetnas.search import trials as T

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


def trial_card(t: TrialRecord, metric: Metric, image_url: str | None = None, samples: list[dict] | None = None) -> str:
    """A Markdown model card of one trial: design, costs, status, one row per finished rung, and the samples sheet
    with each shown prompt's judge answers (``samples``: ``samples.json``'s entries)."""
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
        lines += ["", "Samples on the search's fixed prompts (prompt and the judge's answers under each):", ""]
        lines += [f"![samples]({image_url})"]
    if samples:
        lines += ["", "| prompt | alignment | judge's answers (wrong ones: what the prompt wants) |", "|---|---|---|"]
        for e in samples:
            said = "; ".join(
                f"{a['question']} {a['answer']}" + ("" if a["correct"] else f" ✗ (want {a['expected']})")
                for a in e.get("answers", [])
            )
            lines.append(f"| {_cell(e['prompt'])} | {_f(e.get('alignment'))} | {_cell(said) or '-'} |")
    return "\n".join(lines) + "\n"


def sync_dashboard(study: optuna.Study, url: str, artifact_dir: str | Path) -> SyncSummary:
    """Write objective names, artifacts, notes and plots for ``study`` (storage ``url``); safe to repeat."""
    from optuna.artifacts import FileSystemArtifactStore

    names = name_objectives(study)
    d = collect(study, url)
    artifact_dir = Path(artifact_dir)
    artifact_dir.mkdir(parents=True, exist_ok=True)
    store = FileSystemArtifactStore(str(artifact_dir))
    uploaded = notes = 0
    with tempfile.TemporaryDirectory() as tmp:
        for t in d.trials:
            trial_id = T.trial_id(study.trials[t.number])
            have = _trial_artifacts(study, trial_id)
            files: dict[str, bytes] = {}
            for name in (SAMPLES_FILE, SAMPLES_JSON):
                path = t.folder / name if t.folder else None
                if path is not None and path.is_file():
                    files[f"trial-{t.number:04d}-{name}"] = path.read_bytes()
            for fname, data in files.items():
                if fname not in have:
                    have[fname] = _upload(store, study, trial_id, Path(tmp) / fname, data)
                    uploaded += 1
            png = have.get(f"trial-{t.number:04d}-{SAMPLES_FILE}")
            image = f"/artifacts/{T.study_id(study)}/{trial_id}/{png}" if png else None
            card = trial_card(t, d.info.metric, image, _answers(t.folder))
            fname = f"trial-{t.number:04d}-{CARD_FILE}"
            if fname not in have:
                have[fname] = _upload(store, study, trial_id, Path(tmp) / fname, card.encode())
                uploaded += 1
            notes += _note(study, t.number, card)
    notes += _note(study, None, _study_note(d))
    plots = _plots(study, d)
    return SyncSummary(names, uploaded, notes, plots, artifact_dir)


def _trial_artifacts(study: optuna.Study, trial_id: int) -> dict[str, str]:
    """``{filename: artifact_id}`` of one trial's artifacts, read from the database (not a cache)."""
    from optuna.artifacts import get_all_artifact_meta

    trial = T.backend(study).get_trial(trial_id)
    return {m.filename: m.artifact_id for m in get_all_artifact_meta(trial, storage=T.backend(study))}


class _Attach:
    """The storage ``upload_artifact`` records an artifact in: Optuna's, except that a finished trial's record is
    written through the RDB storage's session directly (Optuna refuses attribute changes to finished trials)."""

    def __init__(self, backend) -> None:  # noqa: ANN001 (an Optuna storage)
        self.backend = backend

    def set_trial_system_attr(self, trial_id: int, key: str, value: object) -> None:
        T.set_finished_trial_system_attr(self.backend, trial_id, key, value)


def _upload(store, study: optuna.Study, trial_id: int, path: Path, data: bytes) -> str:  # noqa: ANN001
    from optuna.artifacts import upload_artifact

    path.write_bytes(data)
    trial = T.backend(study).get_trial(trial_id)
    return upload_artifact(
        artifact_store=store, file_path=str(path), study_or_trial=trial, storage=_Attach(T.backend(study))
    )


def _answers(folder: Path | None) -> list[dict]:
    """The shown samples of a trial (``samples.json``: prompt, per-prompt scores, judge's answers); [] if none."""
    path = folder / SAMPLES_JSON if folder else None
    if path is None or not path.is_file():
        return []
    try:
        return list(json.loads(path.read_text()).get("samples", []))
    except (ValueError, AttributeError):
        return []


def _note(study: optuna.Study, number: int | None, body: str) -> int:
    """Save ``body`` as the note of the study (``number`` None) or of trial ``number`` unless it is already there."""
    from optuna_dashboard import get_note, save_note

    target = study if number is None else optuna.trial.Trial(study, T.trial_id(study.trials[number]))
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
