"""Peer-comparison charts (QC_SPEC §3, §4): lab means, SDI/CVR, histogram, bias–CV decision.

Labs are shown by their anonymous code; the viewer's own lab is passed with
``highlight=True`` and drawn as a larger diamond with a dark border and the label 本室.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from pyecharts import options as opts
from pyecharts.charts import Bar, Scatter

from qcwx.charts import common as c

#: |SDI| band limits (QC_SPEC §3): < 1.25 acceptable, 1.25–1.5 investigate, 1.5–2 marginal, ≥ 2.
SDI_LIMITS = ((1.25, c.GREY), (1.5, c.AMBER), (2.0, c.RED))
#: CVR band limits (QC_SPEC §3): ≤ 1.0 good, 1.0–1.5 acceptable, 1.5–2.0 investigate, > 2.0.
CVR_LIMITS = ((1.0, c.GREY), (1.5, c.AMBER), (2.0, c.RED))
OWN_LAB = "本室"


def _own_style(colour: str) -> dict:
    return {"color": colour, "borderColor": c.TEXT, "borderWidth": 2}


def _own_label() -> dict:
    return {"show": True, "formatter": OWN_LAB, "position": "top", "fontSize": 11,
            "fontWeight": "bold", "color": c.TEXT, "distance": 4}


def _lab_item(name: str, value: list | float, colour: str, highlight: bool, tip: str):
    return opts.ScatterItem(
        name=name, value=value, symbol="diamond" if highlight else "circle",
        symbol_size=14 if highlight else 8,
        itemstyle_opts=_own_style(colour) if highlight else {"color": colour, "opacity": 0.85},
        label_opts=_own_label() if highlight else None, tooltip_opts=c.item_tooltip(tip))


def _sdi_colour(sdi: float | None) -> str:
    if sdi is None:
        return c.GREY
    a = abs(sdi)
    return c.GREEN if a < 1.25 else c.AMBER if a < 2 else c.RED


def _cvr_colour(cvr: float | None) -> str:
    if cvr is None:
        return c.GREY
    return c.GREEN if cvr <= 1.5 else c.AMBER if cvr <= 2.0 else c.RED


def _worst(*colours: str) -> str:
    order = (c.RED, c.AMBER, c.GREEN, c.GREY)
    return next((x for x in order if x in colours), c.GREY)


def _group_sd(group_sd: float) -> float:
    sd = float(group_sd)
    if not (sd > 0 and math.isfinite(sd)):
        raise ValueError(f"group_sd must be a positive number, got {group_sd!r}")
    return sd


def lab_comparison(labs: Sequence[Any], group_mean: float, group_sd: float, chart_id: str,
                   title: str, unit: str = "", decimals: int = 2) -> Scatter:
    """Build the lab-means chart: every lab's mean, ordered, over group mean ±1/2/3 SD bands.

    ``labs`` are dicts/objects with ``code``, ``mean`` and ``highlight`` (own lab), and
    optionally ``label``, a short x-axis label (the code when absent or not unique; the code
    stays in the tooltip). Labs are sorted by mean; points are coloured by |SDI| band. More
    than eight labs are labelled vertically, each label whole when it is short (a code).
    """
    sd = _group_sd(group_sd)
    gm = float(group_mean)
    rows = []
    for lab in labs:
        mean = c.number(c.field(lab, "mean"))
        if mean is not None:
            code = str(c.field(lab, "code"))
            rows.append((code, mean, bool(c.field(lab, "highlight", default=False)),
                         str(c.field(lab, "label", default=None) or code)))
    rows.sort(key=lambda r: (r[1], r[0]))
    axis = [r[3] for r in rows]
    if len(set(axis)) < len(axis):
        axis = [r[0] for r in rows]
    items = []
    for (code, mean, own, _), label in zip(rows, axis, strict=True):
        sdi = (mean - gm) / sd
        tip = c.tooltip_text(code + (f"（{OWN_LAB}）" if own else ""), [
            ("均值", f"{c.fmt(mean, decimals)} {unit}".strip()), ("SDI", f"{sdi:+.2f}")])
        items.append(_lab_item(code, [label, c.r10(mean)], _sdi_colour(sdi), own, tip))
    span = c.symmetric_span([(r[1] - gm) / sd for r in rows], 3.5, 8.0)
    lo, hi, step = c.nice_axis(gm - span * sd, gm + span * sd, 6)
    chart = c.new_chart(Scatter, chart_id, "320px")
    chart.add_xaxis(axis)
    chart.add_yaxis("实验室均值", items, symbol_size=8,
                    label_opts=opts.LabelOpts(is_show=False),
                    markline_opts=c.mark_lines(
                        [c.hline(gm + k * sd, f"{lab} {c.fmt(gm + k * sd, decimals)}",
                                 colour, kind, 1.2 if k == 0 else 1)
                         for k, lab, colour, kind in (
                             (3, "+3SD", c.RED, "dashed"), (0, "组均值", c.BLUE, "solid"),
                             (-3, "-3SD", c.RED, "dashed"))]),
                    markarea_opts=_bands(gm, sd))
    sub = f"组均值 {c.fmt(gm, decimals)}  SD {c.fmt(sd, decimals + 1)}  {unit}  n={len(rows)}"
    top = c.title_height(sub)
    return c.finish(
        chart, title_opts=c.title(title, sub),
        legend_opts=c.legend([], top),
        grid_opts=c.grid(top + 12, bottom=10, left=8, right=14),
        xaxis=_lab_axis(axis), yaxis=c.value_axis(min_=lo, max_=hi, interval=step))


def _lab_axis(labels: Sequence[str]) -> dict:
    """Return the labs' category axis: upright when few, vertical and all shown when many."""
    if len(labels) <= 8:
        return c.category_axis(labels)
    axis = c.category_axis(labels, rotate=90)
    axis["axisLabel"].update({"interval": 0, "hideOverlap": False, "fontSize": 10,
                              "width": 72, "margin": 6})
    return axis


