"""Scaling-law fits: known constants recovered from noisy synthetic data, refusals of data too few or too flat."""

from __future__ import annotations

import math

import numpy as np
import pytest

from unetnas.report.fit import FitRefused, fit_isoflops, fit_power_law, isoflop_curve


@pytest.mark.parametrize(
    ("a", "b", "noise"),
    [
        (2.5, 0.5, 0.05),  # a steep law, 5% multiplicative noise
        (0.05, 0.08, 0.005),  # alignment-like: S = 0.05 C^0.08 over 6 decades of FLOPs, 0.5% noise
        (3e4, -0.3, 0.03),  # a falling law (loss-like)
    ],
)
def test_power_law_recovers_known_constants_from_noisy_data(a, b, noise):
    rng = np.random.default_rng(0)
    x = np.logspace(9, 15, 24)
    y = a * x**b * np.exp(rng.normal(0, noise, x.size))
    fit = fit_power_law(x, y, x_name="C", y_name="S")
    assert fit.b == pytest.approx(b, rel=0.02)  # exponent within 2%
    assert fit.b_ci[0] < b < fit.b_ci[1] and fit.a_ci[0] < a < fit.a_ci[1]
    assert fit.n == 24 and fit.r2 > 0.9 and fit.x_range == (pytest.approx(1e9), pytest.approx(1e15))
    y_at, lo, hi = fit.predict(1e16)  # beyond the data: wider, still around the truth
    assert lo < a * 1e16**b < hi and lo < y_at < hi
    assert fit.formula().startswith("S = ") and "cov" not in fit.as_dict()


def test_prediction_interval_widens_away_from_the_data():
    rng = np.random.default_rng(1)
    x = np.logspace(10, 12, 8)
    fit = fit_power_law(x, 0.1 * x**0.1 * np.exp(rng.normal(0, 0.02, 8)))
    widths = [math.log(hi / lo) for _, lo, hi in (fit.predict(c) for c in (1e11, 1e13, 1e15))]
    assert widths[0] < widths[1] < widths[2]


@pytest.mark.parametrize(
    ("xs", "ys", "needle"),
    [
        ([1e9, 1e10], [0.2, 0.3], "too few points: 2 usable"),
        ([1e9, 1e10, 1e11], [0.2, 0.0, -0.1], "too few points: 1 usable (2 non-positive points left out)"),
        ([1e9, 1.2e9, 1.5e9, 1.9e9], [0.2, 0.25, 0.3, 0.31], "too flat in x: it spans a factor 1.9"),
        ([1e9, 1e10, 1e11, 1e12], [0.3, 0.3, 0.3, 0.3], "too flat: y is constant"),
        ([1e9, 1e10, 1e11, 1e12, 1e13], [0.30, 0.32, 0.29, 0.31, 0.30], "too flat: exponent b ="),
    ],
)
def test_fit_refuses_data_too_few_or_too_flat(xs, ys, needle):
    with pytest.raises(FitRefused) as err:
        fit_power_law(xs, ys)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_isoflop_parabola_finds_the_compute_optimal_size():
    # Liang et al.'s shape: loss = c2 (log10 N - log10 N_opt(C))^2 + floor(C), with N_opt = 0.02 C^0.5
    groups = {}
    for c in (1e12, 1e13, 1e14, 1e15):
        n_opt = 0.02 * c**0.5
        sizes = n_opt * np.logspace(-1, 1, 7)
        groups[c] = [(n, 0.3 * (math.log10(n / n_opt)) ** 2 + 1.0 / math.log10(c)) for n in sizes]
    iso = fit_isoflops(groups)
    assert iso.refused is None and [c.n_opt for c in iso.curves] == [
        pytest.approx(0.02 * c**0.5, rel=1e-6) for c in groups
    ]
    assert iso.optimal.b == pytest.approx(0.5, rel=1e-6) and iso.optimal.a == pytest.approx(0.02, rel=1e-5)


def test_isoflop_refuses_without_an_interior_optimum():
    assert "distinct sizes" in isoflop_curve(1e12, [(1e5, 1.0), (2e5, 0.9)]).refused
    falling = isoflop_curve(1e12, [(1e5, 1.0), (2e5, 0.8), (4e5, 0.7), (8e5, 0.65)])
    assert falling.n_opt is None and falling.refused
    one = fit_isoflops({1e12: [(1e5, 1.0), (2e5, 0.8), (4e5, 0.9)]})
    assert one.optimal is None and "1 compute budget" in one.refused
