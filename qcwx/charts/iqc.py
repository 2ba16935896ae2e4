"""IQC charts of one test system: Levey–Jennings per level, multi-level Z scores, Youden.

The Z-score chart and the Youden plot live in :mod:`qcwx.charts.multilevel` and are
re-exported here.

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
from pyecharts.charts import Line

from qcwx.charts import common as c
from qcwx.charts.multilevel import youden, z_chart

__all__ = ["LJ_LINES", "LJ_WINDOW", "LJPoint", "levey_jennings", "youden", "z_chart"]

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
    all_limits = limits or [(float(mean), float(sd))]
    y_range = _lj_range(pts, all_limits)
    items = [_lj_item(p, m, y_range, unit, decimals)
             for p, (m, _s) in zip(pts, limits, strict=True)]
    line_mean, line_sd = all_limits[-1]  # the one limit when not stepped
    chart = _lj_values(chart_id, pts, items, None if stepped else (line_mean, line_sd))
    if stepped:
        _add_step_lines(chart, limits)
    markers = _lj_markers(pts)
    chart.options["series"].extend(markers)
    sub = f"均值 {c.fmt(line_mean, decimals)}  SD {c.fmt(line_sd, decimals + 1)}"
    sub += f"  {unit}" if unit else ""
    sub += "（靶值分段）" if stepped else ""
    top = c.title_height(sub)
    rows = 1 if len(markers) <= 4 else 2
    return c.finish(
        chart, title_opts=c.title(title, sub),
        legend_opts=c.legend([m["name"] for m in markers], top, selectable=False),
        grid_opts=c.grid(top + 18 * rows + 14, bottom=44, right=40),
        xaxis=c.category_axis([p.label for p in pts]),
        yaxis=_lj_yaxis(*y_range, line_sd, stepped, decimals), datazoom=_lj_datazoom(len(pts)))


def _lj_range(pts: list[_Point], limits: list[tuple[float, float]]) -> tuple[float, float]:
    """Return the LJ value axis range: mean ± 4 SD, widened up to ± 6 SD for larger z."""
    span = c.symmetric_span([p.z for p in pts], 4.0, 6.0, step=1.0)
    return min(m - span * s for m, s in limits), max(m + span * s for m, s in limits)


def _lj_item(p: _Point, m: float, y_range: tuple[float, float], unit: str,
             decimals: int) -> opts.LineItem:
    """Return one LJ data item; a value beyond the axis sits on its edge as a triangle."""
    y_min, y_max = y_range
    y, edge = p.value, None
    if y is not None and y > y_max:
        y, edge = y_max, "top"
    elif y is not None and y < y_min:
        y, edge = y_min, "bottom"
    below = y is not None and y < m
    label = _rule_label(p, below)
    return opts.LineItem(
        name=p.label, value=c.r10(y) if y is not None else "-",
        **_lj_symbol(p, edge), label_opts=label,
        tooltip_opts=c.item_tooltip(_lj_tooltip(p, unit, decimals, edge is not None)))


def _lj_values(chart_id: str, pts: list[_Point], items: list[opts.LineItem],
               limit: tuple[float, float] | None) -> Line:
    """Return the chart with its value series; ``limit`` (mean, sd) draws the SD mark lines."""
    chart = c.new_chart(Line, chart_id, "320px")
    chart.add_xaxis([p.label for p in pts])
    markline = None if limit is None else c.mark_lines(
        [c.hline(limit[0] + k * limit[1], name, colour, kind, 1.2 if k == 0 else 1,
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
    return chart


def _lj_markers(pts: list[_Point]) -> list[dict]:
    """Return the legend marker series: the statuses present, open and signed rejects."""
    markers = c.status_legend({p.status for p in pts})
    if any(p.status == "reject" and p.handled is False for p in pts):
        markers.append(c.legend_marker_series(UNHANDLED, c.RED, symbol="diamond", hollow=True,
                                              size=11))
    if any(p.status == "reject" and p.handled is True for p in pts):
        markers.append(c.legend_marker_series(HANDLED, c.RED, symbol="diamond", size=10))
    return markers


def _lj_datazoom(n: int) -> list[dict]:
    """Return the slider and inside zoom showing the latest `LJ_WINDOW` points first."""
    zoom_start = max(0, n - LJ_WINDOW)
    return [
        {"type": "slider", "xAxisIndex": 0, "startValue": zoom_start,
         "endValue": max(n - 1, 0), "height": 16, "bottom": 6, "showDetail": False,
         "brushSelect": False, "borderColor": c.AXIS, "fillerColor": "rgba(20,133,238,0.12)",
         "handleSize": "90%", "textStyle": {"fontSize": 10}},
        {"type": "inside", "xAxisIndex": 0, "startValue": zoom_start,
         "endValue": max(n - 1, 0), "zoomOnMouseWheel": "shift",
         "moveOnMouseMove": True, "preventDefaultMouseMove": False},
    ]


def _lj_yaxis(y_min: float, y_max: float, sd: float, stepped: bool, decimals: int = 2) -> dict:
    """Return the LJ value axis: ticks on every SD line, or round ticks when limits step.

    ECharts prints a tick with the precision of the interval, so min and interval are
    rounded to one decimal more than the analyte's (a tick 4.5789363585 becomes 4.579);
    the shift is far below a pixel, the SD lines themselves stay exact.
    """
    if not stepped:
        places = max(0, min(int(decimals), 6)) + 1
        step = round(sd, places) or sd
        return c.value_axis(min_=round(y_min, places), max_=y_max, interval=step)
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
