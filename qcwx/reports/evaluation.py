"""The evaluation report (质控评测报告) of one lab and month, as a :class:`Report`.

What a region publishes about a lab (QC_SPEC §7): headline figures, the peer comparison of
every analyte × level (:mod:`qcwx.reports.evaluation_tables`), up to three charts per analyte
(:mod:`qcwx.reports.evaluation_charts`), the generated conclusions with the mutual-recognition
criteria over the window (:mod:`qcwx.qcstats.conclusions`) and footnotes on the method.
Inputs are gathered by :mod:`qcwx.reports.evaluation_data` from the peer queries: a frozen
month reads its snapshot, so its numbers never change after late submissions.

The report is shared publicly: other labs appear only by anonymous code, in every chart.
"""

from __future__ import annotations

from datetime import date

from qcwx.orgs.models import Lab
from qcwx.peer.filters import month_end
from qcwx.qcstats import conclusions
from qcwx.qcstats import peer as qpeer
from qcwx.qcstats.conclusions import IMPROVE, RECOMMENDED, UNQUALIFIED
from qcwx.reports.document import Conclusion, Figure, Report, Section
from qcwx.reports.evaluation_charts import analyte_charts
from qcwx.reports.evaluation_data import EvaluationData, gather, lab_participation
from qcwx.reports.evaluation_tables import comparison_tables, criteria_table, unmet_text
from qcwx.timeutil import utcnow

KIND = "evaluation"
MAX_DESCRIPTION = 120


def build_evaluation(lab: Lab, month: str, today: date) -> Report:
    """Return the evaluation report of ``lab`` for ``month`` (``YYYY-MM``) as of ``today``.

    ``month`` must be a completed or the current month (``qcwx.peer.filters.month_period``
    raises its :class:`~qcwx.errors.UserError` otherwise). ``today`` is the lab-local date.
    """
    data = gather(lab, month, today)
    year, mon = int(month[:4]), int(month[5:7])
    sections = (_comparison_section(data), *_analyte_sections(data), _conclusion_section(data))
    return Report(
        kind=KIND, lab_id=lab.id, title=f"{lab.full_name} · {year}年{mon}月 质控评测报告",
        period_label=period_label(data), description=description(data),
        generated_at=utcnow().isoformat(timespec="seconds"), params={"month": month},
        figures=figures(data), sections=tuple(s for s in sections if s is not None),
        footnotes=footnotes(data))


def period_label(data: EvaluationData) -> str:
    """Return the month as users read it, ``（截至M月D日）`` while it runs."""
    label = data.period.label
    if data.period.end < month_end(data.month):
        label += f"（截至{data.period.end.month}月{data.period.end.day}日）"
    return label


# ------------------------------------------------------------------ figures


def analyte_grades(data: EvaluationData) -> dict[int, str]:
    """Return the month's grade of each graded analyte (the worst of its systems and levels)."""
    return {a.id: rec["grade"] for a in data.analytes
            if (rec := data.recommendations.get(a.id)) and rec["grade"]}


def overall_grade(data: EvaluationData) -> qpeer.OverallGrade | None:
    """Return the lab's overall grade (share of analytes at A/B), None when none is graded."""
    grades = list(analyte_grades(data).values())
    return qpeer.lab_overall_grade(grades) if grades else None


def verdict_counts(data: EvaluationData) -> dict[str, int]:
    """Return how many analytes got each verdict."""
    counts = dict.fromkeys(conclusions.VERDICTS, 0)
    for rec in data.recommendations.values():
        counts[rec["verdict"]] += 1
    return counts


def _pct_text(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}%"


def figures(data: EvaluationData) -> tuple[Figure, ...]:
    """Return the headline figures: grade, A/B analytes, in control, submission, verdicts."""
    overall = overall_grade(data)
    submission, in_control, judged, rejected = lab_participation(data)
    counts = verdict_counts(data)
    c = data.criteria
    grade_tone = "" if overall is None else "ok" if overall.share_ab >= 0.8 else \
        "warn" if overall.share_ab >= 0.5 else "bad"
    verdict_tone = "bad" if counts[UNQUALIFIED] else "warn" if counts[IMPROVE] else \
        "ok" if counts[RECOMMENDED] else ""
    return (
        Figure("总体等级（A/B 占比）", _pct_text(overall.pct_ab if overall else None), grade_tone,
               f"A {overall.n_a} · B {overall.n_b} · C {overall.n_c} · D {overall.n_d}"
               if overall else "本月无可评定等级的项目"),
        Figure("A/B 级项目", f"{overall.n_a + overall.n_b}/{overall.n_analytes}"
               if overall else "—", grade_tone, "每个项目取其各水平中最差的等级"),
        Figure("在控率", _pct_text(in_control), _rate_tone(in_control, c.min_in_control_pct),
               f"已评价 {judged} 批，失控 {rejected} 批"),
        Figure("填报率", _pct_text(submission), _rate_tone(submission, c.min_submission_pct),
               "有已评价批次的天数 / 日历天数，按检测系统平均"),
        Figure("推荐互认 / 需改进 / 不合格",
               f"{counts[RECOMMENDED]} / {counts[IMPROVE]} / {counts[UNQUALIFIED]}",
               verdict_tone, f"评价窗口 {_window_text(data)}"))


def _rate_tone(value: float | None, threshold: float) -> str:
    if value is None:
        return ""
    return "ok" if value >= threshold - conclusions.TOL else "bad"


def _window_text(data: EvaluationData) -> str:
    first, last = data.window[0], data.window[-1]
    if first == last:
        return conclusions.month_text(last)
    return f"{conclusions.month_text(first)}～{conclusions.month_text(last)}"


