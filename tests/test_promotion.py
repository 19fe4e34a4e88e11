"""Multi-objective promotion (unetnas.search.promotion): fronts within noise, hypervolume, the ranking's tie-breaks.

All objectives are minimised here, as the search passes them (alignment negated).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from optuna._hypervolume import compute_hypervolume

from unetnas.search.promotion import (
    Z,
    contributions,
    dominates,
    dominates_within_noise,
    fronts,
    hypervolume,
    pareto,
    rank,
    reference_point,
)


def test_dominates_needs_no_worse_everywhere_and_better_somewhere() -> None:
    assert dominates((1, 1), (2, 2))
    assert dominates((1, 2), (1, 3))  # equal in one objective, better in the other
    assert not dominates((1, 2), (1, 2))  # equal points do not dominate each other
    assert not dominates((1, 3), (2, 2))  # a trade-off
    assert not dominates((2, 2), (1, 1))
    assert dominates((0, 0, 0), (0, 0, 1)) and not dominates((0, 0, 1), (0, 1, 0))


def test_a_difference_within_noise_is_a_tie() -> None:
    se = (0.02, 0.0)  # alignment measured with a standard error, GMACs exact
    # -alignment 0.30 vs 0.33: 0.03 < Z * sqrt(2) * 0.02 = 0.057: a tie in alignment; equal GMACs: no dominance
    assert not dominates_within_noise((-0.33, 1.0), (-0.30, 1.0), se, se)
    assert dominates((-0.33, 1.0), (-0.30, 1.0))  # plain dominance would rank them
    # beyond noise it ranks
    assert dominates_within_noise((-0.40, 1.0), (-0.30, 1.0), se, se)
    # tied in alignment, cheaper: dominates
    assert dominates_within_noise((-0.30, 0.5), (-0.33, 1.0), se, se)
    # the threshold is Z standard errors of the difference
    gap = Z * math.hypot(0.02, 0.02)
    assert not dominates_within_noise((-0.3 - gap * 0.99, 1), (-0.3, 1), se, se)
    assert dominates_within_noise((-0.3 - gap * 1.01, 1), (-0.3, 1), se, se)
    # exact objectives (se 0) reduce to plain dominance
    zero = (0.0, 0.0)
    for a, b in itertools.product([(1, 2), (2, 1), (1, 1), (2, 2)], repeat=2):
        assert dominates_within_noise(a, b, zero, zero) == dominates(a, b)


def test_fronts_two_objectives_with_ties() -> None:
    pts = [(1, 5), (2, 3), (4, 1), (3, 4), (5, 5), (2, 3), (1, 6)]
    assert fronts(pts) == [[0, 1, 2, 5], [3, 6], [4]]
    assert pareto(pts) == [0, 1, 2, 5]
    assert fronts([]) == [] and pareto([]) == [] and rank([]) == []


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(*[st.floats(0, 10, allow_nan=False)] * 2), min_size=1, max_size=9),
    st.lists(st.tuples(*[st.floats(0, 10, allow_nan=False)] * 3), min_size=1, max_size=7),
)
def test_hypervolume_matches_optuna(pts2, pts3) -> None:
    for pts in (pts2, pts3):
        ref = [11.0] * len(pts[0])
        want = compute_hypervolume(np.asarray(pts, dtype=float), np.asarray(ref))
        assert math.isclose(hypervolume(pts, ref), want, rel_tol=1e-9, abs_tol=1e-9)


def test_contributions_are_exclusive_volumes() -> None:
    pts = [(0.0, 2.0), (1.0, 1.0), (2.0, 0.0)]
    c = contributions(pts, [3.0, 3.0])
    assert c == [1.0, 1.0, 1.0]
    c = contributions([(0.0, 2.0), (1.9, 1.9), (2.0, 0.0)], [3.0, 3.0])
    assert math.isclose(c[1], 0.01) and c[0] > c[1] < c[2]  # the crowded middle point adds little
    assert contributions([(1.0, 1.0), (2.0, 2.0)], [3.0, 3.0])[1] == 0.0  # a dominated point adds nothing
    assert reference_point([(0, 5), (10, 5)]) == [11.0, 6.0]


def test_rank_fronts_first_then_hypervolume_contribution() -> None:
    pts = [(-0.30, 1.0), (-0.50, 3.0), (-0.10, 0.2), (-0.20, 2.5)]  # (-alignment, GMACs)
    order = rank(pts)
    assert order[-1] == 3  # dominated by (-0.30, 1.0)
    assert set(order[:3]) == {0, 1, 2}
    ref = reference_point(pts)
    c = contributions([pts[i] for i in (0, 1, 2)], ref)
    assert order[:3] == [i for _, i in sorted(zip([-x for x in c], (0, 1, 2)))]


def test_two_point_fronts_are_ranked_by_contribution_not_by_index() -> None:
    """The case that made the old rule promote the cheapest design whatever its alignment: a front of two points
    (infinite crowding for both). The hypervolume contribution prefers the point that adds more to the front."""
    cheap_bad, dear_good = (-0.10, 1.00), (-0.60, 1.05)  # 5% more GMACs for six times the alignment
    assert rank([cheap_bad, dear_good]) == [1, 0]
    assert rank([dear_good, cheap_bad]) == [0, 1]  # the same whatever the order given


def test_noise_ties_then_contribution() -> None:
    """Within noise, the cheaper design dominates: alignment 0.31 vs 0.30 +- 0.02 is no ranking."""
    pts, se = [(-0.31, 2.0), (-0.30, 1.0)], [(0.02, 0.0), (0.02, 0.0)]
    assert rank(pts, se) == [1, 0]
    assert fronts(pts) == [[0, 1]]  # in plain dominance both are on the front


def test_exact_ties_break_by_values_then_keys_never_by_position() -> None:
    pts = [(1.0, 1.0), (1.0, 1.0), (1.0, 1.0)]
    assert rank(pts, keys=["c", "a", "b"]) == [1, 2, 0]
    assert rank(pts[::-1], keys=["b", "a", "c"]) == [1, 0, 2]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 6)), min_size=1, max_size=10), st.randoms())
def test_rank_is_a_permutation_independent_of_input_order(pts, rnd) -> None:
    keys = [f"k{i}" for i in range(len(pts))]
    order = rank(pts, keys=keys)
    assert sorted(order) == list(range(len(pts)))
    perm = list(range(len(pts)))
    rnd.shuffle(perm)
    shuffled = rank([pts[i] for i in perm], keys=[keys[i] for i in perm])
    assert [perm[i] for i in shuffled] == order
    fs = fronts(pts)
    front_of = {i: k for k, f in enumerate(fs) for i in f}
    assert [front_of[i] for i in order] == sorted(front_of[i] for i in order)  # fronts in order (no noise)
