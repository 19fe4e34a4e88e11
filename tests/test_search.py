"""`unetnas search` end to end with real training on a 16-pixel space: budget, brackets, rungs, pruning, the
Pareto set of last-rung designs, export, failures, Ctrl-C.

The searches here use tests/data/search_tradeoff.yaml (seven members that trade GMACs against parameters) and
tests/data/search_recipe.yaml (2 rungs, eta 2, n_top 3, TIFA-style scoring at rung 1 only). At the budget below
the plan's brackets take every member of the space once (a study never trains a design twice): Hyperband's
brackets from rung 0 (two candidates, the better goes on) and from rung 1 (straight to the last rung). Expectations
are derived from the stored plan and brackets, not from FLOPs figures of the current world.
"""

from __future__ import annotations

import hashlib
import json
import math
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
import sqlalchemy as sa
import torch
from optuna.trial import TrialState

from tests.helpers import clean_env, cli_args
from unetnas.cost import cost
from unetnas.export import MARKER, folder_name
from unetnas.search import study as S
from unetnas.search.ledger import Ledger, reservations
from unetnas.search.plan import Bracket, Plan
from unetnas.search.storage import engine_for

DATA = Path(__file__).parent / "data"
SPACE = DATA / "search_tradeoff.yaml"
RECIPE = DATA / "search_recipe.yaml"
BUDGET = 5e11  # most of it the world's caption encoding (charged once per study); the rest trains every member
SEED = 0
OBJECTIVES = ("alignment", "gmacs", "params")
BATCH = 8  # search_recipe.yaml
TIMING_KEYS = {"wall_s", "train_s", "eval_s", "overhead_share"}


def search_args(db: Path, study: str, *extra: str) -> list[str]:
    return [
        *cli_args(
            "search",
            budget=f"{BUDGET:g}",
            space=SPACE,
            recipe=RECIPE,
            storage=f"sqlite:///{db}",
            study=study,
            objectives=",".join(OBJECTIVES),
            seed=SEED,
            json=True,
        ),
        *extra,
    ]


def load(db: Path, study: str) -> optuna.Study:
    return optuna.load_study(study_name=study, storage=f"sqlite:///{db}")


def ledger_of(db: Path, study: str) -> Ledger:
    return Ledger(engine_for(f"sqlite:///{db}"), study)


def reservation_rows(db: Path, study: str) -> list:
    engine = engine_for(f"sqlite:///{db}")
    r = reservations.c
    with engine.connect() as conn:
        rows = conn.execute(sa.select(reservations).where(r.study_name == study).order_by(r.id)).all()
    engine.dispose()
    return rows


def per_step(t) -> float:
    return t.user_attrs["train_flops_per_sample"] * BATCH


def started(study: optuna.Study) -> list:
    """The search's candidates (trials with a design and a bracket)."""
    return [t for t in study.get_trials() if "bracket" in t.user_attrs]


def state_counts(study: optuna.Study) -> dict[str, int]:
    out: dict[str, int] = {}
    for t in started(study):
        out[t.state.name] = out.get(t.state.name, 0) + 1
    return out


def own_training(t, study: optuna.Study) -> float:
    """Training FLOPs trial ``t`` ran itself: its last rung's, less its origin's where it is a second chance."""
    last = t.user_attrs[f"rung_{t.user_attrs['rung']}"]["train_flops"]
    if "continues" not in t.user_attrs:
        return last
    origin = study.trials[t.user_attrs["continues"]]
    return last - origin.user_attrs[f"rung_{origin.user_attrs['rung']}"]["train_flops"]


def design(t) -> dict:
    return {k: v for k, v in t.user_attrs["spec"].items() if k != "name"}


def plan_of(study: optuna.Study) -> Plan:
    return Plan.from_dict(study.user_attrs[S.SETTINGS_ATTR]["plan"])


