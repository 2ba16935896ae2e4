"""IQC charts of one test system: Levey–Jennings per level, multi-level Z scores, Youden.

Inputs are plain data (dicts, tuples or :class:`LJPoint`); verdicts are the Westgard run
statuses of QC_SPEC §1 (``accept`` · ``warning`` · ``reject`` · ``pending``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import Any

from pyecharts import options as opts
from pyecharts.charts import Line, Scatter

from qcwx.charts import common as c

#: SD multiples drawn on a Levey–Jennings chart: (k, label, colour, line type).
LJ_LINES = (
    (3, "+3SD", c.RED, "dashed"), (2, "+2SD", c.AMBER, "dashed"), (1, "+1SD", c.GREY, "dotted"),
    (0, "均值", c.BLUE, "solid"),
    (-1, "-1SD", c.GREY, "dotted"), (-2, "-2SD", c.AMBER, "dashed"), (-3, "-3SD", c.RED, "dashed"),
)
#: Points of the latest run window shown before the user zooms (about one month of runs).
LJ_WINDOW = 31
UNHANDLED = "失控未处理"
HANDLED = "失控已处理"


@dataclass(frozen=True)
class LJPoint:
    """One control result on a Levey–Jennings chart (a dict with these keys works too)."""

    label: str
    value: float | None
    z: float | None
    status: str = "pending"
    rules: Sequence[str] = ()
    handled: bool | None = None
    detail: Mapping[str, Any] = dc_field(default_factory=dict)


@dataclass(frozen=True)
class _Point:
    label: str
    value: float | None
    z: float | None
    status: str
    rules: tuple[str, ...]
    handled: bool | None
    detail: tuple[tuple[str, Any], ...]


def _lj_point(item: Any) -> _Point:
    detail = c.field(item, "detail", default=None) or {}
    return _Point(
        label=str(c.field(item, "label")), value=c.number(c.field(item, "value")),
        z=c.number(c.field(item, "z", default=None)),
        status=c.check_status(c.field(item, "status", default=None)),
        rules=tuple(str(r) for r in (c.field(item, "rules", default=None) or ())),
        handled=c.field(item, "handled", default=None),
        detail=tuple((str(k), v) for k, v in dict(detail).items()))


def _limits_per_point(n: int, mean: float, sd: float, steps) -> list[tuple[float, float]]:
    """Return the (mean, sd) in force at each point index."""
    out, current = [], (float(mean), float(sd))
    changes = sorted(((int(i), float(m), float(s)) for i, m, s in steps or ()),
                     key=lambda t: t[0])
    j = 0
    for idx in range(n):
        while j < len(changes) and changes[j][0] <= idx:
            current = (changes[j][1], changes[j][2])
            j += 1
        out.append(current)
    return out


def _check_sd(sd: float) -> None:
    if not (sd > 0 and math.isfinite(sd)):
        raise ValueError(f"sd must be a positive number, got {sd!r}")


def _lj_tooltip(p: _Point, unit: str, decimals: int, clipped: bool) -> str:
    handled = {True: "已处理（已签署）", False: "未处理"}.get(p.handled) \
        if p.status == "reject" else None
    value = f"{c.fmt(p.value, decimals)} {unit}".strip()
    rows = [("测定值", value + ("（超出坐标范围）" if clipped else "")),
            ("Z", c.fmt_z(p.z)), ("状态", c.STATUS_LABELS[p.status]),
            ("规则", "、".join(p.rules) or None), ("失控处理", handled)]
    return c.tooltip_text(p.label, rows + list(p.detail))


def _lj_symbol(p: _Point, y_edge: str | None) -> dict:
    colour = c.STATUS_COLOURS[p.status]
    if y_edge:
        return {"symbol": "triangle", "symbol_size": 11, "symbol_rotate": 0 if y_edge == "top"
                else 180, "itemstyle_opts": {"color": colour}}
    if p.status == "reject" and p.handled is False:
        return {"symbol": "diamond", "symbol_size": 13,
                "itemstyle_opts": {"color": "#ffffff", "borderColor": c.RED, "borderWidth": 2}}
    if p.status == "reject" and p.handled is True:
        return {"symbol": "diamond", "symbol_size": 11, "itemstyle_opts": {"color": c.RED}}
    size = 8 if p.status in ("reject", "warning") else 6
    return {"symbol": "circle", "symbol_size": size, "itemstyle_opts": {"color": colour}}


def _rule_label(p: _Point, below: bool) -> dict | None:
    if not p.rules and not (p.status == "reject" and p.handled is True):
        return None
    text = " ".join(p.rules) + (" ✓" if p.status == "reject" and p.handled is True else "")
    colour = c.RED if p.status == "reject" else c.AMBER if p.status == "warning" else c.MUTED
    return {"show": True, "formatter": c.esc(text.strip()), "position": "bottom" if below
            else "top", "fontSize": 10, "fontWeight": "bold", "color": colour, "distance": 4}


def levey_jennings(points: Sequence[Any], *, mean: float, sd: float, title: str, unit: str = "",
                   decimals: int = 2, chart_id: str,
                   limit_steps: Sequence[tuple[int, float, float]] | None = None) -> Line:
    """Build the Levey–Jennings chart of one level.

    Parameters
    ----------
    points : sequence of dict or :class:`LJPoint`
        In run order: ``label`` (``"11-05 #1"``), ``value``, ``z``, ``status``
        (accept/warning/reject/pending), ``rules`` (codes fired at this point's run
        involving this level), ``handled`` (``None`` no out-of-control record, ``True``
        signed, ``False`` open) and ``detail`` (extra tooltip fields, in order).
    mean, sd : float
        Target mean and SD (the ones in force when ``limit_steps`` is not given).
    title : str
        Chart title (the subtitle shows mean, SD and unit).
    unit : str
        Unit shown in the subtitle and tooltips.
    decimals : int
        The analyte's display decimals (values; SD gets one more).
    chart_id : str
        Explicit DOM id (letters, digits, ``-``, ``_``), so the HTML is deterministic.
    limit_steps : sequence of (label_index, mean, sd), optional
        Limit versions starting at a point index; the lines are then drawn as steps.

    The y axis spans mean ± 4 SD (widened up to ± 6 SD for larger z; beyond that a
    point sits on the edge as a triangle and its tooltip says so).
    """
    _check_sd(float(sd))
    pts = [_lj_point(p) for p in points]
    limits = _limits_per_point(len(pts), mean, sd, limit_steps)
    for _, s in limits:
        _check_sd(s)
    stepped = bool(limit_steps) and len({lim for lim in limits}) > 1
    span = c.symmetric_span([p.z for p in pts], 4.0, 6.0, step=1.0)
    all_limits = limits or [(float(mean), float(sd))]
    y_min = min(m - span * s for m, s in all_limits)
    y_max = max(m + span * s for m, s in all_limits)

    items = []
    for p, (m, _s) in zip(pts, limits, strict=True):
        y, edge = p.value, None
        if y is not None and y > y_max:
            y, edge = y_max, "top"
        elif y is not None and y < y_min:
            y, edge = y_min, "bottom"
        below = y is not None and y < m
        label = _rule_label(p, below)
        items.append(opts.LineItem(
            name=p.label, value=c.r10(y) if y is not None else "-",
            **_lj_symbol(p, edge), label_opts=label,
            tooltip_opts=c.item_tooltip(_lj_tooltip(p, unit, decimals, edge is not None))))

    chart = c.new_chart(Line, chart_id, "320px")
    chart.add_xaxis([p.label for p in pts])
    line_mean, line_sd = all_limits[-1]  # the one limit when not stepped
    markline = None if stepped else c.mark_lines(
        [c.hline(line_mean + k * line_sd, name, colour, kind, 1.2 if k == 0 else 1,
                 outside=True)
         for k, name, colour, kind in LJ_LINES])
    chart.add_yaxis(
        "测定值", items, is_connect_nones=True, symbol_size=6, z=5,
        label_opts=opts.LabelOpts(is_show=False),
        linestyle_opts=opts.LineStyleOpts(color=c.BLUE, width=1, opacity=0.55),
        itemstyle_opts={"color": c.BLUE}, markline_opts=markline)
    chart.options["series"][0]["labelLayout"] = {"moveOverlap": "shiftY", "hideOverlap": True}
    # ECharts thins symbols on long lines; on an LJ chart every result must stay visible.
    chart.options["series"][0]["showAllSymbol"] = True
    if stepped:
        _add_step_lines(chart, limits)
    statuses = {p.status for p in pts}
    markers = c.status_legend(statuses)
    if any(p.status == "reject" and p.handled is False for p in pts):
        markers.append(c.legend_marker_series(UNHANDLED, c.RED, symbol="diamond", hollow=True,
                                              size=11))
    if any(p.status == "reject" and p.handled is True for p in pts):
        markers.append(c.legend_marker_series(HANDLED, c.RED, symbol="diamond", size=10))
    chart.options["series"].extend(markers)
    sub = f"均值 {c.fmt(line_mean, decimals)}  SD {c.fmt(line_sd, decimals + 1)}"
    sub += f"  {unit}" if unit else ""
    sub += "（靶值分段）" if stepped else ""
    top = c.title_height(sub)
    rows = 1 if len(markers) <= 4 else 2
    n = len(pts)
    zoom_start = max(0, n - LJ_WINDOW)
    return c.finish(
        chart, title_opts=c.title(title, sub),
        legend_opts=c.legend([m["name"] for m in markers], top, selectable=False),
        grid_opts=c.grid(top + 18 * rows + 14, bottom=44, right=40),
        xaxis=c.category_axis([p.label for p in pts]),
        yaxis=_lj_yaxis(y_min, y_max, line_sd, stepped),
        datazoom=[
            {"type": "slider", "xAxisIndex": 0, "startValue": zoom_start,
             "endValue": max(n - 1, 0), "height": 16, "bottom": 6, "showDetail": False,
             "brushSelect": False, "borderColor": c.AXIS, "fillerColor": "rgba(20,133,238,0.12)",
             "handleSize": "90%", "textStyle": {"fontSize": 10}},
            {"type": "inside", "xAxisIndex": 0, "startValue": zoom_start,
             "endValue": max(n - 1, 0), "zoomOnMouseWheel": "shift",
             "moveOnMouseMove": True, "preventDefaultMouseMove": False},
        ])


def _lj_yaxis(y_min: float, y_max: float, sd: float, stepped: bool) -> dict:
    """Return the LJ value axis: ticks on every SD line, or round ticks when limits step."""
    if not stepped:
        return c.value_axis(min_=y_min, max_=y_max, interval=sd)
    lo, hi, step = c.nice_axis(y_min, y_max, 8)
    return c.value_axis(min_=lo, max_=hi, interval=step)


def _add_step_lines(chart: Line, limits: list[tuple[float, float]]) -> None:
    """Draw mean and ±1/2/3 SD as step series following the limit versions."""
    for k, name, colour, kind in LJ_LINES:
        values = [c.r10(m + k * s) for m, s in limits]
        data = [opts.LineItem(name=str(i), value=v, symbol="none", symbol_size=0)
                for i, v in enumerate(values)]
        chart.options["series"].append({
            "type": "line", "name": name, "data": data, "step": "middle",
            "showSymbol": False, "silent": True, "z": 1, "tooltip": {"show": False},
            "lineStyle": {"color": colour, "type": kind, "width": 1.2 if k == 0 else 1},
            "itemStyle": {"color": colour}, "label": {"show": False},
            "endLabel": {"show": True, "formatter": name, "fontSize": 10, "color": colour,
                         "distance": 3},
            "emphasis": {"disabled": True}, "animation": False,
        })


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
