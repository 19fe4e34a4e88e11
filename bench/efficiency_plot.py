"""The anytime plot of `python -m bench search-efficiency`: relative regret vs compute (mean +- SE over seeds) and
the compute each method needs to reach epsilon. Plotly figure; PNG through headless Chromium (no kaleido needed),
as scripts/report_screenshot.sh does for reports.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from bench.peers import PEERS

COLOURS = {
    "unetnas": "#d62728",
    "random": "#7f7f7f",
    "tpe": "#1f77b4",
    "topk": "#2ca02c",
    "hyperband": "#9467bd",
    # the peers' own schedulers (bench/peers/): dashed lines
    "moasha": "#ff7f0e",
    "asha": "#8c564b",
    "bohb": "#e377c2",
    "smac": "#17becf",
    "dehb": "#bcbd22",
}
PEER_DASH = "dash"
WIDTH, HEIGHT = 1400, 620


def figure(res: dict[str, Any]):  # noqa: ANN201
    """Left: mean relative regret +- one SE vs training + evaluation FLOPs (log x), epsilon dashed. Right: compute
    to reach epsilon per method (mean +- SE; hatched where some seed never reached it: a lower bound)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(
        rows=1,
        cols=2,
        column_widths=[0.68, 0.32],
        horizontal_spacing=0.09,
        subplot_titles=(
            f"relative {res.get('regret', 'plain')} regret of the answer (mean +- SE over seeds)",
            f"compute to reach regret {res['epsilon']:g}",
        ),
    )
    x = res["grid"]
    for m, r in res["methods"].items():
        c = COLOURS.get(m, "#000000")
        lo = [a - b for a, b in zip(r["regret_mean"], r["regret_se"])]
        hi = [a + b for a, b in zip(r["regret_mean"], r["regret_se"])]
        fig.add_trace(
            go.Scatter(
                x=x + x[::-1],
                y=hi + lo[::-1],
                fill="toself",
                fillcolor=c,
                opacity=0.18,
                line={"width": 0},
                hoverinfo="skip",
                showlegend=False,
            ),
            row=1,
            col=1,
        )
        dash = "dot" if m == "random" else PEER_DASH if m in PEERS else "solid"
        line = {"color": c, "width": 2.5, "shape": "hv", "dash": dash}
        fig.add_trace(go.Scatter(x=x, y=r["regret_mean"], name=r["label"], line=line), row=1, col=1)
        short = r["reached"] < res["seeds"]
        fig.add_trace(
            go.Bar(
                x=[m],
                y=[r["compute_mean"]],
                error_y={"type": "data", "array": [r["compute_se"]]},
                marker={"color": c, "pattern": {"shape": "/" if short else ""}},
                showlegend=False,
                text=[f"{r['reached']}/{res['seeds']}"],
                textposition="outside",
            ),
            row=1,
            col=2,
        )
    fig.add_hline(y=res["epsilon"], line={"dash": "dash", "color": "black"}, row=1, col=1)
    fig.update_xaxes(type="log", title_text="FLOPs spent (training + evaluation)", row=1, col=1)
    fig.update_yaxes(title_text="(HV(true front) - HV(answer)) / HV(true front)", rangemode="tozero", row=1, col=1)
    fig.update_yaxes(title_text="FLOPs (label: seeds that reached it)", rangemode="tozero", row=1, col=2)
    fig.update_layout(
        width=WIDTH,
        height=HEIGHT,
        template="plotly_white",
        legend={"orientation": "h", "x": 0, "y": -0.2},
        title=f"Search efficiency on {Path(res['table']).name} ({res.get('protocol', 'same-run')} replay): "
        f"{res['designs']} designs, {res['seeds']} seeds per method, reference point (alignment 0, "
        f"{res['reference_point']['gmacs']:.3g} GMACs)",
    )
    return fig


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def check(out: Path) -> None:
    """Refuse, before anything runs, a plot the benchmark could not write."""
    from unetnas.errors import UserError

    if out.suffix not in (".png", ".html"):
        raise UserError("must end in .png or .html", field="--plot", value=str(out))
    if out.suffix == ".png" and _chromium() is None:
        raise UserError(
            "needs Chromium to render a PNG (apt-get install -y chromium); or write .html",
            field="--plot",
            value=str(out),
        )


def write(res: dict[str, Any], out: Path) -> Path:
    """Write the figure to ``out``: ``.html`` (plotly.js inline) or ``.png`` (rendered by Chromium)."""
    fig = figure(res)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".html":
        fig.write_html(out, include_plotlyjs=True)
        return out
    check(out)
    chromium = _chromium()
    with tempfile.TemporaryDirectory() as tmp:
        page = Path(tmp) / "plot.html"
        fig.write_html(page, include_plotlyjs=True, config={"staticPlot": True})
        subprocess.run(
            [
                chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
                f"--user-data-dir={tmp}/profile",
                f"--window-size={WIDTH},{HEIGHT}",
                "--virtual-time-budget=8000",
                f"--screenshot={out.resolve()}",
                page.as_uri(),
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
    if not out.is_file() or out.stat().st_size == 0:
        raise RuntimeError(f"chromium wrote no image to {out}")
    return out
