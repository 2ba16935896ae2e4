"""Peer-comparison builders: lab means, SDI/CVR, histogram, bias–CV, trend, sparkline."""

from __future__ import annotations

import pytest

from qcwx import charts
from qcwx.charts.common import AMBER, BLUE, GREEN, GREY, RED
from tests.charts import markline_values, options_from_html, series_named


def opts_of(chart):
    return options_from_html(charts.render(chart))


def test_lab_comparison_orders_labs_bands_the_group_and_highlights_the_own_lab():
    labs = [{"code": "B02", "mean": 5.3, "highlight": False},
            {"code": "A01", "mean": 4.9, "highlight": True},
            {"code": "C03", "mean": 5.0, "highlight": False}]
    opts = opts_of(charts.lab_comparison(labs, 5.0, 0.1, chart_id="lc", title="均值比较",
                                         unit="mmol/L", decimals=2))
    s = series_named(opts, "实验室均值")
    assert opts["xAxis"][0]["data"] == ["A01", "C03", "B02"]
    assert markline_values(s) == pytest.approx([4.7, 5.0, 5.3])
    bands = [(a["yAxis"], b["yAxis"]) for a, b in s["markArea"]["data"]]
    assert (pytest.approx(4.9), pytest.approx(5.1)) in bands
    assert (pytest.approx(5.2), pytest.approx(5.3)) in bands and len(bands) == 5
    own = s["data"][0]
    assert own["symbol"] == "diamond" and own["label"]["formatter"] == "本室"
    assert "本室" in own["tooltip"]["formatter"] and "SDI：-1.00" in own["tooltip"]["formatter"]
    assert s["data"][2]["itemStyle"]["color"] == RED  # SDI +3
    assert opts["yAxis"][0]["min"] <= 4.6 and opts["yAxis"][0]["max"] >= 5.4


def test_sdi_cvr_draws_the_spec_band_lines_and_colours_by_the_worst_band():
    labs = [{"code": "A", "sdi": 0.2, "cvr": 0.8, "highlight": True},
            {"code": "B", "sdi": 1.7, "cvr": 0.9, "highlight": False},
            {"code": "C", "sdi": 0.1, "cvr": 2.4, "highlight": False}]
    opts = opts_of(charts.sdi_cvr(labs, chart_id="sc", title="SDI–CVR"))
    s = series_named(opts, "实验室")
    assert markline_values(s, "xAxis") == [-2, -1.5, -1.25, 1.25, 1.5, 2]
    assert markline_values(s, "yAxis") == [1.0, 1.5, 2.0]
    assert [d["itemStyle"]["color"] for d in s["data"]] == [GREEN, AMBER, RED]
    assert s["data"][0]["label"]["formatter"] == "本室"
    assert opts["yAxis"][0]["max"] >= 2.4 and opts["xAxis"][0]["min"] <= -2


def test_histogram_counts_values_in_round_bins_and_marks_the_own_bin():
    values = [4.81, 4.86, 4.93, 4.95, 5.02, 5.04, 5.07, 5.18]
    opts = opts_of(charts.histogram(values, 4, chart_id="h", title="分布", highlight_value=5.04))
    bars = series_named(opts, "实验室数")["data"]
    assert opts["xAxis"][0]["data"] == ["4.8–4.9", "4.9–5.0", "5.0–5.1", "5.1–5.2"]
    assert [b["value"] for b in bars] == [2, 2, 3, 1]
    assert [b["itemStyle"]["color"] for b in bars] == [GREY, GREY, BLUE, GREY]
    assert bars[2]["label"]["formatter"] == "本室"
    assert sum(b["value"] for b in bars) == len(values)


def test_histogram_accepts_explicit_edges():
    opts = opts_of(charts.histogram([1, 2, 2, 3, 9], [0, 2, 4], chart_id="h2", title="t"))
    assert [b["value"] for b in series_named(opts, "实验室数")["data"]] == [1, 3]


def test_bias_cv_draws_the_2_to_6_sigma_lines_and_colours_by_sigma():
    labs = [{"code": "A", "bias_pct": 1.5, "cv_pct": 1.8, "highlight": True},
            {"code": "B", "bias_pct": -0.5, "cv_pct": 0.5, "highlight": False}]
    opts = opts_of(charts.bias_cv(labs, 7.0, chart_id="bc", title="方法决定图"))
    s = series_named(opts, "实验室")
    lines = {a["label"]["formatter"]: (a["coord"], b["coord"]) for a, b in s["markLine"]["data"]}
    assert list(lines) == ["2σ", "3σ", "4σ", "5σ", "6σ"]
    for m in range(2, 7):
        start, end = lines[f"{m}σ"]
        assert start == [0, 7.0] and end == [pytest.approx(7.0 / m), 0]
    a, b = s["data"]
    assert a["value"] == [1.8, 1.5] and a["itemStyle"]["color"] == AMBER  # σ = 3.06
    assert "σ：3.06" in a["tooltip"]["formatter"]
    assert b["itemStyle"]["color"] == GREEN  # σ = 13
    assert opts["xAxis"][0]["name"] == "CV%" and opts["yAxis"][0]["max"] >= 7


def test_trend_has_a_line_per_series_gaps_and_band_lines():
    months = [f"2026-{m:02d}" for m in range(1, 13)]
    series = {"水平1 SDI": [0.1 * m for m in range(12)], "水平2 SDI": [None] + [0.5] * 11}
    opts = opts_of(charts.trend(months, series, chart_id="t", title="SDI 趋势",
                                bands=charts.SDI_BANDS))
    l1, l2 = series_named(opts, "水平1 SDI"), series_named(opts, "水平2 SDI")
    assert opts["xAxis"][0]["data"] == months
    assert markline_values(l1) == [-2, -1.5, -1.25, 0, 1.25, 1.5, 2]
    assert l2["data"][0]["value"] == "-"
    assert opts["yAxis"][0]["min"] <= -2 and opts["yAxis"][0]["max"] >= 2
    with pytest.raises(ValueError):
        charts.trend(months, {"x": [1.0]}, chart_id="t2", title="t")


def test_sparkline_has_no_axes_legend_or_tooltip_and_marks_the_last_value():
    opts = opts_of(charts.sparkline([1.0, None, 2.0, 1.5], chart_id="sp"))
    assert opts["xAxis"][0]["show"] is False and opts["yAxis"][0]["show"] is False
    assert opts["tooltip"]["show"] is False and opts["legend"][0]["show"] is False
    data = opts["series"][0]["data"]
    assert [d["value"] for d in data] == [1.0, "-", 2.0, 1.5]
    assert data[-1]["symbol"] == "circle" and data[0]["symbol"] == "none"
