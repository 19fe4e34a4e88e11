"""Drawing: one function per report panel, from ``ReportData`` to a plotly figure and/or an HTML fragment.

``PANELS`` maps the ids a layout file (``dashboards/report.yaml``) may name to these functions. Nothing here reads
the study; every number comes from the records (``records``, ``budget``, ``scaling``).
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from unetnas.report.budget import KIND_NAMES, burn_down, spent_by_rung_and_kind
from unetnas.report.data import ReportData
from unetnas.report.fit import PowerLawFit
from unetnas.report.records import best_at_cost, sampling_points

FADED = 0.3  # opacity of lower-rung designs and pruned/stopped/failed trials
PALETTE = qualitative.D3 + qualitative.Set2
HEIGHT = 480


@dataclass(frozen=True)
class Panel:
    """What one panel shows: a figure (or None), HTML below it (tables, images; already escaped) and a one-line
    note above it (caveats: fallbacks, refusals, missing records)."""

    figure: go.Figure | None
    html: str = ""
    note: str = ""


def _layout(fig: go.Figure, height: int = HEIGHT) -> go.Figure:
    fig.update_layout(height=height, margin={"l": 60, "r": 20, "t": 40, "b": 50}, template="plotly_white")
    return fig


def axis_scale(values: Sequence[float]) -> dict:
    """Plotly axis settings a person reads: log where the positive values span at least a decade, else linear, never
    a log axis over a sliver of a decade; counts of 1000 and more (FLOPs, parameters) get SI ticks (10G, 2.437T),
    small values (scores, GMACs of tiny models) plain ones (no "20m" for 0.02)."""
    v = [x for x in values if x is not None and math.isfinite(x)]
    si = bool(v) and max(abs(x) for x in v) >= 1e3
    if v and min(v) > 0 and max(v) / min(v) >= 10:
        return {"type": "log", "exponentformat": "SI" if si else "power"}
    return {"type": "linear", "tickformat": ".4~s" if si else ".3~g"}


def _colour(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


# -- Pareto front ------------------------------------------------------------------------------------------------
def pareto_panel(d: ReportData) -> Panel:
    """Alignment (with standard-error bars) against inference GMACs, coloured by parameters. Stars: the Pareto front
    over top-rung designs; faded and labelled: designs stopped at a lower rung; diamonds: reference presets."""
    pts = d.points
    if not pts:
        return Panel(None, note=f"No design has a {d.info.metric.field} score yet.")
    groups = [
        ("Pareto front", [p for p in pts if p.on_front], "star", 15, 1.0, "lines+markers"),
        ("top rung, dominated", [p for p in pts if p.top_rung and not p.on_front], "circle", 10, 0.9, "markers"),
        ("lower rung (less training)", [p for p in pts if not p.top_rung], "circle", 9, FADED, "markers+text"),
    ]
    fig = go.Figure()
    hover = (
        "<b>%{customdata[0]}</b> (trial %{customdata[1]}, rung %{customdata[2]})<br>"
        "alignment %{y:.4f} ± %{customdata[3]}<br>GMACs %{x:.4g}<br>params %{customdata[4]:,}<br>"
        "%{customdata[5]}<extra></extra>"
    )
    for name, sel, symbol, size, opacity, mode in groups:
        if not sel:
            continue
        fig.add_trace(
            go.Scatter(
                x=[p.gmacs for p in sel],
                y=[p.alignment for p in sel],
                error_y={"type": "data", "array": [p.alignment_se or 0.0 for p in sel], "visible": True},
                mode=mode,
                name=name,
                opacity=opacity,
                text=[f"r{p.rung}" for p in sel] if "text" in mode else None,
                textposition="top center",
                line={"color": "#555", "width": 1},
                marker={
                    "symbol": symbol,
                    "size": size,
                    "color": [p.params or 0 for p in sel],
                    "coloraxis": "coloraxis",
                    "line": {"width": 1, "color": "#333"},
                },
                customdata=[
                    [
                        p.name,
                        p.trial,
                        p.rung,
                        f"{p.alignment_se:.3f}" if p.alignment_se else "n/a",
                        p.params or 0,
                        p.spec_text,
                    ]
                    for p in sel
                ],
                hovertemplate=hover,
            )
        )
    presets = [p for p in pts if p.preset]
    if presets:
        fig.add_trace(
            go.Scatter(
                x=[p.gmacs for p in presets],
                y=[p.alignment for p in presets],
                mode="markers+text",
                name="reference preset",
                text=[p.preset for p in presets],
                textposition="bottom center",
                marker={"symbol": "diamond-open", "size": 20, "color": "black", "line": {"width": 2}},
                hoverinfo="skip",
            )
        )
    fig.update_xaxes(title_text="inference GMACs (conv + linear)", **axis_scale([p.gmacs for p in pts]))
    fig.update_yaxes(title_text=d.info.metric.label)
    fig.update_layout(coloraxis={"colorscale": "Viridis", "colorbar": {"title": {"text": "params"}}})
    fig.update_layout(legend={"orientation": "h", "y": -0.2})
    note = "" if d.info.metric.field == "alignment" else f"Alignment is {d.info.metric.label}."
    return Panel(_layout(fig), note=note)


# -- learning curves ---------------------------------------------------------------------------------------------
def curves_panel(d: ReportData) -> Panel:
    """Each proxy against cumulative training FLOPs, one line per trial; pruned, stopped and failed trials faded."""
    proxies = [("val_loss", "validation loss"), (d.info.metric.field, d.info.metric.label)]
    if not any(d.curves.get(p) for p, _ in proxies):
        return Panel(None, note="No trial has finished a rung yet.")
    lacking = [label for p, label in proxies if not any(len(c.points) >= 2 for c in d.curves.get(p, []))]
    proxies = [(p, label) for p, label in proxies if label not in lacking]
    need = (
        f"{' and '.join(lacking)}: one point per design (measured at one rung only); a learning curve needs it at "
        "2+ rungs (more rungs in the plan, or the recipe's search.tifa_rungs listing them)."
        if lacking
        else ""
    )
    if not proxies:
        return Panel(None, note=need)
    fig = make_subplots(
        rows=1, cols=len(proxies), subplot_titles=[label for _, label in proxies], horizontal_spacing=0.08
    )
    seen: set[int] = set()
    order = {t.number: i for i, t in enumerate(d.trials)}
    for col, (proxy, label) in enumerate(proxies, start=1):
        for c in d.curves.get(proxy, []):
            fig.add_trace(
                go.Scatter(
                    x=[p.train_flops for p in c.points],
                    y=[p.value for p in c.points],
                    error_y={"type": "data", "array": [p.se or 0.0 for p in c.points], "visible": proxy != "val_loss"},
                    mode="lines+markers",
                    name=f"{c.trial}: {c.name}" + (" (pruned)" if c.faded else ""),
                    legendgroup=str(c.trial),
                    showlegend=c.trial not in seen,
                    opacity=FADED if c.faded else 0.95,
                    line={"color": _colour(order.get(c.trial, c.trial)), "dash": "dot" if c.faded else "solid"},
                    hovertemplate=f"trial {c.trial} {html.escape(c.name)}<br>%{{x:.3g}} FLOPs<br>{label} %{{y:.4f}}"
                    "<extra></extra>",
                ),
                row=1,
                col=col,
            )
            seen.add(c.trial)
        xs = [p.train_flops for c in d.curves.get(proxy, []) for p in c.points]
        fig.update_xaxes(title_text="training FLOPs", row=1, col=col, **axis_scale(xs))
        fig.update_yaxes(title_text=label, row=1, col=col)
    fig.update_layout(legend={"title": {"text": "trial"}})
    return Panel(_layout(fig), note=need)


# -- budget ------------------------------------------------------------------------------------------------------
def budget_panel(d: ReportData) -> Panel:
    """The ledger: FLOPs remaining over wall time, and FLOPs spent per rung split into training and evaluation."""
    b = d.budget
    if b.budget is None:
        return Panel(None, note="The study has no FLOPs ledger (not made by unetnas search, or no storage URL given).")
    fig = make_subplots(rows=1, cols=2, subplot_titles=["budget remaining", "spent by rung and kind"])
    curve = burn_down(b)
    fig.add_trace(
        go.Scatter(
            x=[t / 3600 for t, _ in curve],
            y=[v for _, v in curve],
            mode="lines",
            line={"shape": "hv", "color": "#1f77b4"},
            name="remaining",
            showlegend=False,
        ),
        row=1,
        col=1,
    )
    fig.add_hline(y=0, line={"color": "#999", "dash": "dot"}, row=1, col=1)
    by = spent_by_rung_and_kind(b.spends)
    rungs = sorted({r for r, _ in by}, key=lambda r: (r is None, r or 0))
    labels = ["other" if r is None else f"rung {r}" for r in rungs]
    for i, kind in enumerate(sorted({k for _, k in by}, key=lambda k: (k not in KIND_NAMES, k))):
        fig.add_trace(
            go.Bar(
                x=labels,
                y=[by.get((r, kind), 0.0) for r in rungs],
                name=KIND_NAMES.get(kind, kind),
                marker={"color": _colour(i + 2)},
            ),
            row=1,
            col=2,
        )
    fig.update_layout(barmode="stack")
    fig.update_xaxes(title_text="hours since the first reservation", row=1, col=1)
    fig.update_yaxes(title_text="FLOPs", row=1, col=1)
    fig.update_yaxes(title_text="FLOPs", row=1, col=2)
    spent = sum(v for v in by.values())
    note = f"Budget {b.budget:.3g} FLOPs; {spent:.3g} counted ({spent / b.budget:.1%}), {len(b.spends)} reservations."
    return Panel(_layout(fig), note=note)


# -- parameter importance ----------------------------------------------------------------------------------------
def importance_panel(d: ReportData) -> Panel:
    """fANOVA importance (Optuna's ``FanovaImportanceEvaluator``) of each searched parameter, per objective."""
    if not d.importances:
        return Panel(None, note="Parameter importance needs at least two completed trials whose parameters vary.")
    names = sorted({p for imp in d.importances.values() for p in imp})
    fig = go.Figure()
    for i, (obj, imp) in enumerate(d.importances.items()):
        fig.add_trace(
            go.Bar(y=names, x=[imp.get(n, 0.0) for n in names], orientation="h", name=obj, marker_color=_colour(i))
        )
    fig.update_layout(barmode="group")
    fig.update_xaxes(title_text="importance (share of objective variance, fANOVA)")
    return Panel(_layout(fig, max(300, 60 + 28 * len(names) * len(d.importances))))


# -- scaling laws ------------------------------------------------------------------------------------------------
def _fit_line(fig: go.Figure, fit: PowerLawFit, x_hi: float, col: int, name: str) -> None:
    lo = fit.x_range[0]
    xs = [lo * (x_hi / lo) ** (i / 40) for i in range(41)]
    pred = [fit.predict(x) for x in xs]
    fig.add_trace(
        go.Scatter(
            x=xs + xs[::-1],
            y=[p[2] for p in pred] + [p[1] for p in pred][::-1],
            fill="toself",
            fillcolor="rgba(214,39,40,0.12)",
            line={"width": 0},
            name=f"{fit.level:.0%} prediction interval",
            hoverinfo="skip",
            showlegend=col == 1,
        ),
        row=1,
        col=col,
    )
    fig.add_trace(
        go.Scatter(x=xs, y=[p[0] for p in pred], mode="lines", line={"color": "#d62728"}, name=name),
        row=1,
        col=col,
    )


def scaling_panel(d: ReportData) -> Panel:
    """S = a C^b on the compute frontier and S = a N^b on the params frontier (Li et al.), isoFLOP parabolas of
    validation loss per rung with the compute-optimal size (Liang et al.), and predictions at larger budgets."""
    s = d.scaling
    label = d.info.metric.label
    if s.compute is None and s.params is None and not any(c.n_opt for c in s.isoflop.curves):
        return Panel(
            None,
            note=f"No scaling law can be fitted yet (S = a C^b: {s.compute_refused}); fits need 3+ frontier points "
            "spread over training compute: more rungs or a larger budget.",
            html=_scaling_table(d),
        )
    fig = make_subplots(
        rows=1,
        cols=3,
        subplot_titles=["alignment vs training compute", "alignment vs parameters", "isoFLOP: val loss vs params"],
        horizontal_spacing=0.07,
    )
    for col, pts, front, fit, xname in (
        (1, s.compute_points, s.compute_frontier, s.compute, "training FLOPs C"),
        (2, s.params_points, s.params_frontier, s.params, "parameters N"),
    ):
        fig.add_trace(
            go.Scatter(
                x=[p[0] for p in pts],
                y=[p[1] for p in pts],
                mode="markers",
                marker={"color": "#bbb", "size": 7},
                name="scored rungs" if col == 1 else "top-rung designs",
                text=[f"trial {p[2]}" for p in pts],
            ),
            row=1,
            col=col,
        )
        fig.add_trace(
            go.Scatter(
                x=[p[0] for p in front],
                y=[p[1] for p in front],
                mode="markers",
                marker={"color": "black", "size": 9, "symbol": "diamond"},
                name="frontier (fitted)",
                showlegend=col == 1,
                text=[f"trial {p[2]}" for p in front],
            ),
            row=1,
            col=col,
        )
        if fit is not None:
            x_hi = max(p[0] for p in s.predictions) if col == 1 and s.predictions else fit.x_range[1]
            _fit_line(fig, fit, x_hi, col, f"{fit.formula()} (R² {fit.r2:.3f})")
        fig.update_xaxes(title_text=xname, row=1, col=col, **axis_scale([p[0] for p in pts]))
        positive = all(p[1] > 0 for p in pts)  # corrected alignment can be negative: no log axis then
        ys = [p[1] for p in pts] if positive else []  # linear (SI ticks) for scores that can be negative
        fig.update_yaxes(title_text=label if col == 1 else None, row=1, col=col, **axis_scale(ys))
    if s.predictions:
        fig.add_trace(
            go.Scatter(
                x=[p[0] for p in s.predictions],
                y=[p[1] for p in s.predictions],
                error_y={
                    "type": "data",
                    "symmetric": False,
                    "array": [p[3] - p[1] for p in s.predictions],
                    "arrayminus": [p[1] - p[2] for p in s.predictions],
                },
                mode="markers",
                marker={"symbol": "x", "size": 11, "color": "#d62728"},
                name="predicted",
            ),
            row=1,
            col=1,
        )
    for i, c in enumerate(s.isoflop.curves):
        colour = _colour(i)
        fig.add_trace(
            go.Scatter(
                x=[p[0] for p in c.points],
                y=[p[1] for p in c.points],
                mode="markers",
                marker={"color": colour},
                name=f"C = {c.budget:.3g}",
            ),
            row=1,
            col=3,
        )
        if c.coef is not None:
            lo, hi = math.log10(c.points[0][0]), math.log10(c.points[-1][0])
            lx = [lo + (hi - lo) * k / 30 for k in range(31)]
            fig.add_trace(
                go.Scatter(
                    x=[10**v for v in lx],
                    y=[c.coef[0] * v * v + c.coef[1] * v + c.coef[2] for v in lx],
                    mode="lines",
                    line={"color": colour, "dash": "solid" if c.n_opt else "dot"},
                    showlegend=False,
                ),
                row=1,
                col=3,
            )
        if c.n_opt is not None:
            fig.add_trace(
                go.Scatter(
                    x=[c.n_opt],
                    y=[c.y_opt],
                    mode="markers",
                    marker={"symbol": "star", "size": 14, "color": colour},
                    name=f"N_opt {c.n_opt:.3g}",
                ),
                row=1,
                col=3,
            )
    fig.update_xaxes(title_text="parameters N", type="log", exponentformat="SI", row=1, col=3)
    return Panel(_layout(fig, 520), html=_scaling_table(d))


def _fit_row(law: str, fit: PowerLawFit | None, refused: str | None) -> str:
    if fit is None:
        return f"<tr><td>{html.escape(law)}</td><td colspan='5' class='refused'>refused: {html.escape(refused or '')}</td></tr>"
    return (
        f"<tr><td>{html.escape(fit.formula())}</td><td>{fit.a:.4g} [{fit.a_ci[0]:.4g}, {fit.a_ci[1]:.4g}]</td>"
        f"<td>{fit.b:.4g} [{fit.b_ci[0]:.4g}, {fit.b_ci[1]:.4g}]</td><td>{fit.r2:.3f}</td><td>{fit.n}</td>"
        f"<td>{fit.x_range[0]:.3g} to {fit.x_range[1]:.3g}</td></tr>"
    )


def _scaling_table(d: ReportData) -> str:
    s = d.scaling
    iso = s.isoflop
    rows = [
        _fit_row("S = a C^b", s.compute, s.compute_refused),
        _fit_row("S = a N^b", s.params, s.params_refused),
        _fit_row("N_opt = a C^b", iso.optimal, iso.refused),
    ]
    level = f"{s.compute.level:.0%}" if s.compute else "95%"
    out = [
        "<table class='fits' id='fit-table'><tr><th>law</th><th>a ["
        + level
        + " CI]</th><th>b ["
        + level
        + " CI]</th><th>R² (log-log)</th><th>points</th><th>x range</th></tr>",
        *rows,
        "</table>",
    ]
    if s.predictions:
        items = "".join(
            f"<li>at C = {c:.3g} training FLOPs: S = {y:.4f} ({level} prediction interval {lo:.4f} to {hi:.4f})</li>"
            for c, y, lo, hi in s.predictions
        )
        out.append(f"<p>Predicted {html.escape(d.info.metric.label)}:</p><ul id='predictions'>{items}</ul>")
    refused = [f"C = {c.budget:.3g}: {c.refused}" for c in iso.curves if c.refused]
    if refused:
        out.append("<p class='note'>isoFLOP curves without an optimum: " + html.escape("; ".join(refused)) + "</p>")
    return "\n".join(out)


# -- sampling efficiency -----------------------------------------------------------------------------------------
def sampling_panel(d: ReportData) -> Panel:
    """Mei et al. (2024, "Bigger is not always better"): alignment of the Pareto designs against sampling cost
    (inference GMACs x DDIM steps); the upper envelope names the best design at each inference budget."""
    pts, several = sampling_points(d.points, d.info.sample_steps)
    if not pts:
        return Panel(None, note="No Pareto design yet (or the study stores no sampling step count).")
    if not several:
        return Panel(
            None,
            note=f"Alignment was measured at {d.info.sample_steps} DDIM steps only: this panel needs each design "
            "scored at 2+ step counts (rung records with alignment_by_steps); the Pareto front above is the "
            "one-step-count view.",
        )
    fig = go.Figure()
    names = sorted({(p.trial, p.name) for p in pts})
    for i, (trial, name) in enumerate(names):
        own = sorted((p for p in pts if p.trial == trial), key=lambda p: p.steps)
        fig.add_trace(
            go.Scatter(
                x=[p.cost for p in own],
                y=[p.alignment for p in own],
                mode="lines+markers+text" if several else "markers+text",
                text=[f"{p.steps}" for p in own] if several else [name],
                textposition="top center",
                name=f"{trial}: {name}",
                marker={"color": _colour(i), "size": 9},
                hovertemplate="%{x:.4g} GMACs total<br>alignment %{y:.4f}<extra>" + html.escape(name) + "</extra>",
            )
        )
    best = best_at_cost(pts)
    fig.add_trace(
        go.Scatter(
            x=[p.cost for p in best],
            y=[p.alignment for p in best],
            mode="lines",
            line={"shape": "hv", "color": "black", "width": 3},
            opacity=0.35,
            name="best at each budget",
            text=[p.name for p in best],
        )
    )
    fig.update_xaxes(title_text="sampling cost: inference GMACs x DDIM steps", **axis_scale([p.cost for p in pts]))
    fig.update_yaxes(title_text=d.info.metric.label)
    leaders = " -> ".join(dict.fromkeys(f"{p.name} (from {p.cost:.3g})" for p in best))
    if several:
        note = f"Alignment measured at several DDIM step counts (labels: steps). Best by budget: {leaders}."
    else:
        note = (
            f"Alignment was measured at {d.info.sample_steps} DDIM steps only (the rung records carry no "
            f"alignment_by_steps): one point per design, no step sweep. Best by budget: {leaders}."
        )
    return Panel(_layout(fig), note=note)


# -- image grids -------------------------------------------------------------------------------------------------
def samples_panel(d: ReportData) -> Panel:
    """The image grids (fixed prompts) of the best designs, embedded as PNG data URIs."""
    if not d.grids:
        return Panel(None, note="No trial folder of a best design holds samples.png.")
    cells = []
    for p, png in d.grids:
        data = base64.b64encode(png.read_bytes()).decode()
        cap = f"{p.name} (trial {p.trial}): alignment {p.alignment:.3f}, {p.gmacs:.3g} GMACs"
        cells.append(
            f"<figure class='grid'><img alt='{html.escape(p.name)} samples' src='data:image/png;base64,{data}'>"
            f"<figcaption>{html.escape(cap)}</figcaption></figure>"
        )
    return Panel(None, html="<div class='grids'>" + "".join(cells) + "</div>")


PANELS: dict[str, Callable[[ReportData], Panel]] = {
    "pareto": pareto_panel,
    "curves": curves_panel,
    "budget": budget_panel,
    "importance": importance_panel,
    "scaling": scaling_panel,
    "sampling": sampling_panel,
    "samples": samples_panel,
}


def draw(ids: Sequence[str], d: ReportData) -> dict[str, Panel]:
    return {i: PANELS[i](d) for i in ids}