def _bands(gm: float, sd: float) -> dict:
    """Return markArea bands for ±1 SD (green), 1–2 SD (amber) and 2–3 SD (red)."""
    areas = []
    for lo, hi, colour, alpha in ((-1, 1, c.GREEN, 0.10), (1, 2, c.AMBER, 0.10),
                                  (-2, -1, c.AMBER, 0.10), (2, 3, c.RED, 0.07),
                                  (-3, -2, c.RED, 0.07)):
        areas.append([{"yAxis": c.r10(gm + lo * sd), "itemStyle": {"color": colour,
                                                                   "opacity": alpha}},
                      {"yAxis": c.r10(gm + hi * sd)}])
    return {"silent": True, "data": areas, "label": {"show": False}, "animation": False}


def sdi_cvr(labs: Sequence[Any], chart_id: str, title: str = "SDI–CVR 图") -> Scatter:
    """Build the SDI (x) against CVR (y) scatter with the QC_SPEC §3 band lines.

    ``labs`` are dicts/objects with ``code``, ``sdi``, ``cvr`` and ``highlight``. Lines at
    |SDI| 1.25, 1.5, 2 and CVR 1.0, 1.5, 2.0; the good zone (|SDI| < 1.25, CVR ≤ 1) is shaded.
    """
    items, sdis, cvrs = [], [], []
    for lab in labs:
        code = str(c.field(lab, "code"))
        sdi, cvr = c.number(c.field(lab, "sdi")), c.number(c.field(lab, "cvr"))
        if sdi is None or cvr is None:
            continue
        own = bool(c.field(lab, "highlight", default=False))
        sdis.append(sdi)
        cvrs.append(cvr)
        tip = c.tooltip_text(code + (f"（{OWN_LAB}）" if own else ""),
                             [("SDI", f"{sdi:+.2f}"), ("CVR", f"{cvr:.2f}")])
        colour = _worst(_sdi_colour(sdi), _cvr_colour(cvr))
        items.append(_lab_item(code, [c.r10(sdi), c.r10(cvr)], colour, own, tip))
    x_span = c.symmetric_span(sdis, 2.5, 10.0, step=1.0)
    y_max = max(2.5, math.ceil(max(cvrs, default=0) * 1.1 * 2) / 2)
    lines = [c.vline(s * k, "", colour) for k, colour in SDI_LIMITS for s in (1, -1)]
    lines += [c.hline(k, f"{k:.1f}", colour, outside=True) for k, colour in CVR_LIMITS]
    chart = c.new_chart(Scatter, chart_id, "360px")
    chart.add_xaxis([])
    chart.add_yaxis("实验室", items, symbol_size=8, label_opts=opts.LabelOpts(is_show=False),
                    markline_opts=c.mark_lines(lines),
                    markarea_opts={"silent": True, "label": {"show": False}, "data": [[
                        {"coord": [-1.25, 0], "itemStyle": {"color": c.GREEN, "opacity": 0.08}},
                        {"coord": [1.25, 1.0]}]]})
    sub = f"n={len(items)}  竖线 |SDI| 1.25/1.5/2，横线 CVR 1/1.5/2"
    top = c.title_height(sub)
    return c.finish(
        chart, title_opts=c.title(title, sub), legend_opts=c.legend([], top),
        grid_opts=c.grid(top + 26, bottom=26, right=32),
        xaxis=c.value_axis(min_=-x_span, max_=x_span, interval=1 if x_span <= 4 else None,
                           name="SDI", name_location="middle"),
        yaxis=c.value_axis(min_=0, max_=y_max, interval=0.5 if y_max <= 4 else None,
                           name="CVR"))


