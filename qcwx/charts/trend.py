"""Monthly trend lines (SDI, CVR, … over 12 months) and table sparklines."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pyecharts import options as opts
from pyecharts.charts import Line

from qcwx.charts import common as c

#: Reference lines for an SDI trend (QC_SPEC §3): ±1.25, ±1.5, ±2.
SDI_BANDS = ((2.0, "+2", c.RED), (1.5, "+1.5", c.AMBER), (1.25, "", c.GREY),
             (0.0, "", c.GREY), (-1.25, "", c.GREY), (-1.5, "-1.5", c.AMBER),
             (-2.0, "-2", c.RED))
#: Reference lines for a CVR trend (QC_SPEC §3): 1.0, 1.5, 2.0.
CVR_BANDS = ((2.0, "2.0", c.RED), (1.5, "1.5", c.AMBER), (1.0, "1.0", c.GREY))


def _band(band: Sequence) -> tuple[float, str, str]:
    value, label = float(band[0]), str(band[1])
    colour = str(band[2]) if len(band) > 2 else c.GREY
    return value, label, colour


def trend(months: Sequence[str], series: Mapping[str, Sequence[float | None]], chart_id: str,
          title: str, bands: Sequence[Sequence] | None = None, *, decimals: int = 2) -> Line:
    """Build a monthly trend: one line per series over ``months`` (gaps for ``None``).

    ``series`` maps a name (e.g. 水平1 SDI) to one value per month. ``bands`` are reference
    lines as ``(value, label)`` or ``(value, label, colour)``; see :data:`SDI_BANDS` and
    :data:`CVR_BANDS`. The y axis covers the data and the bands.
    """
    labels = [str(m) for m in months]
    band_list = [_band(b) for b in bands or ()]
    chart = c.new_chart(Line, chart_id, "280px")
    chart.add_xaxis(labels)
    seen: list[float] = [b[0] for b in band_list]
    for i, (name, values) in enumerate(series.items()):
        vals = [c.number(v) for v in values]
        if len(vals) != len(labels):
            raise ValueError(f"series {name!r} has {len(vals)} values for {len(labels)} months")
        seen += [v for v in vals if v is not None]
        colour = c.LEVEL_COLOURS[i % len(c.LEVEL_COLOURS)]
        items = [opts.LineItem(
            name=m, value=c.r10(v) if v is not None else "-", symbol="circle", symbol_size=6,
            tooltip_opts=c.item_tooltip(c.tooltip_text(f"{m} · {name}",
                                                       [("数值", c.fmt(v, decimals))])))
            for m, v in zip(labels, vals, strict=True)]
        chart.add_yaxis(
            str(name), items, symbol_size=6, z=5 + i, label_opts=opts.LabelOpts(is_show=False),
            linestyle_opts=opts.LineStyleOpts(color=colour, width=1.6),
            itemstyle_opts={"color": colour},
            markline_opts=c.mark_lines([c.hline(v, lab, col, "solid" if v == 0 else "dashed",
                                                outside=True)
                                        for v, lab, col in band_list])
            if i == 0 and band_list else None)
    lo, hi, step = c.nice_axis(min(seen), max(seen)) if seen else (None, None, None)
    top = c.title_height(None)
    return c.finish(
        chart, title_opts=c.title(title), legend_opts=c.legend([str(n) for n in series], top),
        grid_opts=c.grid(top + 30, bottom=8, right=34 if band_list else 14),
        xaxis=c.category_axis(labels), yaxis=c.value_axis(min_=lo, max_=hi, interval=step))


def sparkline(values: Sequence[float | None], chart_id: str) -> Line:
    """Build a tiny line without axes, legend or tooltip for a table cell (32 px high).

    The last value is marked with a dot; ``None`` leaves a gap.
    """
    vals = [c.number(v) for v in values]
    last = max((i for i, v in enumerate(vals) if v is not None), default=None)
    items = [opts.LineItem(name=str(i), value=c.r10(v) if v is not None else "-",
                           symbol="circle" if i == last else "none",
                           symbol_size=4 if i == last else 0)
             for i, v in enumerate(vals)]
    chart = c.new_chart(Line, chart_id, "32px")
    chart.options.update(animation=False)
    chart.add_xaxis([str(i) for i in range(len(vals))])
    chart.add_yaxis("", items, is_symbol_show=True, label_opts=opts.LabelOpts(is_show=False),
                    linestyle_opts=opts.LineStyleOpts(color=c.BLUE, width=1.5),
                    itemstyle_opts={"color": c.BLUE}, is_hover_animation=False)
    chart.options["series"][0]["silent"] = True
    return c.finish(
        chart, title_opts={"show": False}, legend_opts={"show": False},
        tooltip_opts={"show": False},
        grid_opts={"top": 3, "bottom": 3, "left": 2, "right": 4, "containLabel": False},
        xaxis={**c.category_axis([str(i) for i in range(len(vals))]), "show": False,
               "boundaryGap": False},
        yaxis={**c.value_axis(), "show": False, "scale": True})
