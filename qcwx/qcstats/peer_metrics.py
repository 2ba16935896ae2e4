"""Compare one lab with its peer group: CV%, SDI, CVR, bias, their bands, ranks and grades.

Scalar-or-array functions of QC_SPEC §3 and the result types they return; the group side
(robust group statistics, publication, incremental sums) is :mod:`qcwx.qcstats.peer_groups`.
Everything here is re-exported by :mod:`qcwx.qcstats.peer`, the module callers import.

References
----------
Westgard JO, Westgard SA. Sigma-metrics for grading analytical performance.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from .robust import _scalar_or_array, _seq_sum
from .sigma import sigma_metric

__all__ = [
    "CVR_BANDS", "SDI_BANDS", "Band", "GradeResult", "NcclAssessment", "OverallGrade",
    "Ranking", "bias_pct", "cv_pct", "cvr", "cvr_band", "grade", "grade_performance",
    "group_cv", "lab_overall_grade", "nccl_pass", "rank_in_group", "sdi", "sdi_band",
]

#: A mean within 1e-9·SD of 0 is 0 (a sum that cancels leaves rounding residue, not a mean).
ZERO_MEAN_TOL = 1e-9


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Band:
    """A performance band: machine code and Chinese label."""

    code: str
    label: str


SDI_BANDS = (
    Band("acceptable", "可接受"),
    Band("acceptable_investigate", "可接受需调查"),
    Band("marginal", "临界"),
    Band("unacceptable", "不可接受"),
)
CVR_BANDS = (
    Band("good", "良好"),
    Band("acceptable", "可接受"),
    Band("investigate", "需调查"),
    Band("unacceptable", "不可接受"),
)


@dataclass(frozen=True, eq=False)
class Ranking:
    """Ranks (1 = best = smallest, ties share the minimum rank) and percentiles.

    ``percentile = 100·(rank − 1)/(m − 1)``: the share of the other ranked members that are
    strictly better (0 = best, 100 = worst; 0 when m = 1). NaN values get NaN for both and
    are not counted in m.
    """

    rank: np.ndarray
    percentile: np.ndarray


@dataclass(frozen=True)
class NcclAssessment:
    """NCCL-style pass/fail of one lab × analyte with the limits used."""

    passed: bool
    cv_pass: bool
    bias_pass: bool
    cv_limit: float
    bias_limit: float
    cv_within_tea_third: bool
    cv_within_tea_quarter: bool


@dataclass(frozen=True)
class GradeResult:
    """Sigma grade of one lab × analyte, shown with its inputs."""

    grade: str
    sigma: float
    bias: float
    cv: float
    tea: float
    source: str


@dataclass(frozen=True)
class OverallGrade:
    """A lab's overall grade: counts per grade and the share of analytes at A or B."""

    n_analytes: int
    n_a: int
    n_b: int
    n_c: int
    n_d: int
    share_ab: float

    @property
    def pct_ab(self) -> float:
        """Return the share at A/B in percent."""
        return 100.0 * self.share_ab


# --------------------------------------------------------------------------- comparison metrics


def cv_pct(sd, mean):
    """Return CV% = 100·SD/|mean|: never negative, NaN for a zero mean (never ±inf).

    A mean counts as zero when |mean| ≤ 1e-9·SD (results that cancel, e.g. base excess
    −0.3, 0.1, 0.2, leave a float residue of 3e-17, not a mean); NaN SD or mean gives NaN.
    Works element-wise on arrays.

    Examples
    --------
    >>> cv_pct(0.2, -4.0), cv_pct(0.2, 0.0)
    (5.0, nan)
    """
    sd_arr = np.asarray(sd, dtype=np.float64)
    mean_arr = np.abs(np.asarray(mean, dtype=np.float64))
    with np.errstate(invalid="ignore", divide="ignore"):
        zero = ~(mean_arr > ZERO_MEAN_TOL * np.where(np.isnan(sd_arr), 0.0, sd_arr))
        out = np.where(zero, np.nan, 100.0 * sd_arr / np.where(zero, 1.0, mean_arr))
    return _scalar_or_array(out)