def _edges(values: list[float], bins: int | Sequence[float]) -> list[float]:
    if isinstance(bins, int):
        if bins < 1:
            raise ValueError("bins must be ≥ 1")
        lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
        if hi == lo:
            lo, hi = lo - 0.5, hi + 0.5
        width = c.nice_step((hi - lo) / bins)
        start = math.floor(lo / width + 1e-9) * width
        count = max(1, math.ceil((hi - start) / width - 1e-9))
        if start + count * width <= hi:
            count += 1
        return [c.r10(start + i * width) for i in range(count + 1)]
    edges = [float(e) for e in bins]
    if len(edges) < 2 or any(b <= a for a, b in zip(edges, edges[1:], strict=False)):
        raise ValueError("bin edges must be at least two increasing numbers")
    return edges


def _bin_of(value: float, edges: list[float]) -> int | None:
    if value < edges[0] or value > edges[-1]:
        return None
    for i in range(len(edges) - 1):
        if value < edges[i + 1]:
            return i
    return len(edges) - 2


def _edge_decimals(edges: list[float]) -> int:
    """Return the fewest decimals (≤ 6) that show every bin edge exactly."""
    for d in range(7):
        if all(abs(e * 10 ** d - round(e * 10 ** d)) < 1e-6 for e in edges):
            return d
    return 6


def histogram(values: Sequence[float | None], bins: int | Sequence[float], chart_id: str,
              title: str, highlight_value: float | None = None, *, decimals: int | None = None,
              unit: str = "") -> Bar:
    """Build a histogram of ``values`` (e.g. the peer labs' means).

    ``bins`` is about the number of bins (equal, round widths covering min–max) or the bin
    edges. The bin holding ``highlight_value`` (the own lab) is blue and labelled 本室; the
    others are grey. ``decimals`` formats the own value (default: one more than the edges).
    """
    vals = [v for v in (c.number(x) for x in values) if v is not None]
    edges = _edges(vals, bins)
    counts = [0] * (len(edges) - 1)
    for v in vals:
        i = _bin_of(v, edges)
        if i is not None:
            counts[i] += 1
    edge_dec = _edge_decimals(edges)
    if decimals is None:
        decimals = edge_dec + 1
    labels = [f"{c.fmt(a, edge_dec)}–{c.fmt(b, edge_dec)}" for a, b in zip(edges, edges[1:],
                                                                             strict=False)]
    own = c.number(highlight_value)
    own_bin = _bin_of(own, edges) if own is not None else None
    items = []
    for i, (label, n) in enumerate(zip(labels, counts, strict=True)):
        mine = i == own_bin
        tip = c.tooltip_text(f"{label} {unit}".strip(), [("实验室数", n),
                                                          (OWN_LAB, "在此区间" if mine else None)])
        items.append(opts.BarItem(
            name=label, value=n, itemstyle_opts={"color": c.BLUE if mine else c.GREY},
            label_opts=_own_label() if mine else None, tooltip_opts=c.item_tooltip(tip)))
    chart = c.new_chart(Bar, chart_id, "280px")
    chart.add_xaxis(labels)
    chart.add_yaxis("实验室数", items, category_gap="12%", label_opts=opts.LabelOpts(is_show=False))
    sub = f"n={len(vals)}" + (f"  本室 {c.fmt(own, decimals)} {unit}".rstrip()
                               if own is not None else "")
    top = c.title_height(sub)
    return c.finish(
        chart, title_opts=c.title(title, sub), legend_opts=c.legend([], top),
        grid_opts=c.grid(top + 16, bottom=8, left=8 + 18 * (len(labels) > 5), right=14),
        xaxis=c.category_axis(labels, rotate=40 if len(labels) > 5 else 0),
        yaxis={**c.value_axis(min_=0), "minInterval": 1})


