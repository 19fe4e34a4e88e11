"""The report: typed records from a real SQLite study, the scaling analysis on them, the ledger's budget records, the
layout file, and the HTML page rendered in headless Chromium (every panel present, not blank)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import optuna
import pytest
from study_factory import HORIZONS, make_study

from unetnas.errors import UserError
from unetnas.report import build_report, name_objectives, write_report
from unetnas.report.budget import burn_down, read_budget, spent_by_rung_and_kind
from unetnas.report.layout import load_layout
from unetnas.report.records import (
    ALIGNMENT,
    RAW_TIFA,
    best_at_cost,
    design_points,
    learning_curves,
    param_importances,
    sampling_points,
    study_records,
    upper_envelope,
)
from unetnas.report.scaling import scaling

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> tuple[str, optuna.Study]:
    root = tmp_path_factory.mktemp("small")
    url = make_study(root)
    return url, optuna.load_study(study_name="small", storage=url)


def _old_format_study(tmp_path: Path) -> tuple[str, optuna.Study]:
    """The demo study as the search wrote it before corrected alignment: raw ``tifa`` only, no ``top_rung``."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    study = optuna.create_study(study_name="old", storage=url, directions=["maximize", "minimize"])
    study.set_user_attr("unetnas_settings", {"objectives": ["alignment", "gmacs"], "plan": {"rungs": [1e12, 3e12]}})
    for i, (gmacs, tifa) in enumerate([(0.1, 0.30), (0.2, 0.45), (0.3, 0.40), (0.4, 0.60), (0.15, None)]):
        t = study.ask()
        t.set_user_attr("gmacs", gmacs)
        t.set_user_attr("params", int(gmacs * 1e7))
        t.set_user_attr("rung_0", {"samples": 320, "train_flops": 1e12, "val_loss": 0.5 - gmacs / 2, "tifa": None})
        if tifa is None:
            t.set_user_attr("rung", 0)
            study.tell(t, state=optuna.trial.TrialState.PRUNED)
            continue
        t.set_user_attr("rung_1", {"samples": 960, "train_flops": 3e12 * (1 + i), "val_loss": 0.3, "tifa": tifa})
        t.set_user_attr("rung", 1)
        study.tell(t, [tifa, gmacs])
    return url, study


# -- records -----------------------------------------------------------------------------------------------------
def test_records_are_typed_and_complete(small):
    _, study = small
    info, trials = study_records(study)
    assert info.objectives == ("alignment", "gmacs") and info.metric == ALIGNMENT and info.n_rungs == 3
    assert info.sample_steps == 20 and [t.number for t in trials] == list(range(9))
    by = {t.number: t for t in trials}
    assert [t.number for t in trials if t.top_rung] == [6, 7, 8]
    assert by[0].status == "pruned" and by[0].faded and by[4].status == "stopped" and not by[6].faded
    assert by[7].preset == "tiny" and by[7].name == "tiny" and by[6].name == "small-t6"
    assert [r.rung for r in by[8].rungs] == [0, 1, 2] and by[8].rungs[2].alignment_by_steps[50] > 0
    # intermediate values (samples seen) become training FLOPs through train_flops_per_sample
    curves = learning_curves(trials, info.metric)
    loss6 = next(c for c in curves["val_loss"] if c.trial == 8)
    assert [p.train_flops for p in loss6.points] == pytest.approx(list(HORIZONS), rel=1e-3)
    assert {c.trial for c in curves["alignment"] if c.faded} == {0, 1, 2, 3, 4, 5}


def test_pareto_front_only_over_top_rung_designs(small):
    _, study = small
    info, trials = study_records(study)
    points = design_points(trials, info.metric, info.objectives)
    assert {p.trial for p in points if p.on_front} == {6, 7, 8}
    lower = {p.trial: p for p in points if not p.top_rung}
    assert set(lower) == {0, 1, 2, 3, 4, 5} and lower[4].rung == 1 and lower[2].rung == 0
    # trial 5 (rung 1) beats trial 6 (rung 2) on GMACs: on the front had it reached the top rung
    assert all(not p.on_front for p in lower.values())
    assert "attn [" in points[0].spec_text and points == sorted(points, key=lambda p: (p.gmacs, -p.alignment))
    samples, several = sampling_points(points, info.sample_steps)
    assert several and {s.steps for s in samples} == {5, 10, 20, 50} and len(samples) == 12
    best = best_at_cost(samples)
    assert [b.cost for b in best] == sorted(b.cost for b in best)
    assert all(b2.alignment > b1.alignment for b1, b2 in zip(best, best[1:]))


