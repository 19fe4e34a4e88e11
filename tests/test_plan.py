"""The search plan (unetnas.search.plan): rungs from the recipe and the space, brackets bought by the budget.

No FLOPs figure of the current world is written down here: every expectation is derived from the space's members,
the recipe and the proxies' own cost functions.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from unetnas.cost import cost
from unetnas.errors import UserError
from unetnas.io import load_space
from unetnas.search.plan import (
    MARGIN,
    WARMUP_FACTOR,
    WORLD_VAL_CAPTIONS,
    Plan,
    caption_flops,
    halving,
    hyperband_size,
    make_plan,
    members,
    tifa_flops,
    val_flops,
)
from unetnas.train.recipe import load_recipe

DATA = Path(__file__).parent / "data"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def micro():
    return load_space(DATA / "micro.yaml")


@pytest.fixture(scope="module")
def smoke():
    return load_recipe(DATA / "smoke.yaml")


def typical(space) -> float:
    return statistics.fmean(cost(m).train_flops_per_sample for m in members(space))


def check_structure(plan: Plan, space, recipe, s, extra: int = 0) -> None:
    """Everything the plan promises, for any budget that fits."""
    k = s.max_rungs
    # rungs from the recipe and the space: min_steps of the mean member (at least twice the warm-up), times eta^k
    r0 = max(s.min_steps * recipe.batch_size * typical(space), 2 * recipe.warmup_flops)
    assert len(plan.rungs) == k and math.isclose(plan.rungs[0], r0, rel_tol=1e-12)
    for a, b in zip(plan.rungs, plan.rungs[1:]):
        assert math.isclose(b / a, s.eta, rel_tol=1e-12)
    assert plan.max_horizon_flops == plan.rungs[-1]
    # never more than the budget less the margin
    assert plan.total <= plan.budget * (1 - MARGIN) * (1 + 1e-12)
    # successive halving inside each bracket; Hyperband's sizes for every bracket but the last (partial) one
    first = plan.brackets[0].start
    for i, b in enumerate(plan.brackets):
        assert b.last <= k - 1 and b.counts[0] >= 1
        assert b.counts == halving(b.counts[0], b.start, k - 1, s.eta)[: len(b.counts)]
        if i < len(plan.brackets) - 1:
            assert b.start == (first + i) % k  # Hyperband's cycle of bracket types
            assert b.counts[0] == hyperband_size(b.start, k, s.eta) + (extra if i == 0 else 0)
            assert b.last == k - 1
    assert plan.candidates <= space.size() + extra
    assert plan.top_candidates >= s.n_top
    # evaluation: validation loss at every rung, TIFA where named, each at the space's mean member
    ms = members(space)
    val = statistics.fmean(val_flops(m, recipe) for m in ms)
    tifa = statistics.fmean(tifa_flops(m, recipe, s) for m in ms)
    assert plan.tifa_rungs == sorted({r % k for r in s.tifa_rungs if -k <= r < k})
    for i, ev in enumerate(plan.eval_flops):
        assert math.isclose(ev, val + (tifa if i in plan.tifa_rungs else 0.0), rel_tol=1e-12)
    # the one-off costs: the world's captions once per study, the TIFA prompts once per worker
    per = caption_flops(ms[0].text_len)
    want = {"captions": per * (recipe.world_pool + WORLD_VAL_CAPTIONS + 1)}
    if plan.tifa_rungs:
        want["tifa_prompts"] = per * (s.tifa_prompts + 1)
    assert plan.once_flops == want
    assert Plan.from_dict(json.loads(json.dumps(plan.as_dict()))) == plan  # stored in the study, read on resume


SEARCH = st.fixed_dictionaries(
    {
        "eta": st.integers(2, 4),
        "n_top": st.integers(1, 4),
        "max_rungs": st.integers(1, 4),
        "min_steps": st.integers(1, 30),
        "tifa_rungs": st.sampled_from([(-1,), (), (0,), (-2, -1), (0, 1, 2, 3, 4)]),
    }
)


@settings(max_examples=80, deadline=None)
@given(SEARCH, st.floats(10.0, 14.0), st.integers(0, 2))
def test_plan_fits_the_budget_or_refuses(micro, smoke, kw, log_budget, extra) -> None:
    s = smoke.search.model_copy(update=kw)
    budget = 10.0**log_budget
    try:
        plan = make_plan(budget, micro, smoke, s, extra=extra)
    except UserError as err:
        msg = str(err)
        assert "\n" not in msg and ("too small" in msg or "members" in msg), msg
        if "too small" in msg:  # refused only when the budget cannot train n_top candidates to the last rung
            need = float(msg.rsplit("about ", 1)[1].split(" FLOPs")[0])
            assert budget < need and make_plan(need, micro, smoke, s, extra=extra).top_candidates >= s.n_top
        return
    check_structure(plan, micro, smoke, s, extra)


def test_the_budget_buys_candidates_not_longer_trials(micro, smoke) -> None:
    """Doubling the budget about doubles the candidates and brackets; the rungs (the horizon) do not move."""
    space = load_space(DATA / "replay_space.yaml")  # enough members for the budgets below
    s = smoke.search.model_copy(update={"max_rungs": 3, "n_top": 2})
    base = make_plan(1e13, space, smoke, s)
    for factor in (2, 4, 8):
        more = make_plan(1e13 * factor, space, smoke, s)
        assert more.rungs == base.rungs and more.eval_flops == base.eval_flops
        assert 0.7 * factor <= more.candidates / base.candidates <= 1.3 * factor, (
            factor,
            base.candidates,
            more.candidates,
        )
        assert more.total <= more.budget * (1 - MARGIN)
    # a space with few members is not offered more candidates than it has
    huge = make_plan(1e16, micro, smoke, smoke.search)
    assert huge.candidates == micro.size() and huge.total < 1e16 * 0.5


def test_rung_zero_waits_for_the_end_of_warm_up(micro, smoke) -> None:
    long_warmup = smoke.model_copy(update={"warmup_flops": 1e12})
    plan = make_plan(1e14, micro, long_warmup, long_warmup.search)
    assert plan.rungs[0] == WARMUP_FACTOR * 1e12 > 1e12  # ranked only after every candidate's warm-up


def test_evaluation_estimates_are_the_proxies_own(micro, smoke) -> None:
    """val_flops is ValLoss.flops; tifa_flops plus the prompts' encoding is WorldTifa.flops on a first score."""
    from unetnas.proxies import Subject, ValLoss, WorldTifa

    s = smoke.search
    for m in members(micro)[:3]:
        stub = Subject(m, None, smoke)
        assert val_flops(m, smoke) == ValLoss().flops(stub)
        proxy = WorldTifa(prompts=s.tifa_prompts, images_per_prompt=s.tifa_images)
        assert math.isclose(
            tifa_flops(m, smoke, s) + caption_flops(m.text_len) * (s.tifa_prompts + 1), proxy.flops(stub), rel_tol=1e-12
        )