def brackets_of(study: optuna.Study) -> list[Bracket]:
    return [Bracket(b["start"], tuple(b["counts"])) for b in study.user_attrs.get("brackets", [])] or plan_of(
        study
    ).brackets


# -- a complete search --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def full(tmp_path_factory, run_cli):
    """One complete search through the CLI (in-process), as a user runs it."""
    home = tmp_path_factory.mktemp("full")
    db = home / "s.db"
    t0 = time.perf_counter()
    code, out, err = run_cli(search_args(db, "full"))
    assert code == 0, err[-3000:]
    summary = json.loads(out)
    return SimpleNamespace(home=home, db=db, study="full", summary=summary, out=out, wall=time.perf_counter() - t0)


def test_complete_search_stays_in_budget_and_closes_every_candidate(full) -> None:
    s = full.summary
    assert s["reason"] == "plan finished", s
    assert s["study"] == "full" and s["storage"] == f"sqlite:///{full.db}"
    assert s["budget"] == BUDGET and 0 < s["spent"] <= BUDGET and s["reserved"] == 0
    study = load(full.db, full.study)
    brackets = brackets_of(study)
    top = len(plan_of(study).rungs) - 1
    # the brackets' candidates ran; a study proposes each design once, so this space gives seven; the budget left
    # then gave pruned ones second chances (continuations: trials of the same design in bracket -1)
    firsts = [t for t in started(study) if "continues" not in t.user_attrs]
    assert s["candidates"] == len(firsts) == sum(b.counts[0] for b in brackets) == 7
    assert s["n_trials"] == 7 + s["second_chances"] and s["second_chances"] >= 1
    assert len({json.dumps(design(t), sort_keys=True) for t in firsts}) == 7
    assert s["n_complete"] == sum(b.count_at(top) for b in brackets) + sum(
        1 for t in started(study) if "continues" in t.user_attrs and t.state == TrialState.COMPLETE
    )
    assert s["n_complete"] >= 3 and s["n_failed"] == s["n_closed"] == 0
    assert state_counts(study) == {"COMPLETE": s["n_complete"], "PRUNED": s["n_pruned"]}  # nothing left RUNNING
    assert {t.user_attrs["status"] for t in started(study)} == {"complete", "pruned"}
    for t in started(study):
        assert (t.state == TrialState.PRUNED) == bool(t.user_attrs.get("reason"))  # every stop says why
    led = ledger_of(full.db, full.study).summary()
    assert led["spent"] == s["spent"] and led["reserved"] == 0 and led["spent"] <= led["budget"] == BUDGET
    assert set(led["by_status"]) == {"settled"}  # every reservation closed with what was actually spent
    assert math.isclose(led["remaining"], BUDGET - led["spent"])


