"""Assemble IQC chart and summary data for pages (plain data in, charts from ``charts/``)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import Any

import pandas as pd

from qcwx import charts
from qcwx.catalog.models import QcLevel, TestSystem
from qcwx.errors import UserError
from qcwx.iqc import queries, targets
from qcwx.iqc.models import ControlLimit
from qcwx.iqc.validation import check_plausible_date
from qcwx.qcstats import limits as qclimits
from qcwx.qcstats import westgard

_MONTH = re.compile(r"([0-9]{4})-(0[1-9]|1[0-2])")

NO_LIMIT_HTML = "<div class='qc-empty'>未设定靶值，无法绘制质控图</div>"


@dataclass(frozen=True)
class ChartBlock:
    """One rendered chart with its heading."""

    title: str
    html: str


def _label(p: queries.LjPoint) -> str:
    return f"{p.run_date:%m-%d}" + (f" #{p.run_no}" if p.run_no > 1 else "")


@dataclass(frozen=True)
class LevelChart:
    """One level's Levey–Jennings chart over a period, with its points and its target.

    ``chart`` (a pyecharts chart) is None when the level has no target in force at the end.
    """

    level: QcLevel
    limit: ControlLimit | None
    points: list[queries.LjPoint]
    chart: Any
    decimals: int

    @property
    def heading(self) -> str:
        """Return the chart's heading: level name, target mean and SD."""
        if self.limit is None:
            return self.level.name
        dec = self.decimals
        return (f"{self.level.name}（靶值 {self.limit.target_mean:.{dec}f}，"
                f"SD {self.limit.target_sd:.{dec + 1}f}）")


def lj_level_charts(ts: TestSystem, start: date, end: date,
                    points: list[queries.LjPoint] | None = None) -> list[LevelChart]:
    """Return the Levey–Jennings chart of every level of ``ts`` for ``start``…``end``.

    The one code path of the chart page and the reports: ``points`` are
    ``queries.lj_points(ts, start, end)`` (passed in when the caller already has them);
    the target is the one in force on ``end``, steps drawn where a new version starts.
    """
    if points is None:
        points = queries.lj_points(ts, start, end)
    in_force = targets.limits_in_force(ts, end)
    timeline = targets.limit_timeline(ts)
    dec = ts.analyte.decimals
    out: list[LevelChart] = []
    for lv in ts.levels:
        mine = [p for p in points if p.level_id == lv.id]
        limit = in_force.get(lv.id)
        chart = None if limit is None else charts.levey_jennings(
            [{"label": _label(p), "value": p.value, "z": p.z, "status": p.status,
              "rules": list(p.rules), "handled": p.handled,
              "detail": {"录入人": p.entered_by or "—", "版本": f"第{p.version}版",
                         "批次": f"第{p.run_no}批"}} for p in mine],
            mean=limit.target_mean, sd=limit.target_sd,
            title=f"{ts.analyte.name} {lv.name} Levey-Jennings 质控图", unit=ts.unit, decimals=dec,
            chart_id=f"lj-{ts.id}-{lv.id}", limit_steps=_steps(mine, timeline.get(lv.id, [])))
        out.append(LevelChart(lv, limit, mine, chart, dec))
    return out


def lj_charts(ts: TestSystem, start: date, end: date) -> list[ChartBlock]:
    """Return the LJ chart of every level, the Z-score chart and (2 levels) the Youden plot."""
    points = queries.lj_points(ts, start, end)
    blocks = [ChartBlock(item.heading, charts.render(item.chart, height="340px"))
              if item.chart is not None else ChartBlock(item.level.name, NO_LIMIT_HTML)
              for item in lj_level_charts(ts, start, end, points)]
    by_level = {lv.name: [(_label(p), p.z, p.status) for p in points
                          if p.level_id == lv.id and p.z is not None] for lv in ts.levels}
    if len(ts.levels) > 1 and any(by_level.values()):
        blocks.append(ChartBlock("多水平 Z 分数图", charts.render(
            charts.z_chart(by_level, chart_id=f"z-{ts.id}", title="多水平 Z 分数图",
                           labels=list(dict.fromkeys(_label(p) for p in points))),
            height="300px")))
    if len(ts.levels) == 2:
        pairs = _youden_pairs(ts, points)
        if pairs:
            names = [lv.name for lv in ts.levels]
            blocks.append(ChartBlock("Youden 图", charts.render(
                charts.youden(pairs, chart_id=f"youden-{ts.id}", title="Youden 图",
                              level_names=names), height="360px")))
    return blocks


def _steps(mine: list[queries.LjPoint], steps) -> list[tuple[int, float, float]] | None:
    """Return (point index, mean, sd) where a new limit version starts, if more than one."""
    if len(steps) < 2 or not mine:
        return None
    out = []
    for start, mean, sd in steps:
        idx = next((i for i, p in enumerate(mine) if p.run_date >= start), None)
        if idx is not None:
            out.append((idx, mean, sd))
    return out if len(out) > 1 else None


def _youden_pairs(ts: TestSystem, points: list[queries.LjPoint]):
    first, second = ts.levels[0].id, ts.levels[1].id
    by_run: dict[int, dict[int, queries.LjPoint]] = {}
    for p in points:
        by_run.setdefault(p.run_id, {})[p.level_id] = p
    pairs = []
    for run_points in by_run.values():
        a, b = run_points.get(first), run_points.get(second)
        if a and b and a.z is not None and b.z is not None:
            pairs.append((_label(a), a.z, b.z, a.status))
    return pairs


@dataclass(frozen=True)
class SummaryRow:
    """One level's month and cumulative figures."""

    level: str
    month: dict
    cumulative: dict
    rules: dict[str, int]


def monthly_summary(ts: TestSystem, month: str) -> list[SummaryRow]:
    """Return per level the month's and the lot-cumulative n/mean/SD/CV% and rule counts.

    n, mean, SD and CV% (of |mean|) count results of judged runs not rejected; the
    in-control rate is 1 − rejected / judged runs; pending runs count in neither.
    """
    match = _MONTH.fullmatch(month.strip())
    if match is None:  # pandas read "NaN" as NaT (500) and "0001-01" beyond its timestamps
        raise UserError(f"月份“{month[:20]}”格式无效，应为 YYYY-MM", field="month")
    first = check_plausible_date(date(int(match[1]), int(match[2]), 1), "month")
    period = pd.Period(first, freq="M")
    frame = queries.results_frame(ts, end=period.end_time.date())
    if frame.empty:
        return []
    names = {lv.id: lv.name for lv in ts.levels}
    data = pd.DataFrame({"level": frame.level_id, "date": pd.to_datetime(frame.run_date),
                         "value": frame.value, "rejected": frame.rejected.astype(bool),
                         "pending": frame.pending.astype(bool), "rules": frame.rules})
    summary = qclimits.period_summary(data)
    rows = []
    for lv in ts.levels:
        m = summary.monthly[(summary.monthly.level == lv.id) & (summary.monthly.month == period)]
        c = summary.cumulative[(summary.cumulative.level == lv.id)
                               & (summary.cumulative.month <= period)]
        if c.empty:
            continue
        month_row = m.iloc[0].to_dict() if len(m) else {}
        cum_row = c.iloc[-1].to_dict()
        rules = {code: int(month_row.get(code, 0) or 0) for code in westgard.RULE_CODES
                 if month_row.get(code)}
        rows.append(SummaryRow(names.get(lv.id, str(lv.id)), month_row, cum_row, rules))
    return rows
