"""Mutual-recognition recommendation of a lab × analyte over a window (QC_SPEC §7).

A lab × analyte is judged over an evaluation window (default the 3 calendar months ending
at the evaluated month) on four criteria: submission rate (填报率), in-control rate (在控率),
NCCL-style pass in every month on every level, and the grade of the latest month.
:func:`recommend` reads one row per lab × analyte × month (:func:`qcwx.qcstats.conclusions.
monthly_facts`) and gives the verdict (推荐互认 / 需改进 / 不合格) with every criterion's value
and status. A threshold is met when the value is at least the threshold minus 1e-9 (QC_SPEC
§1.1's tolerance): exactly 90 % and exactly 95 % pass. Callers import
:mod:`qcwx.qcstats.conclusions`, which re-exports everything here.

References
----------
QC_SPEC §3 (NCCL-style pass, grades) and §7 (submission, in-control, recommendation).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

__all__ = [
    "CRITERIA", "CRITERION_LABELS", "FAIL", "IMPROVE", "NA", "PASS", "RECOMMENDED", "TOL",
    "UNQUALIFIED", "VERDICTS", "VERDICT_TONES", "RecognitionCriteria", "finite", "month_at",
    "gaps", "month_index", "month_text", "recommend", "window_months",
]


RECOMMENDED, IMPROVE, UNQUALIFIED = "推荐互认", "需改进", "不合格"
#: The three verdicts, best first.
VERDICTS = (RECOMMENDED, IMPROVE, UNQUALIFIED)
#: Tone of each verdict on a page (``qcwx.reports.document.TONES``).
VERDICT_TONES = {RECOMMENDED: "ok", IMPROVE: "warn", UNQUALIFIED: "bad"}
#: Criterion codes in the order they are listed, with their Chinese names.
CRITERIA = ("submission", "in_control", "nccl", "grade")
CRITERION_LABELS = {"submission": "填报率", "in_control": "在控率", "nccl": "NCCL 通过",
                    "grade": "最新月等级"}
PASS, FAIL, NA = "pass", "fail", "na"
TOL = 1e-9

#: The keys of a monthly fact.
KEYS = ["lab", "analyte", "month"]


@dataclass(frozen=True)
class RecognitionCriteria:
    """Thresholds of the mutual-recognition recommendation (QC_SPEC §7 defaults).

    Parameters
    ----------
    min_submission_pct : float
        Submission rate over the window, percent (default 90).
    min_in_control_pct : float
        In-control rate over the window, percent (default 95).
    window_months : int
        Calendar months in the window, ending at the evaluated month (default 3).
    passing_grades : tuple of str
        Grades of the latest month that pass (default A and B).
    sdi_limit : float
        |SDI| at or above which a month shows a systematic error (default 2).
    cvr_limit : float
        CVR above which a month shows imprecision (default 1.5).

    Examples
    --------
    >>> RecognitionCriteria().min_submission_pct, RecognitionCriteria().window_months
    (90.0, 3)
    """

    min_submission_pct: float = 90.0
    min_in_control_pct: float = 95.0
    window_months: int = 3
    passing_grades: tuple[str, ...] = ("A", "B")
    sdi_limit: float = 2.0
    cvr_limit: float = 1.5

    def __post_init__(self) -> None:
        """Refuse thresholds that cannot be met or a window of no months."""
        for name in ("min_submission_pct", "min_in_control_pct"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0 <= value <= 100):
                raise ValueError(f"{name} must be a percentage in 0..100, got {value!r}")
        if not (isinstance(self.window_months, int) and 1 <= self.window_months <= 24):
            raise ValueError(f"window_months must be 1..24, got {self.window_months!r}")
        if not set(self.passing_grades) <= set("ABCD") or not self.passing_grades:
            raise ValueError(f"passing_grades must be some of A–D, got {self.passing_grades!r}")
        if not (self.sdi_limit > 0 and self.cvr_limit > 0):
            raise ValueError("sdi_limit and cvr_limit must be positive")


def month_index(month: str) -> int:
    """Return a month ``YYYY-MM`` as a month count (year·12 + month − 1)."""
    try:
        year, mon = int(month[:4]), int(month[5:7])
    except (TypeError, ValueError):
        raise ValueError(f"month must be YYYY-MM, got {month!r}") from None
    if len(month) != 7 or month[4] != "-" or not 1 <= mon <= 12:
        raise ValueError(f"month must be YYYY-MM, got {month!r}")
    return year * 12 + mon - 1


def month_at(index: int) -> str:
    """Return the ``YYYY-MM`` of a :func:`month_index`."""
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def window_months(latest: str, count: int = 3) -> tuple[str, ...]:
    """Return the ``count`` calendar months ending at ``latest`` (``YYYY-MM``), oldest first.

    Examples
    --------
    >>> window_months("2026-01", 3)
    ('2025-11', '2025-12', '2026-01')
    """
    end = month_index(latest)
    if count < 1:
        raise ValueError("count must be at least 1")
    return tuple(month_at(i) for i in range(end - count + 1, end + 1))


def month_text(month: str) -> str:
    """Return ``YYYY-MM`` as users read it.

    Examples
    --------
    >>> month_text("2026-09")
    '2026年9月'
    """
    index = month_index(month)
    return f"{index // 12}年{index % 12 + 1}月"



def finite(value) -> float | None:
    """Return ``value`` as a finite float, None for missing, non-numeric or non-finite."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


