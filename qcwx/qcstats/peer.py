"""Peer-group statistics for inter-laboratory comparison (QC_SPEC §3).

Robust group mean and SD by ISO 13528 Algorithm A (or iterative 3-SD exclusion; both in
:mod:`qcwx.qcstats.robust` and re-exported here), CV%, SDI, CVR, bias, their bands, ranks,
NCCL-style pass, sigma grades, publishability and group fallback, a vectorised
:func:`group_statistics` for many peer groups at once, and the incremental helpers
(:class:`LabMoments`, :func:`update_lab_moments`, :func:`summarise_group`) a service uses when
one new result arrives. Each test system is one point of its group; "≥ 5 labs" counts
distinct labs (QC_SPEC §3 "Who counts once").

References
----------
ISO 13528:2022, *Statistical methods for use in proficiency testing by interlaboratory
comparison*, Annex C.3 (Algorithm A).
Westgard JO, Westgard SA. Sigma-metrics for grading analytical performance.

Summation note: every mean and SD in this module is accumulated with ``np.add.reduceat``
over values sorted ascending within a group, so a group's result does not depend on the other
groups computed with it: :func:`algorithm_a` and :func:`group_statistics` agree bit for bit.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .robust import (
    _METHODS,
    ALGORITHM_A,
    ITERATIVE_3SD,
    RobustEstimate,
    _algorithm_a_segments,
    _as_finite_1d,
    _scalar_or_array,
    _segment_nanmean,
    _seq_sum,
    _starts,
    algorithm_a,
    algorithm_a_groups,
    iterative_3sd,
)
from .robust import robust_estimate as _robust
from .sigma import sigma_metric

__all__ = [
    "ALGORITHM_A",
    "CVR_BANDS",
    "FALLBACK_ORDER",
    "ITERATIVE_3SD",
    "MIN_LABS",
    "MIN_RESULTS",
    "SDI_BANDS",
    "Band",
    "GradeResult",
    "GroupLevelChoice",
    "GroupStatistics",
    "GroupSummary",
    "LabMoments",
    "NcclAssessment",
    "OverallGrade",
    "Ranking",
    "RobustEstimate",
    "algorithm_a",
    "algorithm_a_groups",
    "bias_pct",
    "choose_group_level",
    "cv_pct",
    "cvr",
    "cvr_band",
    "grade",
    "grade_performance",
    "group_cv",
    "group_statistics",
    "iterative_3sd",
    "lab_overall_grade",
    "nccl_pass",
    "publishable",
    "rank_in_group",
    "sdi",
    "sdi_band",
    "summarise_group",
    "update_lab_moments",
]

logger = logging.getLogger(__name__)

MIN_LABS = 5
MIN_RESULTS = 20
FALLBACK_ORDER = ("peer", "method", "all")
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


@dataclass(frozen=True)
class GroupLevelChoice:
    """The group level whose statistics are published, with its size."""

    level: str
    n_labs: int
    n_results: int


@dataclass(frozen=True)
class LabMoments:
    """Running sums of one lab's results in one peer group: n, Σx, Σx²."""

    n: int = 0
    total: float = 0.0
    total_sq: float = 0.0

    @property
    def mean(self) -> float:
        """Return Σx/n (NaN when n = 0)."""
        return self.total / self.n if self.n else math.nan

    @property
    def sd(self) -> float:
        """Return √((Σx² − (Σx)²/n)/(n − 1)), clipped at 0 (NaN when n < 2)."""
        if self.n < 2:
            return math.nan
        return math.sqrt(max(self.total_sq - self.total * self.total / self.n, 0.0) / (self.n - 1))

    @property
    def cv(self) -> float:
        """Return :func:`cv_pct` of the moments (never negative; NaN when undefined)."""
        return float(cv_pct(self.sd, self.mean))


@dataclass(frozen=True)
class GroupSummary:
    """Statistics of one peer group computed from its lab means."""

    mean: float
    sd: float
    n_labs: int
    n_results: int
    group_cv: float
    iterations: int
    flagged: bool
    converged: bool
    publishable: bool
    method: str


@dataclass(frozen=True, eq=False)
class GroupStatistics:
    """Output of :func:`group_statistics`: one row per lab × group and one per group."""

    labs: pd.DataFrame
    groups: pd.DataFrame


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


# --------------------------------------------------------------------------- publication


def publishable(n_labs: int, n_results: int) -> bool:
    """Return True when a group may be published: ≥ 5 labs and ≥ 20 results.

    Examples
    --------
    >>> publishable(5, 20), publishable(4, 100)
    (True, False)
    """
    if n_labs < 0 or n_results < 0:
        raise ValueError("sizes must not be negative")
    return n_labs >= MIN_LABS and n_results >= MIN_RESULTS


