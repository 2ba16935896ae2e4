"""Saved instrument comparisons as optional sections of the dynamic QC report.

Why: a lab documents its analysers' comparability (WS/T 407) in the same report it hands to
assessors; the user ticks saved comparisons of the lab (``cmp`` arguments) and each becomes
one section — the verdict, the regressions, the decision-level biases and both plots —
recomputed from the stored pairs like the comparison page.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select

from qcwx import charts
from qcwx.analytics import comparison
from qcwx.analytics.models import InstrumentComparison
from qcwx.charts import comparison as comparison_charts
from qcwx.errors import UserError
from qcwx.extensions import db
from qcwx.orgs.models import Lab
from qcwx.reports.document import Chart, Column, Figure, Section, Table
from qcwx.timeutil import to_local

MAX_CHOSEN = 20


def parse_ids(raw: Sequence[str]) -> list[int] | None:
    """Return the chosen comparison ids from ``cmp`` arguments (None when none chosen)."""
    values = [str(v).strip() for v in raw if str(v).strip()]
    if not values:
        return None
    if len(values) > MAX_CHOSEN or not all(v.isascii() and v.isdigit() and len(v) <= 12
                                           for v in values):
        raise UserError("仪器比对参数无效", field="cmp")
    return sorted({int(v) for v in values})


def choices(lab: Lab) -> list[InstrumentComparison]:
    """Return the lab's saved comparisons, newest first (the report page's chooser)."""
    return list(db.session.scalars(select(InstrumentComparison).where(
        InstrumentComparison.lab_id == lab.id).order_by(InstrumentComparison.id.desc())))


def sections(lab: Lab, ids: Sequence[int] | None) -> tuple[Section, ...]:
    """Return one report section per chosen comparison; ids of other labs are refused (400)."""
    if not ids:
        return ()
    rows = list(db.session.scalars(select(InstrumentComparison).where(
        InstrumentComparison.id.in_(list(ids)), InstrumentComparison.lab_id == lab.id)
        .order_by(InstrumentComparison.id)))
    if len(rows) != len(set(ids)):
        raise UserError("所选仪器比对记录不存在或不属于该实验室", field="cmp")
    return tuple(_section(row) for row in rows)


def _chart(chart, caption: str) -> Chart:
    return Chart(chart_id=chart.chart_id, title=caption, options=charts.options_dict(chart),
                 height=getattr(chart, "height", None) or "320px")


def _section(row: InstrumentComparison) -> Section:
    r = comparison.analyse(row.pairs, row.error_ratio, row.allowable_bias, row.decision_levels)
    dec = row.analyte.decimals
    scatter = comparison_charts.comparison_scatter(
        row.pairs, [("Passing–Bablok", r.pb.slope, r.pb.intercept),
                    ("Deming", r.deming.slope, r.deming.intercept)],
        chart_id=f"rp-cmp{row.id}-scatter", title="散点图与回归线", x_name=f"X {row.x_label}",
        y_name=f"Y {row.y_label}", decimals=dec)
    diff = comparison_charts.bland_altman(row.pairs, r.bland_altman.mean_diff,
                                          r.bland_altman.loa, chart_id=f"rp-cmp{row.id}-ba",
                                          title="差值图（Bland–Altman）", decimals=dec)
    regression = Table(
        key=f"比对{row.id}回归", title="回归分析",
        columns=(Column("方法"), Column("斜率", 4), Column("斜率CI下限", 4),
                 Column("斜率CI上限", 4), Column("截距", 4), Column("截距CI下限", 4),
                 Column("截距CI上限", 4)),
        rows=(("Passing–Bablok", r.pb.slope, *r.pb.slope_ci, r.pb.intercept, *r.pb.intercept_ci),
              (f"Deming（λ={row.error_ratio:g}）", r.deming.slope, *r.deming.slope_ci,
               r.deming.intercept, *r.deming.intercept_ci)))
    levels = Table(
        key=f"比对{row.id}决定水平",
        title=f"医学决定水平处的偏倚（允许偏倚 {row.allowable_bias:.2f}%）",
        columns=(Column("决定水平", dec, row.unit), Column("PB 偏倚", 2, "%"),
                 Column("Deming 偏倚", 2, "%"), Column("判定")),
        rows=tuple((lv.xc, lv.bias_pct, dm.bias_pct, "可接受" if lv.acceptable else "不可接受")
                   for lv, dm in zip(r.levels_pb, r.levels_deming, strict=True)),
        tones=tuple("ok" if lv.acceptable else "bad" for lv in r.levels_pb))
    who = row.created_by.display_name if row.created_by else "—"
    return Section(
        title=f"仪器比对：{row.analyte.name} {row.x_label} → {row.y_label}",
        note=(f"{row.source_label}；{who} 于 {to_local(row.created_at):%Y-%m-%d %H:%M} 执行"
              "（WS/T 407）"),
        figures=(Figure("结论", "可比" if r.accepted else "不可比",
                        tone="ok" if r.accepted else "bad"),
                 Figure("配对数", str(r.n)), Figure("相关系数 r", f"{r.r:.4f}"),
                 Figure("允许偏倚内比例", f"{100 * r.acceptance.fraction:.1f}%",
                        tone="ok" if r.acceptance.accepted else "bad", hint="≥ 80% 为符合")),
        charts=(_chart(scatter, "散点图：Passing–Bablok 与 Deming 回归线、y = x"),
                _chart(diff, "差值图：平均差值与 95% 一致性界限")),
        tables=(regression, levels), anchor=f"cmp-{row.id}")
