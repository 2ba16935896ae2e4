"""Establish control limits and summarise IQC periods (QC_SPEC section 2).

Every SD here is the sample SD (``ddof=1``, divisor ``n - 1``) and every CV is in
percent of the absolute mean: ``CV% = 100 * SD / |mean|`` (never negative; undefined,
NaN, when the mean is 0). Limits are computed per test system, QC lot and level:
callers pass the results of one of them, in measurement order.

References
----------
.. [1] CLSI C24-Ed4. Statistical Quality Control for Quantitative Measurement
   Procedures: Principles and Definitions. 2016.
.. [2] Westgard JO. Basic QC Practices, 4th ed. Westgard QC; 2016. Chapter "How to
   establish control limits".
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd

from .westgard import RULE_CODES

__all__ = [
    "MIN_DAYS", "MIN_RESULTS", "InsufficientDataError", "LimitEstimate", "PeriodSummary",
    "cumulative_limits", "cv_percent", "period_summary", "provisional_limits",
]

logger = logging.getLogger(__name__)

MIN_RESULTS = 20
"""Results that must remain for provisional limits."""
MIN_DAYS = 20
"""Distinct days those remaining results must span."""
OUTLIER_SD = 3.0
"""Results with ``|x - mean| >= OUTLIER_SD * SD`` are dropped once (|z| >= k convention)."""
ZERO_MEAN = 1e-12
"""A mean with ``|mean| <= ZERO_MEAN * (SD + |offset|)`` is zero (float noise): no CV."""


class InsufficientDataError(ValueError):
    """Raise when there are too few results to estimate limits.

    Attributes
    ----------
    n_results : int
        Results available.
    n_days : int
        Distinct days they span.
    """

    def __init__(self, message: str, n_results: int, n_days: int) -> None:
        super().__init__(message)
        self.n_results = n_results
        self.n_days = n_days


@dataclass(frozen=True)
class LimitEstimate:
    """Hold an estimated target mean and SD of one QC level and what it was computed from.

    Attributes
    ----------
    mean : float
        Mean of the results used.
    sd : float
        Sample SD (ddof=1) of the results used.
    n_used : int
        Number of results used.
    n_excluded : int
        Number of results taken but left out (outliers, results of rejected or
        not yet judged runs).
    cv : float
        CV in percent, ``100 * sd / |mean|`` (NaN when the mean is 0).
    first_day, last_day : datetime.date or None
        Days of the first and last result taken (None when no days were given).
    """

    mean: float
    sd: float
    n_used: int
    n_excluded: int
    cv: float
    first_day: date | None = None
    last_day: date | None = None

    @property
    def n_taken(self) -> int:
        """Return the number of results taken: ``n_used + n_excluded``."""
        return self.n_used + self.n_excluded


@dataclass(frozen=True)
class PeriodSummary:
    """Hold the monthly and cumulative IQC summary per level.

    Attributes
    ----------
    monthly : pandas.DataFrame
        One row per (level, month).
    cumulative : pandas.DataFrame
        Same rows, each summarising every result up to the end of that month.
    """

    monthly: pd.DataFrame
    cumulative: pd.DataFrame


def cv_percent(mean: float, sd: float) -> float:
    """Return the coefficient of variation in percent, ``100 * sd / |mean|``.

    Never negative; NaN when the mean is 0 (``|mean| <= 1e-12 * sd``, float noise),
    where a CV is undefined.

    Examples
    --------
    >>> cv_percent(-2.0, 0.1), cv_percent(0.0, 0.1)
    (5.0, nan)
    """
    return 100.0 * sd / abs(mean) if abs(mean) > ZERO_MEAN * sd else float("nan")


def _as_values(values: object, name: str = "values") -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be numbers: {exc}") from exc
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} must be finite numbers (no NaN or infinity)")
    return arr


def _as_days(days: object, size: int) -> pd.DatetimeIndex:
    """Return the calendar day of each result; they must not go back in time."""
    try:
        day = pd.DatetimeIndex(pd.to_datetime(days)).normalize()
    except (TypeError, ValueError) as exc:
        raise ValueError(f"days must be dates: {exc}") from exc
    if len(day) != size:
        raise ValueError(f"values and days differ in length ({size} vs {len(day)})")
    if day.hasnans:
        raise ValueError("every result needs a day")
    if not day.is_monotonic_increasing:
        raise ValueError("results must be in measurement order (days never decrease)")
    return day


def _estimate(kept: np.ndarray, n_excluded: int, day: pd.DatetimeIndex | None) -> LimitEstimate:
    mean = float(kept.mean())
    sd = float(kept.std(ddof=1))
    first, last = (day[0].date(), day[-1].date()) if day is not None else (None, None)
    return LimitEstimate(mean, sd, int(kept.size), int(n_excluded), cv_percent(mean, sd),
                         first, last)


def _keep_within_3sd(x: np.ndarray) -> np.ndarray:
    """Return the mask of ``|x - m0| / s0 < 3 - 1e-9``: QC_SPEC 1.1's tolerance (s0 = 0: all)."""
    m0, s0 = x.mean(), x.std(ddof=1)
    return np.abs(x - m0) / s0 < OUTLIER_SD - 1e-9 if s0 > 0 else np.ones(x.size, dtype=bool)


