"""Horizon unit as a recipe choice: rungs, trials and warm-up in training samples (Li et al.'s equal steps x batch)
or in training FLOPs (the isoFLOP view). The budget and the ledger stay in FLOPs either way.

A real search in the samples unit (tests/data/search_recipe_samples.yaml on the seven-member trade-off space): every
candidate gets the same samples at a rung whatever its cost, the ledger charges what each ran, and the dry run,
plan, report and model cards say which unit the study used.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import optuna
import pytest

from unetnas.cost import cost
from unetnas.errors import UserError
from unetnas.io import load_model, load_space
from unetnas.search import study as S
from unetnas.search.plan import WARMUP_FACTOR, Plan, make_plan, members
from unetnas.train.recipe import Recipe, load_recipe

DATA = Path(__file__).parent / "data"
SPACE = DATA / "search_tradeoff.yaml"
SAMPLES = DATA / "search_recipe_samples.yaml"
FLOPS = DATA / "search_recipe.yaml"
BUDGET = 5e11


def test_warm_up_in_the_other_unit_is_refused_with_one_line(tmp_path, run_cli) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(SAMPLES.read_text() + "warmup_flops: 1.0e9\n")
    with pytest.raises(UserError) as err:
        load_model(bad, Recipe)
    assert str(err.value).count("\n") == 0 and ": warmup_flops=1" in str(err.value)
    assert "horizon_unit is samples, use warmup_samples" in str(err.value)
    with pytest.raises(ValueError, match="horizon_unit is flops, use warmup_flops"):
        Recipe.model_validate({"warmup_samples": 64})
    code, out, err_text = run_cli(["trial", "tiny", "--steps", "1", "--recipe", str(bad), "--out", str(tmp_path / "t")])
    assert code == 2 and err_text.strip().count("\n") == 0 and err_text.startswith("error: ")
    assert not (tmp_path / "t").exists()


def test_each_unit_defaults_its_own_warm_up_and_round_trips() -> None:
    flops, samples = Recipe(), Recipe(horizon_unit="samples")
    assert (flops.warmup_flops, flops.warmup_samples) == (2e11, None)
    assert (samples.warmup_flops, samples.warmup_samples) == (None, 256)
    for r in (flops, samples, load_recipe(SAMPLES)):
        assert Recipe.model_validate(r.model_dump(mode="json")) == r.model_copy(update={"source": None})
    # samples: every design warms up for the same steps; flops: a dearer design for fewer steps
    assert samples.warmup_steps(1e9) == samples.warmup_steps(1e12) == 256 // samples.batch_size
    assert flops.warmup_steps(1e9) > flops.warmup_steps(1e10)


@pytest.mark.parametrize("fps", [1e6, 3.3e7, 2e9])
def test_horizon_steps_per_unit(fps) -> None:
    samples, flops = load_recipe(SAMPLES), load_recipe(FLOPS)
    assert samples.horizon_steps(100, fps) == 100 // samples.batch_size  # the same for every design
    assert samples.horizon_flops(100, fps) == 12 * 8 * fps
    steps = flops.horizon_steps(1e12, fps)
    assert steps * 8 * fps <= 1e12 < (steps + 1) * 8 * fps  # never more than the horizon, not a step less


def test_plan_in_samples_prices_rungs_at_each_members_cost() -> None:
    space, recipe = load_space(SPACE), load_recipe(SAMPLES)
    plan = make_plan(BUDGET, space, recipe, recipe.search)
    assert plan.unit == "samples" and Plan.from_dict(json.loads(json.dumps(plan.as_dict()))) == plan
    s = recipe.search
    r0 = max(s.min_steps * recipe.batch_size, math.ceil(WARMUP_FACTOR * recipe.warmup_samples / 8) * 8)
    assert plan.rungs == [r0 * s.eta**k for k in range(s.max_rungs)] and all(r % 8 == 0 for r in plan.rungs)
    fpss = sorted({cost(m).train_flops_per_sample for m in members(space)})
    assert len(fpss) > 2
    for k, r in enumerate(plan.rungs):
        assert {plan.steps_at(k, f) for f in fpss} == {r // 8}  # equal samples for every member
        assert [plan.horizon_flops(k, f) for f in fpss] == [r * f for f in fpss]  # a dearer member costs more
        assert plan.costs.rungs[k] == pytest.approx(r * plan.typical_train_per_sample)  # layout: the mean member
        assert plan.target_flops(k) is None
    assert plan.max_horizon_flops == plan.costs.rungs[-1]
    old = {k: v for k, v in plan.as_dict().items() if k != "unit"}  # plans stored before the unit existed
    assert Plan.from_dict(old).unit == "flops"


def test_dry_run_says_the_unit(run_cli, tmp_path) -> None:
    base = ["search", "--budget", f"{BUDGET:g}", "--space", str(SPACE), "--storage", f"sqlite:///{tmp_path / 'x.db'}"]
    for recipe, unit in ((SAMPLES, "samples"), (FLOPS, "flops")):
        code, out, err = run_cli([*base, "--recipe", str(recipe), "--dry-run", "--json"])
        assert code == 0, err
        d = json.loads(out)
        assert d["horizon_unit"] == d["plan"]["unit"] == unit
        assert d["max_horizon"] == d["plan"]["rungs"][-1]
        code, out, err = run_cli([*base, "--recipe", str(recipe), "--dry-run"])
        assert code == 0 and f"horizon unit: training {unit}" in out


def test_a_search_in_samples_trains_every_candidate_the_same_samples(run_cli, tmp_path) -> None:
    from unetnas.search.ledger import Ledger
    from unetnas.search.storage import engine_for

    db, out_dir = tmp_path / "s.db", tmp_path / "export"
    url = f"sqlite:///{db}"
    argv = ["search", "--budget", f"{BUDGET:g}", "--space", str(SPACE), "--recipe", str(SAMPLES)]
    code, out, err = run_cli([*argv, "--storage", url, "--study", "smp", "--seed", "0", "--json"])
    assert code == 0, err[-3000:]
    study = optuna.load_study(study_name="smp", storage=url)
    plan = Plan.from_dict(study.user_attrs[S.SETTINGS_ATTR]["plan"])
    assert plan.unit == "samples"
    trained = 0.0
    seen = set()
    for t in study.get_trials():
        prev = 0
        copied = study.trials[t.user_attrs["continues"]].user_attrs["rung"] if "continues" in t.user_attrs else -1
        for k in range(len(plan.rungs)):
            rec = t.user_attrs.get(f"rung_{k}")
            if rec is None:
                continue
            fps = cost(S.spec_of(t)).train_flops_per_sample
            want = max(int(plan.rungs[k]) // 8, prev + 1)
            assert rec["steps"] == want and rec["samples"] == want * 8  # the same samples, whatever the cost
            assert rec["train_flops"] == pytest.approx(want * 8 * fps)
            if k > copied:  # a second chance holds its origin's records up to the rung it continued from
                trained += rec["train_flops"] - prev * 8 * fps
            seen.add((k, rec["samples"], round(fps)))
            prev = rec["steps"]
    assert len({f for k, _, f in seen if k == 0}) >= 2  # members of different cost met at rung 0 ...
    assert len({s for k, s, _ in seen if k == 0}) == 1  # ... at the same samples
    led = Ledger(engine_for(url), "smp").summary()
    assert led["by_kind"]["train"] == pytest.approx(trained)  # the ledger charges what ran
    code, _, err = run_cli(["report", "--study", "smp", "--storage", url, "--out", str(tmp_path / "r.html")])
    assert code == 0, err
    assert "horizon unit: training samples" in (tmp_path / "r.html").read_text()
    code, _, err = run_cli(["export", "--study", "smp", "--storage", url, "--out", str(out_dir), "--config-only"])
    assert code == 0, err
    cards = list(out_dir.rglob("README.md"))
    assert cards and all("| horizon unit | training samples |" in c.read_text() for c in cards)
