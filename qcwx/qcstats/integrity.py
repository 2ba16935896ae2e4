"""Signals that a QC series is unlikely to be real daily measurements.

Daily IQC only makes collusion and fabrication hard if someone can tell: these tests look for
the traces invented numbers leave (Benford-style digit checks, Carlisle's too-good-to-be-true
variance checks for trial data). Each returns a :class:`Flag` with its numbers and a p-value
under an honest model; the score is ``min(100, −10·log10 p)``, so p = 10⁻⁴ scores 40 and
:data:`FLAG_SCORE` (40) is where a flag is raised. A flag is a reason to look, never a verdict.

No scipy: the χ² and binomial tails are computed here (regularised incomplete gamma by its
series and continued fraction, Numerical Recipes §6.2; binomial by log-space summation).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pandas as pd

__all__ = [
    "FLAG_SCORE", "Flag", "backdated_batches", "binom_sf", "chi2_cdf", "chi2_sf",
    "copied_pairs", "digit_preference", "identical_runs", "on_target", "score_of", "sd_too_low",
]

FLAG_SCORE = 40.0
MIN_N = 20


@dataclass(frozen=True)
class Flag:
    """One signal: ``code``, its p-value under the honest model, score 0–100, the numbers."""

    code: str
    p_value: float
    score: float
    evidence: dict = field(default_factory=dict)

    @property
    def raised(self) -> bool:
        """Return whether the score reaches :data:`FLAG_SCORE`."""
        return self.score >= FLAG_SCORE


def score_of(p: float) -> float:
    """Return min(100, −10·log10 p) (100 for p = 0).

    >>> score_of(1e-4), score_of(1.0)
    (40.0, 0.0)
    """
    if p <= 0:
        return 100.0
    return float(min(100.0, max(0.0, -10.0 * math.log10(p))))


# ------------------------------------------------------------------------------ distributions
def _gamma_p(a: float, x: float) -> float:
    """Regularised lower incomplete gamma P(a, x) (NR §6.2: series or continued fraction)."""
    if x <= 0:
        return 0.0
    log_front = -x + a * math.log(x) - math.lgamma(a)
    if x < a + 1:
        term = total = 1.0 / a
        ap = a
        for _ in range(1000):
            ap += 1
            term *= x / ap
            total += term
            if abs(term) < abs(total) * 1e-15:
                break
        return min(1.0, total * math.exp(log_front))
    return 1.0 - _gamma_q_cf(a, x, log_front)


def _gamma_q_cf(a: float, x: float, log_front: float) -> float:
    tiny = 1e-300
    b = x + 1 - a
    c, d = 1 / tiny, 1 / b
    h = d
    for i in range(1, 1000):
        an = -i * (i - a)
        b += 2
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1 / d
        delta = d * c
        h *= delta
        if abs(delta - 1) < 1e-15:
            break
    return math.exp(log_front) * h


def chi2_cdf(x: float, df: int) -> float:
    """Return P(χ²_df ≤ x).

    >>> round(chi2_cdf(3.325, 9), 3)   # the 5 % point of χ²₉
    0.05
    """
    return _gamma_p(df / 2.0, x / 2.0)


def chi2_sf(x: float, df: int) -> float:
    """Return P(χ²_df > x) (accurate in the far tail, via the continued fraction).

    >>> round(chi2_sf(21.666, 9), 4)   # the 1 % point of χ²₉
    0.01
    """
    a, half = df / 2.0, x / 2.0
    if half <= 0:
        return 1.0
    if half < a + 1:
        return 1.0 - _gamma_p(a, half)
    return _gamma_q_cf(a, half, -half + a * math.log(half) - math.lgamma(a))


def binom_sf(k: int, n: int, p: float) -> float:
    """Return P(X ≥ k) for X ~ Binomial(n, p), summed in log space.

    >>> round(binom_sf(2, 3, 0.5), 3)
    0.5
    """
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    if p <= 0:
        return 0.0
    if p >= 1:
        return 1.0
    logs = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1)
            + i * math.log(p) + (n - i) * math.log1p(-p) for i in range(k, n + 1)]
    top = max(logs)
    return float(min(1.0, math.exp(top) * sum(math.exp(v - top) for v in logs)))


def _normal_sf(z: float) -> float:
    return 0.5 * math.erfc(z / math.sqrt(2.0))


# ------------------------------------------------------------------------------ the signals
def sd_too_low(values, reference_sd: float, label: str = "peer") -> Flag:
    """Test whether the series' SD is implausibly small against ``reference_sd``.

    (n − 1)s²/σ₀² ~ χ²ₙ₋₁ for honest data with SD σ₀; p = P(χ²ₙ₋₁ ≤ (n − 1)s²/σ₀²)
    (lower tail). Raised only when also s/σ₀ < 0.5, so a merely good lab is not flagged.
    """
    x = np.asarray(values, dtype=float)
    n = x.size
    if n < MIN_N or not reference_sd or reference_sd <= 0:
        return Flag(f"sd_low_{label}", 1.0, 0.0, {"n": n})
    s = float(np.std(x, ddof=1))
    ratio = s / reference_sd
    p = chi2_cdf((n - 1) * ratio**2, n - 1)
    score = score_of(p) if ratio < 0.5 else 0.0
    return Flag(f"sd_low_{label}", p, score,
                {"n": n, "sd": s, "reference_sd": float(reference_sd), "ratio": ratio})


def identical_runs(texts, sd: float, resolution: float) -> Flag:
    """Find the longest run of consecutive identical values.

    Honest model: two consecutive values rounded to ``resolution`` agree with probability
    q ≈ r/(2√π·σ) (the difference of two N(μ, σ²) values is N(0, 2σ²); its density at 0
    times r); a run of length L somewhere in n values has p ≈ (n − L + 1)·q^(L−1).
    """
    texts = list(texts)
    n = len(texts)
    if n < MIN_N or sd <= 0 or resolution <= 0:
        return Flag("identical_run", 1.0, 0.0, {"n": n})
    best, cur, best_end = 1, 1, 0
    for i in range(1, n):
        cur = cur + 1 if texts[i] == texts[i - 1] else 1
        if cur > best:
            best, best_end = cur, i
    q = min(1.0, resolution / (2.0 * math.sqrt(math.pi) * sd))
    p = min(1.0, (n - best + 1) * q ** (best - 1))
    return Flag("identical_run", p, score_of(p) if best >= 3 else 0.0,
                {"n": n, "length": best, "value": texts[best_end], "end_index": best_end,
                 "q": q})


def digit_preference(texts, sd: float, resolution: float) -> Flag:
    """Test the last recorded digit for uniformity (χ², 9 df).

    Only meaningful when the scatter spans many steps of the last digit (σ/r ≥ 5) and
    n ≥ 50; otherwise returns score 0 (real data then legitimately prefer some digits).
    """
    digits = [t.strip()[-1] for t in texts if t and t.strip()[-1:].isdigit()]
    n = len(digits)
    counts = Counter(digits)
    if n < 50 or resolution <= 0 or sd / resolution < 5:
        return Flag("digit_preference", 1.0, 0.0, {"n": n})
    observed = np.array([counts.get(str(d), 0) for d in range(10)], dtype=float)
    expected = n / 10.0
    stat = float(((observed - expected) ** 2 / expected).sum())
    p = chi2_sf(stat, 9)
    top = int(np.argmax(observed))
    return Flag("digit_preference", p, score_of(p),
                {"n": n, "chi2": stat, "counts": observed.astype(int).tolist(), "top_digit": top,
                 "top_share": float(observed[top] / n)})


def on_target(values, targets, target_sds, resolution: float) -> Flag:
    """Test whether values sit on the target more often than honest scatter allows.

    A value is "on target" when |x − target| ≤ r/2 (it reads as the target). Honest model:
    P(on target) ≈ r/(σ·√(2π)) (the normal density at its mean times r, σ the target SD in
    force), so the count is Binomial(n, p₀); p = P(X ≥ observed).
    """
    x, t, s = (np.asarray(a, dtype=float) for a in (values, targets, target_sds))
    n = x.size
    if n < MIN_N or resolution <= 0:
        return Flag("on_target", 1.0, 0.0, {"n": n})
    hits = int(np.sum(np.abs(x - t) <= resolution / 2 + 1e-9))
    p0 = float(min(1.0, resolution / (float(np.median(s)) * math.sqrt(2 * math.pi))))
    p = binom_sf(hits, n, p0)
    share = hits / n
    return Flag("on_target", p, score_of(p) if share >= 0.3 else 0.0,
                {"n": n, "hits": hits, "share": share, "expected_share": p0})


@dataclass(frozen=True)
class CopyPair:
    """Two series that look copied: identical share and day-to-day correlation over ``n``."""

    a: object
    b: object
    n: int
    identical: int
    r: float
    flag: Flag


def copied_pairs(matrix, min_common: int = 20) -> list[CopyPair]:
    """Compare every pair of columns of a (days × series) table of values (NaN = no QC).

    Same values: the share of common days with equal values. Same day pattern: Pearson r of
    the day-to-day changes on common consecutive days; honest labs' noise is independent, so
    r ≈ 0 and √(n − 3)·atanh(r) ~ N(0, 1) (Fisher); p one-sided. A pair is raised when r ≥
    0.9 with p < 10⁻⁴, or when more than half of the common days carry equal values.
    """
    values = np.asarray(matrix.values, dtype=float)
    cols = list(matrix.columns)
    present = ~np.isnan(values)
    diffs = np.diff(values, axis=0)
    has_diff = ~np.isnan(diffs)
    # Pearson r of every pair of columns over pairwise-complete rows (pandas, in C)
    r_all = pd.DataFrame(diffs).corr(min_periods=min_common).to_numpy()
    common = present.T.astype(int) @ present.astype(int)
    n_diff = has_diff.T.astype(int) @ has_diff.astype(int)
    out = []
    for i, j in zip(*np.nonzero(np.triu(common >= min_common, k=1)), strict=True):
        n = int(common[i, j])
        both = present[:, i] & present[:, j]
        same = int(np.sum(values[both, i] == values[both, j]))
        m = int(n_diff[i, j])
        r = float(r_all[i, j]) if m >= min_common and not np.isnan(r_all[i, j]) else 0.0
        p_r = _normal_sf(math.atanh(min(r, 0.999999)) * math.sqrt(m - 3)) if m > 3 else 1.0
        p = 0.0 if same > n / 2 else p_r
        raised = same > n / 2 or (r >= 0.9 and p_r < 1e-4)
        if raised:
            flag = Flag("copied", p, score_of(p), {"n": n, "identical": same, "r": r,
                                                   "n_changes": m})
            out.append(CopyPair(cols[i], cols[j], n, same, r, flag))
    return out


def backdated_batches(run_dates, entered_at, gap_minutes: float = 10.0,
                      min_days: int = 10) -> Flag:
    """Find many past-dated results entered at once.

    Results whose run date is before the (lab-local) entry date are sorted by entry time and
    cut into batches wherever two entries are more than ``gap_minutes`` apart; the largest
    batch's number of distinct run dates is the evidence. Score = 4 per distinct day (so
    ``min_days`` = 10 days reaches :data:`FLAG_SCORE`); no p-value model (p reported as NaN).
    """
    rows = sorted((e, d) for d, e in zip(run_dates, entered_at, strict=True)
                  if isinstance(e, datetime) and d < e.date())
    best: list = []
    batch: list = []
    for e, d in rows:
        if batch and (e - batch[-1][0]).total_seconds() > gap_minutes * 60:
            batch = []
        batch.append((e, d))
        if len({x[1] for x in batch}) > len({x[1] for x in best}):
            best = list(batch)
    days = sorted({d for _, d in best})
    score = float(min(100.0, 4.0 * len(days))) if len(days) >= min_days else 0.0
    evidence = {"days": len(days), "results": len(best)}
    if best:
        evidence |= {"first": days[0], "last": days[-1], "entered": best[0][0]}
    return Flag("backdated", float("nan"), score, evidence)
