"""Sigma charts: the distribution of σ over the five bands (< 3, 3–4, 4–5, 5–6, ≥ 6).

Fed by plain (label, count) pairs; the bars take the grade colours of the method decision
chart (≥ 6 green, 4–6 blue, 3–4 amber, < 3 red) so the two read alike.
"""

from __future__ import annotations

from collections.abc import Sequence

from pyecharts import options as opts
from pyecharts.charts import Bar

from qcwx.charts import common as c

BAND_COLOURS = (c.RED, c.AMBER, c.BLUE, c.BLUE, c.GREEN)


def sigma_bands(bands: Sequence[tuple[str, int]], chart_id: str, title: str) -> Bar:
    """Build a bar chart of counts per sigma band (five bands, lowest first)."""
    if len(bands) != len(BAND_COLOURS):
        raise ValueError(f"expected {len(BAND_COLOURS)} bands, got {len(bands)}")
    total = sum(int(n) for _, n in bands)
    items = [opts.BarItem(name=label, value=int(n), itemstyle_opts={"color": colour},
                          tooltip_opts=c.item_tooltip(c.tooltip_text(label, [
                              ("数量", int(n)),
                              ("占比", f"{100 * int(n) / total:.0f}%" if total else "—")])))
             for (label, n), colour in zip(bands, BAND_COLOURS, strict=True)]
    chart = c.new_chart(Bar, chart_id, "300px")
    chart.add_xaxis([label for label, _ in bands])
    chart.add_yaxis("数量", items, label_opts=opts.LabelOpts(is_show=True, position="top"))
    sub = f"n={total}"
    top = c.title_height(sub)
    return c.finish(chart, title_opts=c.title(title, sub), legend_opts=c.legend([], top),
                    grid_opts=c.grid(top + 20, bottom=8, right=16),
                    xaxis=c.category_axis([label for label, _ in bands]),
                    yaxis={**c.value_axis(min_=0), "minInterval": 1})
