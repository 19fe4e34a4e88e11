"""The study report: typed records extracted from an Optuna study (``records``, ``budget``), scaling-law fits
(``fit``, ``scaling``), plotly panels drawn from the records (``figures``) and one offline HTML page laid out by
``dashboards/report.yaml`` (``layout``, ``html``).
"""

from __future__ import annotations

from pathlib import Path

import optuna

from unetnas.report.records import name_objectives

__all__ = ["build_report", "name_objectives", "write_report"]


def build_report(study: optuna.Study, url: str | None = None, layout_path: str | Path | None = None) -> str:
    """The report of ``study`` as one HTML string (``url``: its storage, to read the FLOPs ledger)."""
    from unetnas.report.data import collect
    from unetnas.report.figures import draw
    from unetnas.report.html import render_html
    from unetnas.report.layout import load_layout

    layout = load_layout(layout_path)  # bad layout: refused before the study is read
    d = collect(study, url)
    panels = draw([p.id for p in layout.panels], d)
    done = sum(1 for t in d.trials if t.top_rung)
    subtitle = (
        f"{len(d.trials)} designs tried, {done} reached the top rung; objectives {', '.join(d.info.objectives)}; "
        f"alignment = {d.info.metric.label}; horizon unit: training {d.info.horizon_unit}."
    )
    return render_html(layout, panels, study=study.study_name, subtitle=subtitle)


def write_report(
    study: optuna.Study, path: str | Path, url: str | None = None, layout_path: str | Path | None = None
) -> Path:
    """Write the report of ``study`` to ``path`` (one self-contained HTML file); returns the path."""
    from unetnas.report.html import write_html

    return write_html(build_report(study, url, layout_path), path)
