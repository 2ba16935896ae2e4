"""Method comparison: Passing–Bablok, Deming, bias at a decision level, acceptance."""

from __future__ import annotations

import math

import numpy as np
import pytest

from qcwx.qcstats.regression import (
    _t_quantile,
    bias_at_decision_level,
    comparison_acceptance,
    deming,
    passing_bablok,
)

X = [1.0, 2.1, 2.9, 4.2, 5.0, 6.1, 7.0, 8.2, 8.9, 10.1]
Y = [1.1, 2.0, 3.2, 4.5, 5.1, 6.5, 7.2, 8.8, 9.4, 10.9]


def test_passing_bablok_reproduces_spec_example():
    r = passing_bablok(X, Y)
    assert r.slope == pytest.approx(1.069444, abs=1e-6)
    assert r.intercept == pytest.approx(-0.007639, abs=1e-6)
    assert (r.n, r.n_slopes, r.k) == (10, 45, 0)
    lo, hi = r.slope_ci
    assert lo < r.slope < hi
    assert r.intercept_ci[0] < r.intercept < r.intercept_ci[1]


def test_passing_bablok_ci_uses_rank_offsets():
    # n = 10, N = 45: C = 1.96·√(10·9·25/18) = 21.91, M1 = round(11.54) = 12, M2 = 34
    x, y = np.asarray(X), np.asarray(Y)
    i, j = np.triu_indices(10, 1)
    slopes = np.sort((y[j] - y[i]) / (x[j] - x[i]))
    r = passing_bablok(X, Y)
    assert r.slope_ci == (slopes[11], slopes[33])
    assert r.intercept_ci[0] == pytest.approx(np.median(y - slopes[33] * x))


def test_passing_bablok_exact_line():
    x = np.arange(1.0, 21.0)
    r = passing_bablok(x, 2 * x + 1)
    assert (r.slope, r.intercept) == (2.0, 1.0)
    assert r.slope_ci == (2.0, 2.0)


def test_passing_bablok_drops_identical_points_and_minus_one_slopes():
    # (1,1) twice: both differences 0 → dropped; (2,3)-(3,2) has slope exactly −1 → dropped
    x = [1.0, 1.0, 2.0, 3.0, 4.0]
    y = [1.0, 1.0, 3.0, 2.0, 4.0]
    r = passing_bablok(x, y)
    assert r.n_slopes == 10 - 1 - 1
    assert r.k == 0


def test_passing_bablok_equal_x_gives_signed_infinite_slopes():
    x = [1.0, 2.0, 2.0, 3.0, 4.0, 5.0]
    y = [1.0, 1.9, 2.2, 3.1, 3.9, 5.0]
    r = passing_bablok(x, y)  # the pair at x = 2 gives +inf, still usable
    assert math.isfinite(r.slope) and r.n_slopes == 15


def test_passing_bablok_shifted_median_with_negative_slopes():
    x = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]
    y = [2.0, 1.0, 3.5, 3.0, 5.5, 5.0, 7.0]
    r = passing_bablok(x, y)
    s = []
    for a in range(7):
        for b in range(a + 1, 7):
            v = (y[b] - y[a]) / (x[b] - x[a])
            if v != -1:
                s.append(v)
    s = sorted(s)
    k = sum(v < -1 for v in s)
    n = len(s)
    expected = s[(n + 1) // 2 + k - 1] if n % 2 else (s[n // 2 + k - 1] + s[n // 2 + k]) / 2
    assert (r.k, r.slope) == (k, expected)


@pytest.mark.parametrize("x, y", [([1, 2], [1, 2]), ([1, 2, 3], [1, 2]),
                                  ([1, 2, np.nan], [1, 2, 3]), ([2, 2, 2], [1, 1, 1])])
def test_passing_bablok_rejects_bad_input(x, y):
    with pytest.raises(ValueError):
        passing_bablok(x, y)


def test_deming_reproduces_spec_example():
    r = deming(X, Y)
    assert r.slope == pytest.approx(1.073974, abs=1e-6)
    assert r.intercept == pytest.approx(-0.090554, abs=1e-6)
    assert r.error_ratio == 1.0 and r.n == 10
    assert r.slope_ci[0] < r.slope < r.slope_ci[1]
    half = (r.slope_ci[1] - r.slope_ci[0]) / 2
    assert half == pytest.approx(_t_quantile(0.975, 8) * r.slope_se)


def test_deming_jackknife_se_matches_leave_one_out_definition():
    x, y = np.asarray(X), np.asarray(Y)
    loo = np.array([deming(np.delete(x, i), np.delete(y, i)).slope for i in range(10)])
    se = math.sqrt(9 / 10 * np.sum((loo - loo.mean()) ** 2))
    assert deming(X, Y).slope_se == pytest.approx(se, rel=1e-12)


def test_deming_error_ratio_limits_approach_ordinary_least_squares():
    x, y = np.asarray(X), np.asarray(Y)
    ols_y_on_x = np.polyfit(x, y, 1)[0]
    ols_x_on_y = 1 / np.polyfit(y, x, 1)[0]
    assert deming(X, Y, error_ratio=1e-9).slope == pytest.approx(ols_y_on_x, rel=1e-6)
    assert deming(X, Y, error_ratio=1e9).slope == pytest.approx(ols_x_on_y, rel=1e-6)
    with pytest.raises(ValueError):
        deming(X, Y, error_ratio=0)


@pytest.mark.parametrize("p, df, expected", [
    (0.975, 1, 12.706205), (0.975, 2, 4.302653), (0.975, 8, 2.306004), (0.975, 30, 2.042272),
    (0.995, 120, 2.617421)])
def test_student_t_quantile(p, df, expected):
    assert _t_quantile(p, df) == pytest.approx(expected, abs=1e-6)


def test_bias_at_decision_level():
    r = bias_at_decision_level(slope=1.05, intercept=-0.1, xc=5.0, allowable_bias=3.0)
    assert r.predicted == pytest.approx(5.15)
    assert r.bias_abs == pytest.approx(0.15)
    assert r.bias_pct == pytest.approx(3.0)
    assert bias_at_decision_level(1.05, -0.1, 5.0).acceptable is None
    assert bias_at_decision_level(1.0, 0.1, 5.0, allowable_bias=1.9).acceptable is False
    with pytest.raises(ValueError):
        bias_at_decision_level(1.0, 0.0, 0.0)


@pytest.mark.parametrize("n_within, n, accepted", [(8, 10, True), (7, 10, False),
                                                    (12, 15, True), (11, 15, False)])
def test_acceptance_needs_80_percent_of_pairs_within_allowable_bias(n_within, n, accepted):
    x = np.full(n, 10.0)
    y = np.where(np.arange(n) < n_within, 10.5, 10.6)  # 5% within, 6% outside a 5% limit
    r = comparison_acceptance(x, y, allowable_bias=5.0)
    assert (r.n, r.n_within, r.accepted) == (n, n_within, accepted)


def test_acceptance_rejects_zero_reference_values():
    with pytest.raises(ValueError):
        comparison_acceptance([0.0, 1.0], [0.0, 1.0], 5.0)
