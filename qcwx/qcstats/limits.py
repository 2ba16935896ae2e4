"""Establish control limits and summarise IQC periods (QC_SPEC section 2).

Every SD here is the sample SD (``ddof=1``, divisor ``n - 1``) and every CV is in
percent: ``CV% = 100 * SD / mean``. Limits are computed per test system, QC lot and
level: callers pass the results of one of them.

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

import numpy as np
import pandas as pd

from .westgard import RULE_CODES

__all__ = [
    "MIN_DAYS",
    "MIN_RESULTS",
    "LimitEstimate",
    "PeriodSummary",
    "cumulative_limits",
    "period_summary",
    "provisional_limits",
]

logger = logging.getLogger(__name__)

MIN_RESULTS = 20
"""Results needed for provisional limits."""
MIN_DAYS = 20
"""Distinct days those results must span."""
OUTLIER_SD = 3.0
"""Results with ``|x - mean| >= OUTLIER_SD * SD`` are dropped once (|z| >= k convention)."""

@dataclass(frozen=True)
class LimitEstimate:
    """Hold an estimated target mean and SD of one QC level.

    Attributes
    ----------
    mean : float
        Mean of the results used.
    sd : float
        Sample SD (ddof=1) of the results used.
    n_used : int
        Number of results used.
    n_excluded : int
        Number of results left out (outliers, or results of rejected runs).
    cv : float
        CV in percent, ``100 * sd / mean`` (NaN when the mean is 0).
    """

    mean: float
    sd: float
    n_used: int
    n_excluded: int
    cv: float


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


def _estimate(kept: np.ndarray, n_excluded: int) -> LimitEstimate:
    mean = float(kept.mean())
    sd = float(kept.std(ddof=1))
    cv = 100.0 * sd / mean if mean != 0 else float("nan")
    return LimitEstimate(mean, sd, int(kept.size), int(n_excluded), cv)


def provisional_limits(values: object, days: object) -> LimitEstimate:
    """Estimate provisional limits from the first results of a new QC lot.

    Requires at least `MIN_RESULTS` (20) results on at least `MIN_DAYS` (20) distinct
    days, counted before exclusion. The mean ``m0`` and SD ``s0`` of all results are
    computed, results with ``|x - m0| >= 3 * s0`` (i.e. ``|z| >= 3``, the limit
    convention of QC_SPEC 1.1) are dropped once (no iteration), and the mean and sample
    SD (ddof=1) of the rest are returned. When ``s0 == 0`` nothing is dropped.

    Parameters
    ----------
    values : array_like of float
        Control results of one test system, QC lot and level.
    days : array_like
        Day (date or timestamp) of each result; timestamps count by calendar day.

    Returns
    -------
    LimitEstimate
        Mean, SD, results used and dropped, CV%.

    Raises
    ------
    ValueError
        With fewer than 20 results or 20 distinct days, mismatched lengths, or a
        non-finite value or missing day.

    Examples
    --------
    >>> days = pd.date_range("2025-01-01", periods=20)
    >>> est = provisional_limits([5.0, 5.2] * 9 + [4.8, 9.9], days)
    >>> est.n_excluded, round(est.mean, 3), round(est.sd, 3)
    (1, 5.084, 0.121)
    """
    x = _as_values(values)
    try:
        day = pd.DatetimeIndex(pd.to_datetime(days)).normalize()
    except (TypeError, ValueError) as exc:
        raise ValueError(f"days must be dates: {exc}") from exc
    if len(day) != x.size:
        raise ValueError(f"values and days differ in length ({x.size} vs {len(day)})")
    if day.hasnans:
        raise ValueError("every result needs a day")
    n_days = day.nunique()
    if x.size < MIN_RESULTS or n_days < MIN_DAYS:
        raise ValueError(
            f"provisional limits need at least {MIN_RESULTS} results on at least {MIN_DAYS}"
            f" distinct days; got {x.size} results on {n_days} days"
        )
    m0, s0 = x.mean(), x.std(ddof=1)
    keep = np.abs(x - m0) < OUTLIER_SD * s0 if s0 > 0 else np.ones(x.size, dtype=bool)
    logger.debug("provisional limits: %s of %s results dropped", x.size - keep.sum(), x.size)
    return _estimate(x[keep], x.size - int(keep.sum()))


def cumulative_limits(values: object, rejected_mask: object) -> LimitEstimate:
    """Estimate cumulative limits from the in-control results of a QC lot.

    The mean and sample SD (ddof=1) of the results whose run was not rejected.
    Results of rejected runs are counted in ``n_excluded``.

    Parameters
    ----------
    values : array_like of float
        Control results of one test system, QC lot and level.
    rejected_mask : array_like of bool
        True where the result's run was rejected.

    Returns
    -------
    LimitEstimate
        Mean, SD, results used and excluded, CV%.

    Raises
    ------
    ValueError
        With fewer than 2 in-control results, mismatched lengths or non-finite values.

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
    kept = x[~rejected]
    if kept.size < 2:
        raise ValueError(f"cumulative limits need at least 2 in-control results, got {kept.size}")
    return _estimate(kept, int(rejected.sum()))


