"""The regional report (区域质控报告) of a month, quarter or year, as a :class:`Report`.

What a region's QC centre publishes (issue 12, QC_SPEC §7): participation and submission
rate per lab and per hospital level, in-control rate, NCCL pass rate per analyte, the grade
distribution, the mutual-recognition list, the labs needing attention with the reason, and
the change against the previous period with 12-month trends. The numbers are aggregated by
:mod:`qcwx.reports.regional_data` from the same region facts as the list
(:func:`qcwx.recognition.queries.gather_region`), with the region's thresholds.

Labs appear by anonymous code only, with their hospital level: the report is shared by link
and announced to every lab's director (the centre reads names on the list page).
"""

from __future__ import annotations

from datetime import date, timedelta

from sqlalchemy import select

from qcwx import charts
from qcwx.charts import common
from qcwx.extensions import db
from qcwx.orgs.models import Hospital, Lab, Region
from qcwx.orgs.scopes import region_subtree
from qcwx.peer.filters import Period, month_period, quarter_of, quarter_period, year_period
from qcwx.qcstats.recognition import VERDICTS, month_text
from qcwx.recognition import services as recognition
from qcwx.recognition.queries import gather_region, list_rows
from qcwx.reports import regional_data as rd
from qcwx.reports.document import Column, Figure, Report, Section, Table
from qcwx.reports.evaluation_charts import as_chart
from qcwx.reports.evaluation_tables import number
from qcwx.reports.recognition_list import criteria_text, list_table, window_text
from qcwx.timeutil import utcnow

KIND = "region"
TREND_MONTHS = 12


def period_months(period: Period) -> list[str]:
    """Return the calendar months of a month, quarter or year period, oldest first."""
    out, day = [], period.start
    while day <= period.complete_end:
        out.append(day.strftime("%Y-%m"))
        day = (day.replace(day=28) + timedelta(days=4)).replace(day=1)
    return out


def previous_period(period: Period, today: date) -> Period:
    """Return the calendar period of the same kind just before ``period``."""
    before = period.start - timedelta(days=1)
    if period.kind == "month":
        return month_period(before.strftime("%Y-%m"), today)
    if period.kind == "quarter":
        return quarter_period(quarter_of(before), today)
    return year_period(str(before.year), today)


def period_key(period: Period) -> str:
    """Return the period's key: ``YYYY-MM``, ``YYYY-Qn`` or ``YYYY``."""
    return period.month if period.kind == "month" else period.key


def region_labs(region_id: int) -> list[Lab]:
    """Return every lab of the region and the regions below it, by hospital then lab code."""
    return list(db.session.scalars(
        select(Lab).join(Hospital).where(Hospital.region_id.in_(region_subtree(region_id)))
        .order_by(Hospital.code, Lab.code)))


def _pct_text(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}%"


def _change(now: float | None, before: float | None) -> str:
    if now is None or before is None:
        return "上期无数据"
    delta = now - before
    return f"较上期 {delta:+.1f} 个百分点（上期 {before:.1f}%）"


def _tone(value: float | None, threshold: float) -> str:
    return "" if value is None else "ok" if value >= threshold - 1e-9 else "bad"