def test_old_format_falls_back_to_raw_tifa(tmp_path):
    _, study = _old_format_study(tmp_path)
    info, trials = study_records(study)
    assert info.metric == RAW_TIFA and "raw" in info.metric.label
    points = design_points(trials, info.metric, info.objectives)
    # the plan's top rung is 1: the front is (0.1, 0.30), (0.2, 0.45), (0.4, 0.60); (0.3, 0.40) is dominated
    assert sorted(p.trial for p in points if p.on_front) == [0, 1, 3]
    assert upper_envelope([(1, 0.3, "a"), (2, 0.2, "b"), (3, 0.5, "c"), (3, 0.4, "d")]) == [
        (1, 0.3, "a"),
        (3, 0.5, "c"),
    ]


def test_name_objectives_sets_optuna_metric_names(tmp_path):
    _, study = _old_format_study(tmp_path)
    assert study.metric_names is None
    assert name_objectives(study) == ("alignment", "gmacs")
    assert optuna.load_study(study_name="old", storage=study._storage).metric_names == ["alignment", "gmacs"]
    name_objectives(study)  # idempotent


def test_scaling_recovers_the_study_laws(small):
    _, study = small
    info, trials = study_records(study)
    s = scaling(info, trials, predict_at=[1e12])
    assert len(s.compute_frontier) == 3 and s.compute.b == pytest.approx(0.08, rel=1e-6)  # trial 8 at each rung
    assert s.params is not None and s.params.b == pytest.approx(0.05, rel=1e-6)  # top rung: equal C, S ~ N^0.05
    assert s.isoflop.optimal is not None and s.isoflop.optimal.b == pytest.approx(0.5, rel=1e-3)  # N_opt = 5 C^0.5
    ((c, y, lo, hi),) = s.predictions
    assert c == 1e12 and lo < y < hi
    d = s.as_dict()
    assert json.loads(json.dumps(d))["compute"]["b"] == s.compute.b and d["compute_refused"] is None


def test_importances_from_optunas_evaluator(small):
    _, study = small
    imp = param_importances(study, ("alignment", "gmacs"))
    assert set(imp) == {"alignment", "gmacs"} and set(imp["alignment"]) <= {"base_channels", "level1"}
    assert sum(imp["alignment"].values()) == pytest.approx(1.0)


def test_budget_records_from_the_ledger(small):
    url, _ = small
    b = read_budget(url, "small")
    assert b.budget == 2e12 and len(b.spends) == 2 * (4 * 1 + 2 * 2 + 3 * 3)  # train + eval per finished rung
    by = spent_by_rung_and_kind(b.spends)
    assert by[(0, "train")] == pytest.approx(9 * HORIZONS[0]) and by[(2, "eval")] == pytest.approx(3 * 2e8)
    curve = burn_down(b)
    assert curve[0] == (0.0, 2e12) and curve[-1][1] == pytest.approx(2e12 - sum(s.flops for s in b.spends))
    assert read_budget(url, "no-such-study").budget is None


# -- layout ------------------------------------------------------------------------------------------------------
def test_default_layout_names_every_panel_once():
    layout = load_layout()
    assert [p.id for p in layout.panels] == [
        "pareto",
        "curves",
        "scaling",
        "sampling",
        "samples",
        "budget",
        "importance",
    ]


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("panels: [{id: pie, title: Pie}]", "panels.0.id='pie': must be one of pareto"),
        ("panels: [{id: pareto, title: A}, {id: pareto, title: B}]", "repeated: pareto"),
        ("panels: []", "panels"),
        ("title: x\npanels: [{id: pareto, title: A, colour: red}]", "panels.0.colour='red'"),
        ("[1, 2", "not valid YAML"),
    ],
)
def test_bad_layout_is_one_line_error(tmp_path, text, needle):
    path = tmp_path / "layout.yaml"
    path.write_text(text)
    with pytest.raises(UserError) as err:
        load_layout(path)
    assert str(err.value).startswith(str(path)) and needle in str(err.value) and "\n" not in str(err.value)