def _sigma(bias: float, cv: float, tea: float) -> float:
    return math.inf if cv <= 0 else (tea - abs(bias)) / cv


def _sigma_colour(sigma: float) -> str:
    return c.GREEN if sigma >= 6 else c.BLUE if sigma >= 4 else c.AMBER if sigma >= 3 else c.RED


def bias_cv(labs: Sequence[Any], tea_pct: float, chart_id: str,
            title: str = "方法决定图") -> Scatter:
    """Build the method decision chart: x = CV%, y = |bias|%, lines |bias| + m·CV = TEa.

    ``labs`` are dicts/objects with ``code``, ``bias_pct``, ``cv_pct`` and ``highlight``.
    Lines for m = 2…6 are labelled 2σ…6σ; points are coloured by their sigma
    (σ = (TEa − |bias|)/CV: ≥ 6 green, 4–6 blue, 3–4 amber, < 3 red).
    """
    tea = float(tea_pct)
    if not (tea > 0 and math.isfinite(tea)):
        raise ValueError(f"tea_pct must be a positive number, got {tea_pct!r}")
    items, xs, ys = [], [], []
    for lab in labs:
        code = str(c.field(lab, "code"))
        bias, cv = c.number(c.field(lab, "bias_pct")), c.number(c.field(lab, "cv_pct"))
        if bias is None or cv is None:
            continue
        own = bool(c.field(lab, "highlight", default=False))
        sigma = _sigma(bias, cv, tea)
        xs.append(cv)
        ys.append(abs(bias))
        tip = c.tooltip_text(code + (f"（{OWN_LAB}）" if own else ""), [
            ("偏倚", f"{bias:+.2f}%"), ("CV", f"{cv:.2f}%"),
            ("σ", "—" if math.isinf(sigma) else f"{sigma:.2f}")])
        items.append(_lab_item(code, [c.r10(cv), c.r10(abs(bias))], _sigma_colour(sigma), own,
                               tip))
    _, x_max, x_step = c.nice_axis(0, max([tea / 2] + [x * 1.05 for x in xs]))
    _, y_max, y_step = c.nice_axis(0, max([tea] + [y * 1.05 for y in ys]))
    lines = []
    for m in range(2, 7):
        colour = c.GREEN if m == 6 else c.BLUE if m >= 4 else c.AMBER if m == 3 else c.RED
        lines.append(c.segment((0, tea), (tea / m, 0), f"{m}σ", colour, kind="solid"))
    chart = c.new_chart(Scatter, chart_id, "360px")
    chart.add_xaxis([])
    chart.add_yaxis("实验室", items, symbol_size=8, label_opts=opts.LabelOpts(is_show=False),
                    markline_opts=c.mark_lines(lines))
    sub = f"TEa {tea:g}%  n={len(items)}"
    top = c.title_height(sub)
    return c.finish(
        chart, title_opts=c.title(title, sub), legend_opts=c.legend([], top),
        grid_opts=c.grid(top + 26, bottom=26, right=22),
        xaxis=c.value_axis(min_=0, max_=x_max, interval=x_step, name="CV%",
                           name_location="middle"),
        yaxis=c.value_axis(min_=0, max_=y_max, interval=y_step, name="|偏倚|%"))