# --------------------------------------------------------------------------- recommendation


def _status_at_least(value: float, threshold: float) -> str:
    if value is None or not math.isfinite(value):
        return NA
    return PASS if value >= threshold - TOL else FAIL


def _window_pct(part: float, whole: float) -> float:
    return 100.0 * part / whole if whole > 0 else math.nan


def _total(rows: Sequence[dict], key: str) -> float:
    return float(sum(float(r[key]) for r in rows))


def _one(rows: Sequence[dict], window: Sequence[str], criteria: RecognitionCriteria) -> dict:
    latest = window[-1]
    by_month = {r["month"]: r for r in rows}
    submission = _window_pct(_total(rows, "judged_days"), _total(rows, "expected_days"))
    judged = _total(rows, "judged_runs")
    in_control = _window_pct(judged - _total(rows, "rejected_runs"), judged)
    nccl = {m: by_month.get(m, {}).get("nccl_pass") for m in window}
    passed = [m for m in window if nccl[m] is True]
    failed = [m for m in window if nccl[m] is False]
    grade = by_month.get(latest, {}).get("grade")
    grade = grade if isinstance(grade, str) else None
    status = {
        "submission": _status_at_least(submission, criteria.min_submission_pct),
        "in_control": _status_at_least(in_control, criteria.min_in_control_pct),
        "nccl": FAIL if failed else PASS if len(passed) == len(window) else NA,
        "grade": NA if grade is None else PASS if grade in criteria.passing_grades else FAIL,
    }
    severe = (status["submission"] == FAIL or status["in_control"] == FAIL
              or nccl[latest] is False or grade == "D")
    if severe:
        verdict = UNQUALIFIED
    elif all(s == PASS for s in status.values()):
        verdict = RECOMMENDED
    else:
        verdict = IMPROVE
    return {"submission_pct": submission, "in_control_pct": in_control,
            "nccl_months_passed": len(passed), "nccl_months": len(window),
            "nccl_failed_months": tuple(failed),
            "nccl_unassessed_months": tuple(m for m in window if nccl[m] is None),
            "nccl_latest_failed": nccl[latest] is False, "grade": grade,
            **{f"status_{k}": v for k, v in status.items()},
            "failed": tuple(k for k in CRITERIA if status[k] == FAIL),
            "unassessed": tuple(k for k in CRITERIA if status[k] == NA),
            "verdict": verdict, "tone": VERDICT_TONES[verdict]}


