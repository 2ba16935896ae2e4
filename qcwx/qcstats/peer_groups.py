"""Peer-group statistics: robust group mean and SD over lab means, publication, fallback.

ISO 13528 Algorithm A (or iterative 3-SD exclusion) over the lab (or test-system) means of
each group, a vectorised :func:`group_statistics` for many groups at once, the publication
rule (≥ 5 distinct labs, ≥ 20 results) with its peer → method → all fallback, and the
incremental helpers a service uses when one new result arrives. Re-exported by
:mod:`qcwx.qcstats.peer`; see its docstring for the summation note.

References
----------
ISO 13528:2022, *Statistical methods for use in proficiency testing by interlaboratory
comparison*, Annex C.3 (Algorithm A).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .peer_metrics import _segment_rank, cv_pct, group_cv
from .robust import (
    _METHODS,
    ALGORITHM_A,
    RobustEstimate,
    _algorithm_a_segments,
    _as_finite_1d,
    _segment_nanmean,
    _starts,
)
from .robust import robust_estimate as _robust

__all__ = [
    "FALLBACK_ORDER", "MIN_LABS", "MIN_RESULTS", "GroupLevelChoice", "GroupStatistics",
    "GroupSummary", "LabMoments", "choose_group_level", "group_statistics", "publishable",
    "summarise_group", "update_lab_moments",
]

logger = logging.getLogger(__name__)

MIN_LABS = 5
MIN_RESULTS = 20
FALLBACK_ORDER = ("peer", "method", "all")


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
    seg, starts, counts = _segments(agg.index, len(by))
    labs, n, means, cvs = _lab_frame(agg)
    est = _group_estimates(means[np.lexsort((means, seg))], counts, method)
    gcv = _segment_nanmean(cvs, seg, starts.size)
    _add_comparisons(labs, means, cvs, seg, starts, est, gcv)
    n_results = np.add.reduceat(n, starts) if len(agg.index) else n
    n_labs = counts if system is None else _distinct_per_segment(agg.index.codes[len(by)], seg,
                                                                 starts.size)
    groups = _group_frame(labs.loc[starts, by].reset_index(drop=True), est, gcv,
                          (n_labs, counts, n_results), method)
    logger.debug("group_statistics: %s labs rows, %s groups", len(labs), len(groups))
    return GroupStatistics(labs, groups)


def _group_frame(groups: pd.DataFrame, est: dict, gcv: np.ndarray, sizes: tuple,
                 method: str) -> pd.DataFrame:
    """Add sizes, robust estimate, group CV and publishability to the group keys' rows."""
    n_labs, counts, n_results = sizes
    groups["n_labs"], groups["n_systems"], groups["n_results"] = n_labs, counts, n_results
    groups["group_mean"], groups["group_sd"], groups["group_cv"] = est["mean"], est["sd"], gcv
    groups["iterations"], groups["flagged"] = est["iterations"], est["flagged"]
    groups["converged"] = est["converged"]
    groups["publishable"] = (n_labs >= MIN_LABS) & (n_results >= MIN_RESULTS)
    groups["method"] = method
    return groups


def _segments(idx: pd.MultiIndex, n_by: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return the group of each sorted row, the first row of each group and its size."""
    new = np.zeros(len(idx), dtype=bool)
    if len(idx):
        new[0] = True
        for codes in idx.codes[:n_by]:
            new[1:] |= codes[1:] != codes[:-1]
    seg = np.cumsum(new) - 1
    starts = np.flatnonzero(new)
    return seg, starts, np.diff(np.append(starts, len(idx)))


def _lab_frame(agg: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray]:
    """Return the lab rows (keys, n, lab_mean, lab_sd, lab_cv) with their n, means and CVs."""
    n = agg["count"].to_numpy(np.int64)
    means = agg["mean"].to_numpy(np.float64)
    sds = agg["std"].to_numpy(np.float64)
    cvs = np.asarray(cv_pct(sds, means), dtype=np.float64).reshape(-1)
    labs = agg.index.to_frame(index=False)
    labs["n"], labs["lab_mean"], labs["lab_sd"], labs["lab_cv"] = n, means, sds, cvs
    return labs, n, means, cvs


def _add_comparisons(labs: pd.DataFrame, means: np.ndarray, cvs: np.ndarray, seg: np.ndarray,
                     starts: np.ndarray, est: dict, gcv: np.ndarray) -> None:
    """Add SDI, CVR, bias% and the ranks of |bias| and CV to the lab rows (NaN if undefined)."""
    gm, gs, gc = est["mean"][seg], est["sd"][seg], gcv[seg]
    with np.errstate(invalid="ignore", divide="ignore"):
        labs["sdi"] = np.where(gs > 0, (means - gm) / gs, np.nan)
        labs["cvr"] = np.where(gc > 0, cvs / gc, np.nan)
        bias = np.where(gm != 0, 100.0 * (means - gm) / np.abs(gm), np.nan)
    labs["bias_pct"] = bias
    labs["bias_rank"], labs["bias_percentile"] = _segment_rank(np.abs(bias), seg, starts,
                                                               starts.size)
    labs["cv_rank"], labs["cv_percentile"] = _segment_rank(cvs, seg, starts, starts.size)


def _distinct_per_segment(codes: np.ndarray, seg: np.ndarray, n_seg: int) -> np.ndarray:
    """Count the distinct non-negative ``codes`` within each segment."""
    width = int(codes.max()) + 1 if codes.size else 1
    pairs = np.unique(seg.astype(np.int64) * width + codes)
    return np.bincount(pairs // width, minlength=n_seg)
