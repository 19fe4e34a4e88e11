"""Plotly report of a study: Pareto front of alignment vs inference cost, learning curves, a scaling-law fit.

Records are extracted first by pure functions (tested), then drawn. The HTML embeds plotly.js, so it opens
offline.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from unetnas.search import study as S
from unetnas.search.promotion import pareto


def rung_records(study) -> list[dict[str, Any]]:
    """One row per (trial, rung) with objective-relevant numbers."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        for key, rec in sorted(t.user_attrs.items()):
            if key.startswith("rung_"):
                rows.append({"trial": t.number, "state": t.state.name, "preset": t.user_attrs.get("preset"), **rec})
    return rows


def final_points(study, objectives: tuple[str, ...]) -> list[dict[str, Any]]:
    """Trials with objective values (COMPLETE), their values and whether they are on the Pareto front."""
    done = [t for t in study.get_trials(deepcopy=False, states=(S.TrialState.COMPLETE,)) if t.values]
    pts = [S.to_minimise(list(t.values), objectives) for t in done]
    front = set(pareto(pts))
    return [{"trial": t.number, **dict(zip(objectives, t.values)), "gmacs": t.user_attrs["gmacs"],
             "params": t.user_attrs["params"], "rung": t.user_attrs.get("rung"), "pareto": i in front,
             "flops_spent": t.user_attrs.get("flops_spent"), "preset": t.user_attrs.get("preset")}
            for i, t in enumerate(done)]  # fmt: skip


def fit_power_law(xs: list[float], ys: list[float]) -> tuple[float, float] | None:
    """Least-squares fit of y = a x^b in log-log space (the paper's S = a C^b); None with < 2 usable points."""
    pts = [(math.log(x), math.log(y)) for x, y in zip(xs, ys) if x > 0 and y > 0]
    if len(pts) < 2 or len({p[0] for p in pts}) < 2:
        return None
    n = len(pts)
    mx, my = sum(p[0] for p in pts) / n, sum(p[1] for p in pts) / n
    b = sum((x - mx) * (y - my) for x, y in pts) / sum((x - mx) ** 2 for x, _ in pts)
    return math.exp(my - b * mx), b


def frontier_by_compute(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """TIFA-scored rungs on the upper envelope of alignment vs training FLOPs (the points a scaling law fits)."""
    scored = sorted((r for r in rows if r.get("tifa") is not None), key=lambda r: r["train_flops"])
    out, best = [], -math.inf
    for r in scored:
        if r["tifa"] > best:
            out.append(r)
            best = r["tifa"]
    return out


def write_report(study, objectives: tuple[str, ...], path: str | Path) -> Path:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    rows, points = rung_records(study), final_points(study, objectives)
    fig = make_subplots(rows=1, cols=3, subplot_titles=("alignment vs inference GMACs", "validation loss vs samples",
                                                        "alignment vs training FLOPs"))  # fmt: skip
    for on_front, name, sym in ((False, "dominated", "circle-open"), (True, "Pareto front", "star")):
        sel = sorted((p for p in points if p["pareto"] == on_front), key=lambda p: p["gmacs"])
        fig.add_trace(go.Scatter(x=[p["gmacs"] for p in sel], y=[p["alignment"] for p in sel], name=name,
                                 mode="markers+lines" if on_front else "markers", marker={"symbol": sym, "size": 10},
                                 text=[f"trial {p['trial']} (rung {p['rung']})" for p in sel]), row=1, col=1)  # fmt: skip
    for trial in sorted({r["trial"] for r in rows}):
        rs = sorted((r for r in rows if r["trial"] == trial), key=lambda r: r["samples"])
        fig.add_trace(go.Scatter(x=[r["samples"] for r in rs], y=[r["val_loss"] for r in rs], mode="lines+markers",
                                 name=f"trial {trial}", showlegend=False, opacity=0.6), row=1, col=2)  # fmt: skip
    scored = [r for r in rows if r.get("tifa") is not None]
    fig.add_trace(go.Scatter(x=[r["train_flops"] for r in scored], y=[r["tifa"] for r in scored], mode="markers",
                             name="TIFA per rung", marker={"size": 7}), row=1, col=3)  # fmt: skip
    front = frontier_by_compute(rows)
    fit = fit_power_law([r["train_flops"] / 1e9 for r in front], [r["tifa"] for r in front])
    if fit is not None:
        a, b = fit
        xs = sorted(r["train_flops"] for r in scored)
        fig.add_trace(go.Scatter(x=xs, y=[a * (x / 1e9) ** b for x in xs], mode="lines",
                                 name=f"S = {a:.3g} C^{b:.3f} (C in GFLOPs)"), row=1, col=3)  # fmt: skip
    fig.update_xaxes(type="log", row=1, col=3)
    fig.update_xaxes(title_text="GMACs", row=1, col=1)
    fig.update_xaxes(title_text="training samples", row=1, col=2)
    fig.update_xaxes(title_text="training FLOPs", row=1, col=3)
    fig.update_layout(title=f"unetnas study {study.study_name!r}", height=520, width=1500)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.write_html(str(path), include_plotlyjs=True)
    return path
