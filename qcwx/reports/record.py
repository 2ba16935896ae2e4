"""One out-of-control record as a printable report (the lab's ISO 15189 file).

The same :class:`~qcwx.reports.document.Report` shape as the two reports, so the PDF is
printed by the one exporter: the run and its values with z, the rules that fired and what
they mean, the Levey–Jennings chart of the 30 days up to the run, and the record itself with
who filled it in and who signed it, in Asia/Shanghai time.
"""

from __future__ import annotations

from datetime import timedelta

from qcwx import charts
from qcwx.iqc.actions import ACTION_STATUS
from qcwx.iqc.models import CAUSE_CATEGORIES, CorrectiveAction
from qcwx.iqc.reports import lj_level_charts
from qcwx.iqc.services import verdict_for
from qcwx.reports.document import Chart, Column, Figure, Report, Section, Table
from qcwx.reports.dynamic import ACTION_TONES, ts_title
from qcwx.timeutil import to_local, utcnow

#: Days of history drawn before the run on the record's chart.
CHART_DAYS = 30


def _when(value) -> str | None:
    local = to_local(value)
    return local.strftime("%Y-%m-%d %H:%M") if local else None


def build_record(action: CorrectiveAction) -> Report:
    """Return the printable report of one out-of-control record (scope checked by caller)."""
    run = action.run
    ts = run.test_system
    lab = ts.lab
    verdict = verdict_for(run)
    dec = ts.analyte.decimals
    values = Table(
        key="质控结果", title="本批质控结果",
        columns=(Column("水平"), Column("结果", dec, ts.unit), Column("靶值", dec, ts.unit),
                 Column("SD", dec + 1, ts.unit), Column("Z 值", 2)),
        rows=tuple((v.level_name, v.value, v.target_mean, v.target_sd, v.z)
                   for v in verdict.values))
    rules = Table(
        key="触发规则", title="触发的 Westgard 规则",
        columns=(Column("规则"), Column("判定"), Column("误差类型"), Column("涉及水平"),
                 Column("说明")),
        rows=tuple((r.rule, "失控" if r.role == "reject" else "警告", r.error,
                    "、".join(r.levels), r.explanation) for r in verdict.rules))
    record = Table(
        key="处理记录", title="失控处理记录",
        columns=(Column("项目"), Column("内容")),
        rows=(("原因类别", CAUSE_CATEGORIES.get(action.cause_category or "")),
              ("原因分析", action.description), ("纠正措施", action.action_taken),
              ("复测结果", action.rerun_result), ("对患者结果的影响", action.patient_impact),
              ("填写人", action.completed_by.display_name if action.completed_by else None),
              ("填写时间", _when(action.completed_at)),
              ("审核签字", action.signed_by.display_name if action.signed_by else None),
              ("签字时间", _when(action.signed_at)), ("审核意见", action.sign_comment)))
    chart_items = lj_level_charts(ts, run.run_date - timedelta(days=CHART_DAYS), run.run_date)
    lj = tuple(Chart(chart_id=f"lj-{ts.id}-{item.level.id}", title=item.heading,
                     options=charts.options_dict(item.chart), height="320px")
               for item in chart_items if item.chart is not None)
    status = ACTION_STATUS.get(action.status, action.status)
    title = (f"{lab.full_name} · {ts.analyte.name} {run.run_date:%Y-%m-%d} "
             f"第{run.run_no}批 失控处理记录")
    return Report(
        kind="record", lab_id=lab.id, title=title,
        period_label=f"{run.run_date:%Y年%m月%d日} 第{run.run_no}批",
        description=f"{verdict.status_label} · {status}", generated_at=utcnow().isoformat(),
        params={"action_id": action.id},
        figures=(Figure("判定", verdict.status_label,
                        "bad" if run.status == "reject" else "warn"),
                 Figure("记录状态", status, ACTION_TONES.get(action.status, "")),
                 Figure("打开时间", _when(action.opened_at) or "—")),
        sections=(Section(title=ts_title(ts), note=verdict.summary, tables=(values, rules)),
                  Section(title=f"近{CHART_DAYS}天质控图", charts=lj,
                          note="" if lj else "未设定靶值，无法绘制质控图"),
                  Section(title="处理与审核", tables=(record,))),
        footnotes=("时间均为北京时间。",
                   "本记录由区域质控平台根据录入数据生成，可存入 ISO 15189 质量记录。"))
