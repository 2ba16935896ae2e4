"""Method comparison between instruments (QC_SPEC §6; WS/T 407, CLSI EP09).

Passing–Bablok and Deming regression of y (the compared instrument) on x (the reference
instrument), bias at a medical decision level, and the pairwise acceptance rule.

References
----------
Passing H, Bablok W. A new biometrical procedure for testing the equality of measurements
from two different analytical methods. J Clin Chem Clin Biochem 1983;21:709–720.
Linnet K. Evaluation of regression procedures for methods comparison studies. Clin Chem
1993;39:424–432 (Deming with error ratio, jackknife standard errors).
CLSI EP09c, *Measurement Procedure Comparison and Bias Estimation Using Patient Samples*.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "DecisionLevelBias",
    "DemingResult",
    "PairAcceptance",
    "PassingBablokResult",
    "bias_at_decision_level",
    "comparison_acceptance",
    "deming",
    "passing_bablok",
]

_Z95 = 1.96


@dataclass(frozen=True)
class PassingBablokResult:
    """Passing–Bablok fit y = intercept + slope·x with 95% CIs (NaN when n is too small)."""

    slope: float
    intercept: float
    slope_ci: tuple[float, float]
    intercept_ci: tuple[float, float]
    n: int
    n_slopes: int
    k: int


@dataclass(frozen=True)
class DemingResult:
    """Deming fit y = intercept + slope·x with jackknife standard errors and CIs."""

    slope: float
    intercept: float
    slope_ci: tuple[float, float]
    intercept_ci: tuple[float, float]
    slope_se: float
    intercept_se: float
    n: int
    error_ratio: float


@dataclass(frozen=True)
class DecisionLevelBias:
    """Bias of the fitted relation at a decision level X_c, optionally judged."""

    xc: float
    predicted: float
    bias_abs: float
    bias_pct: float
    allowable_bias: float | None = None
    acceptable: bool | None = None


@dataclass(frozen=True)
class PairAcceptance:
    """Share of sample pairs whose relative difference is within the allowable bias."""

    n: int
    n_within: int
    fraction: float
    accepted: bool


def _pairs(x, y, min_n: int) -> tuple[np.ndarray, np.ndarray]:
    xa = np.asarray(x, dtype=np.float64)
    ya = np.asarray(y, dtype=np.float64)
    if xa.ndim != 1 or ya.ndim != 1 or xa.size != ya.size:
        raise ValueError("x and y must be one-dimensional and of equal length")
    if xa.size < min_n:
        raise ValueError(f"need at least {min_n} pairs, got {xa.size}")
    if not (np.all(np.isfinite(xa)) and np.all(np.isfinite(ya))):
        raise ValueError("x and y must contain finite numbers only")
    return xa, ya


def _median(v: np.ndarray) -> float:
    return float(np.median(v))


def passing_bablok(x, y, z: float = _Z95) -> PassingBablokResult:
    """Fit y = a + b·x by Passing–Bablok regression.

    Slopes Sᵢⱼ = (yⱼ − yᵢ)/(xⱼ − xᵢ) over pairs i < j; pairs with both differences 0 and
    slopes of exactly −1 are dropped; xⱼ = xᵢ gives ±∞ by the sign of yⱼ − yᵢ. With the N
    sorted slopes S₍₁₎ ≤ … ≤ S₍N₎ and K = #{S < −1}, b is the median shifted by K:
    S₍(N+1)/2+K₎ (N odd) or ½(S₍N/2+K₎ + S₍N/2+1+K₎) (N even); a = median(yᵢ − b·xᵢ).
    95% CI: C = z·√(n(n−1)(2n+5)/18), M1 = round((N − C)/2) (half up), M2 = N − M1 + 1,
    b ∈ [S₍M1+K₎, S₍M2+K₎], a ∈ [median(y − b_hi·x), median(y − b_lo·x)].

    Parameters
    ----------
    x, y : array_like
        Paired results of the reference (x) and compared (y) instruments, n ≥ 3.
    z : float
        Normal quantile of the CI, 1.96 for 95%.

    References
    ----------
    Passing & Bablok 1983; CLSI EP09c.

    Examples
    --------
    >>> x = [1.0, 2.1, 2.9, 4.2, 5.0, 6.1, 7.0, 8.2, 8.9, 10.1]
    >>> y = [1.1, 2.0, 3.2, 4.5, 5.1, 6.5, 7.2, 8.8, 9.4, 10.9]
    >>> r = passing_bablok(x, y)
    >>> round(r.slope, 6), round(r.intercept, 6)
    (1.069444, -0.007639)
    """
    xa, ya = _pairs(x, y, 3)
    n = xa.size
    i, j = np.triu_indices(n, 1)
    dx, dy = xa[j] - xa[i], ya[j] - ya[i]
    keep = ~((dx == 0) & (dy == 0))
    dx, dy = dx[keep], dy[keep]
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.where(dx != 0, dy / dx, np.where(dy > 0, np.inf, -np.inf))
    s = np.sort(s[s != -1.0])
    big_n, k = s.size, int(np.count_nonzero(s < -1))
    if big_n == 0:
        raise ValueError("no usable pairs: all points coincide")
    half = big_n // 2
    lo_idx, hi_idx = (half + k, half + k) if big_n % 2 else (half - 1 + k, half + k)
    if hi_idx >= big_n:
        raise ValueError("most slopes are < −1: Passing–Bablok needs a positive relationship")
    b = float((s[lo_idx] + s[hi_idx]) / 2)
    if not math.isfinite(b):
        raise ValueError("slope is infinite: x has too few distinct values")
    a = _median(ya - b * xa)
    c = z * math.sqrt(n * (n - 1) * (2 * n + 5) / 18.0)
    m1 = math.floor((big_n - c) / 2 + 0.5)
    m2 = big_n - m1 + 1
    if m1 + k >= 1 and m2 + k <= big_n:
        b_lo, b_hi = float(s[m1 + k - 1]), float(s[m2 + k - 1])
        a_ci = (_median(ya - b_hi * xa), _median(ya - b_lo * xa))
    else:
        b_lo = b_hi = math.nan
        a_ci = (math.nan, math.nan)
    return PassingBablokResult(b, a, (b_lo, b_hi), a_ci, n, big_n, k)


def _deming_fit(x: np.ndarray, y: np.ndarray, lam: float) -> tuple[float, float]:
    mx, my = float(np.mean(x)), float(np.mean(y))
    u = float(np.sum((x - mx) ** 2))
    q = float(np.sum((y - my) ** 2))
    p = float(np.sum((x - mx) * (y - my)))
    if p == 0:
        raise ValueError("x and y are uncorrelated: Deming slope undefined")
    b = ((lam * q - u) + math.sqrt((u - lam * q) ** 2 + 4 * lam * p * p)) / (2 * lam * p)
    return b, my - b * mx


def _t_two_sided_cdf(theta: float, df: int) -> float:
    """P(|T| ≤ t) for Student's t with integer df, θ = arctan(t/√df) (A&S 26.7.3–4)."""
    s, c2 = math.sin(theta), math.cos(theta) ** 2
    if df == 1:
        return 2 * theta / math.pi
    if df % 2 == 0:
        k = np.arange(1, df // 2)
        terms = np.cumprod((2 * k - 1) / (2 * k) * c2)
        return s * (1.0 + float(terms.sum()))
    k = np.arange(1, (df - 1) // 2)
    terms = np.cumprod((2 * k) / (2 * k + 1) * c2)
    return 2 / math.pi * (theta + s * math.cos(theta) * (1.0 + float(terms.sum())))


def _t_quantile(p: float, df: int) -> float:
    """Return the p-quantile (p > 0.5) of Student's t with integer df, by bisection in θ."""
    target = 2 * p - 1
    lo, hi = 0.0, math.pi / 2
    for _ in range(200):
        mid = (lo + hi) / 2
        if mid in (lo, hi):
            break
        lo, hi = (mid, hi) if _t_two_sided_cdf(mid, df) < target else (lo, mid)
    return math.sqrt(df) * math.tan((lo + hi) / 2)


def deming(x, y, error_ratio: float = 1.0, alpha: float = 0.05) -> DemingResult:
    """Fit y = a + b·x by Deming regression with jackknife confidence intervals.

    With u = Σ(x − x̄)², q = Σ(y − ȳ)², p = Σ(x − x̄)(y − ȳ) and λ = σ²(error of x) /
    σ²(error of y) (the EP09 / Linnet error ratio; 1 = equal imprecision):
    b = [(λq − u) + √((u − λq)² + 4λp²)]/(2λp), a = ȳ − b·x̄.
    Jackknife: leave-one-out estimates θ₍₋ᵢ₎, SE = √((n − 1)/n · Σ(θ₍₋ᵢ₎ − θ̄)²),
    CI = θ ± t(1 − α/2, n − 2)·SE around the full-data estimate.

    Parameters
    ----------
    x, y : array_like
        Paired results, n ≥ 3.
    error_ratio : float
        λ, default 1.
    alpha : float
        1 − confidence level, default 0.05.

    References
    ----------
    Linnet 1993; CLSI EP09c.

    Examples
    --------
    >>> x = [1.0, 2.1, 2.9, 4.2, 5.0, 6.1, 7.0, 8.2, 8.9, 10.1]
    >>> y = [1.1, 2.0, 3.2, 4.5, 5.1, 6.5, 7.2, 8.8, 9.4, 10.9]
    >>> r = deming(x, y)
    >>> round(r.slope, 6), round(r.intercept, 6)
    (1.073974, -0.090554)
    """
    xa, ya = _pairs(x, y, 3)
    if not (math.isfinite(error_ratio) and error_ratio > 0):
        raise ValueError("error_ratio must be positive")
    if not 0 < alpha < 1:
        raise ValueError("alpha must be in (0, 1)")
    n = xa.size
    b, a = _deming_fit(xa, ya, error_ratio)
    loo = np.array([_deming_fit(np.delete(xa, i), np.delete(ya, i), error_ratio)
                    for i in range(n)])
    se = np.sqrt((n - 1) / n * np.sum((loo - loo.mean(axis=0)) ** 2, axis=0))
    t = _t_quantile(1 - alpha / 2, n - 2)
    se_b, se_a = float(se[0]), float(se[1])
    return DemingResult(b, a, (b - t * se_b, b + t * se_b), (a - t * se_a, a + t * se_a),
                        se_b, se_a, n, float(error_ratio))


def bias_at_decision_level(slope: float, intercept: float, xc: float,
                           allowable_bias: float | None = None) -> DecisionLevelBias:
    """Return the bias at a medical decision level X_c: (a + b·X_c − X_c)/X_c.

    ``bias_pct`` = 100·(a + b·X_c − X_c)/X_c; when ``allowable_bias`` (percent; pass ½ TEa
    where no allowable bias is specified) is given, ``acceptable`` = |bias_pct| ≤ it.

    Examples
    --------
    >>> r = bias_at_decision_level(1.05, -0.1, 5.0, allowable_bias=2.0)
    >>> round(r.bias_pct, 6), r.acceptable
    (3.0, False)
    """
    values = (slope, intercept, xc) + (() if allowable_bias is None else (allowable_bias,))
    if not all(math.isfinite(v) for v in values):
        raise ValueError("inputs must be finite")
    if xc == 0:
        raise ValueError("decision level must not be 0")
    predicted = intercept + slope * xc
    pct = 100.0 * (predicted - xc) / xc
    ok = None if allowable_bias is None else abs(pct) <= allowable_bias
    return DecisionLevelBias(float(xc), predicted, predicted - xc, pct,
                             None if allowable_bias is None else float(allowable_bias), ok)


def comparison_acceptance(x, y, allowable_bias: float,
                          min_fraction: float = 0.8) -> PairAcceptance:
    """Accept a comparison when ≥ 80% of pairs satisfy 100·|yᵢ − xᵢ|/|xᵢ| ≤ allowable bias%.

    Parameters
    ----------
    x, y : array_like
        Paired results (x reference, non-zero).
    allowable_bias : float
        Allowable bias in percent (or ½ TEa).
    min_fraction : float
        Required share of pairs within the limit, default 0.8 (QC_SPEC §6 [choice]).

    Examples
    --------
    >>> comparison_acceptance([10, 10, 10, 10, 10], [10.1, 9.9, 10.2, 10.6, 10.0], 5.0)
    PairAcceptance(n=5, n_within=4, fraction=0.8, accepted=True)
    """
    xa, ya = _pairs(x, y, 1)
    if not (math.isfinite(allowable_bias) and allowable_bias >= 0):
        raise ValueError("allowable_bias must be a non-negative number")
    if not 0 < min_fraction <= 1:
        raise ValueError("min_fraction must be in (0, 1]")
    if np.any(xa == 0):
        raise ValueError("x must not contain 0 (relative difference undefined)")
    within = 100.0 * np.abs(ya - xa) / np.abs(xa) <= allowable_bias
    n_within = int(np.count_nonzero(within))
    fraction = n_within / xa.size
    return PairAcceptance(int(xa.size), n_within, fraction, fraction >= min_fraction)