def build_region_report(region: Region, period: Period, today: date) -> Report:
    """Return the region's report of a calendar month, quarter or year (as of ``today``)."""
    months = period_months(period)
    last = months[-1]
    prev = previous_period(period, today)
    span = TREND_MONTHS + (len(months) if period.kind != "month" else 1)
    data = gather_region(region.id, last, today, months=span)
    labs = region_labs(region.id)
    rates = rd.lab_rates(data, labs, months)
    region_now = rd.group_rates("全区", list(rates.values()))
    region_before = rd.group_rates("全区", list(rd.lab_rates(
        data, labs, period_months(prev)).values()))
    rows = list_rows(data)
    points = rd.monthly_points(data, labs)
    c = data.criteria
    counts = dict.fromkeys(VERDICTS, 0)
    for row in rows:
        counts[row.verdict] += 1
    nccl = rd.nccl_by_analyte(data, months)
    assessed, passed = sum(n[1] for n in nccl), sum(n[2] for n in nccl)
    nccl_prev = rd.nccl_by_analyte(data, period_months(prev))
    prev_assessed, prev_passed = sum(n[1] for n in nccl_prev), sum(n[2] for n in nccl_prev)
    nccl_pct = 100.0 * passed / assessed if assessed else None
    nccl_before = 100.0 * prev_passed / prev_assessed if prev_assessed else None
    grades = rd.grade_counts(data, last)
    figures = (
        Figure("参与实验室", f"{region_now.participating}/{region_now.labs}",
               "ok" if region_now.participating == region_now.labs else "warn",
               "本期有已评价质控批次的实验室 / 全区实验室"),
        Figure("填报率", _pct_text(region_now.submission_pct),
               _tone(region_now.submission_pct, c.min_submission_pct),
               _change(region_now.submission_pct, region_before.submission_pct)),
        Figure("在控率", _pct_text(region_now.in_control_pct),
               _tone(region_now.in_control_pct, c.min_in_control_pct),
               _change(region_now.in_control_pct, region_before.in_control_pct)),
        Figure("NCCL 通过率", _pct_text(nccl_pct), "", _change(nccl_pct, nccl_before)),
        Figure("推荐互认 / 需改进 / 不合格", " / ".join(str(counts[v]) for v in VERDICTS),
               "bad" if counts["不合格"] else "ok", f"评价窗口 {window_text(data.window)}"),
    )
    attention = rd.attention(rates, rows, c)
    sections = (
        _participation_section(rates, c),
        _nccl_section(nccl, months),
        _grade_section(grades, last),
        Section(title="检验结果互认名单", anchor="recognition",
                note=f"评价窗口 {window_text(data.window)}。{criteria_text(c)}",
                tables=(list_table(rows, data.window, c, named=False),)),
        _attention_section(attention),
        _trend_section(points[-TREND_MONTHS:], c),
    )
    version = recognition.latest_version(region.id)
    return Report(
        kind=KIND, lab_id=0, title=f"{region.name} · {period.label} 区域质控报告",
        period_label=period.label,
        description=(f"{region.name}{period.label}：参与实验室 {region_now.participating}/"
                     f"{region_now.labs}，填报率 {_pct_text(region_now.submission_pct)}，"
                     f"在控率 {_pct_text(region_now.in_control_pct)}，推荐互认 "
                     f"{counts['推荐互认']}/{len(rows)} 项。")[:120],
        generated_at=utcnow().isoformat(timespec="seconds"),
        params={"region_id": region.id, "period_kind": period.kind,
                "period": period_key(period)},
        figures=figures, sections=sections,
        footnotes=_footnotes(period, data.window, c, version.version if version else None))


# ------------------------------------------------------------------ sections


def _participation_section(rates: dict[int, rd.LabRates], c) -> Section:
    levels = rd.level_rates(rates)
    level_table = Table(
        key="按医院等级", title="按医院等级",
        columns=(Column("医院等级"), Column("实验室数", 0), Column("参与实验室", 0),
                 Column("填报率", 1, "%"), Column("在控率", 1, "%")),
        rows=tuple((g.name, g.labs, g.participating, number(g.submission_pct),
                    number(g.in_control_pct)) for g in levels),
        tones=tuple("bad" if (g.submission_pct or 0) < c.min_submission_pct else ""
                    for g in levels))
    ordered = sorted(rates.values(), key=lambda r: (r.lab.hospital.level, r.lab.anon_code))
    lab_table = Table(
        key="各实验室填报", title="各实验室参与与填报",
        columns=(Column("实验室代码"), Column("医院等级"), Column("检测系统", 0),
                 Column("填报率", 1, "%"), Column("在控率", 1, "%"), Column("已评价批数", 0),
                 Column("失控批数", 0)),
        rows=tuple((r.lab.anon_code, r.lab.hospital.level, r.systems, number(r.submission_pct),
                    number(r.in_control_pct), r.judged_runs, r.rejected_runs)
                   for r in ordered),
        tones=tuple(_lab_tone(r, c) for r in ordered),
        note="填报率 = 有已评价批次的天数 / 应开展质控的天数（按检测系统，实验室取平均）；"
             "在控率 = 1 − 失控批数 / 已评价批数。")
    return Section(title="参与与填报", anchor="participation", tables=(level_table, lab_table))


def _lab_tone(r: rd.LabRates, c) -> str:
    if r.systems and not r.participated:
        return "bad"
    low = ((r.submission_pct is not None and r.submission_pct < c.min_submission_pct - 1e-9)
           or (r.in_control_pct is not None and r.in_control_pct < c.min_in_control_pct - 1e-9))
    return "bad" if low else ""