# -- the page ----------------------------------------------------------------------------------------------------
class _Elements(HTMLParser):
    """id -> class attribute of every element of a DOM dump."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: dict[str, str] = {}

    def handle_starttag(self, tag, attrs):  # noqa: ANN001
        a = dict(attrs)
        if a.get("id"):
            self.ids[a["id"]] = a.get("class") or ""


def test_report_renders_every_panel_in_headless_chromium(small, tmp_path, browser, count_colours):
    url, study = small
    path = write_report(study, tmp_path / "report.html", url=url)
    text = path.read_text()
    assert "<script src=" not in text and "https://" not in text.split("</script>")[-1]  # nothing fetched online
    dom = browser.dom(path.as_uri())
    parser = _Elements()
    parser.feed(dom)
    for panel in load_layout().panels:
        assert f"panel-{panel.id}" in parser.ids, panel.id
    for fig in ("pareto", "curves", "scaling", "sampling", "budget", "importance"):
        assert "js-plotly-plot" in parser.ids.get(f"fig-{fig}", ""), f"{fig} was not drawn"
    assert (
        len(re.findall(r"<img [^>]*src=\"data:image/png;base64,", dom)) == 3
        and "fit-table" in parser.ids
        and "predictions" in parser.ids
    )
    png = browser.screenshot(path.as_uri(), tmp_path / "report.png")
    assert count_colours(png) > 50  # drawn plots, not a blank page


def test_old_format_report_labels_the_fallback(tmp_path):
    _, study = _old_format_study(tmp_path)
    page = build_report(study)
    assert "TIFA (raw" in page and "panel-pareto" in page and "No trial folder" in page
    assert "refused: too flat: exponent b = 0.5" in page  # 3 frontier points, interval includes 0: said so


# -- the commands ------------------------------------------------------------------------------------------------
def test_report_and_fit_commands(small, tmp_path, run_cli):
    url, _ = small
    out = tmp_path / "r" / "report.html"
    code, stdout, err = run_cli(["report", "--study", "small", "--storage", url, "--out", str(out)])
    assert code == 0 and out.is_file() and stdout.strip() == f"wrote {out.resolve()}", err
    code, stdout, err = run_cli(["fit", "--study", "small", "--storage", url, "--json", "--at", "1e12,1e13"])
    assert code == 0, err
    fits = json.loads(stdout)
    assert fits["params"]["b"] == pytest.approx(0.05, rel=1e-6) and len(fits["predictions"]) == 2
    assert fits["isoflop"]["optimal"]["b"] == pytest.approx(0.5, rel=1e-3)
    code, stdout, _ = run_cli(["fit", "--study", "small", "--storage", url])
    assert code == 0 and "S = a C^b (training compute frontier): a = " in stdout and "R^2 = " in stdout
    assert all(len(line) < 300 for line in stdout.splitlines())


def test_fit_refuses_too_few_points_in_one_line(tmp_path, run_cli):
    url, _ = _old_format_study(tmp_path)
    code, stdout, err = run_cli(["fit", "--study", "old", "--storage", url])
    assert code == 2 and stdout == "" and err.count("\n") == 1
    assert err.startswith("error: --study='old': cannot fit S = a C^b: too flat: exponent b = 0.5 with 95%"), err


def test_report_command_refuses_a_bad_layout_before_opening_the_study(tmp_path, run_cli):
    bad = tmp_path / "l.yaml"
    bad.write_text("panels: [{id: pie, title: x}]")
    code, stdout, err = run_cli(
        ["report", "--study", "nope", "--storage", f"sqlite:///{tmp_path}/none.db", "--layout", str(bad)]
    )
    assert code == 2 and err.startswith(f"error: {bad}: panels.0.id='pie'") and not (tmp_path / "none.db").exists()


def test_screenshot_script_makes_a_png(small, tmp_path, browser):
    url, _ = small
    out = tmp_path / "shot.png"
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "report_screenshot.sh"), "small", str(out), url],
        capture_output=True,
        text=True,
        timeout=300,
        env=_env(),
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 20_000


def _env() -> dict[str, str]:
    import os

    return {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