def description(data: EvaluationData) -> str:
    """Return the share card's text (≤ 120 characters) with the headline numbers."""
    overall = overall_grade(data)
    _, in_control, _, _ = lab_participation(data)
    counts = verdict_counts(data)
    parts = [f"{data.period.label}质控评测"]
    if overall is not None:
        parts.append(f"A/B 级项目 {overall.n_a + overall.n_b}/{overall.n_analytes}"
                     f"（{overall.pct_ab:.1f}%）")
    parts.append(f"推荐互认 {counts[RECOMMENDED]}/{sum(counts.values())} 项")
    if in_control is not None:
        parts.append(f"在控率 {in_control:.1f}%")
    text = "，".join(parts) + "。"
    named = f"{data.lab.full_name} {text}"
    if len(named) <= MAX_DESCRIPTION:
        return named
    return text[:MAX_DESCRIPTION]


# ------------------------------------------------------------------ sections


def _comparison_section(data: EvaluationData) -> Section:
    tables = comparison_tables(data)
    note = ("每个项目一张表，每行为一个检测系统的一个质控水平，与其比对组（同组 → 同方法 → 全部，"
            "取首个可发布的一级）比较；数值为本月在控结果的统计。")
    if data.snapshot is not None:
        note += (f"本月统计已冻结（{data.snapshot.frozen_at:%Y-%m-%d}），"
                 "后补数据不改变本报告的比对数值。")
    if not tables:
        note = "本月没有可统计的质控结果。"
    return Section(title="同组比对", note=note, tables=tables, anchor="comparison")


def _analyte_sections(data: EvaluationData) -> list[Section]:
    out = []
    for analyte in data.analytes:
        found = analyte_charts(data, analyte)
        if not found:
            continue
        unit = next((r.unit for r in data.rows_of(analyte.id)), analyte.unit)
        out.append(Section(title=f"{analyte.name}（{unit}）", charts=found,
                           anchor=f"analyte-{analyte.id}",
                           note="" if any(r.publishable for r in data.rows_of(analyte.id))
                           else "本月各水平的比对组均未达到发布条件，仅显示本室趋势。"))
    return out


def conclusion_of(data: EvaluationData, analyte_id: int, name: str) -> Conclusion | None:
    """Return the generated conclusion of one analyte (None without data in the window)."""
    rec = data.recommendations.get(analyte_id)
    if rec is None:
        return None
    reasons = conclusions.explain(rec, data.facts, data.criteria)
    return Conclusion(heading=name, verdict=rec["verdict"], tone=rec["tone"], reasons=reasons)


def _conclusion_section(data: EvaluationData) -> Section:
    found = [conclusion_of(data, a.id, a.name) for a in data.analytes]
    found = [c for c in found if c is not None]
    unmet = {a.name: unmet_text(data.recommendations[a.id]) for a in data.analytes
             if a.id in data.recommendations}
    counts = verdict_counts(data)
    note = (f"评价窗口 {_window_text(data)}：推荐互认 {counts[RECOMMENDED]} 项，"
            f"需改进 {counts[IMPROVE]} 项，不合格 {counts[UNQUALIFIED]} 项。结论由数据自动生成。")
    return Section(title="结论", note=note if unmet else "评价窗口内没有质控数据。",
                   conclusions=tuple(found), tables=(criteria_table(data),) if unmet else (),
                   anchor="conclusions")


# ------------------------------------------------------------------ footnotes


def footnotes(data: EvaluationData) -> tuple[str, ...]:
    """Return the report's method notes: period, grouping, publication, 未发布, criteria."""
    p, c = data.period, data.criteria
    notes = [
        f"统计期间：{period_label(data)}（{p.start:%Y-%m-%d} 至 {p.end:%Y-%m-%d}，"
        f"实验室当地日期）；互认评价窗口：{_window_text(data)}（{c.window_months} 个月）。",
        "比对组均值与标准差按 ISO 13528 算法A（稳健统计）由组内各检测系统的月均值计算，"
        "每台分析仪计为一个点；组CV为组内各检测系统CV的均值。只统计已评价且未失控批次的当前结果。",
        f"比对组须有 ≥ {qpeer.MIN_LABS} 家实验室且 ≥ {qpeer.MIN_RESULTS} 个结果方予发布；"
        "不足时依次回退：同组（同仪器厂家、试剂厂家、方法、单位、温度）→ 同方法 → "
        "同批号同水平全部实验室，任何一级均不合并不同单位的结果。",
        "“未发布”：该水平在任何一级比对组都不足发布条件，不计算 SDI、CVR、偏倚、σ 与等级，"
        "也不计入 NCCL 评价。",
        "SDI =（本室均值 − 组均值）/ 组SD；CVR = 本室CV / 组CV；"
        "偏倚% = 100 ×（本室均值 − 组均值）/ 组均值；"
        "σ =（TEa − |偏倚|）/ CV，等级 A σ ≥ 6、B ≥ 4、C ≥ 3、D < 3。",
        f"填报率 = 有已评价批次的天数 / 应开展质控的日历天数（按检测系统，实验室取平均）；"
        f"在控率 = 1 − 失控批数 / 已评价批数。推荐互认需填报率 ≥ {c.min_submission_pct:g}%、"
        f"在控率 ≥ {c.min_in_control_pct:g}%、窗口内每月每个水平 NCCL 通过、"
        f"最新月等级为 {'或'.join(c.passing_grades)}（本区域现行阈值）。",
        "本报告可公开分享：其他实验室一律以匿名代码显示。",
    ]
    if data.snapshot is not None:
        notes.append(f"本月比对统计已于 {data.snapshot.frozen_at:%Y-%m-%d} 冻结，"
                     "以冻结时的数据为准。")
    return tuple(notes)
