"""The search-efficiency benchmark (bench.search_efficiency, bench.baselines) on a synthetic ground truth of
space/tiny.yaml under trials/short.yaml (tests/gt_tables.py): the real space, recipe and plan of the benchmark,
values from a known law. Every method is a real search (unetnas's runner, Optuna's samplers and HyperbandPruner)
on the replay executor; nothing is mocked.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from gt_tables import make_table
from optuna._hypervolume import compute_hypervolume

from bench import replay_noise as RN
from bench import search_efficiency as SE
from bench.baselines import METHODS, Runner, Trace, make_bench
from unetnas.cost import cost
from unetnas.search.promotion import dominates
from unetnas.search.replay import GroundTruth

ROOT = Path(__file__).resolve().parents[1]
SPACE, RECIPE = ROOT / "space" / "tiny.yaml", ROOT / "trials" / "short.yaml"


@pytest.fixture(scope="module")
def table_path(tmp_path_factory) -> Path:
    return make_table(tmp_path_factory.mktemp("gt") / "tiny.json", SPACE, RECIPE)


@pytest.fixture(scope="module")
def bench(table_path):
    return make_bench(GroundTruth.load(table_path))


@pytest.fixture(scope="module")
def traces(bench) -> dict[str, Trace]:
    return {m: run(bench, 1) for m, run in METHODS.items()}


def test_every_method_spends_within_the_budget_and_answers_its_measured_front(bench, traces) -> None:
    budget = bench.budget - bench.plan.once_flops["captions"]  # the ledger's one-off text charge is left out
    for name, t in traces.items():
        flops = [f for f, _ in t.events]
        assert flops == sorted(flops) and 0 < t.spent <= budget, name
        assert len(t.events) == t.runs + 1 and t.measured, name
        answer = t.events[-1][1]
        assert set(answer) <= set(t.measured), name
        pts = {d: (-a, g) for d, (a, g) in t.measured.items()}
        assert not any(dominates(pts[o], pts[d]) for d in answer for o in pts), name  # non-dominated as measured
        assert all(any(dominates(pts[a], pts[d]) for a in answer) for d in pts if d not in answer), name


def test_same_seed_same_trace(bench, traces) -> None:
    for name in ("unetnas", "hyperband"):
        again = METHODS[name](bench, 1)
        assert again.events == traces[name].events and again.measured == traces[name].measured


def test_baselines_pay_what_the_search_pays_for_the_same_work(bench, traces) -> None:
    """Random search runs on unetnas's runner and ledger; the Runner (top-k, Hyperband) charges the same FLOPs for
    the same designs trained to the last rung, and reads the same measured values at the same seed."""
    rnd = traces["random"]
    order = [next(iter(set(b) - set(a)), None) for (_, a), (_, b) in zip(rnd.events, rnd.events[1:])]
    assert len(rnd.measured) == len(bench.members) == 34  # random search exhausts the space within the budget
    t = Trace("check", 1)
    runner = Runner(bench, 1, t)
    by_id = {bench.table.design(m).id: m for m in bench.members}
    for d in rnd.measured:
        runner.rung(by_id[d], bench.top)
    assert math.isclose(t.spent, rnd.spent, rel_tol=1e-9)
    assert t.measured == rnd.measured
    assert any(order)  # answers changed as designs came in


def test_topk_trains_everyone_at_rung_0_then_the_ranked_few_to_the_end(bench, traces) -> None:
    t = traces["topk"]
    n = len(bench.members)
    assert all(ids == () for _, ids in t.events[: n + 1])  # no answer before every member has its rung 0
    assert t.events[n + 1][1] != () and t.runs == 2 * n  # the whole ranking fits this budget: k grows to n


def test_hyperband_prunes_with_optunas_pruner(bench, traces) -> None:
    t = traces["hyperband"]
    reached = len(t.measured)
    assert 0 < reached < len(bench.members) and t.runs > reached  # some stopped below the last rung
    # the trace's scalarisation weight is drawn per seed
    assert METHODS["hyperband"](bench, 2).events != t.events


def test_hypervolume_and_regret(bench) -> None:
    sc = SE.Scorer(bench)
    pts = np.array([(-a, g) for a, g in sc.truth.values()])
    ref = np.array([0.0, max(cost(m).gmacs for m in bench.members)])
    inside = pts[(pts < ref).all(axis=1)]
    assert math.isclose(sc.best, compute_hypervolume(inside, ref), rel_tol=1e-9)  # Optuna's WFG agrees
    assert sc.regret(()) == 1.0 and sc.regret(tuple(sc.front)) == pytest.approx(0.0, abs=1e-12)
    assert sc.regret(tuple(sc.truth)) == pytest.approx(0.0, abs=1e-12)
    assert 0 < sc.regret(tuple(sc.front[:1])) < 1
    t = Trace("x", 0)
    t.done(5.0, sc.front[0], sc.truth[sc.front[0]])
    for d in sc.front[1:]:
        t.done(t.spent + 1.0, d, sc.truth[d])
    f, ok = SE.compute_to(t, sc, 0.0)
    assert ok and f == t.spent
    assert SE.compute_to(Trace("none", 0), sc, 0.05) == (0.0, False)
    grid = np.array([1.0, 5.0, 6.0, 1e9])
    c = SE.curve(t, sc, grid)
    assert c[0] == 1.0 and c[1] == sc.regret(t.events[1][1]) and c[-1] == pytest.approx(0.0, abs=1e-12)


def test_auto_epsilon_stays_above_the_floor() -> None:
    assert SE.auto_epsilon(0.0) == SE.auto_epsilon(0.02) == 0.05
    assert SE.auto_epsilon(0.031) == 0.07 and SE.auto_epsilon(0.2) == 0.4


def test_ratio_is_a_ratio_of_means_with_a_paired_bootstrap() -> None:
    r, lo, hi = SE.ratio_ci([10.0, 20.0, 30.0, 40.0], [1.0, 2.0, 3.0, 4.0])
    assert r == 10.0 and lo == pytest.approx(10.0) and hi == pytest.approx(10.0)  # paired: every resample is 10
    r, lo, hi = SE.ratio_ci([10.0, 20.0, 30.0, 40.0], [4.0, 3.0, 2.0, 1.0])
    assert r == 10.0 and lo < 10.0 < hi


def test_cli_json_and_plot(table_path, tmp_path, capsys) -> None:
    plot, whole = tmp_path / "eff.html", tmp_path / "res" / "eff.json"
    code = SE.main(
        [
            "--table",
            str(table_path),
            "--seeds",
            "2",
            "--methods",
            "unetnas,random,tpe,topk",
            "--plot",
            str(plot),
            "--out",
            str(whole),
            "--json",
            "--protocol",
            "same-run",
        ]
    )
    assert code == 0
    res = json.loads(capsys.readouterr().out)
    assert json.loads(whole.read_text())["methods"]["unetnas"]["regret_mean"]  # --out keeps the curves
    assert res["seeds"] == 2 and res["epsilon"] == SE.auto_epsilon(res["floor_regret"]) >= 0.05 and res["complete"]
    assert set(res["compute_to_epsilon"]) == {"unetnas", "random", "tpe", "topk"} and res["machine"]["cpus"]
    for b in ("random", "tpe", "topk"):
        assert res[f"ratio_vs_{b}"] > 0 and len(res[f"ratio_vs_{b}_ci"]) == 2
    assert "ratio_vs_hyperband" not in res and "goal_met" not in res  # not run
    assert plot.stat().st_size > 100_000 and "Plotly" in plot.read_text()[:400_000]


def test_markdown_table_has_one_row_per_method(bench) -> None:
    res = SE.evaluate(bench, [0], 0.05, methods=("unetnas", "random"))
    md = SE.markdown(res).splitlines()
    assert len(md) == 4 and md[2].startswith("| unetnas") and "x [" in md[3]


def test_a_partial_table_needs_partial_and_keeps_covered_widths(
    table_path, tmp_path, capsys, assert_one_line_error
) -> None:
    raw = json.loads(table_path.read_text())
    gone = {d["id"] for d in raw["designs"] if d["spec"]["base_channels"] == 32}
    gone.add(next(d["id"] for d in raw["designs"] if d["spec"]["base_channels"] == 24))
    raw["runs"] = [r for r in raw["runs"] if r["design"] not in gone]
    raw["meta"]["complete"] = False
    part = tmp_path / "partial.json"
    part.write_text(json.dumps(raw))
    code = SE.main(["--table", str(part), "--seeds", "1", "--methods", "random", "--protocol", "same-run"])
    out, err = capsys.readouterr()
    assert_one_line_error(code, out, err, "--table=", "still being written", "--partial", quiet=True)
    assert (
        SE.main(
            [
                "--table",
                str(part),
                "--seeds",
                "1",
                "--methods",
                "random",
                "--partial",
                "--json",
                "--protocol",
                "same-run",
            ]
        )
        == 0
    )
    out, err = capsys.readouterr()
    assert json.loads(out)["designs"] == 11 and "base widths [16]" in err  # C16 only: one C24 member lacks runs


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--seeds", "0"], "--seeds='0'"),
        (["--epsilon", "1.5"], "--epsilon="),
        (["--methods", "bohb"], "--methods="),
        (["--plot", "x.svg"], "--plot="),
        (["--budget", "-1"], "--budget="),
        (["--table", "/nonexistent.json"], "--replay"),
        ([], "--protocol='held-out': the held-out replay needs >= 2 seeds for every design; 12 of 34"),
        (["--protocol", "held-out", "--first-seed", "19"], "--first-seed='19': seeds 0..19 tuned the scheduler"),
        (["--methods", "unetnas,nope"], "--methods="),
    ],
)
def test_bad_input_is_one_line(args, needle, table_path, capsys, assert_one_line_error) -> None:
    code = SE.main(["--table", str(table_path), *args])
    out, err = capsys.readouterr()
    assert_one_line_error(code, out, err, needle, quiet=True)


# -- the held-out replay (issue 18, item 4) ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def held_bench(tmp_path_factory):
    """Every member with 2 runs whose seed offsets (sd 0.03) exceed the gaps between neighbouring designs."""
    path = make_table(tmp_path_factory.mktemp("gt2") / "tiny2.json", SPACE, RECIPE, n_runs=2, seed_sd=0.03)
    return make_bench(GroundTruth.load(path))


def test_held_out_truth_is_the_run_the_search_does_not_read(held_bench) -> None:
    b, t = held_bench, held_bench.table
    fooled = 0
    for s in (100, 101):
        sc, same = SE.Scorer(b, "held-out", s, "last"), SE.Scorer(b, "same-run", s, "last")
        at_top = SE.Scorer(b, "held-out", s)  # the default: the truth read at the search's last rung
        for m in b.members:
            d = t.design(m).id
            read = t.run_for(m, s)
            other = next(r for r in t.runs[d] if r is not read)
            assert sc.truth[d][0] == other.checkpoints[-1].alignment  # the truth never includes what was read
            assert same.truth[d][0] == pytest.approx(np.mean([r.checkpoints[-1].alignment for r in t.runs[d]]))
            top = b.plan.steps_at(b.top, cost(m).train_flops_per_sample) * b.plan.batch_size
            flops = top * cost(m).train_flops_per_sample
            assert at_top.truth[d][0] == t.run_at(other, flops)["alignment"]  # ... where the search measures
            measured = t.at(m, flops, s)["alignment"]
            assert measured == pytest.approx(read.checkpoints[-1].alignment, abs=1e-3)  # interpolated near the end
            fooled += measured != pytest.approx(sc.truth[d][0], abs=1e-3)
        # the front a search would measure by exhausting the space is not the true one: it can be fooled
        assert SE.floor(b, {s: sc}) > 0
    assert fooled == 2 * len(b.members)
    assert SE.Scorer(b, "held-out", 100).truth != SE.Scorer(b, "held-out", 101).truth  # per-seed hold-out


def test_noise_aware_regret_credits_answers_within_two_se_of_the_front(held_bench) -> None:
    sc = SE.Scorer(held_bench, "held-out", 100)
    sd = RN.seed_sd(held_bench.table, list(sc.truth), SE.truth_flops(held_bench, "top-rung"))
    assert 0.02 < sd < 0.045 and all(v == pytest.approx(sd) for v in sc.se.values())  # one run in each truth
    assert sc.regret((), noise=True) == 1.0 and sc.regret(tuple(sc.front), noise=True) == 0.0
    for d in sc.truth:  # every single-design answer: noise-aware regret <= plain regret
        assert sc.regret((d,), noise=True) <= sc.regret((d,)) + 1e-12
    # a non-front design within 2 SE of the front at its cost counts as the front point there; one beyond does not
    within = beyond = 0
    for d, (a, g) in sc.truth.items():
        if d in sc.front:
            continue
        f = max((e for e, (_, ge) in sc.truth.items() if ge <= g), key=lambda e: sc.truth[e][0])
        pts = RN.credited((d,), sc.truth, sc.se)
        if sc.truth[f][0] - a <= 2 * math.hypot(sc.se[d], sc.se[f]):
            within += 1
            assert pts[d] == (sc.truth[f][0], g)
            if g < sc.ref[1]:  # (a design at the reference point's GMACs adds no hypervolume either way)
                assert sc.regret((d,), noise=True) < sc.regret((d,))
        else:
            beyond += 1
            assert pts[d] == (a, g) and sc.regret((d,), noise=True) == pytest.approx(sc.regret((d,)))
    assert within and beyond


def test_held_out_cli_reports_both_regrets_on_reporting_seeds(held_bench, tmp_path, capsys) -> None:
    code = SE.main(
        ["--table", str(held_bench.table.path), "--seeds", "2", "--methods", "unetnas,random,topk", "--json"]
    )
    assert code == 0
    res = json.loads(capsys.readouterr().out)
    assert res["protocol"] == "held-out" and res["regret"] == "noise-aware" and res["seed_list"] == [100, 101]
    assert res["tuning_seeds"] == [0, 19] and "excluded" in res["caption_encoding"]
    assert res["floor_regret"] <= res["plain_floor_regret"] and res["plain_floor_regret"] > 0
    for m, r in res["methods"].items():
        assert r["final_regret_mean"] <= r["plain_final_regret_mean"] + 1e-12, m
        assert len(r["plain_compute_to_epsilon"]) == 2 and 0 <= r["plain_reached"] <= 2, m
    md = SE.markdown(SE.evaluate(held_bench, [100], 0.05, ("unetnas", "random"), protocol="held-out"))
    assert "noise-aware eps" in md and "final plain regret" in md


def test_held_out_on_a_partial_table_keeps_widths_whose_members_all_have_two_runs(
    tmp_path, capsys, assert_one_line_error
) -> None:
    raw = json.loads(make_table(tmp_path / "t.json", SPACE, RECIPE, n_runs=2).read_text())
    one_seed = next(d["id"] for d in raw["designs"] if d["spec"]["base_channels"] == 24 and not d["text_blind"])
    raw["runs"] = [r for r in raw["runs"] if not (r["design"] == one_seed and r["seed"] == 1)]
    raw["meta"]["complete"] = False
    part = tmp_path / "partial.json"
    part.write_text(json.dumps(raw))
    argv = ["--table", str(part), "--seeds", "1", "--methods", "random", "--partial", "--json"]
    assert SE.main(argv) == 0
    out, err = capsys.readouterr()
    assert "designs with >= 2 runs" in err and "base widths [16, 32]" in err  # C24 lost: one member has one run
    raw["runs"] = [r for r in raw["runs"] if r["seed"] == 0]  # no design has two runs: nothing to hold out
    part.write_text(json.dumps(raw))
    code = SE.main(argv)
    out, err = capsys.readouterr()
    assert_one_line_error(code, out, err, "--table=", "no base width whose members all have 2 runs", quiet=True)


def test_tuning_runs_only_the_tuning_seeds_and_says_so(held_bench, capsys, assert_one_line_error) -> None:
    path = str(held_bench.table.path)
    assert SE.main(["--table", path, "--seeds", "1", "--methods", "random", "--tuning", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["tuning"] is True and res["seed_list"] == [0]
    code = SE.main(["--table", path, "--seeds", "1", "--methods", "random", "--tuning", "--first-seed", "100"])
    out, err = capsys.readouterr()
    assert_one_line_error(code, out, err, "--first-seed='100': --tuning runs only the tuning seeds 0..19", quiet=True)
    code = SE.main(["--table", path, "--seeds", "25", "--methods", "random", "--tuning"])
    out, err = capsys.readouterr()
    assert_one_line_error(
        code, out, err, "--seeds='25': --tuning runs only the tuning seeds 0..19 (asked for 0..24)", quiet=True
    )


def test_second_chance_ablation_spends_the_budget_the_off_rule_leaves(held_bench, capsys) -> None:
    """`python -m bench second-chance`: the same searches with the rule off (the budget left unspent once the
    space is exhausted) and on (pruned candidates continued: more spent, no worse final regret)."""
    from bench import second_chance as SC

    path = str(held_bench.table.path)
    assert SC.main(["--table", path, "--seeds", "2", "--tuning", "--rules", "off,standing"]) == 0
    out = capsys.readouterr().out
    assert "| off |" in out and "| standing |" in out and "TUNING" in out
    res = {r: SC.run_rule(r, ["--table", path, "--seeds", "2", "--tuning"]) for r in ("off", "standing")}
    off, on = (res[r]["methods"]["unetnas"] for r in ("off", "standing"))
    assert on["spent_mean"] > off["spent_mean"] and on["runs_mean"] > off["runs_mean"]
    assert on["final_regret_mean"] <= off["final_regret_mean"] + 1e-12
    assert SC.main(["--rules", "bogus"]) == 2 and "--rules 'bogus'" in capsys.readouterr().err


def test_bracket_types_ablation_runs_each_fixed_cycle(held_bench, capsys) -> None:
    """`python -m bench bracket-types`: unetnas with Hyperband's cycle and with every bracket at the last rung (each
    candidate trained once, straight to the full horizon: as many runs as candidates), side by side."""
    from bench import bracket_types as BT

    path = str(held_bench.table.path)
    assert BT.main(["--table", path, "--seeds", "2", "--tuning", "--cycles", f"0+1+2,{held_bench.top}"]) == 0
    out = capsys.readouterr().out
    assert "| 0+1+2 |" in out and f"| {held_bench.top} |" in out and "ratio to 0+1+2" in out and "TUNING" in out
    top = BT.run_cycle((held_bench.top,), ["--table", path, "--seeds", "2", "--tuning"])["methods"]["unetnas"]
    hb = BT.run_cycle((0, 1, 2)[: held_bench.top + 1], ["--table", path, "--seeds", "2", "--tuning"])
    assert top["runs_mean"] < hb["methods"]["unetnas"]["runs_mean"]  # no lower rungs: one run per candidate
