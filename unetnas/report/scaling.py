"""The scaling analysis of one study: which records each fit uses, the fits, and predictions at larger budgets.

Glue between ``records`` (what the study holds) and ``fit`` (the statistics); pure, no drawing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from unetnas.report.fit import FitRefused, IsoFlopFit, PowerLawFit, fit_isoflops, fit_power_law
from unetnas.report.records import (
    Metric,
    StudyInfo,
    TrialRecord,
    compute_points,
    isoflop_groups,
    rung_horizons,
    upper_envelope,
)

PREDICT_FACTORS = (10.0, 100.0)  # default predictions: at 10x and 100x the largest training compute in the study


@dataclass(frozen=True)
class Scaling:
    """Fits of one study. A fit that the data cannot support is None and its ``*_refused`` says why."""

    metric: Metric
    compute_points: list[tuple[float, float, int]]  # (training FLOPs, alignment, trial) of every scored rung
    compute_frontier: list[tuple[float, float, int]]
    compute: PowerLawFit | None
    compute_refused: str | None
    params_points: list[tuple[float, float, int]]  # (params, alignment, trial) of top-rung designs
    params_frontier: list[tuple[float, float, int]]
    params: PowerLawFit | None
    params_refused: str | None
    isoflop: IsoFlopFit
    predictions: list[tuple[float, float, float, float]]  # (training FLOPs, alignment, lower, upper)

    def as_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric.field,
            "metric_label": self.metric.label,
            "compute": self.compute.as_dict() if self.compute else None,
            "compute_refused": self.compute_refused,
            "compute_frontier": [{"train_flops": c, "alignment": s, "trial": t} for c, s, t in self.compute_frontier],
            "params": self.params.as_dict() if self.params else None,
            "params_refused": self.params_refused,
            "isoflop": self.isoflop.as_dict(),
            "predictions": [
                {"train_flops": c, "alignment": y, "lower": lo, "upper": hi} for c, y, lo, hi in self.predictions
            ],
        }


def scaling(info: StudyInfo, trials: Sequence[TrialRecord], predict_at: Sequence[float] | None = None) -> Scaling:
    """S = a C^b on the (training compute, alignment) frontier, S = a N^b on the (params, alignment) frontier of
    top-rung designs, isoFLOP parabolas of validation loss per rung, and predictions of S at ``predict_at``
    training FLOPs (default: 10x and 100x the study's largest)."""
    metric = info.metric
    cpts = compute_points(trials, metric)
    cfront = upper_envelope(cpts)
    compute, compute_refused = _try(
        lambda: fit_power_law([p[0] for p in cfront], [p[1] for p in cfront], x_name="C", y_name="S")
    )
    ppts = []
    for t in trials:
        rec = t.last_scored(metric)
        if t.top_rung and t.params and rec is not None and rec.rung == t.rung:
            ppts.append((float(t.params), rec.score(metric), t.number))
    pfront = upper_envelope(ppts)
    params, params_refused = _try(
        lambda: fit_power_law([p[0] for p in pfront], [p[1] for p in pfront], x_name="N", y_name="S")
    )
    horizons = rung_horizons(trials)
    groups = {horizons[k]: pts for k, pts in isoflop_groups(trials).items() if k in horizons}
    iso = fit_isoflops(groups, minimize=True)
    predictions = []
    if compute is not None:
        top = max(p[0] for p in cpts)
        for c in predict_at or [top * f for f in PREDICT_FACTORS]:
            predictions.append((float(c), *compute.predict(c)))
    return Scaling(
        metric, cpts, cfront, compute, compute_refused, ppts, pfront, params, params_refused, iso, predictions
    )


def _try(fn):  # noqa: ANN001, ANN202
    try:
        return fn(), None
    except FitRefused as err:
        return None, str(err)
