"""F-test and Welch's t against published table values and an independent numerical integral."""

from __future__ import annotations

import math

import numpy as np
import pytest

from qcwx.analytics.significance import betainc, f_test, t_two_sided_p, welch_t


def t_pdf(x, df):
    logc = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    return np.exp(logc - (df + 1) / 2 * np.log1p(x * x / df))


def f_pdf(x, d1, d2):
    logc = (math.lgamma((d1 + d2) / 2) - math.lgamma(d1 / 2) - math.lgamma(d2 / 2)
            + d1 / 2 * math.log(d1 / d2))
    return np.exp(logc + (d1 / 2 - 1) * np.log(x) - (d1 + d2) / 2 * np.log1p(d1 * x / d2))


def integral(fn, lo, hi, n=400_001):
    x = np.linspace(lo, hi, n)
    return float(np.trapezoid(fn(x), x))


@pytest.mark.parametrize(("t", "df"), [(2.2281388519649385, 10), (3.182446305284263, 3),
                                       (1.959963984540054, 1e7)])
def test_t_critical_values_give_p_005(t, df):
    # Published two-sided 5 % critical values of Student's t (df 10, 3, and the normal limit).
    assert t_two_sided_p(t, df) == pytest.approx(0.05, abs=1e-7)


@pytest.mark.parametrize(("t", "df"), [(0.7, 4.37), (2.9, 13.6), (1.3, 1.5)])
def test_t_tail_matches_a_numerical_integral_of_the_density(t, df):
    # P(|T| ≥ t) = 1 − 2∫₀ᵗ pdf (fractional df, as Welch's ν is).
    expected = 1 - 2 * integral(lambda x: t_pdf(x, df), 0.0, t)
    assert t_two_sided_p(t, df) == pytest.approx(expected, abs=1e-8)


@pytest.mark.parametrize(("f", "d1", "d2", "p_upper"), [
    (4.236085, 5, 10, 0.025), (3.490294819497605, 3, 12, 0.05), (2.978237016, 10, 10, 0.05)])
def test_f_critical_values(f, d1, d2, p_upper):
    # Published upper critical values F(1 − p; d1, d2); two-sided p doubles the tail.
    r = f_test(d2 + 1, 1.0, d1 + 1, math.sqrt(f))
    assert (r.df1, r.df2) == (d1, d2)
    assert r.p == pytest.approx(2 * p_upper, abs=2e-6)


def test_f_lower_tail_matches_a_numerical_integral():
    d1, d2, f = 7, 12, 0.45
    lower = integral(lambda x: f_pdf(x, d1, d2), 1e-12, f)
    r = f_test(d2 + 1, 1.0, d1 + 1, math.sqrt(f))
    assert r.p == pytest.approx(2 * lower, abs=1e-6)


def test_welch_by_hand():
    # n₁ = 12, x̄₁ = 5.20, s₁ = 0.15; n₂ = 8, x̄₂ = 5.05, s₂ = 0.30.
    v1, v2 = 0.15 ** 2 / 12, 0.30 ** 2 / 8
    t = -0.15 / math.sqrt(v1 + v2)
    df = (v1 + v2) ** 2 / (v1 ** 2 / 11 + v2 ** 2 / 7)
    r = welch_t(12, 5.20, 0.15, 8, 5.05, 0.30)
    assert r.t == pytest.approx(t, rel=1e-12) and r.df == pytest.approx(df, rel=1e-12)
    assert r.p == pytest.approx(1 - 2 * integral(lambda x: t_pdf(x, df), 0.0, abs(t)),
                                abs=1e-8)


def test_betainc_symmetry_and_edges():
    assert betainc(2.5, 1.5, 0.3) == pytest.approx(1 - betainc(1.5, 2.5, 0.7), abs=1e-14)
    assert betainc(1, 1, 0.37) == pytest.approx(0.37, abs=1e-14)  # uniform
    assert betainc(3, 4, 0.0) == 0.0 and betainc(3, 4, 1.0) == 1.0


@pytest.mark.parametrize("args", [(1, 1.0, 5, 1.0), (5, 0.0, 5, 1.0), (5, float("nan"), 5, 1)])
def test_bad_inputs_raise(args):
    with pytest.raises(ValueError):
        f_test(*args)
