"""Report panels carry information at every scale (issue 21 item 5), read in headless Chromium: every panel either
draws marks (points, lines, bars) or says in one line what it would need; a figure drawn without data, an empty
section, or a log axis over a sliver of a decade fails. Two studies: the search's own small factory study (every
law holds) and the README demo's scale (a replayed search at 3e13 FLOPs: one scored rung, one DDIM step count)."""

from __future__ import annotations

import re
from pathlib import Path

import optuna
import pytest
from study_factory import make_study

from unetnas.report import write_report
from unetnas.report.figures import axis_scale

ROOT = Path(__file__).resolve().parents[1]
MARKS = ('class="point"', 'class="js-line"', "class='point'", 'class="bars"')


def empty_panels(dom: str) -> list[str]:
    """Ids of the report's panels that show nothing: a plotly figure without a single drawn mark, or a section
    with neither a figure, an image, a table nor a one-line note."""
    bad = []
    for pid, body in re.findall(r'<section id="panel-([^"]+)"[^>]*>(.*?)</section>', dom, flags=re.S):
        if "js-plotly-plot" in body:
            if not any(m in body for m in MARKS):
                bad.append(pid)
        elif not re.search(r'class="note"|<img |<table', body):
            bad.append(pid)
    return bad


def test_empty_panel_detector_fails_on_an_empty_figure() -> None:
    """The check itself can fail: a drawn-but-empty plotly figure and a bare section are caught."""
    empty_fig = '<section id="panel-a" class="panel"><div class="js-plotly-plot"><svg></svg></div></section>'
    bare = '<section id="panel-b" class="panel"><h2>b</h2></section>'
    drawn = (
        '<section id="panel-c" class="panel"><div class="js-plotly-plot"><path class="point"></path></div></section>'
    )
    assert empty_panels(empty_fig + bare + drawn) == ["a", "b"]


def test_axes_are_log_only_over_a_decade_or_more() -> None:
    assert axis_scale([2.436e12, 2.439e12]) == {"type": "linear", "tickformat": ".4~s"}  # the demo's sliver
    assert axis_scale([1e10, 9e10, 2.7e11])["type"] == "log"
    assert axis_scale([-0.1, 0.3]) == {"type": "linear", "tickformat": ".3~g"}  # scores: no "100m"
    assert axis_scale([0.004, 0.09]) == {"type": "log", "exponentformat": "power"}


@pytest.fixture(scope="module")
def demo(tmp_path_factory, run_cli) -> tuple[str, optuna.Study]:
    """The README demo's study, replayed (no training): `unetnas search --replay ... --budget 3e13`."""
    home = tmp_path_factory.mktemp("demo")
    url = f"sqlite:///{home / 'study.db'}"
    table = ROOT / "bench" / "data" / "gt-tiny-v1.json"
    code, _, err = run_cli(["search", "--replay", str(table), "--budget", "3e13", "--study", "demo", "--storage", url])
    assert code == 0, err
    return url, optuna.load_study(study_name="demo", storage=url)


def test_no_empty_panel_at_the_demos_scale(demo, tmp_path, browser) -> None:
    url, study = demo
    path = write_report(study, tmp_path / "report.html", url=url)
    dom = browser.dom(path.as_uri())
    assert dom.count('class="panel"') >= 7
    assert empty_panels(dom) == []
    assert "a learning curve needs it at 2+ rungs" in dom  # what the missing panel would need, in one line
    assert "this panel needs each design scored at 2+ step counts" in dom


def test_no_empty_panel_on_a_study_with_every_record(tmp_path, browser) -> None:
    url = make_study(tmp_path)
    study = optuna.load_study(study_name="small", storage=url)
    dom = browser.dom(write_report(study, tmp_path / "report.html", url=url).as_uri())
    assert empty_panels(dom) == []
    for pid in ("pareto", "curves", "scaling", "sampling", "budget", "importance"):
        assert f'id="fig-{pid}"' in dom, pid  # enough data: every figure drawn