def test_ledger_accounts_for_every_flop(full, run_cli) -> None:
    study = load(full.db, full.study)
    plan = plan_of(study)
    led = ledger_of(full.db, full.study).summary()
    code, out, err = run_cli(["ledger", "--study", full.study, "--storage", f"sqlite:///{full.db}", "--json"])
    assert code == 0, err
    shown = json.loads(out)  # `unetnas ledger --json`: the same account (JSON keys are strings)
    assert {k: shown[k] for k in ("budget", "spent", "reserved", "remaining", "by_kind")} == {
        k: led[k] for k in ("budget", "spent", "reserved", "remaining", "by_kind")
    }
    assert shown["by_trial"] == {("null" if k is None else str(k)): v for k, v in led["by_trial"].items()}
    assert math.isclose(math.fsum(led["by_trial"].values()), led["spent"], rel_tol=1e-12)
    assert math.isclose(math.fsum(led["by_kind"].values()), led["spent"], rel_tol=1e-12)
    # caption encoding is charged once, to the study (no trial), at the plan's figure
    assert set(led["by_kind"]) == {"train", "eval", "text"}
    assert led["by_kind"]["text"] == led["by_trial"][None] == plan.once_flops["captions"]
    rows = reservation_rows(full.db, full.study)
    trials = started(study)
    by_number = {t.number: t for t in trials}
    for t in trials:
        # the trial's own account (shown in the dashboard) equals the ledger's
        assert math.isclose(t.user_attrs["flops_spent"], led["by_trial"][t.number], rel_tol=1e-9)
        # no FLOPs lost or counted twice: training settled = steps trained x FLOPs per step (a second chance pays
        # only for the steps after its origin's last rung)
        last = t.user_attrs[f"rung_{t.user_attrs['rung']}"]
        origin = by_number[t.user_attrs.get("continues", t.number)]
        before = 0 if origin is t else origin.user_attrs[f"rung_{origin.user_attrs['rung']}"]["steps"]
        train = math.fsum(r.actual for r in rows if r.trial_number == t.number and r.kind == "train")
        assert math.isclose(train, (last["steps"] - before) * per_step(t), rel_tol=1e-9)
        if origin is t:
            assert math.isclose(train, last["train_flops"], rel_tol=1e-9)
        # one train and one eval reservation per rung the trial ran, from its bracket's first rung
        start = brackets_of(study)[origin.user_attrs["bracket"]].start
        start = start if origin is t else origin.user_attrs["rung"] + 1
        notes = sorted(r.note for r in rows if r.trial_number == t.number)
        assert notes == sorted([f"rung {k}" for k in range(start, t.user_attrs["rung"] + 1)] * 2)
    # the whole run stayed within the plan's estimate of what it would cost
    assert led["spent"] <= plan.total * 1.05