def recommend(facts: pd.DataFrame, latest: str,
              criteria: RecognitionCriteria | None = None) -> pd.DataFrame:
    """Recommend (or not) each lab × analyte for mutual recognition over the window.

    The window is the ``criteria.window_months`` calendar months ending at ``latest``.
    Criteria (each ``pass``, ``fail`` or ``na`` = cannot be assessed):

    * ``submission``: Σ judged days / Σ expected days over the window ≥ 90 %;
    * ``in_control``: 100·(judged − rejected)/judged runs over the window ≥ 95 %;
    * ``nccl``: every month of the window has assessed levels and none failed (``fail`` as
      soon as one level failed in one month, ``na`` when a month could not be assessed);
    * ``grade``: the latest month's grade is A or B (``na`` when not graded).

    Verdict rule (deterministic, in this order):

    1. **不合格** when a criterion clearly fails: submission < 90 % or in-control < 95 % over
       the window, or a level failed NCCL in the latest month, or the latest grade is D;
    2. **推荐互认** when all four criteria pass;
    3. **需改进** otherwise: NCCL failed only in an earlier month of the window, a month or
       the grade could not be assessed (no published group, no specification), or the
       latest grade is C.

    Parameters
    ----------
    facts : DataFrame
        :func:`monthly_facts` (other months than the window are ignored).
    latest : str
        The evaluated month, ``YYYY-MM``.
    criteria : RecognitionCriteria, optional
        Thresholds (default :class:`RecognitionCriteria`).

    Returns
    -------
    DataFrame
        One row per lab × analyte with data in the window: ``month`` (= ``latest``),
        ``submission_pct``,
        ``in_control_pct``, ``nccl_months_passed`` of ``nccl_months``,
        ``nccl_failed_months``, ``nccl_unassessed_months``, ``nccl_latest_failed``,
        ``grade`` (latest month), ``status_<criterion>``, ``failed`` and ``unassessed``
        (criterion codes, :data:`CRITERIA` order), ``verdict`` and ``tone``.

    Examples
    --------
    >>> facts = pd.DataFrame({"lab": [1] * 3, "analyte": [7] * 3,
    ...     "month": ["2026-07", "2026-08", "2026-09"], "judged_days": [28, 27, 29],
    ...     "expected_days": [31, 31, 30], "judged_runs": [40, 40, 40],
    ...     "rejected_runs": [2, 2, 2], "nccl_pass": [True, False, True],
    ...     "grade": ["A", "C", "B"]})
    >>> row = recommend(facts, "2026-09").to_dict("records")[0]
    >>> round(row["submission_pct"], 2), row["in_control_pct"], row["verdict"], row["failed"]
    (91.3, 95.0, '需改进', ('nccl',))
    """
    criteria = criteria or RecognitionCriteria()
    window = window_months(latest, criteria.window_months)
    columns = [*KEYS, "submission_pct", "in_control_pct", "nccl_months_passed",
               "nccl_months", "nccl_failed_months", "nccl_unassessed_months",
               "nccl_latest_failed", "grade", *(f"status_{k}" for k in CRITERIA), "failed",
               "unassessed", "verdict", "tone"]
    part = facts[facts["month"].isin(window)]
    groups: dict[tuple, list[dict]] = {}
    for record in part.to_dict("records"):  # one conversion; per-group frames are slow
        groups.setdefault((record["lab"], record["analyte"]), []).append(record)
    rows = [{"lab": lab, "analyte": analyte, "month": latest, **_one(items, window, criteria)}
            for (lab, analyte), items in sorted(groups.items())]
    return pd.DataFrame(rows, columns=columns)


# --------------------------------------------------------------------------- what to fix


def _grades_text(grades: Sequence[str]) -> str:
    return "/".join(grades)


def gaps(rec, criteria: RecognitionCriteria | None = None) -> tuple[str, ...]:
    """Return what a lab × analyte must fix to qualify, one line per failing criterion.

    Each line names the criterion, its value and the threshold it must reach, e.g.
    ``填报率 84.0% → 需 ≥ 90%``; a criterion that could not be assessed says so. Empty
    when every criterion passed.

    Examples
    --------
    >>> rec = {"submission_pct": 84.0, "in_control_pct": 97.5, "grade": "C",
    ...        "nccl_failed_months": ("2026-08",), "nccl_unassessed_months": (),
    ...        "status_submission": "fail", "status_in_control": "pass",
    ...        "status_nccl": "fail", "status_grade": "fail"}
    >>> for line in gaps(rec):
    ...     print(line)
    填报率 84.0% → 需 ≥ 90%
    NCCL 未通过（2026年8月）→ 需窗口内每月每个水平通过
    最新月等级 C → 需 A/B 级
    """
    criteria = criteria or RecognitionCriteria()
    out = []
    status = {k: rec.get(f"status_{k}") for k in CRITERIA}
    if status["submission"] == FAIL:
        out.append(f"填报率 {rec['submission_pct']:.1f}% → 需 ≥ {criteria.min_submission_pct:g}%")
    if status["in_control"] == FAIL:
        out.append(f"在控率 {rec['in_control_pct']:.1f}% → 需 ≥ {criteria.min_in_control_pct:g}%")
    if status["nccl"] == FAIL:
        months = "、".join(month_text(m) for m in rec.get("nccl_failed_months", ()))
        out.append(f"NCCL 未通过（{months}）→ 需窗口内每月每个水平通过")
    if status["grade"] == FAIL:
        out.append(f"最新月等级 {rec['grade']} → 需 {_grades_text(criteria.passing_grades)} 级")
    if status["submission"] == NA or status["in_control"] == NA:
        out.append("窗口内没有已评价的质控批次 → 需按日开展并上报室内质控")
    if status["nccl"] == NA:
        months = "、".join(month_text(m) for m in rec.get("nccl_unassessed_months", ()))
        out.append(f"NCCL 无法评价（{months}）→ 需比对组达到发布条件并配置质量规范")
    if status["grade"] == NA:
        out.append("最新月无法评定等级 → 需比对组达到发布条件并配置 TEa")
    return tuple(out)
