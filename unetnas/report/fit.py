"""Scaling-law fits of a study: power laws in log-log space and isoFLOP parabolas, with intervals, or a refusal.

- Li et al. (CVPR 2024, "On the Scalability of Diffusion-based Text-to-Image Generation") fit S = a C^b to the
  frontier of (training compute C, alignment S) and S = a N^b against parameters N. Here: ordinary least squares of
  log y on log x (statsmodels ``OLS``); ``b`` and ``log a`` get t-intervals, R^2 is that of the log-log regression,
  and a prediction at a new x gets the t prediction interval of one new observation, mapped back by ``exp``.
- Liang et al. (2024, "Scaling Laws for Diffusion Transformers") fit, per compute budget, a parabola of the loss in
  log N (an isoFLOP curve); its vertex is the compute-optimal size N_opt(C), and N_opt = k C^a across budgets.

Data too few or too flat to support a fit raise ``FitRefused`` with the reason, never a silent poor fit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

MIN_POINTS = 3  # a line with an interval needs one residual degree of freedom
MIN_X_SPAN = 2.0  # max x / min x: below a factor of 2 the slope is an extrapolation of noise
LEVEL = 0.95  # confidence level of every interval


class FitRefused(ValueError):
    """The data cannot support the fit; ``str(err)`` says why in one line."""


@dataclass(frozen=True)
class PowerLawFit:
    """y = a x^b fitted by OLS on (log x, log y).

    ``a_ci``/``b_ci`` are ``level`` confidence intervals; ``r2`` the log-log R^2; ``n`` the points used;
    ``x_range`` the fitted x span. ``cov`` (2x2, over (log a, b)), ``scale`` (residual variance) and ``dof`` make
    ``predict`` self-contained (no statsmodels object kept).
    """

    x_name: str
    y_name: str
    a: float
    b: float
    a_ci: tuple[float, float]
    b_ci: tuple[float, float]
    r2: float
    n: int
    x_range: tuple[float, float]
    level: float
    cov: tuple[tuple[float, float], tuple[float, float]] = field(repr=False)
    scale: float = field(repr=False)
    dof: int = field(repr=False)

    def predict(self, x: float) -> tuple[float, float, float]:
        """(y, lower, upper) at ``x``: the fitted value and the ``level`` prediction interval of one new point."""
        from scipy.stats import t as student_t

        lx = math.log(x)
        mean = math.log(self.a) + self.b * lx
        var_mean = self.cov[0][0] + 2 * lx * self.cov[0][1] + lx * lx * self.cov[1][1]
        half = student_t.ppf(0.5 + self.level / 2, self.dof) * math.sqrt(var_mean + self.scale)
        return math.exp(mean), math.exp(mean - half), math.exp(mean + half)

    def formula(self) -> str:
        return f"{self.y_name} = {self.a:.4g} {self.x_name}^{self.b:.4g}"

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("cov", "scale", "dof"):
            d.pop(k)
        return d


def fit_power_law(
    xs: Sequence[float], ys: Sequence[float], *, x_name: str = "x", y_name: str = "y", level: float = LEVEL
) -> PowerLawFit:
    """Fit y = a x^b on the points with x > 0 and y > 0.

    Raises ``FitRefused`` with fewer than ``MIN_POINTS`` usable points, x spanning less than ``MIN_X_SPAN``, y
    constant, or an exponent whose ``level`` interval includes 0 (no trend: too flat to extrapolate).
    """
    import numpy as np
    import statsmodels.api as sm

    pts = [(float(x), float(y)) for x, y in zip(xs, ys) if x > 0 and y > 0 and math.isfinite(x) and math.isfinite(y)]
    dropped = len(xs) - len(pts)
    note = f" ({dropped} non-positive points left out)" if dropped else ""
    if len(pts) < MIN_POINTS:
        raise FitRefused(f"too few points: {len(pts)} usable{note}, need at least {MIN_POINTS}")
    x = np.array([p[0] for p in pts])
    y = np.array([p[1] for p in pts])
    if x.max() / x.min() < MIN_X_SPAN:
        raise FitRefused(f"too flat in {x_name}: it spans a factor {x.max() / x.min():.3g}, need {MIN_X_SPAN:g}")
    if np.ptp(np.log(y)) < 1e-12:
        raise FitRefused(f"too flat: {y_name} is constant ({y[0]:.4g})")
    res = sm.OLS(np.log(y), sm.add_constant(np.log(x))).fit()
    (la, b) = (float(v) for v in res.params)
    (la_lo, la_hi), (b_lo, b_hi) = (tuple(float(v) for v in row) for row in np.asarray(res.conf_int(1 - level)))
    if res.df_resid < 1 or not math.isfinite(b_lo) or b_lo <= 0 <= b_hi:
        raise FitRefused(
            f"too flat: exponent b = {b:.3g} with {level:.0%} interval [{b_lo:.3g}, {b_hi:.3g}] includes 0 "
            f"({len(pts)} points): no trend to extrapolate"
        )
    cov = np.asarray(res.cov_params())
    return PowerLawFit(
        x_name=x_name,
        y_name=y_name,
        a=math.exp(la),
        b=b,
        a_ci=(math.exp(la_lo), math.exp(la_hi)),
        b_ci=(b_lo, b_hi),
        r2=float(res.rsquared),
        n=len(pts),
        x_range=(float(x.min()), float(x.max())),
        level=level,
        cov=((float(cov[0, 0]), float(cov[0, 1])), (float(cov[1, 0]), float(cov[1, 1]))),
        scale=float(res.scale),
        dof=int(res.df_resid),
    )


@dataclass(frozen=True)
class IsoFlopCurve:
    """One compute budget: y = c2 (log10 N)^2 + c1 log10 N + c0 over the sizes trained to it, and its optimum."""

    budget: float
    points: tuple[tuple[float, float], ...]  # (params N, y)
    coef: tuple[float, float, float] | None = None  # (c2, c1, c0)
    n_opt: float | None = None
    y_opt: float | None = None
    refused: str | None = None


@dataclass(frozen=True)
class IsoFlopFit:
    """isoFLOP curves and, across budgets with an optimum, N_opt = k C^a (``optimal``) or why not."""

    curves: tuple[IsoFlopCurve, ...]
    optimal: PowerLawFit | None
    refused: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "curves": [asdict(c) for c in self.curves],
            "optimal": self.optimal.as_dict() if self.optimal else None,
            "refused": self.refused,
        }


def isoflop_curve(budget: float, points: Sequence[tuple[float, float]], *, minimize: bool = True) -> IsoFlopCurve:
    """Fit the parabola in log10 N for one budget (Liang et al.). The optimum is the vertex; refused (``refused``
    set, no optimum) with fewer than 3 distinct sizes, a parabola opening the wrong way, or a vertex outside the
    sizes tried (the optimum would be an extrapolation)."""
    import numpy as np

    pts = tuple(sorted((float(n), float(v)) for n, v in points if n > 0 and math.isfinite(v)))
    sizes = sorted({p[0] for p in pts})
    if len(sizes) < 3:
        return IsoFlopCurve(budget, pts, refused=f"{len(sizes)} distinct sizes, need 3")
    lx = np.log10([p[0] for p in pts])
    c2, c1, c0 = (float(v) for v in np.polyfit(lx, [p[1] for p in pts], 2))
    if (c2 <= 0) if minimize else (c2 >= 0):
        return IsoFlopCurve(budget, pts, (c2, c1, c0), refused="no interior optimum (parabola opens the wrong way)")
    v = -c1 / (2 * c2)
    if not lx.min() <= v <= lx.max():
        return IsoFlopCurve(budget, pts, (c2, c1, c0), refused=f"optimum N = {10**v:.3g} lies outside the sizes tried")
    return IsoFlopCurve(budget, pts, (c2, c1, c0), n_opt=10**v, y_opt=c0 - c1 * c1 / (4 * c2))


def fit_isoflops(groups: dict[float, Sequence[tuple[float, float]]], *, minimize: bool = True) -> IsoFlopFit:
    """isoFLOP curves for each budget in ``groups`` ({training FLOPs per candidate: [(params, y)]}) and the
    compute-optimal size law N_opt = k C^a across the budgets that have an optimum."""
    curves = tuple(isoflop_curve(c, pts, minimize=minimize) for c, pts in sorted(groups.items()))
    good = [c for c in curves if c.n_opt is not None]
    if len(curves) < 2:
        return IsoFlopFit(curves, None, f"the study spans {len(curves)} compute budget(s), need at least 2")
    try:
        law = fit_power_law([c.budget for c in good], [c.n_opt for c in good], x_name="C", y_name="N_opt")
    except FitRefused as err:
        return IsoFlopFit(curves, None, f"{len(good)} budget(s) with an interior optimum: {err}")
    return IsoFlopFit(curves, law, None)