def choose_group_level(sizes: Mapping[str, tuple[int, int]],
                       order: Sequence[str] = FALLBACK_ORDER) -> GroupLevelChoice | None:
    """Pick the first publishable group level in the fallback order peer → method → all.

    Parameters
    ----------
    sizes : mapping
        ``{level: (n_labs, n_results)}``; missing levels are skipped.
    order : sequence of str
        Fallback order, default ``("peer", "method", "all")``.

    Returns
    -------
    GroupLevelChoice or None
        None when no level is publishable.

    Examples
    --------
    >>> choose_group_level({"peer": (3, 60), "method": (12, 300), "all": (80, 2000)}).level
    'method'
    """
    unknown = set(sizes) - set(order)
    if unknown:
        raise ValueError(f"unknown group levels: {sorted(unknown)}")
    for level in order:
        if level in sizes:
            n_labs, n_results = sizes[level]
            if publishable(n_labs, n_results):
                return GroupLevelChoice(level, int(n_labs), int(n_results))
    return None


# --------------------------------------------------------------------------- incremental


def update_lab_moments(moments: LabMoments | None, add=(), remove=()) -> LabMoments:
    """Return new running sums after adding and/or removing results.

    n' = n + #add − #remove, Σx' = Σx + Σadd − Σremove, Σx²' likewise (remove serves a
    corrected or deleted result version).

    Examples
    --------
    >>> m = update_lab_moments(None, add=[5.0, 5.2, 5.1])
    >>> m.n, round(m.mean, 6), round(m.sd, 6)
    (3, 5.1, 0.1)
    """
    m = moments or LabMoments()
    a = np.atleast_1d(np.asarray(add, dtype=np.float64))
    r = np.atleast_1d(np.asarray(remove, dtype=np.float64))
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(r))):
        raise ValueError("results must be finite")
    n = m.n + a.size - r.size
    if n < 0:
        raise ValueError("cannot remove more results than were added")
    if n == 0:
        return LabMoments()
    return LabMoments(n, m.total + float(a.sum()) - float(r.sum()),
                      m.total_sq + float((a * a).sum()) - float((r * r).sum()))


def summarise_group(lab_means, lab_cvs=None, lab_ns=None,
                    method: str = ALGORITHM_A, lab_ids=None) -> GroupSummary:
    """Recompute one peer group from its lab-mean vector (incremental path).

    Group mean and SD by :func:`algorithm_a` (or :func:`iterative_3sd`) over the lab means,
    group CV = mean of the lab CVs, n_results = Σ lab n; equal to the row
    :func:`group_statistics` produces for the same group.

    Parameters
    ----------
    lab_means : array_like
        One mean per member (a lab, or a test system: each system is one point).
    lab_cvs : array_like, optional
        One CV% per lab (NaN for labs with one result).
    lab_ns : array_like, optional
        Results per lab; without it n_results is unknown (0) and the group not publishable.
    method : str
        ``"algorithm_a"`` (default) or ``"iterative_3sd"``.
    lab_ids : array_like, optional
        The lab of each member when members are test systems: n_labs then counts distinct
        labs (two analysers of one lab are two points but one lab); default one lab each.
    """
    means = _as_finite_1d(lab_means, "lab_means")
    n_labs = means.size
    if lab_ids is not None:
        labs = np.asarray(lab_ids)
        if labs.shape != means.shape:
            raise ValueError("lab_ids must give one lab per mean")
        n_labs = len(pd.unique(labs))
    est = _robust(means, method)
    gcv = math.nan if lab_cvs is None else group_cv(lab_cvs)
    n_results = 0 if lab_ns is None else int(np.asarray(lab_ns, dtype=np.int64).sum())
    return GroupSummary(est.mean, est.sd, n_labs, n_results, gcv, est.iterations,
                        est.flagged, est.converged, publishable(n_labs, n_results), method)


# --------------------------------------------------------------------------- vectorised


def _check_frame(df: pd.DataFrame, by: list[str], points: list[str], value: str) -> None:
    missing = [c for c in (*by, *points, value) if c not in df.columns]
    if missing:
        raise ValueError(f"missing columns: {missing}")
    if not by:
        raise ValueError("by must name at least one group key")
    if not pd.api.types.is_numeric_dtype(df[value]):
        raise ValueError(f"column {value!r} must be numeric")
    if np.isinf(df[value].to_numpy(dtype=np.float64, na_value=np.nan)).any():
        raise ValueError(f"column {value!r} must not contain infinities")


def _group_estimates(means, counts, method):
    if method == ALGORITHM_A:
        return _algorithm_a_segments(means, counts)
    starts = _starts(counts)
    ests = [_robust(means[s:s + c], method) if c >= 2 else
            RobustEstimate(float(means[s]), math.nan, 1, 0, True, method)
            for s, c in zip(starts, counts, strict=True)]
    return {k: np.array([getattr(e, k) for e in ests])
            for k in ("mean", "sd", "iterations", "flagged", "converged")}


