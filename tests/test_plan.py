"""The search plan (unetnas.search.plan.make_plan): rungs of training FLOPs derived from the budget."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from unetnas.errors import UserError
from unetnas.io import load_space
from unetnas.search.plan import MARGIN, eval_flops_per_trial, make_plan
from unetnas.train.recipe import load_recipe

DATA = Path(__file__).parent / "data"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def micro():
    return load_space(DATA / "micro.yaml")


@pytest.fixture(scope="module")
def smoke():
    return load_recipe(DATA / "smoke.yaml")


def settings_of(recipe, **kw):
    return recipe.search.model_copy(update=kw)


def min_r0(plan, s) -> float:
    return s.min_steps * plan.batch_size * plan.typical_train_per_sample


def check_structure(plan, space, recipe, s, extra: int = 0) -> None:
    """Everything the plan promises, for any budget that fits."""
    k = len(plan.rungs)
    assert 1 <= k <= s.max_rungs and plan.eta == s.eta
    # never more than the budget, and the safety margin is left unallocated
    assert plan.total <= plan.budget * (1 - MARGIN) * (1 + 1e-12)
    assert plan.total >= plan.budget * (1 - MARGIN) * (1 - 1e-9)  # ... but the rest is used
    # geometric rungs with ratio eta
    for a, b in zip(plan.rungs, plan.rungs[1:]):
        assert math.isclose(b / a, s.eta, rel_tol=1e-12)
    # successive halving: n_top x eta^(K-1-i) candidates at rung i, presets on top at rung 0
    assert plan.trials == [s.n_top * s.eta ** (k - 1 - i) + (extra if i == 0 else 0) for i in range(k)]
    # training pays increments only (promoted candidates continue from their checkpoints)
    steps = [plan.rungs[0]] + [b - a for a, b in zip(plan.rungs, plan.rungs[1:])]
    for n, inc, tr in zip(plan.trials, steps, plan.train_flops):
        assert math.isclose(tr, n * inc, rel_tol=1e-12)
    # evaluation: validation loss at every rung, TIFA where named (python indices into the rungs)
    val, tifa = eval_flops_per_trial(space, recipe, s)
    expect_tifa = sorted({r % k for r in s.tifa_rungs if -k <= r < k})
    assert plan.tifa_rungs == expect_tifa
    for i, (n, ev) in enumerate(zip(plan.trials, plan.eval_flops)):
        assert math.isclose(ev, n * (val + (tifa if i in expect_tifa else 0.0)), rel_tol=1e-12)
    # rung 0 gives a typical member at least min_steps steps
    assert plan.rungs[0] >= min_r0(plan, s) * (1 - 1e-12)
    assert plan.steps_at(0, plan.typical_train_per_sample) >= s.min_steps
    assert 0 < plan.eval_share < 1


SEARCH = st.fixed_dictionaries({
    "eta": st.integers(2, 4),
    "n_top": st.integers(1, 4),
    "max_rungs": st.integers(1, 5),
    "min_steps": st.integers(1, 30),
    "tifa_rungs": st.sampled_from([(-1,), (), (0,), (-2, -1), (0, 1, 2, 3, 4)]),
})  # fmt: skip


@settings(max_examples=120, deadline=None)
@given(SEARCH, st.floats(9.0, 16.0), st.integers(0, 3))
def test_plan_fits_the_budget_or_refuses(micro, smoke, kw, log_budget, extra) -> None:
    s = settings_of(smoke, **kw)
    budget = 10.0**log_budget
    try:
        plan = make_plan(budget, micro, smoke, s, extra=extra)
    except UserError as err:
        assert "\n" not in str(err) and str(err).startswith("--budget=") and "too small" in str(err)
        # refused only when not even one rung of n_top candidates with min_steps fits
        val, tifa = eval_flops_per_trial(micro, smoke, s)
        one_rung = make_plan(1e30, micro, smoke, s.model_copy(update={"max_rungs": 1}), extra=extra)
        need = (s.n_top + extra) * (min_r0(one_rung, s) + val + (tifa if one_rung.tifa_rungs else 0.0))
        assert budget * (1 - MARGIN) < need * (1 + 1e-9)
        return
    check_structure(plan, micro, smoke, s, extra)
    # the most rungs that fit: one more rung would leave rung 0 under min_steps
    k = len(plan.rungs)
    if k < s.max_rungs:
        more = make_plan(budget, micro, smoke, s.model_copy(update={"max_rungs": k + 1}), extra=extra)
        assert len(more.rungs) == k


def test_more_budget_more_rungs(micro, smoke) -> None:
    s = settings_of(smoke, eta=2, n_top=2, max_rungs=4, min_steps=3)
    ks = []
    for log_b in [x / 4 for x in range(36, 60)]:
        try:
            ks.append(len(make_plan(10**log_b, micro, smoke, s).rungs))
        except UserError:
            ks.append(0)
    assert ks == sorted(ks), ks  # never fewer rungs for more budget
    assert ks[0] == 0 and ks[-1] == s.max_rungs and set(range(1, s.max_rungs + 1)) <= set(ks)


def test_small_plan_matches_the_search_tests(micro, smoke) -> None:
    """The plan the search tests rely on: 2 rungs, 4 then 2 candidates (smoke.yaml: eta 2, n_top 2)."""
    plan = make_plan(1e11, micro, smoke, smoke.search)
    assert plan.trials == [4, 2] and plan.tifa_rungs == [1]
    check_structure(plan, micro, smoke, smoke.search)
    plan = make_plan(1e11, micro, smoke, smoke.search, extra=2)
    assert plan.trials == [6, 2]
    check_structure(plan, micro, smoke, smoke.search, extra=2)


def test_budget_too_small_is_one_line(micro, smoke, run_cli) -> None:
    with pytest.raises(UserError) as info:
        make_plan(1e6, micro, smoke, smoke.search)
    msg = str(info.value)
    assert msg.startswith("--budget=") and "too small" in msg and "\n" not in msg
    code, out, err = run_cli(["search", "--budget", "1e6", "--space", str(DATA / "micro.yaml"),
                              "--recipe", str(DATA / "smoke.yaml"), "--dry-run", "--json"])  # fmt: skip
    assert code == 2 and out == ""
    assert err.startswith("error: --budget=") and err.count("\n") == 1 and "Traceback" not in err


def test_bad_settings_are_refused(micro, smoke) -> None:
    with pytest.raises(UserError):
        make_plan(1e12, micro, smoke, smoke.search.model_construct(**{**smoke.search.model_dump(), "eta": 1}))


def test_paper_space_dry_run_plan_a_lab_can_act_on(run_cli) -> None:
    """`unetnas search --budget 2e20 --space space/paper.yaml --dry-run --gpus 64 --tflops-per-gpu 400`."""
    args = ["search", "--budget", "2e20", "--space", str(ROOT / "space" / "paper.yaml"), "--dry-run",
            "--gpus", "64", "--tflops-per-gpu", "400"]  # fmt: skip
    code, out, err = run_cli([*args, "--json"])
    assert code == 0, err
    d = json.loads(out)
    plan, s = d["plan"], load_recipe(None).search  # the default recipe (trials/short.yaml)
    k = len(plan["rungs"])
    assert k == s.max_rungs  # 2e20 FLOPs buy every rung the recipe allows
    assert plan["trials"] == [s.n_top * s.eta ** (k - 1 - i) for i in range(k)]
    total = sum(plan["train_flops"]) + sum(plan["eval_flops"])
    assert 0.9 * 2e20 <= total <= (1 - MARGIN) * 2e20 * (1 + 1e-12)
    assert sum(plan["eval_flops"]) / total < 0.01  # scoring is a small share at this scale
    assert d["flops_per_s"] == 64 * 400e12
    assert math.isclose(d["wall_s"], total / (64 * 400e12), rel_tol=1e-9)
    assert 3600 <= d["wall_s"] <= 4 * 3600  # about two hours on 64 GPUs
    # rung 0 trains a typical paper-scale member for many steps, not a handful
    steps0 = plan["rungs"][0] / (plan["typical_train_per_sample"] * plan["batch_size"])
    assert steps0 >= s.min_steps * 100
    assert plan["tifa_rungs"] == sorted({r % k for r in s.tifa_rungs})
    # the table: one row per rung, the total, the wall time on the given GPUs and GPU-hours
    code, out, err = run_cli(args)
    assert code == 0, err
    assert "3 rungs" in out and "64 GPUs x 400 TFLOP/s" in out and "GPU-hours" in out and "2.1 h" in out
    for n in plan["trials"]:
        assert f" {n} " in out
