"""Multi-objective promotion (unetnas.search.promotion): non-dominated sorting and crowding on hand-made points.

All objectives are minimised here, as the search passes them (alignment negated).
"""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from unetnas.search.promotion import crowding, dominates, fronts, pareto, rank

INF = float("inf")


def test_dominates_needs_no_worse_everywhere_and_better_somewhere() -> None:
    assert dominates((1, 1), (2, 2))
    assert dominates((1, 2), (1, 3))  # equal in one objective, better in the other
    assert not dominates((1, 2), (1, 2))  # equal points do not dominate each other
    assert not dominates((1, 3), (2, 2))  # a trade-off
    assert not dominates((2, 2), (1, 1))
    assert dominates((0, 0, 0), (0, 0, 1)) and not dominates((0, 0, 1), (0, 1, 0))


def test_fronts_two_objectives_with_ties() -> None:
    pts = [(1, 5), (2, 3), (4, 1), (3, 4), (5, 5), (2, 3), (1, 6)]
    # (2,3) twice: identical points are both non-dominated; (1,6) is dominated by (1,5) (tie in the first objective)
    assert fronts(pts) == [[0, 1, 2, 5], [3, 6], [4]]
    assert pareto(pts) == [0, 1, 2, 5]


def test_fronts_three_objectives() -> None:
    pts = [
        (0, 9, 9),  # best in objective 0
        (9, 0, 9),  # best in objective 1
        (9, 9, 0),  # best in objective 2
        (5, 5, 5),  # balanced: dominated by none of the three above
        (6, 6, 6),  # dominated by (5,5,5) only
        (9, 9, 9),  # dominated by everything else
    ]
    assert fronts(pts) == [[0, 1, 2, 3], [4], [5]]
    # the same points in the first two objectives only: (9,9) twice, now behind (6,6)
    assert fronts([p[:2] for p in pts]) == [[0, 1, 3], [4], [2, 5]]


def test_empty_and_single() -> None:
    assert fronts([]) == [] and pareto([]) == [] and rank([]) == []
    assert fronts([(3, 1)]) == [[0]] and pareto([(3, 1)]) == [0] and rank([(3, 1)]) == [0]
    assert crowding([(3, 1)], [0]) == {0: INF}


def test_crowding_boundaries_infinite_interior_normalised() -> None:
    line = [(0, 3), (1, 2), (2, 1), (3, 0)]
    d = crowding(line, [0, 1, 2, 3])
    assert d[0] == d[3] == INF
    # interior: per objective (next - previous) / (max - min) = 2/3, summed over 2 objectives
    assert math.isclose(d[1], 4 / 3) and math.isclose(d[2], 4 / 3)
    # a point crowded by close neighbours gets less distance than one with far neighbours
    uneven = [(0, 10), (1, 9), (2, 8), (10, 0)]
    d = crowding(uneven, [0, 1, 2, 3])
    assert d[1] < d[2] < INF
    # two points or fewer: all boundaries
    assert crowding(line, [1, 2]) == {1: INF, 2: INF}


def test_crowding_skips_constant_objectives() -> None:
    pts = [(0, 5, 1), (1, 5, 1), (2, 5, 1)]  # objectives 1 and 2 constant: only objective 0 spreads them
    d = crowding(pts, [0, 1, 2])
    assert d[0] == d[2] == INF and math.isclose(d[1], 1.0)


def test_rank_front_first_then_boundary_before_interior() -> None:
    pts = [
        (1.5, 1.5),  # 0: front 0, interior
        (0.0, 3.0),  # 1: front 0, boundary
        (3.0, 0.0),  # 2: front 0, boundary
        (1.0, 2.0),  # 3: front 0, interior, crowded between 1 and 0
        (4.0, 4.0),  # 4: front 1 (dominated by all of front 0)
        (2.0, 2.5),  # 5: front 1 (dominated by 0)
    ]
    order = rank(pts)
    assert sorted(order) == list(range(len(pts)))
    assert set(order[:4]) == {0, 1, 2, 3} and set(order[4:]) == {4, 5}
    assert order[:2] == [1, 2]  # boundaries (infinite distance) first, ties by index
    d = crowding(pts, [0, 1, 2, 3])
    assert order[2:4] == sorted([0, 3], key=lambda i: -d[i])
    assert d[order[2]] >= d[order[3]]


def test_rank_of_identical_points_is_one_front() -> None:
    pts = [(1, 1)] * 4
    assert fronts(pts) == [[0, 1, 2, 3]] and pareto(pts) == [0, 1, 2, 3]
    assert sorted(rank(pts)) == [0, 1, 2, 3]


points = st.lists(st.tuples(*[st.integers(0, 5)] * 3), min_size=0, max_size=12)


@settings(max_examples=150, deadline=None)
@given(points)
def test_fronts_partition_and_order(pts) -> None:
    fs = fronts(pts)
    flat = [i for f in fs for i in f]
    assert sorted(flat) == list(range(len(pts)))  # a partition
    for k, f in enumerate(fs):
        later = [i for g in fs[k:] for i in g]
        for i in f:  # nothing in this or a later front dominates a member of this front
            assert not any(dominates(pts[j], pts[i]) for j in later)
            if k > 0:  # and something in the previous front does
                assert any(dominates(pts[j], pts[i]) for j in fs[k - 1])
    brute = [i for i in range(len(pts)) if not any(dominates(pts[j], pts[i]) for j in range(len(pts)))]
    assert pareto(pts) == brute
    order = rank(pts)
    assert sorted(order) == list(range(len(pts)))
    front_of = {i: k for k, f in enumerate(fs) for i in f}
    assert [front_of[i] for i in order] == sorted(front_of[i] for i in order)  # fronts in order