def provisional_limits(values: object, days: object) -> LimitEstimate:
    """Estimate provisional limits from the earliest results of a QC lot and level.

    Results are taken in measurement order, never the whole history: for the smallest
    ``k`` such that, among the first ``k`` results, with ``m0`` and ``s0`` their mean
    and sample SD, the results with ``|x - m0| < 3 * s0`` (QC_SPEC 1.1: ``|z| >= 3``
    is beyond; nothing is dropped when ``s0 == 0``) number at least `MIN_RESULTS`
    (20) on at least `MIN_DAYS` (20) distinct days, those results give

    ``mean = sum(x) / n`` and ``SD = sqrt(sum((x - mean)**2) / (n - 1))``.

    The exclusion is done once per ``k`` (never iterated); results after the first
    ``k`` are ignored, whatever they are.

    Parameters
    ----------
    values : array_like of float
        Control results of one test system, QC lot and level, in measurement order.
    days : array_like
        Day (date or timestamp) of each result, non-decreasing; timestamps count by
        calendar day.

    Returns
    -------
    LimitEstimate
        Mean, SD, results used and dropped among the first ``k`` (``n_taken == k``),
        CV%, and the days of the first and the ``k``-th result.

    Raises
    ------
    InsufficientDataError
        When no prefix of the results leaves 20 results on 20 distinct days.
    ValueError
        On mismatched lengths, a non-finite value, a missing day or days out of order.

    Examples
    --------
    >>> days = pd.date_range("2025-01-01", periods=22)
    >>> est = provisional_limits([5.0, 5.2] * 9 + [4.8, 9.9, 5.1, 7.0], days)
    >>> est.n_taken, est.n_excluded, round(est.mean, 3), round(est.sd, 3)
    (21, 1, 5.085, 0.118)
    >>> str(est.last_day)
    '2025-01-21'
    """
    x = _as_values(values)
    day = _as_days(days, x.size)
    days_so_far = np.cumsum(~day.duplicated())
    ready = np.flatnonzero((np.arange(1, x.size + 1) >= MIN_RESULTS) & (days_so_far >= MIN_DAYS))
    for k in range(ready[0] + 1 if ready.size else x.size + 1, x.size + 1):
        keep = _keep_within_3sd(x[:k])
        if keep.sum() >= MIN_RESULTS and day[:k][keep].nunique() >= MIN_DAYS:
            logger.debug("provisional limits: first %s results, %s dropped", k, k - keep.sum())
            return _estimate(x[:k][keep], k - int(keep.sum()), day[:k])
    n_days = int(days_so_far[-1]) if x.size else 0
    raise InsufficientDataError(
        f"provisional limits need {MIN_RESULTS} results on {MIN_DAYS} distinct days left after"
        f" dropping values beyond 3 SD; got {x.size} results on {n_days} days", x.size, n_days)