def group_statistics(df: pd.DataFrame, by: Sequence[str], *, lab: str = "lab",
                     value: str = "value", method: str = ALGORITHM_A,
                     system: str | None = None) -> GroupStatistics:
    """Compute lab and peer-group statistics for many groups at once.

    Per lab × group: n, lab_mean, lab_sd (n − 1), lab_cv = 100·sd/|mean| of the raw results
    (NaN values skipped). Per group: Algorithm A over the lab means (group_mean, group_sd),
    group_cv = mean of the lab CVs, n_labs (distinct labs), n_systems (points), n_results,
    publishable (≥ 5 distinct labs, ≥ 20 results).
    Each lab row also gets sdi, cvr, bias_pct and the rank/percentile of |bias| and of CV
    (see :func:`rank_in_group`); they are NaN where the group SD, CV or mean is 0 or NaN.

    Parameters
    ----------
    df : pandas.DataFrame
        Raw results with the columns ``by``, ``lab`` and ``value``.
    by : sequence of str
        Peer-group keys (e.g. ``["qc_lot", "level", "analyte", "method"]``).
    lab, value : str
        Column names of the lab id and the result.
    system : str, optional
        Column of the test system: each lab × system is then one point (QC_SPEC §3: each
        analyser counts once) while n_labs still counts distinct labs. Default: one point
        per lab.
    method : str
        ``"algorithm_a"`` (vectorised across groups) or ``"iterative_3sd"``.

    Returns
    -------
    GroupStatistics
        ``labs`` (sorted by group keys then lab) and ``groups`` (sorted by group keys).

    References
    ----------
    ISO 13528:2022, Annex C.3.1; QC_SPEC §3.
    """
    by = list(by)
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    points = [lab] if system is None else [lab, system]
    _check_frame(df, by, points, value)
    agg = df.groupby([*by, *points], sort=True, observed=True)[value].agg(
        ["count", "mean", "std"])
    agg = agg[agg["count"].to_numpy() > 0]
    n = agg["count"].to_numpy(np.int64)
    means = agg["mean"].to_numpy(np.float64)
    sds = agg["std"].to_numpy(np.float64)
    cvs = np.asarray(cv_pct(sds, means), dtype=np.float64).reshape(-1)
    idx = agg.index
    new = np.zeros(len(idx), dtype=bool)
    if len(idx):
        new[0] = True
        for codes in idx.codes[: len(by)]:
            new[1:] |= codes[1:] != codes[:-1]
    seg = np.cumsum(new) - 1
    starts = np.flatnonzero(new)
    counts = np.diff(np.append(starts, len(idx)))
    order = np.lexsort((means, seg))
    est = _group_estimates(means[order], counts, method)
    gcv = _segment_nanmean(cvs, seg, starts.size)
    n_results = np.add.reduceat(n, starts) if len(idx) else n
    labs = idx.to_frame(index=False)
    labs["n"], labs["lab_mean"], labs["lab_sd"], labs["lab_cv"] = n, means, sds, cvs
    gm, gs, gc = est["mean"][seg], est["sd"][seg], gcv[seg]
    with np.errstate(invalid="ignore", divide="ignore"):
        labs["sdi"] = np.where(gs > 0, (means - gm) / gs, np.nan)
        labs["cvr"] = np.where(gc > 0, cvs / gc, np.nan)
        bias = np.where(gm != 0, 100.0 * (means - gm) / np.abs(gm), np.nan)
    labs["bias_pct"] = bias
    labs["bias_rank"], labs["bias_percentile"] = _segment_rank(np.abs(bias), seg, starts,
                                                               starts.size)
    labs["cv_rank"], labs["cv_percentile"] = _segment_rank(cvs, seg, starts, starts.size)
    groups = labs.loc[starts, by].reset_index(drop=True)
    n_labs = counts if system is None else _distinct_per_segment(idx.codes[len(by)], seg,
                                                                 starts.size)
    groups["n_labs"], groups["n_systems"], groups["n_results"] = n_labs, counts, n_results
    groups["group_mean"], groups["group_sd"], groups["group_cv"] = est["mean"], est["sd"], gcv
    groups["iterations"], groups["flagged"] = est["iterations"], est["flagged"]
    groups["converged"] = est["converged"]
    groups["publishable"] = (n_labs >= MIN_LABS) & (n_results >= MIN_RESULTS)
    groups["method"] = method
    logger.debug("group_statistics: %s labs rows, %s groups", len(labs), len(groups))
    return GroupStatistics(labs, groups)


def _distinct_per_segment(codes: np.ndarray, seg: np.ndarray, n_seg: int) -> np.ndarray:
    """Count the distinct non-negative ``codes`` within each segment."""
    width = int(codes.max()) + 1 if codes.size else 1
    pairs = np.unique(seg.astype(np.int64) * width + codes)
    return np.bincount(pairs // width, minlength=n_seg)
