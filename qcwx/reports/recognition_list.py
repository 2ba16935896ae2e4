"""The mutual-recognition list as a :class:`~qcwx.reports.document.Table` (Excel, reports).

One row per lab × analyte: every §7 criterion with its value, the computed verdict, the
failing criteria, the centre's override (verdict and reason) beside it, the verdict in
force and what the lab must fix. Numbers stay numbers (percentages as floats, months as
ints) so the Excel sheet can be sorted and summed. ``named`` chooses lab names (the centre's
own export) or anonymous codes (anything published or shared).
"""

from __future__ import annotations

from collections.abc import Sequence

from qcwx.qcstats import conclusions
from qcwx.qcstats.recognition import RecognitionCriteria
from qcwx.recognition.queries import ListRow, RecognitionList
from qcwx.reports.document import Column, Report, Section, Table
from qcwx.reports.evaluation_tables import unmet_text
from qcwx.timeutil import utcnow

KIND = "recognition"
OVERRIDE_NOTE = "改判须由质控中心填写理由，计算结论与改判并列显示。"


def window_text(window: Sequence[str]) -> str:
    """Return ``2026年9月～2026年11月`` (one month alone when the window is one month)."""
    first, last = conclusions.month_text(window[0]), conclusions.month_text(window[-1])
    return last if first == last else f"{first}～{last}"


def criteria_text(c: RecognitionCriteria) -> str:
    """Return the thresholds in one sentence."""
    return (f"推荐条件：填报率 ≥ {c.min_submission_pct:g}%，在控率 ≥ {c.min_in_control_pct:g}%，"
            f"窗口内每月每个水平 NCCL 通过，最新月等级为 {'/'.join(c.passing_grades)} 级。")


def _number(value) -> float | None:
    return conclusions.finite(value)


def list_table(rows: Sequence[ListRow], window: Sequence[str], criteria: RecognitionCriteria,
               *, named: bool, key: str = "互认名单") -> Table:
    """Return the list's rows as a table (names or anonymous codes, see module doc)."""
    lab_columns = (Column("医院"), Column("实验室")) if named else (Column("实验室代码"),)
    columns = (*lab_columns, Column("医院等级"), Column("项目"), Column("填报率", 1, "%"),
               Column("在控率", 1, "%"), Column("NCCL 通过月数", 0), Column("窗口月数", 0),
               Column("最新月等级"), Column("计算结论"), Column("未达标项"), Column("改判结论"),
               Column("改判理由"), Column("最终结论"), Column("需改进"))
    out = []
    for r in rows:
        lab = (r.lab.hospital.name, r.lab.name) if named else (r.lab.anon_code,)
        o = r.override
        out.append((*lab, r.level, r.analyte.name, _number(r.rec["submission_pct"]),
                    _number(r.rec["in_control_pct"]), int(r.rec["nccl_months_passed"]),
                    int(r.rec["nccl_months"]), r.rec["grade"], r.computed, unmet_text(r.rec),
                    o.verdict if o else None, o.reason if o else None, r.verdict,
                    "；".join(r.gaps) or None))
    return Table(key=key, title=f"检验结果互认名单（{window_text(window)}）", columns=columns,
                 rows=tuple(out), tones=tuple(r.tone for r in rows),
                 note=criteria_text(criteria) + OVERRIDE_NOTE)


def list_report(lst: RecognitionList, region_name: str) -> Report:
    """Return the list as a one-table report (the Excel download of the list page)."""
    # the rows are the actor's scope already, so every lab on them may be named
    table = list_table(lst.rows, lst.window, lst.criteria, named=True)
    counts = "，".join(f"{v} {n} 项" for v, n in lst.counts.items())
    return Report(
        kind=KIND, lab_id=0, title=f"{region_name} · 检验结果互认名单",
        period_label=window_text(lst.window), description=counts,
        generated_at=utcnow().isoformat(timespec="seconds"), params={"month": lst.month},
        sections=(Section(title="互认名单", note=criteria_text(lst.criteria),
                          tables=(table,)),),
        footnotes=(f"评价窗口：{window_text(lst.window)}（{lst.criteria.window_months} 个月）。",
                   criteria_text(lst.criteria)))
