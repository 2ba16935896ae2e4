"""The shift timeline: a test system's daily mean z, its level per segment and its changes."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from pyecharts import options as opts
from pyecharts.charts import Line

from qcwx.charts import common as c


def _vline(day: str, label: str, colour: str, kind: str) -> dict:
    return {"xAxis": day, "name": label, "lineStyle": {"color": colour, "type": kind, "width": 1},
            "label": {"show": bool(label), "formatter": c.esc(label), "position": "end",
                      "fontSize": 10, "color": colour, "distance": 2}}


def shift_timeline(dates: Sequence[date], z: Sequence[float], levels: Sequence[float | None],
                   shifts: Sequence[date], changes: Sequence[tuple[date, str]],
                   chart_id: str, title: str) -> Line:
    """Build the timeline of one test system.

    ``z`` is the daily mean z (both levels), ``levels`` the fitted level of each day's segment
    (the step the CUSUM found; None draws nothing), ``shifts`` the detected change points
    (red lines) and ``changes`` (day, short label) what changed in the lab (grey lines).
    """
    if not (len(dates) == len(z) == len(levels)):
        raise ValueError("dates, z and levels must have the same length")
    labels = [f"{d:%m-%d}" for d in dates]
    chart = c.new_chart(Line, chart_id, "300px")
    chart.add_xaxis(labels)
    items = [opts.LineItem(name=lab, value=c.r10(v), tooltip_opts=c.item_tooltip(
        c.tooltip_text(f"{d:%Y-%m-%d}", [("平均 Z", c.fmt(v, 2))])))
        for lab, d, v in zip(labels, dates, z, strict=True)]
    known = set(labels)
    lines = [c.hline(0, "", c.GREY, "solid"), c.hline(2, "+2", c.AMBER),
             c.hline(-2, "-2", c.AMBER)]
    lines += [_vline(f"{d:%m-%d}", text, c.GREY, "dotted") for d, text in changes
              if f"{d:%m-%d}" in known]
    lines += [_vline(f"{d:%m-%d}", "偏移", c.RED, "solid") for d in shifts
              if f"{d:%m-%d}" in known]
    chart.add_yaxis("每日平均 Z 值", items, symbol_size=4, is_symbol_show=True,
                    label_opts=opts.LabelOpts(is_show=False),
                    linestyle_opts=opts.LineStyleOpts(color=c.BLUE, width=1.2),
                    itemstyle_opts={"color": c.BLUE}, markline_opts=c.mark_lines(lines))
    chart.add_yaxis("偏移后水平", [c.r10(v) if v is not None else "-" for v in levels],
                    is_symbol_show=False, is_step=True,
                    label_opts=opts.LabelOpts(is_show=False),
                    linestyle_opts=opts.LineStyleOpts(color=c.RED, width=2),
                    itemstyle_opts={"color": c.RED})
    span = c.symmetric_span([*z, 2.5], 2.5, 8.0)
    top = c.title_height(None)
    return c.finish(
        chart, title_opts=c.title(title),
        legend_opts=c.legend(["每日平均 Z 值", "偏移后水平"], top),
        grid_opts=c.grid(top + 30, bottom=8, right=30), xaxis=c.category_axis(labels),
        yaxis=c.value_axis(min_=-span, max_=span),
        datazoom=[opts.DataZoomOpts(type_="inside")])
