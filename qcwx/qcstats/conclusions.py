"""Mutual-recognition recommendation and generated conclusions (QC_SPEC §7).

A lab × analyte is judged over an evaluation window (default the 3 calendar months ending
at the report's month) on four criteria: submission rate (填报率), in-control rate (在控率),
NCCL-style pass in every month on every level, and the grade of the latest month. The
numbers come in as plain frames; :func:`monthly_facts` folds test systems and levels into
one row per lab × analyte × month, :func:`recommend` gives the verdict (推荐互认 / 需改进 /
不合格) with every criterion's value and status, and :func:`explain` writes the failing
criteria in plain Chinese with their likely meaning and, when the monthly trend shows it,
the month the problem started.

Definitions (QC_SPEC §7):

* submission rate = days with at least one judged run / expected QC days, per test system;
  for several systems the days are summed (equal to the mean of the systems' rates when
  they share the lab's calendar, which they do);
* in-control rate = 1 − rejected runs / judged runs (pending runs excluded), computed as
  100·(judged − rejected)/judged so that 19 of 20 is exactly 95.0;
* NCCL pass per level: CV ≤ allowable CV and |bias| ≤ allowable bias (TEa/3 and TEa/2 when
  the specification gives none), :func:`qcwx.qcstats.peer.nccl_pass`; a level without a
  published group, a CV or a TEa is not assessed;
* grade of a month = the worst grade of the analyte's levels (A best, D worst).

A threshold is met when the value is at least the threshold minus 1e-9 (QC_SPEC §1.1's
tolerance): exactly 90 % and exactly 95 % pass.

This module is the one callers import; the criteria and the verdict rule live in
:mod:`qcwx.qcstats.recognition`, the monthly facts in :mod:`qcwx.qcstats.recognition_facts`,
the wording of the conclusions here.

References
----------
QC_SPEC §3 (NCCL-style pass, grades) and §7 (submission, in-control, recommendation,
conclusions); WS/T 403-2024 for the allowable CV, bias and TEa.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from .recognition import (
    CRITERIA,
    CRITERION_LABELS,
    FAIL,
    IMPROVE,
    NA,
    RECOMMENDED,
    TOL,
    UNQUALIFIED,
    VERDICT_TONES,
    VERDICTS,
    RecognitionCriteria,
    finite,
    month_at,
    month_index,
    month_text,
    recommend,
    window_months,
)
from .recognition_facts import monthly_facts, monthly_facts_from_summary

__all__ = [
    "CRITERIA", "CRITERION_LABELS", "IMPROVE", "RECOMMENDED", "TOL", "UNQUALIFIED", "VERDICTS",
    "VERDICT_TONES", "RecognitionCriteria", "explain", "month_text", "monthly_facts",
    "monthly_facts_from_summary", "recommend", "window_months",
]


# --------------------------------------------------------------------------- conclusions


def _since(flags: Mapping[str, bool], latest: str, window: Sequence[str]) -> str:
    """Return when a problem shows: the start of the run ending at ``latest``, else its months.

    The run is the unbroken sequence of calendar months flagged up to ``latest`` (a month
    without data breaks it).
    """
    if flags.get(latest):
        start = month_index(latest)
        while flags.get(month_at(start - 1)):
            start -= 1
        return f"，自 {month_text(month_at(start))}起"
    seen = [month_text(m) for m in window if flags.get(m)]
    return f"（见于 {'、'.join(seen)}）" if seen else ""


def _last_flagged(rows: Mapping[str, Mapping], flag: str, window: Sequence[str]) -> Mapping:
    return next((rows[m] for m in reversed(window) if rows.get(m, {}).get(flag)), {})


def _systematic_parts(row: Mapping, criteria: RecognitionCriteria) -> list[str]:
    parts = []
    sdi = finite(row.get("sdi"))
    if sdi is not None and abs(sdi) >= criteria.sdi_limit - TOL:
        parts.append(f"SDI {sdi:+.2f}，|SDI| ≥ {criteria.sdi_limit:g}")
    bias, limit = finite(row.get("bias_pct")), finite(row.get("bias_limit"))
    if row.get("bias_failed") and bias is not None and limit is not None:
        parts.append(f"偏倚 {bias:+.2f}% 超出允许偏倚 ±{limit:.2f}%")
    return parts


def _imprecision_parts(row: Mapping, criteria: RecognitionCriteria) -> list[str]:
    parts = []
    cvr = finite(row.get("cvr"))
    if cvr is not None and cvr > criteria.cvr_limit:
        parts.append(f"CVR {cvr:.2f} > {criteria.cvr_limit:g}")
    cv, limit = finite(row.get("cv")), finite(row.get("cv_limit"))
    if row.get("cv_failed") and cv is not None and limit is not None:
        parts.append(f"CV {cv:.2f}% 超出允许 CV {limit:.2f}%")
    return parts


def explain(recommendation: Mapping, facts: pd.DataFrame,
            criteria: RecognitionCriteria | None = None) -> tuple[str, ...]:
    """Return the failing criteria of one lab × analyte in plain Chinese, with their meaning.

    Meanings (QC_SPEC §7): |SDI| ≥ 2 or |bias| > allowable bias — systematic error
    (calibration, reagent lot, method); CVR > 1.5 or CV > allowable CV — imprecision
    (instrument maintenance, reagent stability, operation); submission < 90 % —
    participation; in-control < 95 % — frequent rejections; a grade below B — total error
    too large for the TEa. A problem present in the latest month is dated "自 YYYY年M月起":
    the first month of the unbroken run of flagged months that ends at the latest month
    (looking back over every month in ``facts``, not only the window); one seen only in
    earlier months of the window lists those months. Systematic error and imprecision are
    reported whenever a month of the window shows them, even when every criterion passed.
    Criteria that could not be assessed are said so. A lab × analyte with nothing to
    report gets one line summarising its criteria.

    Parameters
    ----------
    recommendation : mapping
        One row of :func:`recommend` (``lab``, ``analyte``, ``month`` — the latest month of
        the window — and the criteria columns).
    facts : DataFrame
        :func:`monthly_facts` rows (other labs and analytes are ignored), ideally 12 months.
    criteria : RecognitionCriteria, optional
        Thresholds (default :class:`RecognitionCriteria`), the same as for :func:`recommend`.

    Examples
    --------
    >>> facts = pd.DataFrame({"lab": [1] * 3, "analyte": [7] * 3,
    ...     "month": ["2026-07", "2026-08", "2026-09"], "judged_days": [31, 31, 30],
    ...     "expected_days": [31, 31, 30], "judged_runs": [31, 31, 30],
    ...     "rejected_runs": [0, 0, 0], "levels_assessed": [2, 2, 2],
    ...     "levels_failed": [0, 1, 1], "bias_failed": [0, 1, 1], "cv_failed": [0, 0, 0],
    ...     "sdi": [0.3, 2.4, 2.6], "cvr": [1.0, 1.0, 1.1], "bias_pct": [0.4, 2.5, 2.8],
    ...     "bias_limit": [2.0] * 3, "cv": [1.2] * 3, "cv_limit": [3.0] * 3,
    ...     "sigma": [5.5, 4.0, 3.5], "grade": ["B", "B", "C"]})
    >>> facts = monthly_facts_from_summary(facts)
    >>> rec = recommend(facts, "2026-09").to_dict("records")[0]
    >>> rec["verdict"], rec["failed"]
    ('不合格', ('nccl', 'grade'))
    >>> for reason in explain(rec, facts):
    ...     print(reason.split("：")[0])
    系统误差（SDI +2.60，|SDI| ≥ 2；偏倚 +2.80% 超出允许偏倚 ±2.00%），自 2026年8月起
    最新月等级 C（σ 3.50），自 2026年9月起
    """
    criteria = criteria or RecognitionCriteria()
    mine = facts[(facts["lab"] == recommendation["lab"])
                 & (facts["analyte"] == recommendation["analyte"])]
    rows = {r["month"]: r for r in mine.to_dict("records")}
    latest = recommendation["month"]
    window = window_months(latest, criteria.window_months)
    reasons = []
    for flag, text in _REASONS:
        if flag in ("participation", "rejections", "low_grade") and \
                recommendation.get(f"status_{_CRITERION_OF[flag]}") != FAIL:
            continue
        flags = {m: bool(r.get(flag)) for m, r in rows.items()}
        if not any(flags.get(m) for m in window):
            continue
        row = _last_flagged(rows, flag, window)
        reason = text(row, recommendation, criteria, _since(flags, latest, window))
        if reason:
            reasons.append(reason)
    reasons += _unassessed(recommendation)
    if not reasons:
        reasons.append(_summary(recommendation))
    return tuple(reasons)


def _participation(row, rec, criteria, since) -> str:
    return (f"填报率 {rec['submission_pct']:.1f}%，低于 {criteria.min_submission_pct:g}%{since}："
            "参与不足，质控未按日开展或未按时上报。")


def _rejections(row, rec, criteria, since) -> str:
    return (f"在控率 {rec['in_control_pct']:.1f}%，低于 {criteria.min_in_control_pct:g}%{since}："
            "失控频繁，请复核失控原因与纠正措施。")


def _systematic(row, rec, criteria, since) -> str:
    parts = _systematic_parts(row, criteria)
    if not parts:
        return ""
    return f"系统误差（{'；'.join(parts)}）{since}：可能与校准、试剂批号或方法有关。"


def _imprecision(row, rec, criteria, since) -> str:
    parts = _imprecision_parts(row, criteria)
    return (f"不精密度偏大（{'；'.join(parts)}）{since}：可能与仪器维护、试剂稳定性或操作有关。"
            if parts else "")


def _low_grade(row, rec, criteria, since) -> str:
    sigma = finite(row.get("sigma"))
    sigma_text = f"（σ {sigma:.2f}）" if sigma is not None else ""
    return (f"最新月等级 {rec['grade']}{sigma_text}{since}："
            "偏倚与不精密度合计相对允许总误差偏大，需同时减小两者。")


_REASONS = (("participation", _participation), ("rejections", _rejections),
            ("systematic", _systematic), ("imprecision", _imprecision),
            ("low_grade", _low_grade))
_CRITERION_OF = {"participation": "submission", "rejections": "in_control",
                 "low_grade": "grade"}


def _unassessed(rec: Mapping) -> list[str]:
    out = []
    months = [month_text(m) for m in rec.get("nccl_unassessed_months", ())]
    if rec.get("status_nccl") == NA and months:
        out.append(f"NCCL 无法评价（{'、'.join(months)}：比对组未发布或缺少质量规范），"
                   "暂不能推荐互认。")
    if rec.get("status_grade") == NA:
        out.append("最新月无法评定等级（比对组未发布或缺少 TEa），暂不能推荐互认。")
    if rec.get("status_submission") == NA or rec.get("status_in_control") == NA:
        out.append("评价窗口内没有已评价的质控批次，无法计算填报率或在控率。")
    return out


def _summary(rec: Mapping) -> str:
    return (f"填报率 {rec['submission_pct']:.1f}%，在控率 {rec['in_control_pct']:.1f}%，"
            f"NCCL {rec['nccl_months_passed']}/{rec['nccl_months']} 个月通过，"
            f"最新月等级 {rec['grade']}：各项指标均达标。")
