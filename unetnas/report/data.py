"""Everything a report draws, collected once from a study (and its ledger): typed records, no figures."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import optuna

from unetnas.report.budget import BudgetRecords, read_budget
from unetnas.report.records import (
    Curve,
    DesignPoint,
    StudyInfo,
    TrialRecord,
    best_designs,
    design_points,
    learning_curves,
    param_importances,
    study_records,
)
from unetnas.report.samples import SAMPLES_FILE  # the labelled samples sheet a trial folder may hold
from unetnas.report.scaling import Scaling, scaling

N_BEST = 6  # designs shown in the image-grid panel


@dataclass(frozen=True)
class ReportData:
    info: StudyInfo
    trials: list[TrialRecord]
    points: list[DesignPoint]
    curves: dict[str, list[Curve]]
    scaling: Scaling
    budget: BudgetRecords
    importances: dict[str, dict[str, float]]
    grids: list[tuple[DesignPoint, Path]] = field(default_factory=list)  # best designs that have samples.png


def collect(study: optuna.Study, url: str | None = None) -> ReportData:
    """Read the study (and, given its storage ``url``, its FLOPs ledger) into ``ReportData``."""
    info, trials = study_records(study)
    points = design_points(trials, info.metric, info.objectives)
    folders = {t.number: t.folder for t in trials if t.folder is not None}
    grids = []
    for p in best_designs(points, N_BEST):
        png = folders.get(p.trial, None)
        if png is not None and (png / SAMPLES_FILE).is_file():
            grids.append((p, png / SAMPLES_FILE))
    return ReportData(
        info=info,
        trials=trials,
        points=points,
        curves=learning_curves(trials, info.metric),
        scaling=scaling(info, trials),
        budget=read_budget(url, study.study_name) if url else BudgetRecords(None, ()),
        importances=param_importances(study, info.objectives),
        grids=grids,
    )
