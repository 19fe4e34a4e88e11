"""`unetnas search`, `unetnas ledger`, `unetnas export` at the command line: bad input and the cheap happy paths.

Bad input: one stderr line starting "error:", exit code 2, no traceback, nothing on stdout, and an existing
study's database byte-identical afterwards. Nothing here trains a model (see test_search.py for that).
"""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from tests.helpers import cli_args
from unetnas.io import load_space
from unetnas.presets import PRESETS
from unetnas.search.plan import make_plan
from unetnas.search.session import SearchConfig, open_search, prepare
from unetnas.train.recipe import load_recipe

DATA = Path(__file__).parent / "data"
ROOT = Path(__file__).resolve().parents[1]
MICRO, SMOKE = DATA / "micro.yaml", DATA / "smoke.yaml"
BUDGET = 1e12  # the smoke recipe's captions (charged once per study) and a few micro candidates
PASSWORD = "s3cr3t-pw"


@pytest.fixture(scope="module")
def kept(tmp_path_factory) -> Path:
    """An existing search study (created and opened as `unetnas search` does, nothing trained yet)."""
    db = tmp_path_factory.mktemp("keep") / "s.db"
    cfg = SearchConfig(budget=BUDGET, space=MICRO, recipe=SMOKE, storage=f"sqlite:///{db}", study="keep")
    search, _ = open_search(prepare(cfg))
    assert search.ledger.summary()["budget"] == BUDGET
    del search
    return db


def search_args(db: Path, **change: str) -> list[str]:
    opts = {"budget": f"{BUDGET:g}", "space": MICRO, "recipe": SMOKE, "storage": f"sqlite:///{db}", "study": "keep"}
    return cli_args("search", **{**opts, **change})


BAD_SEARCH = {
    "budget-word": {"budget": "abc"},
    "budget-negative": {"budget": "-1"},
    "budget-zero": {"budget": "0"},
    "budget-unit": {"budget": "2e20flops"},
    "budget-inf": {"budget": "inf"},
    "budget-nan": {"budget": "nan"},
    "budget-empty": {"budget": ""},
    "budget-overflow": {"budget": "1e400"},
    "budget-too-small": {"budget": "1e6"},
    "sampler-unknown": {"sampler": "bogus"},
    "sampler-case": {"sampler": "TPE"},
    "objective-unknown": {"objectives": "alignment,flops"},
    "objective-no-alignment": {"objectives": "gmacs,params"},
    "objective-alone": {"objectives": "alignment"},
    "objective-repeated": {"objectives": "alignment,gmacs,gmacs"},
    "objective-separator": {"objectives": "alignment;gmacs"},
    "objective-empty": {"objectives": ""},
    "max-gmacs-unmet": {"max_gmacs": "1e-9"},
    "max-params-unmet": {"max_params": "10"},
    "max-gmacs-zero": {"max_gmacs": "0"},
    "seed-negative": {"seed": "-1"},
    "space-missing": {"space": "no-such-space.yaml"},
    "storage-sqlite-missing-dir": {"storage": "sqlite:////nonexistent/dir/s.db"},
    "storage-sqlite-memory": {"storage": "sqlite://"},
    "storage-unknown-scheme": {"storage": "nosuchdb://host/x"},
    "storage-postgres-unreachable": {"storage": f"postgresql+psycopg://u:{PASSWORD}@127.0.0.1:1/x"},
}


@pytest.mark.parametrize("change", list(BAD_SEARCH.values()), ids=list(BAD_SEARCH))
def test_bad_search_input_is_one_line_and_leaves_the_study_alone(
    kept, run_cli, assert_one_line_error, db_bytes, change
) -> None:
    before = db_bytes(kept)
    err = assert_one_line_error(*run_cli(search_args(kept, **change)), quiet=True)
    assert PASSWORD not in err
    name = next(iter(change))
    if name in ("budget", "sampler", "objectives", "storage", "seed"):
        assert f"--{name}" in err  # the line names the flag
    assert db_bytes(kept) == before


