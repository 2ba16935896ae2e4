"""Instrument comparison charts: the scatter with fitted and identity lines, Bland–Altman.

Fed by plain pairs ``(x, y, label)`` and the fitted coefficients; no statistics are computed
here beyond the line end points (a + b·x at the x range's ends).
"""

from __future__ import annotations

from collections.abc import Sequence

from pyecharts import options as opts
from pyecharts.charts import Scatter

from qcwx.charts import common as c


def _points(pairs: Sequence[Sequence], xs: Sequence[float], ys: Sequence[float],
            tip_rows) -> list[opts.ScatterItem]:
    return [opts.ScatterItem(name=str(p[2]) if len(p) > 2 else "", value=[c.r10(x), c.r10(y)],
                             tooltip_opts=c.item_tooltip(c.tooltip_text(
                                 p[2] if len(p) > 2 else "", tip_rows(p))))
            for p, x, y in zip(pairs, xs, ys, strict=True)]


def comparison_scatter(pairs: Sequence[Sequence], fits: Sequence[tuple[str, float, float]],
                       chart_id: str, title: str, x_name: str, y_name: str,
                       decimals: int = 2) -> Scatter:
    """Build y against x with each fit's line (name, slope, intercept) and the line y = x."""
    xs = [float(p[0]) for p in pairs]
    ys = [float(p[1]) for p in pairs]
    lo, hi = min(xs + ys), max(xs + ys)
    a_min, a_max, step = c.nice_axis(min(0.0, lo), hi * 1.05)
    colours = (c.BLUE, c.PURPLE, c.SLATE)
    lines = c.segment((a_min, a_min), (a_max, a_max), "y = x", c.GREY, kind="dashed")
    items = [lines]
    for (name, slope, intercept), colour in zip(fits, colours, strict=False):
        x0, x1 = min(xs), max(xs)
        items.append(c.segment((x0, intercept + slope * x0), (x1, intercept + slope * x1),
                               name, colour, kind="solid"))
    chart = c.new_chart(Scatter, chart_id, "340px")
    chart.add_xaxis([])
    chart.add_yaxis("样本", _points(pairs, xs, ys, lambda p: [
        ("X", c.fmt(float(p[0]), decimals)), ("Y", c.fmt(float(p[1]), decimals))]),
        symbol_size=7, label_opts=opts.LabelOpts(is_show=False),
        itemstyle_opts=opts.ItemStyleOpts(color=c.GREEN, opacity=0.8),
        markline_opts=c.mark_lines(items))
    sub = f"n={len(pairs)}  " + "  ".join(f"{n}: y = {b:.4f}x {a:+.4f}" for n, b, a in fits)
    top = c.title_height(sub)
    return c.finish(chart, title_opts=c.title(title, sub), legend_opts=c.legend([], top),
                    grid_opts=c.grid(top + 22, bottom=30, right=22),
                    xaxis=c.value_axis(min_=a_min, max_=a_max, interval=step, name=x_name,
                                       name_location="middle"),
                    yaxis=c.value_axis(min_=a_min, max_=a_max, interval=step, name=y_name))


def bland_altman(pairs: Sequence[Sequence], mean_diff: float, loa: tuple[float, float],
                 chart_id: str, title: str, decimals: int = 2) -> Scatter:
    """Build the difference plot: x = (x + y)/2, y = y − x, mean difference and 95 % limits."""
    means = [(float(p[0]) + float(p[1])) / 2 for p in pairs]
    diffs = [float(p[1]) - float(p[0]) for p in pairs]
    span = max([abs(d) for d in diffs] + [abs(loa[0]), abs(loa[1])]) * 1.15 or 1.0
    y_min, y_max, step = c.nice_axis(-span, span)
    chart = c.new_chart(Scatter, chart_id, "300px")
    chart.add_xaxis([])
    chart.add_yaxis("差值", _points(pairs, means, diffs, lambda p: [
        ("均值", c.fmt((float(p[0]) + float(p[1])) / 2, decimals)),
        ("差值 Y−X", c.fmt(float(p[1]) - float(p[0]), decimals + 1))]),
        symbol_size=7, label_opts=opts.LabelOpts(is_show=False),
        itemstyle_opts=opts.ItemStyleOpts(color=c.BLUE, opacity=0.8),
        markline_opts=c.mark_lines([
            c.hline(0.0, "0", c.GREY, kind="solid"),
            c.hline(mean_diff, f"均值 {mean_diff:+.{decimals + 1}f}", c.GREEN),
            c.hline(loa[0], f"−1.96SD {loa[0]:+.{decimals + 1}f}", c.AMBER),
            c.hline(loa[1], f"+1.96SD {loa[1]:+.{decimals + 1}f}", c.AMBER)]))
    sub = f"n={len(pairs)}  平均差值 {mean_diff:+.{decimals + 1}f}"
    top = c.title_height(sub)
    return c.finish(chart, title_opts=c.title(title, sub), legend_opts=c.legend([], top),
                    grid_opts=c.grid(top + 22, bottom=30, right=22),
                    xaxis=c.value_axis(name="两仪器均值", name_location="middle"),
                    yaxis=c.value_axis(min_=y_min, max_=y_max, interval=step, name="Y − X"))