def period_summary(df: pd.DataFrame, *, tz: str = "Asia/Shanghai") -> PeriodSummary:
    """Summarise IQC per level and month, and cumulatively, excluding rejected runs.

    For each (level, month): ``n_total`` results, ``n_rejected`` results of rejected
    runs, ``in_control_rate = 1 - n_rejected / n_total`` (share of runs not
    rejected), ``n``, ``mean``, ``sd`` (ddof=1) and ``cv_pct = 100 * sd / mean`` of the
    results of runs not rejected, and one column per rule code counting the results
    whose run fired it (rejected runs included). The cumulative table has the same
    rows, each over all results up to the end of that month; its SD comes from sums
    of deviations from the level's overall in-control mean, which keeps it exact.

    Parameters
    ----------
    df : pandas.DataFrame
        One row per result of one test system and QC lot, with columns ``level``,
        ``date`` (lab-local run date) or ``measured_at``, ``value``, ``rejected`` (bool)
        and ``rules`` (iterable of codes fired at the run; empty or missing for none).
        When both are present ``date`` is used.
    tz : str, optional
        Zone that timezone-aware ``measured_at`` values are converted to before taking
        the month; naive values are taken as lab-local. Default ``"Asia/Shanghai"``.

    Returns
    -------
    PeriodSummary
        ``monthly`` and ``cumulative`` DataFrames with columns ``level``, ``month``
        (``Period[M]``), ``n_total``, ``n_rejected``, ``in_control_rate``, ``n``,
        ``mean``, ``sd``, ``cv_pct`` and the codes of `RULE_CODES`.

    Raises
    ------
    ValueError
        On a missing column, an unknown rule code, a non-boolean ``rejected`` or a
        non-finite value.
    """
    data = _prepare(df, tz)
    in_control = data["value"].where(~data["rejected"])
    shift = in_control.groupby(data["level"]).mean().fillna(0.0)
    sums = _month_sums(data, in_control - data["level"].map(shift))
    monthly = _finish(sums, shift)
    cumulative = _finish(sums.groupby(level="level").cumsum(), shift)
    return PeriodSummary(monthly, cumulative)


def _prepare(df: pd.DataFrame, tz: str) -> pd.DataFrame:
    """Check the input and return columns level, month, value, rejected, rules."""
    time_col = "date" if "date" in df.columns else "measured_at"
    missing = {"level", time_col, "value", "rejected", "rules"}.difference(df.columns)
    if missing:
        raise ValueError(f"period_summary needs columns {sorted(missing)} (date or measured_at)")
    if not pd.api.types.is_bool_dtype(df["rejected"]):
        raise ValueError("column 'rejected' must be boolean")
    stamp = pd.to_datetime(df[time_col])
    if stamp.dt.tz is not None:
        stamp = stamp.dt.tz_convert(tz).dt.tz_localize(None)
    return pd.DataFrame({
        "level": df["level"].to_numpy(),
        "month": stamp.dt.to_period("M").to_numpy(),
        "value": _as_values(df["value"], "column 'value'"),
        "rejected": df["rejected"].to_numpy(dtype=bool),
        "rules": df["rules"].to_numpy(),
    })


def _month_sums(data: pd.DataFrame, dev: pd.Series) -> pd.DataFrame:
    """Return additive sums per (level, month): counts, sums of deviations, rule counts.

    ``dev`` is each in-control value minus its level's in-control mean (NaN when the
    run was rejected); summing deviations instead of raw values avoids cancellation.
    """
    frame = data[["level", "month", "rejected"]].assign(n=dev.notna(), s1=dev, s2=dev**2)
    sums = frame.groupby(["level", "month"]).agg(
        n_total=("rejected", "size"), n_rejected=("rejected", "sum"),
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

    ``mean = shift + s1 / n`` and ``SD^2 = (s2 - s1^2 / n) / (n - 1)``.
    """
    n = sums["n"].astype(np.float64)
    level_shift = shift.reindex(sums.index.get_level_values("level")).to_numpy()
    mean = level_shift + sums["s1"] / n.where(n > 0)
    var = (sums["s2"] - sums["s1"] ** 2 / n.where(n > 0)) / (n - 1).where(n > 1)
    sd = np.sqrt(var.clip(lower=0.0))
    out = pd.DataFrame({
        "n_total": sums["n_total"].astype(np.int64),
        "n_rejected": sums["n_rejected"].astype(np.int64),
        "in_control_rate": 1.0 - sums["n_rejected"] / sums["n_total"],
        "n": sums["n"].astype(np.int64),
        "mean": mean,
        "sd": sd,
        "cv_pct": 100.0 * sd / mean.where(mean != 0),
    })
    return out.join(sums[list(RULE_CODES)]).reset_index()