def cumulative_limits(values: object, rejected_mask: object, days: object = None) -> LimitEstimate:
    """Estimate cumulative limits from the in-control results of a QC lot and level.

    ``mean = sum(x) / n`` and ``SD = sqrt(sum((x - mean)**2) / (n - 1))`` over the
    results whose mask is False. Callers pass the results after the provisional
    period and mark the results of rejected runs and of runs not yet judged (no
    target yet, so neither in nor out of control); those count in ``n_excluded``.

    Parameters
    ----------
    values : array_like of float
        Control results of one test system, QC lot and level.
    rejected_mask : array_like of bool
        True where the result must not count: its run was rejected or is not judged.
    days : array_like, optional
        Day of each result in measurement order; gives ``first_day`` and ``last_day``
        of the results taken.

    Returns
    -------
    LimitEstimate
        Mean, SD, results used and excluded, CV%, first and last day.

    Raises
    ------
    InsufficientDataError
        With fewer than 2 in-control results.
    ValueError
        On mismatched lengths or non-finite values.

    Examples
    --------
    >>> est = cumulative_limits([4.0, 5.0, 6.0, 12.0], [False, False, False, True])
    >>> est.mean, est.sd, est.n_used, est.n_excluded
    (5.0, 1.0, 3, 1)
    """
    x = _as_values(values)
    rejected = np.asarray(rejected_mask)
    if rejected.shape != x.shape or rejected.dtype != bool:
        raise ValueError("rejected_mask must be booleans, one per value")
    day = None if days is None else _as_days(days, x.size)
    kept = x[~rejected]
    if kept.size < 2:
        n_days = day[~rejected].nunique() if day is not None else 0
        raise InsufficientDataError(
            f"cumulative limits need at least 2 in-control results, got {kept.size}",
            int(kept.size), int(n_days))
    return _estimate(kept, int(rejected.sum()), day)


def period_summary(df: pd.DataFrame, *, tz: str = "Asia/Shanghai") -> PeriodSummary:
    """Summarise IQC per level and month, and cumulatively, over judged in-control runs.

    For each (level, month): ``n_total`` results, ``n_pending`` of runs not yet judged
    (no target yet: neither in nor out of control), ``n_judged = n_total - n_pending``,
    ``n_rejected`` of judged rejected runs, ``in_control_rate = 1 - n_rejected /
    n_judged`` (NaN with nothing judged), ``n``, ``mean``, ``sd`` (ddof=1) and
    ``cv_pct = 100 * sd / |mean|`` (NaN at mean 0) of the results of judged runs not
    rejected, and one column per rule code counting the results whose run fired it
    (rejected runs included). The cumulative table has the same rows, each over all
    results up to the end of that month; its SD comes from sums of deviations from the
    level's overall in-control mean, which keeps it exact.

    Parameters
    ----------
    df : pandas.DataFrame
        One row per result of one test system and QC lot, with columns ``level``,
        ``date`` (lab-local run date) or ``measured_at``, ``value``, ``rejected`` (bool),
        ``rules`` (iterable of codes fired at the run; empty or missing for none) and
        optionally ``pending`` (bool, True for runs not yet judged; default False).
        When both are present ``date`` is used.
    tz : str, optional
        Zone that timezone-aware ``measured_at`` values are converted to before taking
        the month; naive values are taken as lab-local. Default ``"Asia/Shanghai"``.

    Returns
    -------
    PeriodSummary
        ``monthly`` and ``cumulative`` DataFrames with columns ``level``, ``month``
        (``Period[M]``), ``n_total``, ``n_pending``, ``n_judged``, ``n_rejected``,
        ``in_control_rate``, ``n``, ``mean``, ``sd``, ``cv_pct`` and the codes of
        `RULE_CODES`.

    Raises
    ------
    ValueError
        On a missing column, an unknown rule code, a non-boolean ``rejected`` or
        ``pending`` or a non-finite value.
    """
    data = _prepare(df, tz)
    in_control = data["value"].where(~data["rejected"] & ~data["pending"])
    shift = in_control.groupby(data["level"]).mean().fillna(0.0)
    sums = _month_sums(data, in_control - data["level"].map(shift))
    monthly = _finish(sums, shift)
    cumulative = _finish(sums.groupby(level="level").cumsum(), shift)
    return PeriodSummary(monthly, cumulative)