def test_rung_records_and_intermediate_values(full) -> None:
    study = load(full.db, full.study)
    plan = plan_of(study)
    top = len(plan.rungs) - 1
    brackets = brackets_of(study)
    trials = started(study)
    by_number = {t.number: t for t in trials}
    for t in trials:
        origin = by_number[t.user_attrs.get("continues", t.number)]  # a second chance: the pruned trial it continues
        rung, b = t.user_attrs["rung"], brackets[origin.user_attrs["bracket"]]
        if t is origin:
            assert rung == (top if t.state == TrialState.COMPLETE else b.start)
        else:
            assert (
                t.user_attrs["bracket"] == -1 and origin.state == TrialState.PRUNED and rung > origin.user_attrs["rung"]
            )
            assert Path(t.user_attrs["dir"]).name == f"{t.number:04d}"
            # it continued the origin's checkpoint (copied into its own folder): its log holds the origin's steps
            steps = [
                r["step"] for r in map(json.loads, (Path(t.user_attrs["dir"]) / "metrics.jsonl").open()) if "step" in r
            ]
            assert steps[0] < origin.user_attrs[f"rung_{origin.user_attrs['rung']}"]["steps"] < steps[-1]
        c = cost(S.spec_of(t))
        assert (t.user_attrs["gmacs"], t.user_attrs["params"]) == (c.gmacs, c.params)
        assert t.user_attrs["design"] == S.design_key(S.spec_of(t))
        prev_steps = 0
        for k in range(b.start, rung + 1):
            rec = t.user_attrs[f"rung_{k}"]
            assert rec["rung"] == k and rec["gmacs"] == c.gmacs and rec["params"] == c.params
            # the rung's training horizon: the member's steps within rung k's FLOPs (promoted ones continue)
            want = max(int(plan.rungs[k] // (c.train_flops_per_sample * BATCH)), prev_steps + 1, 1)
            assert rec["steps"] == want and rec["samples"] == want * BATCH
            assert math.isclose(rec["train_flops"], want * BATCH * c.train_flops_per_sample, rel_tol=1e-12)
            assert rec["train_flops"] <= plan.rungs[k] * (1 + 1e-12)
            assert math.isfinite(rec["val_loss"]) and rec["val_loss"] > 0
            assert (rec["alignment"] is not None) == (k in plan.tifa_rungs) == (rec["tifa"] is not None)
            assert t.intermediate_values[rec["samples"]] == rec["val_loss"]  # learning curves in the dashboard
            prev_steps = rec["steps"]
        assert len(t.intermediate_values) == rung - b.start + 1
        if t.state == TrialState.COMPLETE:
            last = t.user_attrs[f"rung_{top}"]
            assert t.values == S.objective_values(last, OBJECTIVES) == [last["alignment"], c.gmacs, c.params]
            assert t.user_attrs["top_rung"] is True
        else:  # stopped below the last rung: no objective values, its records flagged with their rung
            assert t.values is None and f"rung_{top}" not in t.user_attrs and t.user_attrs["top_rung"] is False


def test_the_pareto_set_holds_last_rung_designs_with_their_standard_error(full) -> None:
    """With --objectives alignment,gmacs,params on search_tradeoff.yaml no member has both fewer GMACs and fewer
    parameters than another: the Pareto set is every design trained to the last rung, and no other."""
    study = load(full.db, full.study)
    top = len(plan_of(study).rungs) - 1
    complete = {t.number for t in study.get_trials(states=(TrialState.COMPLETE,))}
    pareto = full.summary["pareto"]
    assert {row["trial"] for row in pareto} == complete and len(pareto) >= 3
    rows = S.pareto_rows(study, OBJECTIVES)
    assert [r["trial"] for r in rows] == [r["trial"] for r in pareto]
    assert [r["alignment"] for r in rows] == sorted((r["alignment"] for r in rows), reverse=True)
    for row in pareto:
        t = study.trials[row["trial"]]
        assert row["rung"] == top and "alignment_se" in row and "tifa_se" in row
        assert [row["alignment"], row["gmacs"], row["params"]] == t.values
    lower = full.summary["lower_rungs"]  # stopped lower, less those a second chance continued
    continued = {t.user_attrs["continues"] for t in started(study) if "continues" in t.user_attrs}
    assert {r["trial"] for r in lower} == {t.number for t in started(study)} - complete - continued
    assert all(r["rung"] < top and r["reason"] for r in lower)


def test_export_loads_in_diffusers(full, run_cli, assert_one_line_error, tmp_path) -> None:
    from diffusers import UNet2DConditionModel
    from safetensors.torch import load_file

    from unetnas.io import load_model
    from unetnas.spec import UNetSpec

    out = tmp_path / "exported"
    code, _, err = run_cli(["export", "--study", full.study, "--storage", f"sqlite:///{full.db}", "--out", str(out)])
    assert code == 0, err
    study = load(full.db, full.study)
    pareto = full.summary["pareto"]
    folders = sorted(f for f in out.iterdir() if f.name != MARKER)
    assert [f.name for f in folders] == sorted(folder_name(full.study, row["trial"]) for row in pareto)
    for row in pareto:
        d = out / folder_name(full.study, row["trial"])
        t = study.trials[row["trial"]]
        spec = S.spec_of(t)
        c = cost(spec)
        assert {p.name for p in d.iterdir()} == {
            "config.json",
            "diffusion_pytorch_model.safetensors",
            "spec.yaml",
            "metrics.json",
            "README.md",
        }
        unet, info = UNet2DConditionModel.from_pretrained(d, output_loading_info=True)
        assert not any(info.values()), info  # no missing, unexpected or mismatched keys
        assert sum(p.numel() for p in unet.parameters()) == c.params
        # the trained weights of the trial's last rung, bit for bit
        trained = load_file(Path(t.user_attrs["dir"]) / "checkpoint" / "model.safetensors")
        loaded = unet.state_dict()
        assert set(trained) == set(loaded)
        assert all(torch.equal(trained[k], loaded[k]) for k in trained)
        fresh = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(d))
        assert sum(p.numel() for p in fresh.parameters()) == c.params
        assert load_model(d / "spec.yaml", UNetSpec) == spec
        metrics = json.loads((d / "metrics.json").read_text())
        assert metrics["alignment"] == row["alignment"] and metrics["gmacs"] == c.gmacs
        assert metrics["params"] == c.params and metrics["flops_spent"] == t.user_attrs["flops_spent"]
        origin = study.trials[t.user_attrs.get("continues", t.number)]  # a second chance holds its origin's rungs
        start = brackets_of(study)[origin.user_attrs["bracket"]].start
        assert metrics["weights"] is True and set(metrics["rungs"]) == {f"rung_{k}" for k in range(start, 2)}
        assert metrics["continues"] == t.user_attrs.get("continues")
        before = study.trials[t.user_attrs["continues"]].user_attrs["flops_spent"] if "continues" in t.user_attrs else 0
        assert metrics["design_flops_spent"] == pytest.approx(t.user_attrs["flops_spent"] + before)
        assert f"| FLOPs the search spent on it | {metrics['design_flops_spent']:.3g}" in (d / "README.md").read_text()
        assert ("second chance" in (d / "README.md").read_text()) == ("continues" in t.user_attrs)
        assert metrics["rung"] == row["rung"] == 1
        card = (d / "README.md").read_text()
        assert spec.name in card and "from_pretrained" in card and f"{c.params:,}" in card
    # an --out that cannot be a folder: one line, exit 2
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert_one_line_error(
        *run_cli(["export", "--study", full.study, "--storage", f"sqlite:///{full.db}", "--out", str(blocker)])
    )
    # --top keeps the best alignments
    code, _, err = run_cli(
        [
            "export",
            "--study",
            full.study,
            "--storage",
            f"sqlite:///{full.db}",
            "--out",
            str(tmp_path / "top1"),
            "--top",
            "1",
        ]
    )
    assert code == 0, err
    got = [f.name for f in (tmp_path / "top1").iterdir() if f.name != MARKER]
    assert got == [folder_name(full.study, pareto[0]["trial"])]


def test_resuming_a_finished_search_is_a_no_op(full, run_cli, db_bytes) -> None:
    before = db_bytes(full.db)
    code, out, err = run_cli(search_args(full.db, full.study))
    assert code == 0, err[-3000:]
    again = json.loads(out)
    assert {k: v for k, v in again.items() if k not in TIMING_KEYS} == {
        k: v for k, v in full.summary.items() if k not in TIMING_KEYS
    }
    assert db_bytes(full.db) == before  # nothing trained, reserved or told
    # a smaller --budget is refused in one line, nothing written (a larger one is applied and said:
    # tests/test_resume_rules.py, on a copy, since this study is shared by the tests below)
    args = search_args(full.db, full.study)
    args[args.index("--budget") + 1] = "4.6e11"
    code, out, err = run_cli(args)
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "is below the 5.00e+11 FLOPs study 'full' was made with" in err
    assert db_bytes(full.db) == before


@pytest.mark.parametrize(
    "change",
    [
        ["--space", str(DATA / "micro.yaml")],
        ["--objectives", "alignment,gmacs"],
        ["--recipe", str(DATA / "smoke.yaml")],
        ["--data", "no-such-data-dir"],
    ],
)
def test_stored_study_with_other_settings_refuses(full, run_cli, assert_one_line_error, db_bytes, change) -> None:
    before = db_bytes(full.db)
    args = search_args(full.db, full.study)
    for i in range(0, len(change), 2):  # replace the option's value
        if change[i] in args:
            args[args.index(change[i]) + 1] = change[i + 1]
        else:
            args += change[i : i + 2]
    code, out, err = run_cli(args)
    assert_one_line_error(code, out, err)
    named = {"--space": "space.", "--recipe": "recipe.", "--data": "data "}.get(change[0], f"{change[0]} ")
    assert err.startswith("error: --study='full': was made with other settings (") and named in err, err
    assert db_bytes(full.db) == before


# -- a trial that raises mid-rung -------------------------------------------------------------------------------


def files_digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def test_trial_raising_mid_rung_is_failed_and_settled(tmp_path) -> None:
    """Training raises at step N of a promoted trial's rung 1: the ledger charges exactly the N steps done,
    returns the rest, the trial is FAIL, its rung-0 checkpoint is untouched and the search goes on."""
    from unetnas.search.session import SearchConfig, open_search, prepare

    db = tmp_path / "boom" / "s.db"
    db.parent.mkdir()
    cfg = SearchConfig(
        budget=BUDGET,
        space=SPACE,
        recipe=RECIPE,
        storage=f"sqlite:///{db}",
        study="boom",
        objectives=OBJECTIVES,
        seed=SEED,
    )
    search, _ = open_search(prepare(cfg))
    ledger = search.ledger
    checks = 0

    def within_budget() -> None:
        nonlocal checks
        s = ledger.summary()
        assert s["spent"] + s["reserved"] <= s["budget"], s
        checks += 1

    victim = None  # (trial number, steps at the start of its rung 1, checkpoint digest)
    fail_after = 2  # steps into rung 1

    def on_step(rec) -> None:
        within_budget()  # also while a reservation is open
        if victim is not None and job.number == victim[0] and rec["step"] == victim[1] + fail_after:
            raise RuntimeError("simulated failure in training")

    outcomes = {}
    while True:
        search.prune_decided()
        job = search.next_job()
        if job is None:
            break
        if job.kind == "promote" and victim is None:
            t = search.study.trials[job.number]
            ckpt = Path(t.user_attrs["dir"]) / "checkpoint"
            victim = (job.number, t.user_attrs["rung_0"]["steps"], files_digest(ckpt), ckpt)
        out = search.run(job, should_stop=lambda: False, on_step=on_step)
        outcomes[(job.number, job.rung)] = out.status
        within_budget()
        assert ledger.summary()["reserved"] == 0  # nothing stays reserved between jobs
    search.finish()
    assert victim is not None and checks > 20

    number, start, digest, ckpt = victim
    assert outcomes[(number, 1)] == "failed"
    study = load(db, "boom")
    t = study.trials[number]
    assert t.state == TrialState.FAIL and t.user_attrs["status"] == "failed"
    assert "RuntimeError: simulated failure in training" in t.user_attrs["reason"]
    assert files_digest(ckpt) == digest  # the rung-0 checkpoint is untouched
    # the ledger: rung 1's training reservation charged exactly the steps done, the rest went back
    rows = [r for r in reservation_rows(db, "boom") if r.trial_number == number and r.note == "rung 1"]
    train = next(r for r in rows if r.kind == "train")
    evaluation = next(r for r in rows if r.kind == "eval")
    assert train.status == "settled" and evaluation.status == "released"  # scoring never began
    assert math.isclose(train.actual, fail_after * per_step(t), rel_tol=1e-12)
    assert train.reserved > train.actual
    assert evaluation.actual == 0.0 and evaluation.reserved > 0
    led = ledger_of(db, "boom").summary()
    charged = t.user_attrs["rung_0"]["train_flops"] + _eval_of(db, number, "rung 0") + fail_after * per_step(t)
    assert math.isclose(led["by_trial"][number], charged, rel_tol=1e-9)
    assert math.isclose(t.user_attrs["flops_spent"], led["by_trial"][number], rel_tol=1e-9)
    # the search went on: the other candidates finished, nothing is left running or reserved
    assert led["reserved"] == 0 and led["spent"] <= BUDGET
    assert math.isclose(math.fsum(led["by_trial"].values()), led["spent"], rel_tol=1e-12)
    brackets = brackets_of(study)
    n, top = sum(b.counts[0] for b in brackets), sum(b.count_at(1) for b in brackets)
    second = sum(1 for t in started(study) if "continues" in t.user_attrs)  # pruned ones continued, all completed
    assert state_counts(study) == {"COMPLETE": top - 1 + second, "PRUNED": n - top, "FAIL": 1}
    assert number not in {t.user_attrs.get("continues") for t in started(study)}  # a failed trial is not continued
    order = list(outcomes)  # jobs in the order they ran
    assert any(outcomes[j] == "done" for j in order[order.index((number, 1)) + 1 :]), outcomes
    assert S.pareto_rows(study, OBJECTIVES) and number not in {r["trial"] for r in S.pareto_rows(study, OBJECTIVES)}


def _eval_of(db: Path, number: int, note: str) -> float:
    return math.fsum(
        r.actual
        for r in reservation_rows(db, "boom")
        if r.trial_number == number and r.note == note and r.kind == "eval"
    )


# -- Ctrl-C and resume ------------------------------------------------------------------------------------------


def trial_attr(db: Path, number: int, key: str):
    """A user attribute of a trial, read straight from the SQLite file while another process writes it."""
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            row = con.execute(
                "SELECT a.value_json FROM trial_user_attributes a JOIN trials t ON a.trial_id = t.trial_id "
                "WHERE t.number = ? AND a.key = ?",
                (number, key),
            ).fetchone()
        finally:
            con.close()
    except sqlite3.Error:
        return None
    return None if row is None else json.loads(row[0])


def train_lines(folder: Path) -> int:
    try:
        return sum(1 for line in (folder / "metrics.jsonl").read_text().splitlines() if '"kind": "train"' in line)
    except OSError:
        return 0


def test_sigint_then_resume_equals_an_uninterrupted_search(full, run_cli, tmp_path) -> None:
    """Ctrl-C during trial 1's rung 0 (after trial 0 finished its rung): the rung is checkpointed, what ran is
    charged, the rest released, the process exits 0. The same command again finishes the search, and the result
    equals the uninterrupted search `full` (same command and seed, another study): same designs, states, steps
    and FLOPs, no FLOPs lost or counted twice."""
    db = tmp_path / "intr" / "s.db"
    db.parent.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "unetnas.cli.app", *search_args(db, "intr")],
        cwd=tmp_path,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 300
        while True:  # wait until trial 0 finished rung 0 and trial 1 has trained a step of its rung 0
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "the search never reached trial 1"
            folder = trial_attr(db, 1, "dir")
            if trial_attr(db, 0, "rung_0") is not None and folder and train_lines(Path(folder)) >= 1:
                break
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err[-3000:]
    assert "Traceback" not in err
    stopped = json.loads(out)
    assert stopped["reason"].startswith("stopped") and stopped["reserved"] == 0
    led = ledger_of(db, "intr").summary()
    assert led["reserved"] == 0 and led["spent"] == stopped["spent"] <= BUDGET
    study = load(db, "intr")
    t1 = study.trials[1]
    assert t1.state == TrialState.RUNNING and t1.user_attrs["status"] == "paused" and "rung_0" not in t1.user_attrs
    # the partial rung: checkpointed at step k, k steps charged, the rest of the reservation and the eval released
    from unetnas.train import checkpoint

    k = checkpoint.read_state(Path(t1.user_attrs["dir"]) / "checkpoint")["step"]
    rows = [r for r in reservation_rows(db, "intr") if r.trial_number == 1]
    train = next(r for r in rows if r.kind == "train")
    assert train.status == "settled" and 1 <= k and math.isclose(train.actual, k * per_step(t1), rel_tol=1e-12)
    assert train.actual < train.reserved  # interrupted mid-rung
    assert [r.status for r in rows if r.kind == "eval"] == ["released"]
    assert math.isclose(t1.user_attrs["flops_spent"], train.actual, rel_tol=1e-12)

    # the same command again: resumes trial 1's rung from its checkpoint, then finishes the plan
    code, out, err = run_cli(search_args(db, "intr"))
    assert code == 0, err[-3000:]
    done = json.loads(out)
    assert done["reason"] == "plan finished"
    same = ("budget", "reserved", "n_trials", "n_pruned", "n_complete", "n_failed")
    assert {k: done[k] for k in same} == {k: full.summary[k] for k in same}
    assert math.isclose(done["spent"], full.summary["spent"], rel_tol=1e-6)

    resumed, plain = load(db, "intr"), load(full.db, full.study)
    assert state_counts(resumed) == state_counts(plain)
    a, b = ledger_of(db, "intr").summary(), ledger_of(full.db, full.study).summary()
    assert a["reserved"] == 0 and math.isclose(a["spent"], b["spent"], rel_tol=1e-6)
    for kind in ("train", "eval"):
        assert math.isclose(a["by_kind"][kind], b["by_kind"][kind], rel_tol=1e-6)
    for x, y in zip(started(resumed), started(plain)):  # the same designs, states and training, trial by trial
        assert x.number == y.number and design(x) == design(y) and x.state == y.state
        assert math.isclose(x.user_attrs["flops_spent"], y.user_attrs["flops_spent"], rel_tol=1e-6)
        for r in range(brackets_of(plain)[y.user_attrs["bracket"]].start, x.user_attrs["rung"] + 1):
            rx, ry = x.user_attrs[f"rung_{r}"], y.user_attrs[f"rung_{r}"]
            assert rx["steps"] == ry["steps"] and rx["train_flops"] == ry["train_flops"]
            assert math.isclose(rx["val_loss"], ry["val_loss"], rel_tol=1e-4)
    # no FLOPs lost: the training settled in the ledger (both processes) is what the trials trained
    rows = reservation_rows(db, "intr")
    settled_train = math.fsum(r.actual for r in rows if r.kind == "train" and r.status == "settled")
    trained = math.fsum(own_training(t, resumed) for t in started(resumed))
    assert math.isclose(settled_train, trained, rel_tol=1e-9)
    assert {r.status for r in rows} == {"settled", "released"}


