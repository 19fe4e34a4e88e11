"""Multi-objective promotion: non-dominated sorting with crowding distance (NSGA-II's order), as MOASHA does.

Optuna cannot prune multi-objective studies, so the search ranks each rung's results itself: the best 1/eta by
this order move up. Objectives are given as vectors to MINIMISE (callers negate what they maximise).
"""

from __future__ import annotations

from collections.abc import Sequence


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


def fronts(points: Sequence[Sequence[float]]) -> list[list[int]]:
    """Indices grouped into Pareto fronts, best first."""
    remaining = list(range(len(points)))
    out: list[list[int]] = []
    while remaining:
        front = [i for i in remaining if not any(dominates(points[j], points[i]) for j in remaining if j != i)]
        out.append(front)
        remaining = [i for i in remaining if i not in front]
    return out


def crowding(points: Sequence[Sequence[float]], front: list[int]) -> dict[int, float]:
    """NSGA-II crowding distance within one front (boundary points get infinity)."""
    dist = {i: 0.0 for i in front}
    if len(front) <= 2:
        return {i: float("inf") for i in front}
    for m in range(len(points[front[0]])):
        order = sorted(front, key=lambda i: points[i][m])
        lo, hi = points[order[0]][m], points[order[-1]][m]
        dist[order[0]] = dist[order[-1]] = float("inf")
        if hi == lo:
            continue
        for a, i, b in zip(order, order[1:], order[2:]):
            dist[i] += (points[b][m] - points[a][m]) / (hi - lo)
    return dist


def rank(points: Sequence[Sequence[float]]) -> list[int]:
    """All indices, best first: by front, then by crowding distance (larger first), then by index."""
    order: list[int] = []
    for front in fronts(points):
        d = crowding(points, front)
        order += sorted(front, key=lambda i: (-d[i], i))
    return order


def pareto(points: Sequence[Sequence[float]]) -> list[int]:
    return fronts(points)[0] if points else []
