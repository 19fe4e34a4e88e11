"""The DDIM step sweep of the Pareto designs (issue 21 item 5): `unetnas report --steps` scores each top-rung Pareto
design's checkpoint at several step counts with the study's own proxy, and the sampling-efficiency panel draws
them; bad step lists and a study without checkpoints (a replay) are one line."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest

from unetnas.report.steps import STEPS_FILE
from unetnas.search import study as S

DATA = Path(__file__).parent / "data"
ROOT = DATA.parent.parent


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, run_cli) -> tuple[str, Path]:
    """A tiny real search (the search tests' space and recipe; about a minute on CPU)."""
    home = tmp_path_factory.mktemp("steps")
    url = f"sqlite:///{home / 'study.db'}"
    args = ["search", "--budget", "5e11", "--space", str(DATA / "search_tradeoff.yaml"), "--recipe"]
    code, _, err = run_cli([*args, str(DATA / "search_recipe.yaml"), "--storage", url, "--study", "tiny", "--json"])
    assert code == 0, err[-2000:]
    return url, home


def test_report_steps_sweeps_the_pareto_designs(tiny, run_cli) -> None:
    url, home = tiny
    out = home / "report.html"
    code, stdout, err = run_cli(["report", "--study", "tiny", "--storage", url, "--steps", "2,5", "--out", str(out)])
    assert code == 0, err
    study = optuna.load_study(study_name="tiny", storage=url)
    settings = study.user_attrs[S.SETTINGS_ATTR]
    rows = S.pareto_rows(study, tuple(settings["objectives"]))
    assert rows
    for row in rows:
        swept = json.loads((Path(study.trials[row["trial"]].user_attrs["dir"]) / STEPS_FILE).read_text())
        assert set(swept["alignment_by_steps"]) == {"2", "5"}
        assert all(-1.0 <= v <= 1.0 for v in swept["alignment_by_steps"].values())
    assert "DDIM step sweep:" in stdout + err and "outside the study's budget" in stdout + err
    html = out.read_text()
    assert 'id="fig-sampling"' in html.replace("'", '"')
    assert "Alignment measured at several DDIM step counts" in html


@pytest.mark.parametrize("steps", ["5", "a,b", "0,5"])
def test_bad_step_lists_are_one_line(tiny, run_cli, steps) -> None:
    url, home = tiny
    code, _, err = run_cli(["report", "--study", "tiny", "--storage", url, "--steps", steps, "--out", str(home / "x")])
    assert code == 2 and len(err.strip().splitlines()) == 1 and err.startswith("error: --steps="), err


def test_a_replayed_study_has_no_checkpoints_to_sweep(tmp_path, run_cli) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    table = ROOT / "bench" / "data" / "gt-tiny-v1.json"
    assert run_cli(["search", "--replay", str(table), "--budget", "3e13", "--study", "r", "--storage", url])[0] == 0
    code, _, err = run_cli(
        ["report", "--study", "r", "--storage", url, "--steps", "5,10", "--out", str(tmp_path / "x")]
    )
    assert code == 2 and len(err.strip().splitlines()) == 1 and "a replayed search trains none" in err, err