def group_cv(cvs) -> float:
    """Return the group CV used for CVR: the mean of the member labs' CVs.

    CV_group = (1/m)·Σ CVᵢ over the members with a defined CV (NaN entries, e.g. labs with a
    single result, are skipped; NaN when none is left).

    Examples
    --------
    >>> group_cv([2.0, 3.0, float("nan"), 4.0])
    3.0
    """
    arr = np.asarray(cvs, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError("cvs must be one-dimensional")
    if np.isinf(arr).any() or (arr < 0).any():
        raise ValueError("cvs must be finite and non-negative")
    valid = np.sort(arr[~np.isnan(arr)])
    return _seq_sum(valid) / valid.size if valid.size else math.nan


def sdi(lab_mean, group_mean, group_sd):
    """Return the standard deviation index SDI = (lab mean − group mean)/group SD.

    Works element-wise on arrays; raises ValueError when a group SD is ≤ 0.

    Examples
    --------
    >>> sdi(5.5, 5.0, 0.25)
    2.0
    """
    sd = np.asarray(group_sd, dtype=np.float64)
    if (sd <= 0).any():
        raise ValueError("group_sd must be positive")
    return _scalar_or_array((np.asarray(lab_mean, dtype=np.float64) - group_mean) / sd)


def cvr(lab_cv, group_cv_value):
    """Return the coefficient of variation ratio CVR = lab CV / group CV.

    Examples
    --------
    >>> cvr(3.0, 2.0)
    1.5
    """
    gcv = np.asarray(group_cv_value, dtype=np.float64)
    if (gcv <= 0).any():
        raise ValueError("group CV must be positive")
    return _scalar_or_array(np.asarray(lab_cv, dtype=np.float64) / gcv)


def bias_pct(lab_mean, group_mean):
    """Return Bias% = 100·(lab mean − group mean)/|group mean|.

    The absolute value keeps the sign of the bias the sign of lab − group (and of the SDI)
    for analytes whose means are negative (base excess); for positive means it is QC_SPEC §3's
    formula unchanged.

    Examples
    --------
    >>> round(bias_pct(5.1, 5.0), 6)
    2.0
    """
    gm = np.asarray(group_mean, dtype=np.float64)
    if (gm == 0).any():
        raise ValueError("group_mean must not be 0")
    return _scalar_or_array(100.0 * (np.asarray(lab_mean, dtype=np.float64) - gm) / np.abs(gm))


def _check_band_input(value: float, name: str) -> float:
    v = float(value)
    if math.isnan(v):
        raise ValueError(f"{name} must not be NaN")
    return v


def sdi_band(value: float) -> Band:
    """Classify an SDI: |SDI| < 1.25, [1.25, 1.5), [1.5, 2), ≥ 2.

    A boundary value belongs to the higher band (|SDI| = 2.0 is unacceptable).

    Examples
    --------
    >>> sdi_band(-1.25).code
    'acceptable_investigate'
    """
    a = abs(_check_band_input(value, "SDI"))
    return SDI_BANDS[0 if a < 1.25 else 1 if a < 1.5 else 2 if a < 2.0 else 3]


def cvr_band(value: float) -> Band:
    """Classify a CVR: ≤ 1.0 good, (1.0, 1.5] acceptable, (1.5, 2.0] investigate, > 2.0.

    Examples
    --------
    >>> cvr_band(1.5).label
    '可接受'
    """
    v = _check_band_input(value, "CVR")
    if v < 0:
        raise ValueError("CVR must not be negative")
    return CVR_BANDS[0 if v <= 1.0 else 1 if v <= 1.5 else 2 if v <= 2.0 else 3]


def _segment_rank(values: np.ndarray, seg: np.ndarray, starts: np.ndarray, n_seg: int):
    """Min-rank values ascending within segments; NaN is not ranked."""
    order = np.lexsort((values, seg))
    sv, sseg = values[order], seg[order]
    pos = np.arange(sv.size)
    new = np.ones(sv.size, dtype=bool)
    new[1:] = (sseg[1:] != sseg[:-1]) | (sv[1:] != sv[:-1])
    run_start = np.maximum.accumulate(np.where(new, pos, 0))
    valid = ~np.isnan(sv)
    ranked = np.where(valid, (run_start - starts[sseg] + 1).astype(np.float64), np.nan)
    m = np.bincount(sseg[valid], minlength=n_seg)[sseg]
    with np.errstate(invalid="ignore", divide="ignore"):
        pct = np.where(m > 1, 100.0 * (ranked - 1) / (m - 1), 0.0)
    pct[~valid] = np.nan
    rank = np.empty_like(ranked)
    percentile = np.empty_like(pct)
    rank[order], percentile[order] = ranked, pct
    return rank, percentile


def rank_in_group(values) -> Ranking:
    """Rank the members of one group (rank 1 = smallest = best; ties share the min rank).

    Pass |bias| to rank bias and CV to rank imprecision. percentile =
    100·(rank − 1)/(m − 1), m = number of non-NaN values: the percentage of the other
    members strictly better than this one (0 best, 100 worst).

    Examples
    --------
    >>> r = rank_in_group([0.5, 2.0, 0.5, 1.0])
    >>> r.rank.tolist(), r.percentile.tolist()
    ([1.0, 4.0, 1.0, 3.0], [0.0, 100.0, 0.0, 66.66666666666667])
    """
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError("values must be one-dimensional")
    rank, pct = _segment_rank(arr, np.zeros(arr.size, dtype=np.int64), np.zeros(1, np.int64), 1)
    return Ranking(rank, pct)


def nccl_pass(cv: float, bias: float, allowable_cv: float | None,
              allowable_bias: float | None, tea: float) -> NcclAssessment:
    """Assess a lab × analyte NCCL-style: CV ≤ allowable CV and |bias| ≤ allowable bias.

    Without an allowable CV, TEa/3 is used (NCCL one-third rule); without an allowable bias,
    TEa/2. CV is also reported against TEa/3 and TEa/4. All values in percent.

    Examples
    --------
    >>> nccl_pass(2.5, -1.8, 3.0, 2.0, 7.0).passed
    True
    """
    values = (cv, bias, tea) + tuple(v for v in (allowable_cv, allowable_bias) if v is not None)
    if any(not math.isfinite(v) for v in values):
        raise ValueError("nccl_pass inputs must be finite")
    if cv < 0 or tea <= 0:
        raise ValueError("cv must be ≥ 0 and tea > 0")
    cv_limit = tea / 3.0 if allowable_cv is None else float(allowable_cv)
    bias_limit = tea / 2.0 if allowable_bias is None else float(allowable_bias)
    cv_ok, bias_ok = cv <= cv_limit, abs(bias) <= bias_limit
    return NcclAssessment(cv_ok and bias_ok, cv_ok, bias_ok, cv_limit, bias_limit,
                          cv <= tea / 3.0, cv <= tea / 4.0)


def grade(sigma: float) -> str:
    """Grade a sigma metric: A σ ≥ 6, B 4 ≤ σ < 6, C 3 ≤ σ < 4, D σ < 3.

    Examples
    --------
    >>> [grade(s) for s in (6.0, 5.99, 4.0, 3.0, 2.99)]
    ['A', 'B', 'B', 'C', 'D']
    """
    s = float(sigma)
    if math.isnan(s):
        raise ValueError("sigma must not be NaN")
    return "A" if s >= 6 else "B" if s >= 4 else "C" if s >= 3 else "D"


def grade_performance(bias: float, cv: float, tea: float, source: str = "") -> GradeResult:
    """Grade a lab × analyte from bias% vs the peer mean, CV% and TEa%: σ = (TEa − |bias|)/CV."""
    sigma = sigma_metric(tea, bias, cv)
    return GradeResult(grade(sigma), sigma, float(bias), float(cv), float(tea), source)


def lab_overall_grade(grades: Iterable[str]) -> OverallGrade:
    """Summarise a lab's analyte grades: share_ab = #(A or B)/#analytes.

    Examples
    --------
    >>> lab_overall_grade(["A", "B", "C", "D"]).share_ab
    0.5
    """
    grades = list(grades)
    if not grades:
        raise ValueError("grades must not be empty")
    unknown = set(grades) - {"A", "B", "C", "D"}
    if unknown:
        raise ValueError(f"unknown grades: {sorted(unknown)}")
    counts = {g: grades.count(g) for g in "ABCD"}
    return OverallGrade(len(grades), counts["A"], counts["B"], counts["C"], counts["D"],
                        (counts["A"] + counts["B"]) / len(grades))
