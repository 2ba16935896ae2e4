"""Significance of a change between two periods: F-test of variances, Welch's t of means.

Why here and not scipy: scipy is not a dependency of qcwx and two distribution functions do
not justify one. Both tests need only the regularised incomplete beta function I_x(a, b),
computed by its continued fraction (modified Lentz; Numerical Recipes 3rd ed. §6.4,
Abramowitz & Stegun 26.5.8), with the symmetry I_x(a, b) = 1 − I_{1−x}(b, a) where the
fraction converges slowly. Pure functions on summary statistics (n, mean, SD), so the
period comparison needs no raw results. No Flask, no database.

* Student's t with ν degrees of freedom (ν real, Welch's ν is not an integer):
  P(|T| ≥ t) = I_{ν/(ν+t²)}(ν/2, 1/2)   (A&S 26.7.1 with 26.5.27).
* F with (d₁, d₂): P(F ≤ f) = I_{d₁f/(d₁f+d₂)}(d₁/2, d₂/2)   (A&S 26.6.2);
  two-sided p = 2·min(P(F ≤ f), P(F ≥ f)).
* Welch (1947): t = (x̄₂ − x̄₁)/√(s₁²/n₁ + s₂²/n₂),
  ν = (s₁²/n₁ + s₂²/n₂)² / [(s₁²/n₁)²/(n₁ − 1) + (s₂²/n₂)²/(n₂ − 1)].
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["FTest", "WelchT", "betainc", "f_test", "t_two_sided_p", "welch_t"]

_EPS = 1e-15
_TINY = 1e-300
_MAX_ITER = 10_000


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of I_x(a, b) by the modified Lentz method (NR §6.4)."""
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    for m in range(1, _MAX_ITER):
        m2 = 2 * m
        for aa in (m * (b - m) * x / ((qam + m2) * (a + m2)),
                   -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > _TINY else _TINY)
            c = 1.0 + aa / c
            c = c if abs(c) > _TINY else _TINY
            h *= d * c
        if abs(d * c - 1.0) < _EPS:
            return h
    raise ValueError("incomplete beta: continued fraction did not converge")


def betainc(a: float, b: float, x: float) -> float:
    """Return the regularised incomplete beta function I_x(a, b) for a, b > 0, 0 ≤ x ≤ 1."""
    if not (a > 0 and b > 0) or not 0.0 <= x <= 1.0:
        raise ValueError("betainc needs a, b > 0 and 0 <= x <= 1")
    if x in (0.0, 1.0):
        return x
    log_front = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                 + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _betacf(b, a, 1.0 - x) / b


def t_two_sided_p(t: float, df: float) -> float:
    """Return P(|T| ≥ |t|) for Student's t with ``df`` (> 0, may be fractional)."""
    if not df > 0:
        raise ValueError("df must be positive")
    return betainc(df / 2.0, 0.5, df / (df + t * t))


def f_cdf(f: float, df1: float, df2: float) -> float:
    """Return P(F ≤ f) for the F distribution with (df1, df2)."""
    if f <= 0:
        return 0.0
    return betainc(df1 / 2.0, df2 / 2.0, df1 * f / (df1 * f + df2))


@dataclass(frozen=True)
class FTest:
    """Two-sided F-test of σ₂² = σ₁²: F = s₂²/s₁² on (n₂ − 1, n₁ − 1) degrees of freedom."""

    f: float
    df1: int
    df2: int
    p: float


@dataclass(frozen=True)
class WelchT:
    """Welch's two-sided t-test of μ₂ = μ₁ (unequal variances)."""

    diff: float
    t: float
    df: float
    p: float


def _check(n: int, sd: float, name: str) -> None:
    if n < 2:
        raise ValueError(f"{name}: need at least 2 results, got {n}")
    if not (math.isfinite(sd) and sd >= 0):
        raise ValueError(f"{name}: SD must be a non-negative number")


def f_test(n1: int, sd1: float, n2: int, sd2: float) -> FTest:
    """Return the two-sided F-test of the second period's variance against the first's.

    Examples
    --------
    >>> r = f_test(11, 1.0, 6, math.sqrt(4.236085))  # F(0.975; 5, 10) = 4.236085
    >>> round(r.p, 4)
    0.05
    """
    _check(n1, sd1, "period 1")
    _check(n2, sd2, "period 2")
    if sd1 == 0:
        raise ValueError("period 1: SD is 0, the F ratio is undefined")
    f = (sd2 * sd2) / (sd1 * sd1)
    lower = f_cdf(f, n2 - 1, n1 - 1)
    return FTest(f, n2 - 1, n1 - 1, min(1.0, 2.0 * min(lower, 1.0 - lower)))


def welch_t(n1: int, mean1: float, sd1: float, n2: int, mean2: float, sd2: float) -> WelchT:
    """Return Welch's t-test of the second period's mean against the first's.

    Examples
    --------
    >>> r = welch_t(10, 5.0, 0.1, 10, 5.1, 0.1)  # equal n and SD: ν = 18
    >>> round(r.t, 6), round(r.df, 6)
    (2.236068, 18.0)
    """
    _check(n1, sd1, "period 1")
    _check(n2, sd2, "period 2")
    v1, v2 = sd1 * sd1 / n1, sd2 * sd2 / n2
    if v1 + v2 == 0:
        raise ValueError("both periods have SD 0: the t statistic is undefined")
    diff = mean2 - mean1
    t = diff / math.sqrt(v1 + v2)
    df = (v1 + v2) ** 2 / (v1 * v1 / (n1 - 1) + v2 * v2 / (n2 - 1))
    return WelchT(diff, t, df, t_two_sided_p(t, df))
