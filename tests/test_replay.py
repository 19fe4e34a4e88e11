"""Replayed searches (unetnas.search.replay) on synthetic ground-truth tables (tests/gt_tables.py): the very same
scheduler, sampler, ledger and study code as a real search, answered from the table in milliseconds.

What a user (and the search-efficiency benchmark) relies on: the table is read and checked in one line; values are
interpolated between checkpoints with the table's seed noise; a replayed search never overspends, leaves nothing
RUNNING, never trains a design twice, uses its budget, keeps lower-rung values out of the Pareto set; and its
sampler's proposals after start-up are measurably better than random ones.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import optuna
import pytest
from gt_tables import RECIPE, SPACE, make_table, true_alignment
from optuna.trial import TrialState
from scipy.stats import mannwhitneyu

from unetnas.cost import cost
from unetnas.errors import UserError
from unetnas.io import load_space
from unetnas.search import study as S
from unetnas.search.proposer import Proposer
from unetnas.search.replay import GroundTruth, replay_search

DATA = Path(__file__).parent / "data"
BUDGET = 3e14  # about 25 candidates of replay_space.yaml under replay_recipe.yaml
TIMING = {"wall_s", "train_s", "eval_s", "overhead_share", "storage"}
RECORD_KEYS = {
    "rung",
    "steps",
    "samples",
    "train_flops",
    "val_loss",
    "gmacs",
    "params",
    "wall_s",
    "tifa",
    "tifa_se",
    "alignment",
    "alignment_se",
}


@pytest.fixture(scope="module")
def table(tmp_path_factory) -> GroundTruth:
    return GroundTruth.load(make_table(tmp_path_factory.mktemp("gt") / "gt.json"))


@pytest.fixture(scope="module")
def micro_table(tmp_path_factory) -> GroundTruth:
    return GroundTruth.load(
        make_table(tmp_path_factory.mktemp("gt") / "micro.json", DATA / "micro.yaml", DATA / "smoke.yaml")
    )


def replay(table, seed: int = 0, sampler: str = "tpe", budget: float = BUDGET, **kw):
    """A replayed search and its study (in memory)."""
    storage = optuna.storages.InMemoryStorage()
    out = replay_search(table, budget, sampler=sampler, seed=seed, storage=storage, **kw)
    return out, optuna.load_study(study_name="replay", storage=storage)


def candidates(study) -> list:
    return [t for t in study.get_trials() if "bracket" in t.user_attrs]


# -- the table ----------------------------------------------------------------------------------------------------


def test_values_are_interpolated_in_log_flops_with_the_runs_seed(table) -> None:
    spec = next(d.spec for d in table.table.designs if len(table.runs[d.id]) == 2)
    runs = table.runs[table.design(spec).id]
    a, b = runs[0].checkpoints[1], runs[0].checkpoints[2]
    seed = next(s for s in range(20) if table.run_for(spec, s) is runs[0])
    other = next(s for s in range(20) if table.run_for(spec, s) is runs[1])
    at = table.at(spec, a.train_flops, seed)
    assert at["alignment"] == a.alignment and at["val_loss"] == a.val_loss and at["wall_s"] == a.wall_s
    mid = math.sqrt(a.train_flops * b.train_flops)  # halfway in log(FLOPs)
    got = table.at(spec, mid, seed)
    assert math.isclose(got["alignment"], (a.alignment + b.alignment) / 2, rel_tol=1e-9)
    assert math.isclose(
        got["wall_s"],
        a.wall_s + (mid - a.train_flops) / (b.train_flops - a.train_flops) * (b.wall_s - a.wall_s),
        rel_tol=1e-9,
    )
    assert table.at(spec, mid, other)["alignment"] != got["alignment"]  # the other seed's noise
    with pytest.raises(UserError, match="out of reach"):
        table.at(spec, runs[0].checkpoints[-1].train_flops * 3, seed)


def test_bad_tables_are_one_line(tmp_path, table) -> None:
    cases = {
        "not-json": "{",
        "no-version": json.dumps({"designs": [], "runs": []}),
        "bad-spec": json.dumps({"version": 1, "designs": [{"id": "d0", "spec": {"base_channels": -1}}], "runs": []}),
    }
    for name, text in cases.items():
        p = tmp_path / f"{name}.json"
        p.write_text(text)
        with pytest.raises(UserError) as info:
            GroundTruth.load(p)
        assert str(p) in str(info.value) and "\n" not in str(info.value), name
    with pytest.raises(UserError, match="cannot read"):
        GroundTruth.load(tmp_path / "missing.json")


def test_a_table_of_another_space_or_recipe_is_refused(table, run_cli, tmp_path) -> None:
    args = ["search", "--budget", "1e14", "--replay", str(table.path), "--storage", f"sqlite:///{tmp_path / 's.db'}"]
    code, out, err = run_cli([*args, "--space", str(DATA.parent.parent / "space" / "tiny.yaml")])
    assert code == 2 and "lacks" in err and err.count("\n") == 1
    partial = tmp_path / "partial.json"  # a table still being made: a member without a run yet
    raw = json.loads(table.path.read_text())
    partial.write_text(json.dumps({**raw, "runs": [r for r in raw["runs"] if r["design"] != "d000"]}))
    code, out, err = run_cli([*args[:3], "--replay", str(partial), *args[5:]])
    assert code == 2 and "has no run yet" in err and err.count("\n") == 1
    long = tmp_path / "long.yaml"  # a recipe whose rungs go past the table's checkpoints
    long.write_text(RECIPE.read_text().replace("min_steps: 15", "min_steps: 40"))  # 8/3 x the table's horizon
    code, out, err = run_cli([*args[:2], "1e15", *args[3:], "--recipe", str(long)])
    assert code == 2 and "make the table with the search's recipe" in err and err.count("\n") == 1
    assert not (tmp_path / "s.db").exists()  # refused before anything is stored


# -- a replayed search ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def one(table):
    return replay(table, seed=0)


def test_replay_spends_the_budget_and_never_more(one) -> None:
    out, study = one
    assert out["reason"] == "plan finished" and out["reserved"] == 0
    assert 0 < out["spent"] <= out["budget"] == BUDGET
    assert out["unused_share"] < 0.10  # the plan runs to the end with less than 10% of the budget unused
    assert set(out["by_kind"]) == {"train", "eval", "text"}  # caption encoding is charged as well
    assert math.isclose(math.fsum(out["by_kind"].values()), out["spent"], rel_tol=1e-12)
    for t in candidates(study):  # training charged = what the last rung trained (continued, never repeated)
        last = t.user_attrs.get(f"rung_{t.user_attrs['rung']}")
        if last is not None:
            assert t.user_attrs["flops_spent"] >= last["train_flops"]


def test_nothing_is_left_running_and_no_design_twice(one) -> None:
    out, study = one
    cs = candidates(study)
    assert len(cs) == out["candidates"] >= 15
    assert {t.state for t in cs} <= {TrialState.COMPLETE, TrialState.PRUNED}
    assert {t.user_attrs["status"] for t in cs} <= {"complete", "pruned", "closed"}
    for t in cs:
        if t.state == TrialState.PRUNED:
            assert t.user_attrs["reason"]  # every stopped candidate says why
    designs = [t.user_attrs["design"] for t in cs]
    assert len(set(designs)) == len(designs)
    assert designs == [S.design_key(S.spec_of(t)) for t in cs]


def test_the_pareto_set_holds_last_rung_designs_only(one) -> None:
    out, study = one
    top = out["top_rung"]
    complete = [t for t in candidates(study) if t.state == TrialState.COMPLETE]
    assert complete and all(t.user_attrs["rung"] == top and t.user_attrs["top_rung"] for t in complete)
    assert all(t.values is None for t in candidates(study) if t.state != TrialState.COMPLETE)
    assert out["pareto"] and {r["trial"] for r in out["pareto"]} <= {t.number for t in complete}
    for r in out["pareto"]:
        t = study.trials[r["trial"]]
        assert r["rung"] == top and r["alignment_se"] > 0 and r["tifa_se"] > 0
        assert r["alignment"] == t.values[0] == t.user_attrs[f"rung_{top}"]["alignment"]
    assert out["lower_rungs"] and all(r["rung"] < top for r in out["lower_rungs"])
    assert out["n_complete"] == len(complete) >= 3
    for t in candidates(study):
        for k in range(t.user_attrs["rung"] + 1):
            rec = t.user_attrs.get(f"rung_{k}")
            if rec is not None:
                assert RECORD_KEYS <= set(rec) and rec["rung"] == k


def test_each_rung_feeds_the_samplers_model(one) -> None:
    """The per-rung models are derived state: the storage holds one study per search (optuna-dashboard lists one),
    and a proposer opened on the finished study alone (a fresh process, a resume) rebuilds every observation."""
    out, study = one
    assert [s.study_name for s in study._storage.get_all_studies()] == ["replay"]
    rebuilt = Proposer(study, load_space(SPACE), "tpe", 0, out["top_rung"] + 1)
    for k in range(out["top_rung"] + 1):
        model = rebuilt.models[k]
        fed = [t for t in model.trials if t.state == TrialState.COMPLETE]
        ran = [t for t in candidates(study) if f"rung_{k}" in t.user_attrs]
        assert sorted(t.user_attrs["trial"] for t in fed) == sorted(t.number for t in ran)
        for f in fed:
            t = study.trials[f.user_attrs["trial"]]
            assert f.params == t.params
            assert f.values == S.objective_values(t.user_attrs[f"rung_{k}"], ("alignment", "gmacs"))
    assert rebuilt.sync() == 0  # nothing fed twice
    assert out["proposals"]["modelled"] > 0  # after start-up the sampler modelled the rungs


def test_same_seed_same_search(table, one) -> None:
    again, _ = replay(table, seed=0)
    assert {k: v for k, v in again.items() if k not in TIMING} == {k: v for k, v in one[0].items() if k not in TIMING}


def test_sampler_proposals_after_start_up_beat_random_ones(table) -> None:
    """The must-show: on the replay, TPE's proposals made from its model are closer to the true Pareto front
    (alignment vs GMACs) than random proposals at the same point of the search, over three seeds."""
    space = load_space(SPACE)
    truth = {S.design_key(m): (true_alignment(m), cost(m).gmacs) for m in space.enumerate()}
    pts = list(truth.values())

    def dominated_by(key: str) -> int:  # members strictly better in the ground truth: 0 on the true front
        a, g = truth[key]
        return sum(1 for b, h in pts if b >= a and h <= g and (b > a or h < g))

    tpe, rnd = [], []
    for seed in range(3):
        _, s_tpe = replay(table, seed=seed, sampler="tpe")
        _, s_rnd = replay(table, seed=seed, sampler="random")
        modelled = [t for t in candidates(s_tpe) if t.user_attrs["proposal"].get("modelled")]
        assert modelled
        first = min(t.number for t in modelled)
        tpe += [dominated_by(t.user_attrs["design"]) for t in modelled]
        rnd += [dominated_by(t.user_attrs["design"]) for t in candidates(s_rnd) if t.number >= first]
    assert statistics.fmean(tpe) < 0.8 * statistics.fmean(rnd), (statistics.fmean(tpe), statistics.fmean(rnd))
    assert mannwhitneyu(tpe, rnd, alternative="less").pvalue < 0.05


def test_a_small_space_is_searched_exhaustively_without_repeats(micro_table) -> None:
    """More budget than the space has members: every member proposed once; the budget left then gives the pruned
    ones second chances (continuations from their last rung, never a rung run twice) until every member has its
    last rung, and the search ends (no overspend)."""
    out, study = replay(micro_table, budget=1e15)
    cs = candidates(study)
    members = load_space(DATA / "micro.yaml").size()
    first = [t for t in cs if "continues" not in t.user_attrs]
    assert len(first) == members and len({t.user_attrs["design"] for t in first}) == members
    by_number = {t.number: t for t in cs}
    conts = [t for t in cs if "continues" in t.user_attrs]
    assert conts, "the budget left pays for second chances"
    for t in conts:
        origin = by_number[t.user_attrs["continues"]]
        assert origin.state == TrialState.PRUNED and origin.user_attrs["status"] == "pruned"
        assert t.user_attrs["design"] == origin.user_attrs["design"] and t.user_attrs["bracket"] == -1
        assert t.params == origin.params  # the dashboard's parameter columns
        last = origin.user_attrs["rung"]
        assert all(t.user_attrs[f"rung_{k}"] == origin.user_attrs[f"rung_{k}"] for k in range(last + 1))
        assert t.user_attrs[f"rung_{last + 1}"]["steps"] > origin.user_attrs[f"rung_{last}"]["steps"]
    assert len({t.user_attrs["continues"] for t in conts}) == len(conts)  # one continuation per pruned trial
    assert not {r["trial"] for r in S.lower_rung_rows(study)} & {t.user_attrs["continues"] for t in conts}
    assert out["candidates"] == members and out["second_chances"] == len(conts) == out["n_trials"] - members
    assert sum(out["proposals"].values()) == members and out["proposals"]["presets"] == 0  # continuations: no draw
    top = max(t.user_attrs["rung"] for t in cs)
    assert {t.user_attrs["design"] for t in cs if t.user_attrs["rung"] == top} == {t.user_attrs["design"] for t in cs}
    assert out["spent"] < 1e15 and out["reserved"] == 0
    assert {t.state for t in cs} <= {TrialState.COMPLETE, TrialState.PRUNED}


def test_baseline_cycles_and_run_callbacks(table) -> None:
    """Benchmarks run baselines through the bracket cycle: (top,) trains every candidate straight to the last rung,
    (0,) is successive halving from rung 0 only; ``on_done`` sees every run with the budget spent so far."""
    seen = []
    out, study = replay(
        table,
        seed=1,
        sampler="random",
        cycle=(2,),
        on_done=lambda search, job, o: seen.append((search.ledger.summary()["spent"], job.rung)),
    )
    assert {b["start"] for b in out["bracket_sizes"]} == {2} and out["n_complete"] == out["candidates"] == len(seen)
    assert [s for s, _ in seen] == sorted(s for s, _ in seen) and {r for _, r in seen} == {2}
    out, _ = replay(table, seed=1, cycle=(0,))
    assert {b["start"] for b in out["bracket_sizes"]} == {0} and out["n_complete"] < out["candidates"]


# -- at the command line ------------------------------------------------------------------------------------------


def test_cli_replay_json_then_resume_is_a_no_op(table, run_cli, tmp_path) -> None:
    db = tmp_path / "r.db"
    args = [
        "search",
        "--budget",
        "1e14",
        "--replay",
        str(table.path),
        "--storage",
        f"sqlite:///{db}",
        "--study",
        "rep",
        "--json",
    ]
    code, out, err = run_cli(args)
    assert code == 0, err[-2000:]
    first = json.loads(out)
    assert first["reason"] == "plan finished" and first["unused_share"] < 0.1
    assert first["pareto"] and all(r["rung"] == first["top_rung"] and "alignment_se" in r for r in first["pareto"])
    code, out, err = run_cli(args)
    assert code == 0, err[-2000:]
    again = json.loads(out)
    assert {k: v for k, v in again.items() if k not in TIMING} == {k: v for k, v in first.items() if k not in TIMING}
    # the table, the space and the recipe of the study are its own: another table is refused
    other = tmp_path / "other.json"
    other.write_text(table.path.read_text().replace('"synthetic": true', '"synthetic": false'))
    code, out, err = run_cli([*args[:4], str(other), *args[5:]])
    assert code == 2 and "was made with other settings (replay" in err
    # the human view: Pareto table with rung and standard error
    code, _, err = run_cli(args[:-1])
    assert code == 0 and "Pareto set: designs trained to the last rung" in err and "±" in err