def test_bad_storage_never_prints_the_password(run_cli, assert_one_line_error, tmp_path) -> None:
    url = f"postgresql+psycopg://user:{PASSWORD}@127.0.0.1:1/db?sslmode=disable"
    for argv in (
        search_args(tmp_path / "unused.db", storage=url),
        ["ledger", "--study", "keep", "--storage", url],
        ["export", "--study", "keep", "--storage", url, "--out", str(tmp_path / "x")],
    ):
        code, out, err = run_cli(argv)
        assert_one_line_error(code, out, err, quiet=True)
        assert PASSWORD not in out + err and "user:***@127.0.0.1:1" in err
    assert not (tmp_path / "x").exists() and not (tmp_path / "unused.db").exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["ledger", "--study", "missing", "--storage", "{url}"],
        ["ledger", "--study", "missing"],
        ["ledger", "--study", "keep", "--storage", "sqlite:///{dir}/no-such.db"],
        ["export", "--study", "missing", "--storage", "{url}", "--out", "{dir}/out"],
        ["export", "--study", "missing", "--out", "{dir}/out"],
        ["export", "--study", "keep", "--storage", "{url}", "--out", "{dir}/out"],  # nothing completed yet
        ["export", "--study", "keep", "--storage", "{url}", "--out", "{dir}/out", "--top", "0"],
        ["dashboard", "--study", "missing"],
    ],
    ids=[
        "ledger-missing-study",
        "ledger-no-default-db",
        "ledger-missing-file",
        "export-missing-study",
        "export-no-default-db",
        "export-nothing-complete",
        "export-top-0",
        "dashboard-missing-study",
    ],
)
def test_reading_commands_refuse_missing_studies(
    kept, run_cli, assert_one_line_error, db_bytes, tmp_path, monkeypatch, argv
) -> None:
    monkeypatch.chdir(tmp_path)  # the default storage is runs/<study>/study.db under the working directory
    before = db_bytes(kept)
    argv = [a.format(url=f"sqlite:///{kept}", dir=tmp_path) for a in argv]
    assert_one_line_error(*run_cli(argv), quiet=True)
    assert db_bytes(kept) == before
    assert not any((tmp_path / name).exists() for name in ("out", "runs", "no-such.db"))


def test_a_checkpoint_left_by_an_earlier_search_is_refused(run_cli, tmp_path) -> None:
    """A study name reused after its database was deleted: the new trial 0 must not continue the old trial 0
    (its FLOPs were never charged to this ledger): one line, exit 2, nothing spent."""
    db = tmp_path / "again" / "s.db"
    stale = db.parent / "trials" / "0000" / "checkpoint"
    stale.mkdir(parents=True)
    (stale / "state.json").write_text(json.dumps({"step": 3}))
    code, out, err = run_cli([*search_args(db, study="again"), "--json"])
    assert code == 2 and out == "" and "Traceback" not in err, err
    last = err.strip().splitlines()[-1]  # the live view (stderr) was running when the search met the folder
    assert last.startswith("error: ") and "holds a checkpoint this trial never wrote" in last and str(stale) in last
    code, out, err = run_cli(["ledger", "--study", "again", "--storage", f"sqlite:///{db}", "--json"])
    assert code == 0, err
    led = json.loads(out)
    assert led["spent"] == 0 and led["reserved"] == 0


# -- happy paths ----------------------------------------------------------------------------------------------


