"""The peers' own schedulers (bench/peers/: Syne Tune MOASHA/ASHA/BOHB, SMAC3's multi-fidelity facade, DEHB) on a
synthetic held-out ground truth of space/tiny.yaml under trials/short.yaml (tests/gt_tables.py). Each peer is the
real package driven through its ask/tell or scheduler API; nothing is mocked. The peer tests skip where the packages
are not installed (they live in .venv-peers: scripts/setup_peers.sh); the encoding and accounting tests run anywhere.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from gt_tables import RECIPE as REPLAY_RECIPE
from gt_tables import SPACE as REPLAY_SPACE
from gt_tables import make_table

from bench import peers as P
from bench import search_efficiency as SE
from bench.baselines import Runner, Trace, make_bench
from bench.peers.common import WORST, Encoding, Replay, Spent
from unetnas.io import load_space
from unetnas.search.promotion import dominates
from unetnas.search.replay import GroundTruth

ROOT = Path(__file__).resolve().parents[1]
SPACE, RECIPE = ROOT / "space" / "tiny.yaml", ROOT / "trials" / "short.yaml"


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    path = make_table(tmp_path_factory.mktemp("gtp") / "tiny2.json", SPACE, RECIPE, n_runs=2, seed_sd=0.02)
    return make_bench(GroundTruth.load(path))


def test_encoding_maps_every_member_and_only_members_back() -> None:
    """Every member of a space with 2- and 3-level members is reachable from the categorical encoding."""
    sp = load_space(REPLAY_SPACE)
    enc = Encoding(sp)
    assert {"base_channels", "channel_mult", "level_0", "level_1", "level_2", "layers_per_block", "mid"} == set(
        enc.params
    )
    n = 0
    for m in sp.enumerate():
        config = {k: v[0] for k, v in enc.params.items()} | {k: str(v) for k, v in sp.params_of(m).items()}
        assert enc.spec(config).model_dump(exclude={"name"}) == m.model_dump(exclude={"name"})
        n += 1
    assert n == sp.size() > 100
    assert REPLAY_RECIPE.exists()


def test_replay_charges_what_the_runner_charges_and_nothing_twice(bench) -> None:
    rep = Replay(bench, 100, "check")
    assert rep.fidelities == [1, 3, 9] and [rep.rung_of(f) for f in (1, 2.9, 3, 5.5, 9, 27)] == [0, 1, 1, 2, 2, 2]
    m = bench.members[5]
    config = {k: v[0] for k, v in rep.encoding.params.items()} | {
        k: str(v) for k, v in bench.space.params_of(m).items()
    }
    loss = rep.evaluate(config, 9)
    t = Trace("x", 100)
    Runner(bench, 100, t).rung(m, bench.top)
    assert math.isclose(rep.runner.spent, t.spent, rel_tol=1e-12) and rep.trace.measured == t.measured
    assert loss == -rep.scalar(rep.runner.records[bench.table.design(m).id][bench.top])
    spent = rep.runner.spent
    assert rep.evaluate(config, 9) == loss and rep.runner.spent == spent and rep.free == 1  # answered, free
    blind = {k: v[0] for k, v in rep.encoding.params.items()} | {
        "level_0": "none-0",
        "level_1": "none-0",
        "mid": "none-0",
    }
    assert bench.space.feasible(rep.encoding.spec(blind)) is not None  # text-blind: not a member
    assert rep.evaluate(blind, 9) == WORST and rep.runner.spent == spent and rep.free == 2
    rep.runner.budget = spent  # nothing left: the next paid rung ends the search
    with pytest.raises(Spent):
        rep.evaluate({**config, "base_channels": "32"}, 1)


def test_a_missing_peer_package_is_one_line(bench, capsys, assert_one_line_error) -> None:
    missing = [m for m in P.PEERS if not P.available(m)]
    if not missing:
        pytest.skip("every peer package is installed here")
    code = SE.main(["--table", str(bench.table.path), "--methods", f"unetnas,{missing[0]}"])
    out, err = capsys.readouterr()
    assert_one_line_error(code, out, err, f"--methods='{missing[0]}'", "scripts/setup_peers.sh", quiet=True)


@pytest.mark.parametrize("name", list(P.PEERS))
def test_peer_searches_within_budget_with_early_stopping_and_same_seed_same_trace(bench, name) -> None:
    pytest.importorskip(P.PEERS[name][2])
    run = P.method(name)
    t = run(bench, 100)
    flops = [f for f, _ in t.events]
    assert flops == sorted(flops) and 0 < t.spent <= bench.budget, name
    assert t.measured and t.runs > len(t.measured), name  # multi-fidelity: some designs stopped below the top
    answer = t.events[-1][1]
    pts = {d: (-a, g) for d, (a, g) in t.measured.items()}
    assert set(answer) <= set(pts) and not any(dominates(pts[o], pts[d]) for d in answer for o in pts), name
    again = run(bench, 100)
    assert again.events == t.events and again.measured == t.measured, name  # seeded: reproducible
    sc = SE.Scorer(bench, "held-out", 100)
    assert 0 <= sc.regret(answer, noise=True) <= sc.regret(answer) <= 1, name
