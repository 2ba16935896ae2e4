r"""Shared look and small helpers of the chart builders: colours, fonts, layout, tooltips.

Everything here works on plain data. Tooltips are per data item *strings* (no ``JsCode``),
so every option tree stays pure JSON: the same options feed the H5 pages and the
mini-program API. A tooltip string is shown through ``innerHTML``, therefore every piece
of user text goes through :func:`esc` (HTML entities, and ``{``/``}`` so ECharts does not
treat them as template variables); lines are separated by ``\n`` and shown with
``white-space: pre-line``.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pyecharts import options as opts

from qcwx.iqc.models import STATUS_LABEL

GREEN = "#07c160"
AMBER = "#fa9d3b"
RED = "#fa5151"
BLUE = "#1485ee"
GREY = "#b2b2b2"
TEXT = "#191919"
MUTED = "#7f7f7f"
AXIS = "#d9d9d9"
SPLIT = "#f0f0f0"
PURPLE = "#8e59e5"
SLATE = "#576b95"
#: Colours of the levels (series) in multi-level charts; status colours stay for verdicts.
LEVEL_COLOURS = (BLUE, PURPLE, SLATE, "#2aae67", "#d4662a")
#: Symbols of the levels, so a level is still told apart where the verdict recolours a point.
LEVEL_SYMBOLS = ("circle", "rect", "triangle", "roundRect", "pin")

STATUSES = ("accept", "warning", "reject", "pending")
STATUS_COLOURS = {"accept": GREEN, "warning": AMBER, "reject": RED, "pending": GREY}
#: Chinese names of the verdicts: the one table of :mod:`qcwx.iqc.models`, under the name
#: the chart builders have always used.
STATUS_LABELS = STATUS_LABEL

FONT = ('-apple-system, BlinkMacSystemFont, "PingFang SC", "Hiragino Sans GB", '
        '"Microsoft YaHei", "Noto Sans CJK SC", "Noto Sans SC", sans-serif')

_CHART_ID = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
_MISSING = object()


def field(item: Any, name: str, index: int | None = None, default: Any = _MISSING) -> Any:
    """Return ``name`` of a mapping, dataclass/object or (with ``index``) tuple item."""
    if isinstance(item, Mapping):
        if name in item:
            return item[name]
    elif index is not None and isinstance(item, Sequence) and not isinstance(item, str):
        if index < len(item):
            return item[index]
    elif hasattr(item, name):
        return getattr(item, name)
    if default is _MISSING:
        raise ValueError(f"chart data item has no field {name!r}: {item!r}")
    return default


def check_chart_id(chart_id: str) -> str:
    """Return ``chart_id`` if it is a safe, explicit DOM id, else raise ``ValueError``."""
    if not isinstance(chart_id, str) or not _CHART_ID.match(chart_id):
        raise ValueError(f"chart_id must match {_CHART_ID.pattern}: {chart_id!r}")
    return chart_id


def check_status(status: Any) -> str:
    """Return a known verdict (``None`` → ``pending``), else raise ``ValueError``."""
    status = "pending" if status is None else str(status)
    if status not in STATUS_COLOURS:
        raise ValueError(f"unknown status {status!r}; expected one of {STATUSES}")
    return status


def number(value: Any) -> float | None:
    """Return ``value`` as a finite float, or ``None`` when missing / not finite."""
    if value is None:
        return None
    out = float(value)
    return out if math.isfinite(out) else None


def fmt(value: float | None, decimals: int = 2) -> str:
    """Format a number with fixed decimals; ``—`` when missing."""
    return "—" if value is None else f"{value:.{max(0, int(decimals))}f}"


def fmt_z(z: float | None) -> str:
    """Format a z-score with sign and two decimals; ``—`` when missing."""
    return "—" if z is None else f"{z:+.2f}"


def r10(value: float) -> float:
    """Round to 10 decimals so limit lines like 5.0 + 3·0.2 read 5.6, not 5.6000000000000005."""
    return round(value, 10)


def esc(text: Any) -> str:
    """Escape user text for a tooltip string (HTML entities and ECharts ``{`` ``}``)."""
    out = html.escape(str(text), quote=True)
    return out.replace("{", "&#123;").replace("}", "&#125;").replace("\n", " ")


def tooltip_text(heading: Any, rows: Iterable[tuple[Any, Any]]) -> str:
    """Return a tooltip string: an escaped heading line and ``key：value`` lines."""
    lines = [esc(heading)]
    lines += [f"{esc(k)}：{esc(v)}" for k, v in rows if v is not None and v != ""]
    return "\n".join(lines)


def item_tooltip(text: str) -> dict:
    """Return the per-item tooltip option showing the fixed ``text``."""
    return {"formatter": text}


def new_chart(cls: type, chart_id: str, height: str = "320px"):
    """Create a pyecharts chart with an explicit id, the canvas renderer and the base style."""
    chart = cls(init_opts=opts.InitOpts(
        chart_id=check_chart_id(chart_id), renderer="canvas", width="100%", height=height,
        animation_opts=opts.AnimationOpts(animation_duration=500,
                                          animation_duration_update=300)))
    chart.options.update(textStyle={"fontFamily": FONT, "fontSize": 12, "color": TEXT})
    return chart


def title(text: str, subtext: str | None = None) -> dict:
    """Return a compact title (left, 13 px; subtitle 11 px), truncated on narrow screens."""
    return {
        "text": str(text), "subtext": subtext or "", "left": 8, "top": 4, "itemGap": 3,
        "padding": [0, 0, 0, 0],
        "textStyle": {"fontSize": 13, "fontWeight": "bold", "color": TEXT,
                      "width": 340, "overflow": "truncate"},
        "subtextStyle": {"fontSize": 11, "color": MUTED, "width": 340, "overflow": "truncate"},
    }


def title_height(subtext: str | None) -> int:
    """Return the pixels the title block takes."""
    return 38 if subtext else 22


def legend(names: Sequence[str], top: int, *, selectable: bool = True,
           scroll_above: int = 4) -> dict:
    """Return a centred small legend at ``top``, scrolling when it is long.

    Above ``scroll_above`` entries it stays one line that scrolls: a wrapped legend would
    run over the plot on a phone.
    """
    return {
        "show": bool(names), "data": list(names), "top": top, "left": "center",
        "type": "scroll" if len(names) > scroll_above else "plain",
        "itemWidth": 12, "itemHeight": 10, "itemGap": 10, "padding": 2,
        "textStyle": {"fontSize": 11, "color": TEXT}, "selectedMode": selectable,
    }


def tooltip() -> dict:
    """Return the chart-level tooltip: item trigger, confined to the chart, 12 px, multi-line."""
    return {
        "show": True, "trigger": "item", "triggerOn": "mousemove|click", "confine": True,
        "backgroundColor": "rgba(255,255,255,0.96)", "borderColor": "#e5e5e5",
        "borderWidth": 1, "padding": [6, 8], "textStyle": {"fontSize": 12, "color": TEXT},
        "extraCssText": "white-space:pre-line;line-height:1.5;max-width:260px;"
                        "box-shadow:0 2px 8px rgba(0,0,0,.12);",
    }


def grid(top: int, bottom: int = 28, left: int = 8, right: int = 14) -> dict:
    """Return a grid that keeps axis labels inside the chart box."""
    return {"top": top, "bottom": bottom, "left": left, "right": right, "containLabel": True}


def category_axis(labels: Sequence[str], *, rotate: int = 0, name: str | None = None) -> dict:
    """Return a category x axis with small labels that hide when they would overlap."""
    return {
        "type": "category", "data": [str(x) for x in labels], "boundaryGap": True,
        "name": name, "nameTextStyle": {"fontSize": 11, "color": MUTED},
        "axisLine": {"show": True, "lineStyle": {"color": AXIS}},
        "axisTick": {"show": False},
        "axisLabel": {"fontSize": 10, "color": MUTED, "hideOverlap": True, "rotate": rotate,
                      "width": 64, "overflow": "truncate"},
        "splitLine": {"show": False},
    }


def value_axis(*, min_: float | None = None, max_: float | None = None,
               interval: float | None = None, name: str | None = None,
               name_location: str = "end", show_split: bool = True) -> dict:
    """Return a value axis with small labels and light split lines."""
    axis = {
        "type": "value", "scale": True, "name": name or "",
        "nameLocation": name_location, "nameGap": 22 if name_location == "middle" else 8,
        "nameTextStyle": {"fontSize": 11, "color": MUTED,
                          "align": "left" if name_location == "end" else "center"},
        "axisLine": {"show": False, "onZero": False}, "axisTick": {"show": False},
        "axisLabel": {"fontSize": 10, "color": MUTED, "hideOverlap": True},
        "splitLine": {"show": show_split, "lineStyle": {"color": SPLIT, "type": "solid"}},
    }
    for key, val in (("min", min_), ("max", max_), ("interval", interval)):
        if val is not None:
            axis[key] = r10(val)
    return axis


def hline(value: float, label: str, colour: str, kind: str = "dashed", width: float = 1,
          *, outside: bool = False) -> dict:
    """Return a horizontal markLine item at ``value`` labelled at its right end.

    ``outside`` puts the label right of the plot (the grid needs ~36 px right margin),
    else it sits just above the line's end inside the plot.
    """
    return {
        "yAxis": r10(value), "name": label,
        "lineStyle": {"color": colour, "type": kind, "width": width},
        "label": {"show": bool(label), "formatter": esc(label),
                  "position": "end" if outside else "insideEndTop",
                  "fontSize": 10, "color": colour, "distance": 3 if outside else 2},
    }


def vline(value: float, label: str, colour: str, kind: str = "dashed") -> dict:
    """Return a vertical markLine item at ``value`` labelled at its top end."""
    return {
        "xAxis": r10(value), "name": label,
        "lineStyle": {"color": colour, "type": kind, "width": 1},
        "label": {"show": bool(label), "formatter": esc(label), "position": "end",
                  "fontSize": 10, "color": colour, "distance": 2},
    }


def segment(start: Sequence[float], end: Sequence[float], label: str, colour: str,
            kind: str = "dashed", position: str = "end") -> list[dict]:
    """Return a markLine item from ``start`` to ``end`` (data coordinates)."""
    return [
        {"coord": [r10(start[0]), r10(start[1])], "name": label,
         "lineStyle": {"color": colour, "type": kind, "width": 1},
         "label": {"show": bool(label), "formatter": esc(label), "position": position,
                   "fontSize": 10, "color": colour}},
        {"coord": [r10(end[0]), r10(end[1])]},
    ]


def mark_lines(items: list) -> dict:
    """Return silent markLine options without end symbols."""
    return {"silent": True, "symbol": ["none", "none"], "precision": 10,
            "label": {"show": True, "fontSize": 10}, "data": items,
            "animation": False}


def legend_marker_series(name: str, colour: str, *, symbol: str = "circle",
                         hollow: bool = False, size: int = 8) -> dict:
    """Return an empty scatter series that only draws a legend entry (a key to symbols)."""
    style = ({"color": "#ffffff", "borderColor": colour, "borderWidth": 2} if hollow
             else {"color": colour})
    return {"type": "scatter", "name": name, "data": [], "symbol": symbol,
            "symbolSize": size, "itemStyle": style, "silent": True, "tooltip": {"show": False}}


def status_legend(statuses: Iterable[str]) -> list[dict]:
    """Return legend marker series for the verdicts present (in fixed order)."""
    present = set(statuses)
    return [legend_marker_series(STATUS_LABELS[s], STATUS_COLOURS[s])
            for s in STATUSES if s in present]


def finish(chart, *, title_opts: dict, legend_opts: dict, grid_opts: dict, xaxis: dict,
           yaxis: dict, datazoom: list | None = None, tooltip_opts: dict | None = None):
    """Set the global options every builder sets, in one place."""
    chart.set_global_opts(
        title_opts=title_opts, legend_opts=legend_opts,
        tooltip_opts=tooltip_opts or tooltip(), xaxis_opts=xaxis, yaxis_opts=yaxis,
        datazoom_opts=datazoom)
    chart.options["grid"] = grid_opts
    return chart


def symmetric_span(values: Iterable[float | None], floor: float, cap: float,
                   step: float = 0.5) -> float:
    """Return the half-range ≥ ``floor`` covering values (rounded up to ``step``, ≤ ``cap``)."""
    top = max((abs(v) for v in values if v is not None), default=0.0)
    span = max(floor, math.ceil((top * 1.05) / step) * step)
    return min(span, cap)


def nice_step(raw: float) -> float:
    """Return 1, 2, 2.5 or 5 times a power of ten, the smallest ≥ ``raw`` (> 0)."""
    if not raw > 0:
        return 1.0
    power = 10 ** math.floor(math.log10(raw))
    return next(k * power for k in (1, 2, 2.5, 5, 10) if k * power >= raw * (1 - 1e-9))


def nice_axis(lo: float, hi: float, ticks: int = 5) -> tuple[float, float, float]:
    """Return (min, max, interval) on round numbers covering [lo, hi] with about ``ticks`` steps."""
    if hi < lo:
        lo, hi = hi, lo
    if hi == lo:
        lo, hi = lo - 1, hi + 1
    step = nice_step((hi - lo) / ticks)
    return (r10(math.floor(lo / step + 1e-9) * step), r10(math.ceil(hi / step - 1e-9) * step),
            r10(step))
