"""Fold test systems and levels into one fact per lab × analyte × month (QC_SPEC §7).

Definitions:

* submission rate = days with at least one judged run / expected QC days, per test system;
  for several systems the days are summed (equal to the mean of the systems' rates when
  they share the lab's calendar, which they do);
* in-control rate = 1 − rejected runs / judged runs (pending runs excluded), computed as
  100·(judged − rejected)/judged so that 19 of 20 is exactly 95.0;
* NCCL pass per level: CV ≤ allowable CV and |bias| ≤ allowable bias (TEa/3 and TEa/2 when
  the specification gives none), :func:`qcwx.qcstats.peer.nccl_pass`; a level without a
  published group, a CV or a TEa is not assessed;
* grade of a month = the worst grade of the analyte's levels (A best, D worst).

Callers import :mod:`qcwx.qcstats.conclusions`, which re-exports everything here.

References
----------
QC_SPEC §3 (NCCL-style pass, grades) and §7; WS/T 403-2024 (allowable CV, bias, TEa).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from .peer_metrics import nccl_pass
from .recognition import KEYS, TOL, RecognitionCriteria, finite

__all__ = ["monthly_facts", "monthly_facts_from_summary"]

_LEVEL_COLUMNS = ("lab", "analyte", "month", "sdi", "cvr", "bias_pct", "cv", "tea_pct",
                  "allowable_cv", "allowable_bias", "sigma", "grade")
_SYSTEM_COLUMNS = ("lab", "analyte", "month", "judged_days", "expected_days", "judged_runs",
                   "rejected_runs")


# --------------------------------------------------------------------------- monthly facts


def _frame(data: pd.DataFrame | None, columns: Sequence[str], name: str) -> pd.DataFrame:
    if data is None:
        return pd.DataFrame(columns=list(columns))
    missing = [c for c in columns if c not in data.columns]
    if missing:
        raise ValueError(f"{name} lacks columns {missing}")
    return data.loc[:, list(columns)].reset_index(drop=True)



def _assess_level(row: Mapping) -> dict:
    """Return the NCCL verdict of one level and its bias/CV ratios to their limits."""
    cv, bias, tea = (finite(row.get(k)) for k in ("cv", "bias_pct", "tea_pct"))
    if cv is None or bias is None or tea is None or tea <= 0 or cv < 0:
        return {"assessed": False, "passed": False, "bias_fail": False, "cv_fail": False,
                "bias_limit": np.nan, "cv_limit": np.nan, "bias_ratio": np.nan,
                "cv_ratio": np.nan}
    verdict = nccl_pass(cv, bias, finite(row.get("allowable_cv")),
                        finite(row.get("allowable_bias")), tea)
    return {"assessed": True, "passed": verdict.passed, "bias_fail": not verdict.bias_pass,
            "cv_fail": not verdict.cv_pass, "bias_limit": verdict.bias_limit,
            "cv_limit": verdict.cv_limit,
            "bias_ratio": abs(bias) / verdict.bias_limit if verdict.bias_limit > 0 else np.inf,
            "cv_ratio": cv / verdict.cv_limit if verdict.cv_limit > 0 else np.inf}


_GRADE_RANK = {"A": 1, "B": 2, "C": 3, "D": 4}
_GRADE_OF = {rank: grade for grade, rank in _GRADE_RANK.items()}


def _worst(work: pd.DataFrame, key: str, columns: list[str]) -> pd.DataFrame:
    """Return, per lab × analyte × month, ``columns`` of the row with the largest ``key``.

    Rows whose key is NaN come last, so a group without any finite key gives NaN values
    (their columns are NaN by construction).
    """
    ordered = work.sort_values(key, ascending=False, na_position="last", kind="stable")
    return ordered.drop_duplicates(KEYS).set_index(KEYS)[columns]


def _level_part(lv: pd.DataFrame) -> pd.DataFrame:
    """Return the NCCL counts and worst values per lab × analyte × month (vectorised)."""
    assessed = lv["assessed"].astype(bool)
    number = {c: pd.to_numeric(lv[c], errors="coerce")
              for c in ("sdi", "cvr", "sigma", "bias_pct", "cv", "bias_limit", "cv_limit",
                        "bias_ratio", "cv_ratio")}
    work = lv[KEYS].assign(
        assessed=assessed, failed=assessed & ~lv["passed"].astype(bool),
        bias_fail=assessed & lv["bias_fail"].astype(bool),
        cv_fail=assessed & lv["cv_fail"].astype(bool), sdi=number["sdi"],
        abs_sdi=number["sdi"].abs(), cvr=number["cvr"], sigma=number["sigma"],
        grade_rank=lv["grade"].map(_GRADE_RANK),
        **{c: number[c].where(assessed) for c in ("bias_pct", "cv", "bias_limit", "cv_limit",
                                                  "bias_ratio", "cv_ratio")})
    groups = work.groupby(KEYS, sort=True)
    out = pd.DataFrame({"levels_assessed": groups["assessed"].sum(),
                        "levels_failed": groups["failed"].sum(),
                        "bias_failed": groups["bias_fail"].sum(),
                        "cv_failed": groups["cv_fail"].sum(), "cvr": groups["cvr"].max(),
                        "sigma": groups["sigma"].min(), "grade_rank": groups["grade_rank"].max()})
    out["sdi"] = _worst(work, "abs_sdi", ["sdi"])["sdi"]
    out[["bias_pct", "bias_limit"]] = _worst(work, "bias_ratio", ["bias_pct", "bias_limit"])
    out[["cv", "cv_limit"]] = _worst(work, "cv_ratio", ["cv", "cv_limit"])
    out["grade"] = [_GRADE_OF.get(r) for r in out.pop("grade_rank")]
    return out.reset_index()


def monthly_facts(levels: pd.DataFrame | None, systems: pd.DataFrame | None,
                  criteria: RecognitionCriteria | None = None) -> pd.DataFrame:
    """Fold levels and test systems into one row per lab × analyte × month.

    Parameters
    ----------
    levels : DataFrame
        One row per lab × analyte × month × level (a test system's QC level) with ``lab``,
        ``analyte``, ``month`` (``YYYY-MM``), ``sdi``, ``cvr``, ``bias_pct``, ``cv`` (%),
        ``tea_pct``, ``allowable_cv``, ``allowable_bias``, ``sigma`` and ``grade``; NaN or
        None where the level has no published group or no specification.
    systems : DataFrame
        One row per lab × analyte × month × test system with ``judged_days``,
        ``expected_days``, ``judged_runs`` and ``rejected_runs``.
    criteria : RecognitionCriteria, optional
        Limits of the monthly flags (default :class:`RecognitionCriteria`).

    Returns
    -------
    DataFrame
        Keys, the summed participation counts, ``submission_pct`` and ``in_control_pct``
        (NaN without expected days / judged runs), ``levels_assessed``, ``levels_failed``,
        ``bias_failed``, ``cv_failed`` (NCCL, per level), ``nccl_pass`` (True, False, or None
        when no level was assessed), the worst values — ``sdi`` (largest |SDI|, signed),
        ``cvr`` (largest), ``bias_pct`` with its ``bias_limit`` and ``cv`` with its
        ``cv_limit`` (largest ratio to the limit), ``sigma`` (smallest), ``grade`` (worst) —
        and the flags of :func:`explain`: ``systematic`` (|SDI| ≥ 2 or a bias beyond its
        limit), ``imprecision`` (CVR > 1.5 or a CV beyond its limit), ``participation``
        (submission < 90 %), ``rejections`` (in control < 95 %), ``low_grade`` (a grade not
        in ``passing_grades``).

    Examples
    --------
    >>> levels = pd.DataFrame({"lab": [1, 1], "analyte": [7, 7], "month": ["2026-09"] * 2,
    ...     "sdi": [0.4, -2.3], "cvr": [0.9, 1.1], "bias_pct": [0.5, -2.6], "cv": [1.5, 1.6],
    ...     "tea_pct": [7.0, 7.0], "allowable_cv": [3.0, 3.0], "allowable_bias": [2.0, 2.0],
    ...     "sigma": [4.3, 2.8], "grade": ["B", "D"]})
    >>> systems = pd.DataFrame({"lab": [1], "analyte": [7], "month": ["2026-09"],
    ...     "judged_days": [27], "expected_days": [30], "judged_runs": [40],
    ...     "rejected_runs": [2]})
    >>> row = monthly_facts(levels, systems).to_dict("records")[0]
    >>> row["submission_pct"], row["in_control_pct"], row["nccl_pass"], row["grade"]
    (90.0, 95.0, False, 'D')
    >>> row["systematic"], row["imprecision"], row["participation"]
    (True, False, False)
    """
    criteria = criteria or RecognitionCriteria()
    lv = _frame(levels, _LEVEL_COLUMNS, "levels")
    sy = _frame(systems, _SYSTEM_COLUMNS, "systems")
    assessed = pd.DataFrame([_assess_level(r) for r in lv.to_dict("records")],
                            columns=["assessed", "passed", "bias_fail", "cv_fail", "bias_limit",
                                     "cv_limit", "bias_ratio", "cv_ratio"])
    lv = pd.concat([lv, assessed], axis=1)
    columns = [*KEYS, "levels_assessed", "levels_failed", "bias_failed", "cv_failed", "sdi",
               "cvr", "sigma", "grade", "bias_pct", "bias_limit", "cv", "cv_limit"]
    level_part = _level_part(lv)[columns] if len(lv) else pd.DataFrame(columns=columns)
    counts = ["judged_days", "expected_days", "judged_runs", "rejected_runs"]
    sy[counts] = sy[counts].apply(pd.to_numeric, errors="coerce").fillna(0).astype("int64")
    system_part = sy.groupby(KEYS, sort=True, as_index=False)[counts].sum()
    if not len(system_part):
        out = level_part.assign(**{c: 0 for c in counts})
    elif not len(level_part):
        out = system_part.assign(**{c: np.nan for c in level_part.columns if c not in KEYS})
        out["grade"] = None
    else:
        out = system_part.merge(level_part, on=KEYS, how="outer")
    out[counts] = out[counts].fillna(0).astype("int64")
    for col in ("levels_assessed", "levels_failed", "bias_failed", "cv_failed"):
        out[col] = out[col].fillna(0).astype("int64")
    return _add_flags(out.sort_values(KEYS, ignore_index=True), criteria)


def _pct(part: np.ndarray, whole: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(whole > 0, 100.0 * part / np.where(whole > 0, whole, 1), np.nan)


def _add_flags(out: pd.DataFrame, criteria: RecognitionCriteria) -> pd.DataFrame:
    judged = out["judged_runs"].to_numpy(np.float64)
    out["submission_pct"] = _pct(out["judged_days"].to_numpy(np.float64),
                                 out["expected_days"].to_numpy(np.float64))
    out["in_control_pct"] = _pct(judged - out["rejected_runs"].to_numpy(np.float64), judged)
    out["nccl_pass"] = [None if a == 0 else bool(f == 0)
                        for a, f in zip(out["levels_assessed"], out["levels_failed"],
                                        strict=True)]
    sdi = pd.to_numeric(out["sdi"], errors="coerce").abs()
    cvr = pd.to_numeric(out["cvr"], errors="coerce")
    out["systematic"] = (sdi >= criteria.sdi_limit - TOL).fillna(False) | (out["bias_failed"] > 0)
    out["imprecision"] = (cvr > criteria.cvr_limit).fillna(False) | (out["cv_failed"] > 0)
    out["participation"] = pd.Series(
        out["submission_pct"] < criteria.min_submission_pct - TOL).fillna(False)
    out["rejections"] = pd.Series(
        out["in_control_pct"] < criteria.min_in_control_pct - TOL).fillna(False)
    out["low_grade"] = [isinstance(g, str) and g not in criteria.passing_grades
                        for g in out["grade"]]
    for col in ("systematic", "imprecision", "participation", "rejections", "low_grade"):
        out[col] = out[col].astype(bool)
    return out



def monthly_facts_from_summary(summary: pd.DataFrame,
                               criteria: RecognitionCriteria | None = None) -> pd.DataFrame:
    """Complete per-month summaries (already one row per lab × analyte × month) with flags.

    For callers (and examples) that aggregate levels themselves: ``summary`` holds the
    count columns and worst values of :func:`monthly_facts`; rates, ``nccl_pass`` and the
    flags are added the same way.

    Examples
    --------
    >>> s = pd.DataFrame({"lab": [1], "analyte": [2], "month": ["2026-09"],
    ...     "judged_days": [30], "expected_days": [30], "judged_runs": [20],
    ...     "rejected_runs": [1], "levels_assessed": [2], "levels_failed": [0]})
    >>> row = monthly_facts_from_summary(s).to_dict("records")[0]
    >>> row["in_control_pct"], row["nccl_pass"], row["rejections"]
    (95.0, True, False)
    """
    criteria = criteria or RecognitionCriteria()
    out = summary.copy()
    defaults = {"bias_failed": 0, "cv_failed": 0, "sdi": np.nan, "cvr": np.nan,
                "sigma": np.nan, "grade": None, "bias_pct": np.nan, "bias_limit": np.nan,
                "cv": np.nan, "cv_limit": np.nan}
    for col, value in defaults.items():
        if col not in out.columns:
            out[col] = value
    return _add_flags(out.sort_values(KEYS, ignore_index=True), criteria)
