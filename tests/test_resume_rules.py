"""Study-level resume rules (issues 19 and 21): a study run again (`unetnas search` resumed, `unetnas study create`
repeated, a worker joining) with other settings is refused in one line naming what differs, exit 2, nothing stored
touched; a larger budget is applied and said. `study create` takes every study option `search` does (the proxy
included), end to end with two workers."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import optuna
import pytest

from tests.helpers import cli_args
from tests.workers_util import account, worker
from unetnas.search.ledger import Ledger
from unetnas.search.storage import engine_for
from unetnas.search.study import SETTINGS_ATTR

ROOT = Path(__file__).resolve().parents[1]
GT = ROOT / "bench" / "data" / "gt-tiny-v1.json"
BUDGET = "3e13"


def search_args(db: Path, *extra: str) -> list[str]:
    return [*cli_args("search", replay=GT, budget=BUDGET, storage=f"sqlite:///{db}", study="r"), *extra]


@pytest.fixture(scope="module")
def finished(tmp_path_factory, run_cli) -> Path:
    """A finished replayed search (sampler tpe, seed 0) and its database file."""
    db = tmp_path_factory.mktemp("resume") / "s.db"
    code, _, err = run_cli([*search_args(db), "--json"])
    assert code == 0, err[-2000:]
    return db


@pytest.fixture
def copy(finished, tmp_path) -> Path:
    db = tmp_path / "s.db"
    shutil.copy(finished, db)
    return db


OTHER_RECIPE = "other.yaml"


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (["--seed", "1"], "--seed 0 -> 1"),
        (["--sampler", "random"], "--sampler tpe -> random"),
        (["--max-gmacs", "0.05"], "--max-gmacs none -> 0.05"),
        (["--proxy", "val-loss"], "--proxy none -> "),
        (["--objectives", "alignment,params"], "--objectives alignment,gmacs -> alignment,params"),
        (["--recipe", OTHER_RECIPE], "recipe.log_every 10 -> 7"),
        (["--budget", "2e13"], "is below the 3.00e+13 FLOPs"),
    ],
    ids=["seed", "sampler", "constraint", "proxy", "objectives", "recipe", "smaller-budget"],
)
def test_a_resumed_search_with_other_settings_is_refused(
    copy, run_cli, db_bytes, assert_one_line_error, tmp_path, change, named
) -> None:
    if OTHER_RECIPE in change:  # the same recipe but one logging setting: another file, another content
        text = re.sub(r"(?m)^log_every: *\d+", "log_every: 7", (ROOT / "trials" / "short.yaml").read_text())
        assert "log_every: 7" in text
        (tmp_path / OTHER_RECIPE).write_text(text)
        change = ["--recipe", str(tmp_path / OTHER_RECIPE)]
    before = db_bytes(copy)
    args = search_args(copy)
    if change[0] == "--budget":
        args[args.index("--budget") + 1] = change[1]
        change = []
    code, out, err = run_cli([*args, *change])
    line = assert_one_line_error(code, out, err, named)
    assert "traceback" not in line.lower()
    assert db_bytes(copy) == before  # nothing stored touched


def test_a_larger_budget_is_applied_and_said(copy, run_cli) -> None:
    args = search_args(copy)
    args[args.index("--budget") + 1] = "4e13"
    code, out, err = run_cli([*args, "--json"])
    assert code == 0, err[-2000:]
    assert "budget raised from 3.00e+13 to 4.00e+13 FLOPs" in err
    summary = json.loads(out)
    assert summary["budget"] == 4e13 and summary["spent"] <= 4e13 and summary["reserved"] == 0
    engine = engine_for(f"sqlite:///{copy}")
    try:
        assert Ledger(engine, "r").summary()["budget"] == 4e13
    finally:
        engine.dispose()
    code, out, err = run_cli([*args, "--json"])  # the same command again: nothing more to say or do
    assert code == 0 and "budget raised" not in err


def test_the_same_files_copied_elsewhere_resume(copy, run_cli, tmp_path) -> None:
    """Space, recipe and table are compared by content: byte-identical copies under other names are the same
    study (the table's recipe is trials/short.yaml, its space space/tiny.yaml)."""
    table, recipe, space = tmp_path / "renamed-table.json", tmp_path / "r.yaml", tmp_path / "s.yaml"
    shutil.copy(GT, table)
    shutil.copy(ROOT / "trials" / "short.yaml", recipe)
    shutil.copy(ROOT / "space" / "tiny.yaml", space)
    args = search_args(copy)
    args[args.index("--replay") + 1] = str(table)
    code, out, err = run_cli([*args, "--recipe", str(recipe), "--space", str(space), "--json"])
    assert code == 0, err[-2000:]
    assert json.loads(out)["reason"].startswith("plan finished")


def test_the_same_command_resumes(copy, run_cli, db_bytes) -> None:
    code, out, err = run_cli([*search_args(copy), "--json"])
    assert code == 0, err[-2000:]
    assert json.loads(out)["reason"].startswith("plan finished")


def create_args(url: str, study: str, *extra: str) -> list[str]:
    return [*cli_args("study", "create", storage=url, study=study, budget=BUDGET, replay=GT), *extra]


def test_a_repeated_study_create_with_other_options_is_refused(run_cli, db_bytes, assert_one_line_error, tmp_path):
    db = tmp_path / "c.db"
    url = f"sqlite:///{db}"
    code, out, err = run_cli(create_args(url, "c", "--sampler", "tpe", "--seed", "3"))
    assert code == 0 and "created" in out, err
    before = db_bytes(db)
    code, out, err = run_cli(create_args(url, "c", "--sampler", "random", "--seed", "4"))
    assert_one_line_error(code, out, err, "--sampler tpe -> random", "--seed 3 -> 4")
    assert db_bytes(db) == before
    code, out, err = run_cli(create_args(url, "c", "--sampler", "tpe", "--seed", "3", "--runs-dir", "elsewhere"))
    assert code == 0 and "note: --runs-dir elsewhere is not applied: the study keeps its trial folders under" in err
    assert db_bytes(db) == before
    code, out, err = run_cli(create_args(url, "d", "--runs-dir", str(tmp_path / "elsewhere")))  # SQLite: beside it
    assert code == 0 and f"this SQLite study keeps trial folders in {tmp_path / 'd'}/trials" in err, err
    code, out, err = run_cli(create_args(url, "c", "--sampler", "tpe", "--seed", "3"))
    assert code == 0 and "exists (unchanged)" in out, err
    st = optuna.load_study(study_name="c", storage=url)
    launch = st.user_attrs[SETTINGS_ATTR]["launch"]
    assert (launch["sampler"], launch["seed"]) == ("tpe", 3)


@pytest.mark.slow
def test_study_create_takes_the_proxy_and_two_workers_use_it(run_cli, tmp_path) -> None:
    """`study create --proxy val-loss --foils 2` (the options `search` has): stored with the study; two workers
    rebuild the same configuration from it (their recipe must equal the stored one, proxy included, or they
    are refused), share the plan and finish it with an exact account."""
    url = f"sqlite:///{tmp_path / 'p.db'}"
    code, out, err = run_cli(create_args(url, "p", "--proxy", "val-loss", "--foils", "2", "--max-gmacs", "0.05"))
    assert code == 0, err
    procs = [worker(url, "p", tmp_path / f"w{i}.log", tmp_path, "--json") for i in range(2)]
    for i, p in enumerate(procs):
        assert p.wait(timeout=600) == 0, (tmp_path / f"w{i}.log").read_text()[-2000:]
    st = optuna.load_study(study_name="p", storage=url)
    settings = st.user_attrs[SETTINGS_ATTR]
    assert settings["launch"]["proxy"] == {"name": "val_loss", "foils": 2}
    assert settings["recipe"]["search"]["proxy"]["name"] == "val_loss"
    assert settings["recipe"]["search"]["proxy"]["foils"] == 2
    res = account(url, "p")
    firsts = [t for t in res["trials"] if "continues" not in t.user_attrs]  # not second chances
    assert len(firsts) <= 13 and len({t.user_attrs["design"] for t in res["trials"]}) <= 13  # the constraint came
    # along too (13 feasible members)
    ran = [json.loads(x) for i in range(2) for x in (tmp_path / f"w{i}.log").read_text().splitlines() if x[:1] == "{"]
    assert len(ran) == 2 and all(r["study"] == "p" and r["reserved"] == 0 for r in ran)  # both ran the plan
