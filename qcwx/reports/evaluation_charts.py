"""The evaluation report's charts per analyte, built by the builders of :mod:`qcwx.charts`.

At most three per analyte: the lab-means chart of the lot (every member of the group, this
lab highlighted, **every lab by its anonymous code**, the report being shared publicly), the
method decision chart when TEa is known (both for the analyte's level with the largest
|SDI|; the table has every level), and twelve months of this lab's SDI and CVR, one line per
level, on one chart whose reference lines 1.5 and 2 are the §7 limits of both (|SDI| ≥ 2
systematic error, CVR > 1.5 imprecision). Charts are stored as their ECharts options.
"""

from __future__ import annotations

from qcwx import charts
from qcwx.catalog.models import Analyte
from qcwx.charts import common
from qcwx.peer.queries import SystemResult
from qcwx.peer.queries.members import chart_rows
from qcwx.reports.document import Chart
from qcwx.reports.evaluation_data import EvaluationData

#: Reference lines of the combined SDI/CVR trend: ±2 (red), ±1.5 (amber) and 0.
TREND_BANDS = ((2.0, "2", common.RED), (1.5, "1.5", common.AMBER), (0.0, "", common.GREY),
               (-1.5, "-1.5", common.AMBER), (-2.0, "-2", common.RED))


def as_chart(chart, caption: str) -> Chart:
    """Return a built pyecharts chart as report data (its options as plain JSON)."""
    return Chart(chart_id=chart.chart_id, title=caption, options=charts.options_dict(chart),
                 height=getattr(chart, "height", None) or "320px")


def focus_row(data: EvaluationData, analyte_id: int) -> SystemResult | None:
    """Return the analyte's published row with the largest |SDI| that has a group to draw.

    Ties go to the first system and the lower level.
    """
    rows = [r for r in data.rows_of(analyte_id)
            if r.publishable and r.g_sd is not None and r.g_sd > 0 and r.g_mean is not None
            and data.members.get((r.ts_id, r.qc_level_id))]
    if not rows:
        return None
    return max(rows, key=lambda r: abs(r.sdi) if r.sdi is not None else -1.0)


def _level_name(data: EvaluationData, row: SystemResult) -> str:
    level = data.levels.get(row.qc_level_id)
    return level.name if level is not None else ""


def group_charts(data: EvaluationData, analyte: Analyte) -> list[Chart]:
    """Return the lab-means chart and (with TEa) the method decision chart of the focus row."""
    row = focus_row(data, analyte.id)
    if row is None:
        return []
    items = chart_rows(data.members[(row.ts_id, row.qc_level_id)])
    name = f"{analyte.name} {_level_name(data, row)}"
    out = [as_chart(charts.lab_comparison(
        items, row.g_mean, row.g_sd, chart_id=f"ev-a{analyte.id}-means",
        title=f"{name} 实验室均值比较", unit=row.unit, decimals=analyte.decimals),
        f"{name}：各实验室均值（{row.level_label}比对组，{row.n_labs} 家实验室，以匿名代码显示）")]
    if row.tea_pct is not None and row.tea_pct > 0:
        out.append(as_chart(charts.bias_cv(
            items, row.tea_pct, chart_id=f"ev-a{analyte.id}-bias-cv", title=f"{name} 方法决定图"),
            f"{name}：方法决定图（TEa {row.tea_pct:.2f}%）"))
    return out


def trend_chart(data: EvaluationData, analyte: Analyte) -> Chart | None:
    """Return the analyte's 12-month SDI and CVR trend (one line per level and metric)."""
    systems = data.systems_of(analyte.id)
    several = len(systems) > 1
    series: dict[str, list[float | None]] = {}
    for ts in systems:
        for level in sorted(ts.levels, key=lambda lv: lv.level_index):
            per = data.trend.get((ts.id, level.id), {})
            prefix = f"{ts.instrument.model} {level.name}" if several else level.name
            for metric in ("SDI", "CVR"):
                values = [getattr(per[m], metric.lower()) if m in per else None
                          for m in data.months]
                if any(v is not None for v in values):
                    series[f"{prefix} {metric}"] = values
    if not series:
        return None
    labels = [m[2:] for m in data.months]
    return as_chart(charts.trend(labels, series, chart_id=f"ev-a{analyte.id}-trend",
                                 title=f"{analyte.name} SDI / CVR 月度趋势", bands=TREND_BANDS),
                    f"{analyte.name}：本室近 {len(data.months)} 个月 SDI 与 CVR"
                    "（参考线 ±1.5、±2）")


def analyte_charts(data: EvaluationData, analyte: Analyte) -> tuple[Chart, ...]:
    """Return the (at most three) charts of one analyte."""
    trend = trend_chart(data, analyte)
    return tuple(group_charts(data, analyte)) + ((trend,) if trend is not None else ())
