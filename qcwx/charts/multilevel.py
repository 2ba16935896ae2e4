"""Multi-level IQC charts of one test system: Z scores of every level, and the Youden plot.

Inputs are plain data (tuples, dicts or objects); verdicts are the Westgard run statuses of
QC_SPEC §1 (``accept`` · ``warning`` · ``reject`` · ``pending``). Re-exported by
:mod:`qcwx.charts.iqc` and :mod:`qcwx.charts`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pyecharts import options as opts
from pyecharts.charts import Line, Scatter

from qcwx.charts import common as c

__all__ = ["youden", "z_chart"]


def _merge_labels(series_by_level: Mapping[str, Sequence[Any]]) -> list[str]:
    """Return the union of the levels' labels in run order.

    A label missing from the levels seen so far goes just before the next label of its own
    level that is already placed, else at the end (runs one level lacks stay in order).
    """
    merged: list[str] = []
    for entries in series_by_level.values():
        own = [str(c.field(e, "label", 0)) for e in entries]
        for i, label in enumerate(own):
            if label in merged:
                continue
            successor = next((x for x in own[i + 1:] if x in merged), None)
            merged.insert(merged.index(successor) if successor else len(merged), label)
    return merged


def _z_item(label: str, z: float | None, status: str, level: str, colour: str, symbol: str,
            limit: float) -> opts.LineItem:
    if z is None:
        return opts.LineItem(name=label, value="-")
    clipped = abs(z) > limit
    y = max(-limit, min(limit, z))
    style: dict = {"color": colour}
    if status in ("warning", "reject"):
        style = {"color": c.STATUS_COLOURS[status]}
    elif status == "pending":
        style = {"color": "#ffffff", "borderColor": colour, "borderWidth": 1.5}
    rows = [("Z", c.fmt_z(z) + ("（超出 ±4，画在边缘）" if clipped else "")),
            ("状态", c.STATUS_LABELS[status])]
    return opts.LineItem(
        name=label, value=c.r10(y), symbol="arrow" if clipped else symbol,
        symbol_size=10 if clipped or status == "reject" else 7,
        symbol_rotate=(0 if z > 0 else 180) if clipped else None, itemstyle_opts=style,
        tooltip_opts=c.item_tooltip(c.tooltip_text(f"{label} · {level}", rows)))


def z_chart(series_by_level: Mapping[str, Sequence[Any]], chart_id: str,
            title: str = "多水平 Z 分数图", *, labels: Sequence[str] | None = None) -> Line:
    """Build the multi-level Z-score chart.

    ``series_by_level`` maps a level name to its ``(label, z, status)`` entries in run order
    (tuples, dicts or objects with those names; ``z`` may be ``None``). Each level is its own
    series (colour and symbol); warning/reject points take the verdict colour. The y axis is
    fixed to [-4, 4]; a |z| > 4 is drawn on the edge as an arrow with the real z in the tooltip.
    ``labels`` optionally gives the x categories (all runs, in order); by default they are the
    union of the levels' labels, merged in run order.
    """
    limit = 4.0
    labels = [str(x) for x in labels] if labels is not None else _merge_labels(series_by_level)
    chart = c.new_chart(Line, chart_id, "300px")
    chart.add_xaxis(labels)
    names = [str(n) for n in series_by_level]
    for i, (level, entries) in enumerate(series_by_level.items()):
        colour = c.LEVEL_COLOURS[i % len(c.LEVEL_COLOURS)]
        symbol = c.LEVEL_SYMBOLS[i % len(c.LEVEL_SYMBOLS)]
        by_label = {str(c.field(e, "label", 0)): e for e in entries}
        items = []
        for label in labels:
            e = by_label.get(label)
            z = c.number(c.field(e, "z", 1, None)) if e is not None else None
            status = c.check_status(c.field(e, "status", 2, None)) if e is not None else "pending"
            items.append(_z_item(label, z, status, str(level), colour, symbol, limit))
        chart.add_yaxis(
            str(level), items, is_connect_nones=True, symbol=symbol, symbol_size=7, z=5 + i,
            label_opts=opts.LabelOpts(is_show=False),
            linestyle_opts=opts.LineStyleOpts(color=colour, width=1.2, opacity=0.8),
            itemstyle_opts={"color": colour},
            markline_opts=c.mark_lines(_z_lines()) if i == 0 else None)
    for series in chart.options["series"]:
        series["showAllSymbol"] = True  # never thin out results on a QC chart
    top = c.title_height(None)
    return c.finish(
        chart, title_opts=c.title(title), legend_opts=c.legend(names, top),
        grid_opts=c.grid(top + 30, bottom=44, right=40),
        xaxis=c.category_axis(labels),
        yaxis=c.value_axis(min_=-limit, max_=limit, interval=1),
        datazoom=[{"type": "slider", "xAxisIndex": 0, "startValue": max(0, len(labels) - 31),
                   "endValue": max(len(labels) - 1, 0), "height": 16, "bottom": 6,
                   "showDetail": False, "brushSelect": False, "borderColor": c.AXIS},
                  {"type": "inside", "xAxisIndex": 0, "zoomOnMouseWheel": "shift",
                   "preventDefaultMouseMove": False}])


def _z_lines() -> list[dict]:
    """Return the markLines at 0, ±1, ±2, ±3 of a Z-score chart."""
    lines = []
    for k in (3, 2, 1, 0, -1, -2, -3):
        colour = c.RED if abs(k) == 3 else c.AMBER if abs(k) == 2 else c.GREY
        kind = "solid" if k == 0 else "dotted" if abs(k) == 1 else "dashed"
        label = "0" if k == 0 else f"{k:+d}SD"
        lines.append(c.hline(k, label if abs(k) >= 2 else "", colour, kind, outside=True))
    return lines


def youden(pairs: Sequence[Any], chart_id: str, title: str = "Youden 图",
           level_names: Sequence[str] = ("水平1", "水平2")) -> Scatter:
    """Build the Youden plot of two levels: z(level 1) on x against z(level 2) on y.

    ``pairs`` are ``(label, z1, z2, status)`` per run (tuples, dicts or objects). The ±2 SD
    (amber) and ±3 SD (red) squares and the diagonal (where systematic error lies) are
    drawn; axes are fixed to [-4, 4] and points beyond are put on the edge (tooltip says so).
    """
    if len(level_names) != 2:
        raise ValueError("youden needs exactly two level names")
    n1, n2 = (str(n) for n in level_names)
    limit = 4.0
    items, statuses = [], set()
    for pair in pairs:
        label = str(c.field(pair, "label", 0))
        z1, z2 = c.number(c.field(pair, "z1", 1)), c.number(c.field(pair, "z2", 2))
        if z1 is None or z2 is None:
            continue
        status = c.check_status(c.field(pair, "status", 3, None))
        statuses.add(status)
        clipped = abs(z1) > limit or abs(z2) > limit
        rows = [(f"{n1} Z", c.fmt_z(z1)), (f"{n2} Z", c.fmt_z(z2)),
                ("状态", c.STATUS_LABELS[status]),
                ("位置", "超出 ±4，画在边缘" if clipped else None)]
        items.append(opts.ScatterItem(
            name=label, value=[c.r10(max(-limit, min(limit, z1))),
                               c.r10(max(-limit, min(limit, z2)))],
            symbol="triangle" if clipped else "circle",
            symbol_size=10 if status in ("reject", "warning") or clipped else 8,
            itemstyle_opts={"color": c.STATUS_COLOURS[status], "opacity": 0.9},
            tooltip_opts=c.item_tooltip(c.tooltip_text(label, rows))))
    chart = c.new_chart(Scatter, chart_id, "370px")
    chart.add_xaxis([])
    chart.add_yaxis("运行", items, symbol_size=8, label_opts=opts.LabelOpts(is_show=False),
                    markline_opts=c.mark_lines(_youden_lines()))
    markers = c.status_legend(statuses)
    chart.options["series"].extend(markers)
    top = c.title_height(None)
    side = 260
    return c.finish(
        chart, title_opts=c.title(title),
        legend_opts=c.legend([m["name"] for m in markers], top, selectable=False),
        grid_opts={"top": top + 34, "left": "center", "width": side, "height": side,
                   "containLabel": False},
        xaxis=c.value_axis(min_=-limit, max_=limit, interval=1, name=f"{n1} Z",
                           name_location="middle"),
        yaxis=c.value_axis(min_=-limit, max_=limit, interval=1, name=f"{n2} Z",
                           name_location="middle"))


def _youden_lines() -> list:
    """Return the ±2/±3 SD squares and the diagonal as markLine segments."""
    lines: list = []
    for k, colour, label in ((2, c.AMBER, "±2SD"), (3, c.RED, "±3SD")):
        corners = [(-k, -k), (k, -k), (k, k), (-k, k), (-k, -k)]
        for i, (a, b) in enumerate(zip(corners, corners[1:], strict=False)):
            lines.append(c.segment(a, b, label if i == 2 else "", colour,
                                   position="insideEndTop"))
    lines.append(c.segment((-4, -4), (4, 4), "系统误差", c.MUTED, kind="dotted"))
    return lines