def test_prepared_data_is_scored_by_validation_loss_and_encodes_nothing(micro, smoke) -> None:
    plan = make_plan(1e12, micro, smoke, smoke.search, data="/some/shards")
    assert plan.tifa_rungs == [] and plan.once_flops == {}
    assert all(ev == plan.eval_flops[0] for ev in plan.eval_flops)


def test_budget_too_small_is_one_line(micro, smoke, run_cli) -> None:
    with pytest.raises(UserError) as info:
        make_plan(1e6, micro, smoke, smoke.search)
    msg = str(info.value)
    assert msg.startswith("--budget=") and "too small" in msg and "\n" not in msg
    code, out, err = run_cli(
        [
            "search",
            "--budget",
            "1e6",
            "--space",
            str(DATA / "micro.yaml"),
            "--recipe",
            str(DATA / "smoke.yaml"),
            "--dry-run",
            "--json",
        ]
    )
    assert code == 2 and out == ""
    assert err.startswith("error: --budget=") and err.count("\n") == 1 and "Traceback" not in err


def test_bad_settings_are_refused(micro, smoke) -> None:
    with pytest.raises(UserError):
        make_plan(1e12, micro, smoke, smoke.search.model_construct(**{**smoke.search.model_dump(), "eta": 1}))
    with pytest.raises(UserError, match="members"):  # micro has fewer members than n_top asks for
        make_plan(1e12, micro, smoke, smoke.search.model_copy(update={"n_top": micro.size() + 1}))


def test_paper_space_dry_run_shows_what_the_budget_buys(run_cli) -> None:
    """`unetnas search --budget 2e20 --space space/paper.yaml --recipe trials/gpu.yaml --dry-run [--json]`."""
    args = [
        "search",
        "--space",
        str(ROOT / "space" / "paper.yaml"),
        "--recipe",
        str(ROOT / "trials" / "gpu.yaml"),
        "--dry-run",
        "--gpus",
        "64",
        "--tflops-per-gpu",
        "400",
    ]
    code, out, err = run_cli([*args, "--budget", "2e20", "--json"])
    assert code == 0, err
    d = json.loads(out)
    assert {"candidates", "brackets", "max_horizon_flops", "top_candidates", "plan", "wall_s"} <= set(d)
    plan = Plan.from_dict(d["plan"])
    assert d["candidates"] == plan.candidates >= 20 and d["brackets"] == len(plan.brackets) >= 3
    assert d["max_horizon_flops"] == plan.rungs[-1] and d["top_candidates"] >= plan.n_top
    assert 0.85 * 2e20 <= plan.total <= (1 - MARGIN) * 2e20 * (1 + 1e-12)
    assert plan.eval_total / plan.total < 0.01  # scoring is a small share at this scale
    assert d["flops_per_s"] == 64 * 400e12  # per device; the wall time is work per device or the span, if longer
    assert d["wall_s"] >= plan.total / (64 * 400e12) * (1 - 1e-9)
    # twice the budget: about twice the candidates and brackets, the same longest horizon
    code, out2, err = run_cli([*args, "--budget", "4e20", "--json"])
    assert code == 0, err
    d2 = json.loads(out2)
    assert d2["max_horizon_flops"] == d["max_horizon_flops"]
    assert 1.6 <= d2["candidates"] / d["candidates"] <= 2.4, (d["candidates"], d2["candidates"])
    assert 1.6 <= d2["brackets"] / d["brackets"] <= 2.4
    # the tables: rungs with steps and samples, brackets with candidates per rung
    code, out, err = run_cli([*args, "--budget", "2e20"])
    assert code == 0, err
    assert f"{d['brackets']} brackets, {d['candidates']} candidates" in out
    flat = " ".join(out.split())  # the summary is prose, wrapped to the terminal
    assert "steps" in flat and "samples" in flat and "64 GPUs x 400 TFLOP/s" in flat and "GPU-hours" in flat
    for b in plan.brackets:
        assert " -> ".join(map(str, b.counts)) in out