def _nccl_section(nccl: list[tuple[str, int, int]], months: list[str]) -> Section:
    table = Table(
        key="NCCL通过率", title="各项目 NCCL 通过率",
        columns=(Column("项目"), Column("评价水平数", 0), Column("通过", 0),
                 Column("通过率", 1, "%")),
        rows=tuple((name, a, p, 100.0 * p / a if a else None) for name, a, p in nccl),
        note=f"按实验室 × 质控水平 × 月计数（{month_text(months[0])}～{month_text(months[-1])}）；"
             "比对组未达发布条件的水平不计入。")
    return Section(title="NCCL 通过率", anchor="nccl", tables=(table,))


def _grade_section(grades: dict[str, dict[str, int]], month: str) -> Section:
    table = Table(
        key="等级分布", title=f"等级分布（{month_text(month)}）",
        columns=(Column("项目"), *(Column(f"{g} 级", 0) for g in rd.GRADES),
                 Column("A/B 占比", 1, "%")),
        rows=tuple((name, *(n[g] for g in rd.GRADES),
                    100.0 * (n["A"] + n["B"]) / sum(n.values()) if sum(n.values()) else None)
                   for name, n in grades.items()),
        note="每个实验室每个项目取其各水平中最差的等级（σ ≥ 6 A，≥ 4 B，≥ 3 C，< 3 D）。")
    return Section(title="等级分布", anchor="grades", tables=(table,))


def _attention_section(items: list[rd.Attention]) -> Section:
    table = Table(
        key="需关注实验室", title="需关注的实验室",
        columns=(Column("实验室代码"), Column("医院等级"), Column("原因")),
        rows=tuple((a.lab.anon_code, a.lab.hospital.level, "；".join(a.reasons))
                   for a in items),
        tones=tuple("bad" for _ in items))
    return Section(title="需关注的实验室", anchor="attention",
                   note="" if items else "本期没有需要关注的实验室。",
                   tables=(table,) if items else ())


def _trend_section(points: list[rd.MonthPoint], c) -> Section:
    labels = [p.month[2:] for p in points]
    rates = charts.trend(
        labels, {"填报率": [p.submission_pct for p in points],
                 "在控率": [p.in_control_pct for p in points],
                 "NCCL 通过率": [p.nccl_pct for p in points]},
        chart_id="rg-rates", title="全区填报率、在控率与 NCCL 通过率（%）",
        bands=((c.min_submission_pct, f"{c.min_submission_pct:g}", common.AMBER),
               (c.min_in_control_pct, f"{c.min_in_control_pct:g}", common.RED)), decimals=1)
    grades = charts.trend(
        labels, {f"{g} 级": [p.grades[g] for p in points] for g in rd.GRADES},
        chart_id="rg-grades", title="等级分布（实验室 × 项目数）", decimals=0)
    table = Table(
        key="月度趋势", title="近 12 个月",
        columns=(Column("月份"), Column("填报率", 1, "%"), Column("在控率", 1, "%"),
                 Column("NCCL 通过率", 1, "%"), Column("A/B 占比", 1, "%")),
        rows=tuple((p.month, number(p.submission_pct), number(p.in_control_pct),
                    number(p.nccl_pct), number(p.ab_pct)) for p in points))
    return Section(title="近 12 个月趋势", anchor="trend",
                   charts=(as_chart(rates, "全区月度填报率、在控率与 NCCL 通过率"),
                           as_chart(grades, "全区月度等级分布")), tables=(table,))


def _footnotes(period: Period, window, c, version: int | None) -> tuple[str, ...]:
    source = f"本区域第 {version} 版阈值" if version else "默认阈值（QC_SPEC §7）"
    return (
        f"统计期间：{period.label}（{period.start:%Y-%m-%d} 至 {period.complete_end:%Y-%m-%d}，"
        f"实验室当地日期）；互认评价窗口：{window_text(window)}。",
        f"{criteria_text(c)}（{source}）",
        "填报率：按检测系统计算有已评价批次的天数占应开展质控天数的比例，实验室取其检测系统的"
        "平均，医院等级与全区取实验室的平均；在控率按批次合计。",
        "本报告可公开分享：实验室一律以匿名代码显示；名称见质控中心的互认名单页面。",
    )