def _prepare(df: pd.DataFrame, tz: str) -> pd.DataFrame:
    """Check the input; return level, month, value, pending, rejected (if judged), rules."""
    time_col = "date" if "date" in df.columns else "measured_at"
    missing = {"level", time_col, "value", "rejected", "rules"}.difference(df.columns)
    if missing:
        raise ValueError(f"period_summary needs columns {sorted(missing)} (date or measured_at)")
    pending = df["pending"] if "pending" in df.columns else pd.Series(False, index=df.index)
    for name, col in (("rejected", df["rejected"]), ("pending", pending)):
        if not pd.api.types.is_bool_dtype(col):
            raise ValueError(f"column '{name}' must be boolean")
    stamp = pd.to_datetime(df[time_col])
    if stamp.dt.tz is not None:
        stamp = stamp.dt.tz_convert(tz).dt.tz_localize(None)
    return pd.DataFrame({
        "level": df["level"].to_numpy(),
        "month": stamp.dt.to_period("M").to_numpy(),
        "value": _as_values(df["value"], "column 'value'"),
        "pending": pending.to_numpy(dtype=bool),
        "rejected": df["rejected"].to_numpy(dtype=bool) & ~pending.to_numpy(dtype=bool),
        "rules": df["rules"].to_numpy(),
    })


def _month_sums(data: pd.DataFrame, dev: pd.Series) -> pd.DataFrame:
    """Return additive sums per (level, month): counts, sums of deviations, rule counts.

    ``dev`` is each in-control value minus its level's in-control mean (NaN when the
    run was rejected or not judged); summing deviations avoids cancellation.
    """
    frame = data[["level", "month", "rejected", "pending"]].assign(
        n=dev.notna(), s1=dev, s2=dev**2)
    sums = frame.groupby(["level", "month"]).agg(
        n_total=("rejected", "size"), n_pending=("pending", "sum"),
        n_rejected=("rejected", "sum"),
        n=("n", "sum"), s1=("s1", "sum"), s2=("s2", "sum"),
    )
    return sums.join(_rule_counts(data, sums.index))


def _rule_counts(data: pd.DataFrame, index: pd.Index) -> pd.DataFrame:
    """Count, per (level, month), the results whose run fired each rule."""
    fired = data[["level", "month", "rules"]].explode("rules").dropna(subset=["rules"])
    unknown = set(fired["rules"]).difference(RULE_CODES)
    if unknown:
        raise ValueError(f"unknown rule code(s) in column 'rules': {sorted(unknown)}")
    counts = fired.groupby(["level", "month", "rules"]).size().unstack("rules")
    return counts.reindex(index=index, columns=list(RULE_CODES)).fillna(0).astype(np.int64)


def _finish(sums: pd.DataFrame, shift: pd.Series) -> pd.DataFrame:
    """Turn additive sums into n, mean, SD (ddof=1), CV% and the in-control rate.

    ``mean = shift + s1 / n``, ``SD^2 = (s2 - s1^2 / n) / (n - 1)``, ``CV% = 100 SD /
    |mean|`` (none within `ZERO_MEAN` of 0) and ``in_control_rate = 1 - n_rejected /
    n_judged``.
    """
    n = sums["n"].astype(np.float64)
    level_shift = shift.reindex(sums.index.get_level_values("level")).to_numpy()
    mean = level_shift + sums["s1"] / n.where(n > 0)
    var = (sums["s2"] - sums["s1"] ** 2 / n.where(n > 0)) / (n - 1).where(n > 1)
    sd = np.sqrt(var.clip(lower=0.0))
    zero = mean.abs() <= ZERO_MEAN * (sd + np.abs(level_shift))
    mean = mean.mask(zero, 0.0)
    judged = sums["n_total"] - sums["n_pending"]
    out = pd.DataFrame({
        "n_total": sums["n_total"].astype(np.int64),
        "n_pending": sums["n_pending"].astype(np.int64),
        "n_judged": judged.astype(np.int64),
        "n_rejected": sums["n_rejected"].astype(np.int64),
        "in_control_rate": 1.0 - sums["n_rejected"] / judged.where(judged > 0),
        "n": sums["n"].astype(np.int64),
        "mean": mean,
        "sd": sd,
        "cv_pct": 100.0 * sd / mean.abs().where(~zero),
    })
    return out.join(sums[list(RULE_CODES)]).reset_index()
