"""One self-contained HTML page from drawn panels: plotly.js and images inline, so it opens offline.

Each panel is a ``<section id="panel-ID" class="panel">``; a panel with a figure holds ``<div id="fig-ID">``.
"""

from __future__ import annotations

import html
import time
from pathlib import Path

from unetnas.report.figures import Panel
from unetnas.report.layout import Layout

CSS = """
body { font-family: system-ui, sans-serif; margin: 24px auto; max-width: 1400px; color: #222; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; } h2 { font-size: 1.15em; margin: 1.6em 0 0.3em; }
.meta, .note, .intro { color: #555; font-size: 0.9em; } .note { border-left: 3px solid #e0a800; padding-left: 8px; }
table.fits { border-collapse: collapse; font-size: 0.9em; margin: 8px 0; }
table.fits td, table.fits th { border: 1px solid #ddd; padding: 3px 8px; text-align: left; }
td.refused { color: #a33; }
.grids { display: flex; flex-wrap: wrap; gap: 16px; }
figure.grid { margin: 0; max-width: 960px; } figure.grid img { width: 100%; image-rendering: pixelated; }
figcaption { font-size: 0.85em; color: #444; }
"""


def render_html(layout: Layout, panels: dict[str, Panel], *, study: str, subtitle: str = "") -> str:
    """The whole page, panels in ``layout`` order."""
    import plotly.io as pio
    from plotly.offline import get_plotlyjs

    title = layout.title.replace("{study}", study)
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{CSS}</style>",
        f"<script type='text/javascript'>{get_plotlyjs()}</script></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p class='meta'>{html.escape(subtitle)} Written {time.strftime('%Y-%m-%d %H:%M')}.</p>",
    ]
    config = {"displaylogo": False, "responsive": True}
    for spec in layout.panels:
        p = panels[spec.id]
        parts.append(f"<section id='panel-{spec.id}' class='panel'><h2>{html.escape(spec.title)}</h2>")
        if spec.intro:
            parts.append(f"<p class='intro'>{html.escape(spec.intro)}</p>")
        if p.note:
            parts.append(f"<p class='note'>{html.escape(p.note)}</p>")
        if p.figure is not None:
            div = pio.to_html(p.figure, full_html=False, include_plotlyjs=False, div_id=f"fig-{spec.id}", config=config)
            parts.append(div)
        if p.html:
            parts.append(p.html)
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_html(text: str, path: str | Path) -> Path:
    """Write atomically (a reader never sees half a report); ``UserError`` if the folder cannot be made."""
    from unetnas.errors import UserError

    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    except OSError as err:
        raise UserError(f"cannot write the report ({err.strerror})", field="--out", value=str(path)) from None
    return path
