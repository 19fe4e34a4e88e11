"""Multi-objective ranking of a rung's results (MO-ASHA's promotion order), aware of measurement noise.

Objectives are given as vectors to MINIMISE (callers negate what they maximise), each with a standard error (0 for
exact quantities such as GMACs). ``rank`` orders points by non-dominated fronts in which a difference within
``Z`` standard errors of the difference (``Z x sqrt(se_a^2 + se_b^2)``) is a tie, not a ranking; inside a front,
by exclusive hypervolume contribution (larger first: the point whose loss would shrink the front most, as in
SMS-EMOA, Beume et al. 2007); exact ties by the values themselves (first objective first), then by the caller's
keys. Nothing is ordered by trial number. MO-ASHA (Schmucker et al. 2021) promotes the first 1/eta of this order.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Sequence

Z = 2.0  # differences within Z standard errors of the difference are ties (about a 95% two-sided test)


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """Plain Pareto dominance (minimisation): no worse everywhere and better somewhere."""
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


def dominates_within_noise(
    a: Sequence[float], b: Sequence[float], sa: Sequence[float], sb: Sequence[float], z: float = Z
) -> bool:
    """``a`` dominates ``b`` when it is not worse beyond noise in any objective and better beyond noise in one:
    objective m differs only when ``|a_m - b_m| > z x sqrt(sa_m^2 + sb_m^2)``."""
    better = False
    for x, y, s, t in zip(a, b, sa, sb):
        tol = z * math.hypot(s, t)
        if x - y > tol:
            return False
        if y - x > tol:
            better = True
    return better


def fronts(points: Sequence[Sequence[float]], dom: Callable[[int, int], bool] | None = None) -> list[list[int]]:
    """Indices grouped into fronts, best first; ``dom(i, j)``: point i dominates point j (default: plain)."""
    dom = dom or (lambda i, j: dominates(points[i], points[j]))
    remaining = list(range(len(points)))
    out: list[list[int]] = []
    while remaining:
        front = [i for i in remaining if not any(dom(j, i) for j in remaining if j != i)]
        out.append(front)
        remaining = [i for i in remaining if i not in front]
    return out


def pareto(points: Sequence[Sequence[float]]) -> list[int]:
    """Indices of the non-dominated points (plain dominance), in input order."""
    return fronts(points)[0] if points else []


def hypervolume(points: Sequence[Sequence[float]], ref: Sequence[float]) -> float:
    """Volume dominated by ``points`` and bounded by ``ref`` (minimisation); exact, by slicing the last objective
    (Hypervolume by Slicing Objectives, While et al. 2006), with a sweep in 2-D. Meant for rung-sized sets."""
    pts = [tuple(p) for p in points if all(x < r for x, r in zip(p, ref))]
    if not pts:
        return 0.0
    if len(ref) == 1:
        return ref[0] - min(p[0] for p in pts)
    if len(ref) == 2:
        area, best_y = 0.0, ref[1]
        for x, y in sorted(pts):
            if y < best_y:
                area += (ref[0] - x) * (best_y - y)
                best_y = y
        return area
    pts.sort(key=lambda p: p[-1])
    total = 0.0
    for i, p in enumerate(pts):
        upper = pts[i + 1][-1] if i + 1 < len(pts) else ref[-1]
        if upper > p[-1]:
            total += (upper - p[-1]) * hypervolume([q[:-1] for q in pts[: i + 1]], ref[:-1])
    return total


def contributions(points: Sequence[Sequence[float]], ref: Sequence[float]) -> list[float]:
    """Exclusive hypervolume contribution of each point: HV(all) - HV(all but it)."""
    whole = hypervolume(points, ref)
    return [whole - hypervolume([p for j, p in enumerate(points) if j != i], ref) for i in range(len(points))]


def reference_point(points: Sequence[Sequence[float]]) -> list[float]:
    """Worst value of each objective plus a tenth of its range (plus 1 where all values are equal), so boundary
    points contribute finite, comparable volumes."""
    out = []
    for m in range(len(points[0])):
        col = [p[m] for p in points]
        span = max(col) - min(col)
        out.append(max(col) + (0.1 * span if span > 0 else 1.0))
    return out


def rank(
    points: Sequence[Sequence[float]],
    se: Sequence[Sequence[float]] | None = None,
    keys: Sequence[Hashable] | None = None,
    z: float = Z,
) -> list[int]:
    """All indices, best first: noise-aware fronts, then hypervolume contribution, then the values, then ``keys``.

    ``se[i]`` holds point i's standard error per objective (None: all exact).
    """
    if not points:
        return []
    se = se or [[0.0] * len(points[0]) for _ in points]
    ref = reference_point(points)
    order: list[int] = []
    for front in fronts(points, lambda i, j: dominates_within_noise(points[i], points[j], se[i], se[j], z)):
        contrib = dict(zip(front, contributions([points[i] for i in front], ref)))
        order += sorted(front, key=lambda i: (-contrib[i], tuple(points[i]), keys[i] if keys else 0))
    return order