# -- the sampler across a resume ---------------------------------------------------------------------------------


def _draws(sampler_of, split: int | None, n: int = 10) -> list[dict]:
    """Params of n trials asked and told in one study; at trial ``split`` the study is reopened with a fresh
    sampler, as a resumed `unetnas search` (a new process) does."""
    from unetnas.io import load_space

    space = load_space(DATA / "micro.yaml")
    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(
        study_name="s", storage=storage, directions=["maximize", "minimize", "minimize"], sampler=sampler_of()
    )
    out = []
    for i in range(n):
        if i == split:
            study = optuna.load_study(study_name="s", storage=storage, sampler=sampler_of())
        trial = study.ask()
        c = cost(space.suggest(trial))
        out.append(trial.params)
        study.tell(trial, [(c.params % 97) / 97, c.gmacs, c.params])  # any deterministic values
    return out


@pytest.mark.parametrize("name", S.SAMPLERS)
def test_a_resumed_sampler_draws_what_an_uninterrupted_one_would(name) -> None:
    """Trial n's draws depend on the seed, n and the study's history, not on when the process started: a search
    resumed after Ctrl-C proposes the designs the uninterrupted search would (and not the first session's again)."""
    import warnings

    verbosity = optuna.logging.get_verbosity()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        optuna.logging.set_verbosity(optuna.logging.ERROR)  # GP's notes on the conditional `mid` parameter
        whole = _draws(lambda: S.make_sampler(name, SEED), None)
        assert _draws(lambda: S.make_sampler(name, SEED), 9) == whole  # past TPE's and GP's 8 random trials
        assert _draws(lambda: S.make_sampler(name, SEED), 3) == whole
        assert _draws(lambda: S.make_sampler(name, SEED + 1), None) != whole
        if name == "random":  # what a sampler seeded once per process does: it starts its stream again
            plain = lambda: optuna.samplers.RandomSampler(seed=SEED)  # noqa: E731
            assert _draws(plain, 3)[3:6] == _draws(plain, None)[:3]
    optuna.logging.set_verbosity(verbosity)