def test_dry_run_prints_the_plan_and_touches_nothing(run_cli, tmp_path) -> None:
    db = tmp_path / "never.db"
    base = search_args(db, study="dry") + ["--dry-run"]
    plan = make_plan(BUDGET, load_space(MICRO), load_recipe(SMOKE), load_recipe(SMOKE).search)
    code, out, err = run_cli([*base, "--gpus", "2", "--tflops-per-gpu", "1.5"])
    assert code == 0, err
    assert f"plan for 1.00e+12 FLOPs: {len(plan.brackets)} brackets, {plan.candidates} candidates" in out
    assert "TIFA" in out and "2 GPUs x 1.5 TFLOP/s" in out and "GPU-hours" in out and "steps" in out
    code, out, err = run_cli([*base, "--json", "--gpus", "2", "--tflops-per-gpu", "1.5"])
    assert code == 0, err
    d = json.loads(out)
    assert {"plan", "candidates", "brackets", "max_horizon_flops", "flops_per_s", "wall_s", "presets"} <= set(d)
    assert d["presets"] == [] and d["plan"] == json.loads(json.dumps(plan.as_dict()))
    assert (d["candidates"], d["brackets"], d["max_horizon_flops"]) == (
        plan.candidates,
        len(plan.brackets),
        plan.rungs[-1],
    )
    # 2 workers at 1.5 TFLOP/s: the work per worker, or the longest chain of rungs if longer (plan.wall_time)
    assert d["flops_per_s"] == 3e12 and d["wall_s"] == pytest.approx(max(plan.total / 3e12, d["span_s"]))
    assert d["workers"] == 2 and d["ranks_per_trial"] == 1 and d["wall_s"] >= plan.total / 3e12
    # without --gpus the wall time comes from this CPU's measured throughput
    code, out, err = run_cli([*base, "--json"])
    assert code == 0, err
    assert json.loads(out)["flops_per_s"] > 0
    assert not db.exists() and not (tmp_path / "runs").exists()  # a dry run opens no storage


def test_ledger_json_keys(kept, run_cli, db_bytes) -> None:
    before = db_bytes(kept)
    code, out, err = run_cli(["ledger", "--study", "keep", "--storage", f"sqlite:///{kept}", "--json"])
    assert code == 0, err
    led = json.loads(out)
    assert {"budget", "spent", "reserved", "remaining", "by_kind"} <= set(led)
    assert (led["budget"], led["spent"], led["reserved"], led["remaining"]) == (BUDGET, 0, 0, BUDGET)
    assert led["by_kind"] == {}
    code, out, err = run_cli(["ledger", "--study", "keep", "--storage", f"sqlite:///{kept}"])
    assert code == 0, err
    assert "ledger of study 'keep'" in out and "remaining" in out and "1.00e+12" in out
    assert db_bytes(kept) == before  # reading the ledger writes nothing


def test_enqueue_presets_adds_the_presets_that_fit(run_cli, tmp_path) -> None:
    """tests/data/preset_space.yaml holds the `tiny` preset: --enqueue-presets adds it to the first bracket."""
    space = DATA / "preset_space.yaml"
    args = [
        "search",
        "--budget",
        "4e13",
        "--space",
        str(space),
        "--enqueue-presets",
        "--dry-run",
        "--json",
        "--gpus",
        "1",
        "--tflops-per-gpu",
        "1",
    ]
    code, out, err = run_cli(args)
    assert code == 0, err
    d = json.loads(out)
    assert d["presets"] == ["tiny"]
    plain = json.loads(run_cli([a for a in args if a != "--enqueue-presets"])[1])
    first, first_plain = d["plan"]["brackets"][0], plain["plan"]["brackets"][0]
    assert plain["presets"] == [] and first["counts"][0] == first_plain["counts"][0] + 1

    # opened as `unetnas search` opens it (no training): the preset waits in the study with its user attribute
    db = tmp_path / "presets" / "s.db"
    db.parent.mkdir()
    cfg = SearchConfig(budget=4e13, space=space, storage=f"sqlite:///{db}", study="presets", enqueue_presets=True)
    search, _ = open_search(prepare(cfg))
    waiting = search.study.get_trials(states=(TrialState.WAITING,))
    assert [t.user_attrs.get("preset") for t in waiting] == ["tiny"]
    job = search.next_job()  # the first candidate asked for is the enqueued preset
    assert job.kind == "new" and job.bracket == 0 and job.rung == search.brackets()[0].start
    t = search.study.trials[job.number]
    assert t.user_attrs["preset"] == "tiny"
    assert {k: v for k, v in t.user_attrs["spec"].items() if k != "name"} == PRESETS["tiny"].model_dump(
        mode="json", exclude={"name"}
    )
    del search
    # resuming does not enqueue it again
    search, _ = open_search(prepare(cfg))
    assert [x.user_attrs.get("preset") for x in search.study.trials] == ["tiny"]
    assert not search.study.get_trials(states=(TrialState.WAITING,))
    del search
    study = optuna.load_study(study_name="presets", storage=f"sqlite:///{db}")
    assert study.user_attrs["presets_enqueued"] is True
