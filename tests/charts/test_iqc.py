"""Levey–Jennings, multi-level Z-score and Youden builders."""

from __future__ import annotations

import pytest

from qcwx import charts
from qcwx.charts.common import AMBER, BLUE, GREEN, GREY, RED
from tests.charts import markline_values, options_from_html, series_named


def point(label, z, status="accept", rules=(), handled=None, mean=5.0, sd=0.2, **detail):
    return {"label": label, "value": round(mean + z * sd, 4), "z": z, "status": status,
            "rules": list(rules), "handled": handled, "detail": detail}


POINTS = [
    point("11-01 #1", 0.5, 录入人="张三", 时间="08:30", 版本="第1版"),
    point("11-02 #1", 2.2, "warning", ["1-2s"]),
    point("11-03 #1", 3.4, "reject", ["1-3s"], handled=False),
    point("11-04 #1", -3.1, "reject", ["1-3s", "R-4s"], handled=True),
    point("11-05 #1", -0.4, "pending"),
]


def build(points=POINTS, **kw):
    args = {"mean": 5.0, "sd": 0.2, "title": "葡萄糖 水平1", "unit": "mmol/L", "decimals": 2,
            "chart_id": "lj-1"} | kw
    return options_from_html(charts.render(charts.levey_jennings(points, **args)))


def data(options):
    return series_named(options, "测定值")["data"]


def test_lj_draws_mean_and_1_2_3_sd_lines_at_the_right_values():
    lines = series_named(build(), "测定值")["markLine"]["data"]
    assert markline_values(series_named(build(), "测定值")) == pytest.approx(
        [4.4, 4.6, 4.8, 5.0, 5.2, 5.4, 5.6])
    assert [line["yAxis"] for line in lines] == [5.6, 5.4, 5.2, 5.0, 4.8, 4.6, 4.4]
    assert [line["label"]["formatter"] for line in lines] == [
        "+3SD", "+2SD", "+1SD", "均值", "-1SD", "-2SD", "-3SD"]
    style = {line["label"]["formatter"]: line["lineStyle"] for line in lines}
    assert style["+3SD"] == {"color": RED, "type": "dashed", "width": 1}
    assert style["-2SD"]["color"] == AMBER and style["-2SD"]["type"] == "dashed"
    assert style["+1SD"]["color"] == GREY
    assert style["均值"]["color"] == BLUE and style["均值"]["type"] == "solid"


def test_lj_y_axis_covers_plus_minus_4_sd_with_ticks_on_each_sd():
    y = build()["yAxis"][0]
    assert (y["min"], y["max"], y["interval"]) == (4.2, 5.8, 0.2)


def test_lj_points_are_coloured_by_verdict():
    colours = [d["itemStyle"].get("color") for d in data(build())]
    assert colours[0] == GREEN and colours[1] == AMBER and colours[4] == GREY
    assert colours[3] == RED  # handled reject: filled red


def test_lj_unhandled_reject_is_a_hollow_red_diamond_and_handled_is_filled_with_a_tick():
    open_, signed = data(build())[2], data(build())[3]
    assert open_["symbol"] == "diamond"
    assert open_["itemStyle"] == {"color": "#ffffff", "borderColor": RED, "borderWidth": 2}
    assert signed["symbol"] == "diamond" and signed["itemStyle"]["color"] == RED
    assert signed["label"]["formatter"] == "1-3s R-4s ✓"
    legend = build()["legend"][0]["data"]
    assert legend == ["在控", "警告", "失控", "待评价", "失控未处理", "失控已处理"]
    marker = series_named(build(), "失控未处理")
    assert marker["data"] == [] and marker["itemStyle"]["borderColor"] == RED


def test_lj_fired_rules_label_the_point_and_plain_points_have_no_label():
    d = data(build())
    assert d[1]["label"]["formatter"] == "1-2s" and d[1]["label"]["show"] is True
    assert d[2]["label"]["formatter"] == "1-3s" and d[2]["label"]["position"] == "top"
    assert d[3]["label"]["position"] == "bottom"  # below the mean
    assert "label" not in d[0] and "label" not in d[4]


def test_lj_tooltip_shows_run_value_with_decimals_z_status_rules_and_detail():
    d = data(build(decimals=3))
    tip = d[0]["tooltip"]["formatter"].split("\n")
    assert tip == ["11-01 #1", "测定值：5.100 mmol/L", "Z：+0.50", "状态：在控",
                   "录入人：张三", "时间：08:30", "版本：第1版"]
    assert "状态：警告" in d[1]["tooltip"]["formatter"]
    assert "规则：1-3s、R-4s" in d[3]["tooltip"]["formatter"]
    assert "失控处理：未处理" in d[2]["tooltip"]["formatter"]
    assert "状态：待评价" in d[4]["tooltip"]["formatter"]


def test_lj_tooltip_escapes_user_text_for_html_and_echarts_templates():
    opts = build([point("<b>1</b>", 0.1, 录入人="{a}<img src=x>")])
    tip = data(opts)[0]["tooltip"]["formatter"]
    assert "<b>" not in tip and "<img" not in tip and "{a}" not in tip
    assert "&lt;img src=x&gt;" in tip and "&#123;a&#125;" in tip


def test_lj_has_slider_and_inside_datazoom_on_the_latest_runs():
    many = [point(f"d{i}", 0.1) for i in range(50)]
    zoom = build(many)["dataZoom"]
    assert [z["type"] for z in zoom] == ["slider", "inside"]
    assert zoom[0]["startValue"] == 50 - 31 and zoom[0]["endValue"] == 49


def test_lj_value_beyond_the_axis_is_put_on_the_edge_and_the_tooltip_says_so():
    opts = build([point("a", 0.0), point("b", 9.0, "reject", ["1-3s"])])
    y = opts["yAxis"][0]
    assert y["max"] == pytest.approx(5.0 + 6 * 0.2)  # widened up to ±6 SD, not more
    far = data(opts)[1]
    assert far["value"] == pytest.approx(y["max"]) and far["symbol"] == "triangle"
    tip = far["tooltip"]["formatter"]
    assert "超出坐标范围" in tip and "Z：+9.00" in tip


def test_lj_limit_steps_draw_step_lines_instead_of_constants():
    pts = [point(f"d{i}", 0.2) for i in range(6)]
    opts = build(pts, limit_steps=[(0, 5.0, 0.2), (3, 6.0, 0.5)])
    assert "markLine" not in series_named(opts, "测定值")
    mean = series_named(opts, "均值")
    assert mean["step"] == "middle"
    assert [d["value"] for d in mean["data"]] == [5.0, 5.0, 5.0, 6.0, 6.0, 6.0]
    assert [d["value"] for d in series_named(opts, "+3SD")["data"]] == pytest.approx(
        [5.6, 5.6, 5.6, 7.5, 7.5, 7.5])
    assert series_named(opts, "-2SD")["lineStyle"]["color"] == AMBER
    assert "均值" not in opts["legend"][0]["data"]
    assert "均值 6.00" in opts["title"]["subtext"]


def test_lj_accepts_dataclass_points_and_rejects_bad_input():
    pts = [charts.LJPoint("11-01", 5.1, 0.5, "accept")]
    assert data(build(pts))[0]["value"] == 5.1
    with pytest.raises(ValueError):
        build(pts, sd=0)
    with pytest.raises(ValueError):
        build([point("x", 0.1, "ok")])


def z_options():
    by_level = {
        "水平1": [("11-01", 0.5, "accept"), ("11-02", 5.3, "reject"), ("11-03", None, "pending")],
        "水平2": [("11-01", -1.0, "accept"), ("11-02", -2.2, "warning"),
                  ("11-04", 1.0, "accept")],
    }
    return options_from_html(charts.render(charts.z_chart(by_level, chart_id="z-1",
                                                          title="多水平 Z 分数图")))


def test_z_chart_has_one_series_per_level_and_lines_at_0_1_2_3():
    opts = z_options()
    l1, l2 = series_named(opts, "水平1"), series_named(opts, "水平2")
    assert l1["lineStyle"]["color"] != l2["lineStyle"]["color"]
    assert markline_values(l1) == [-3, -2, -1, 0, 1, 2, 3]
    assert opts["legend"][0]["data"] == ["水平1", "水平2"]
    assert opts["xAxis"][0]["data"] == ["11-01", "11-02", "11-03", "11-04"]


def test_z_chart_y_is_fixed_and_big_z_is_clipped_with_the_real_value_in_the_tooltip():
    opts = z_options()
    assert (opts["yAxis"][0]["min"], opts["yAxis"][0]["max"]) == (-4, 4)
    big = series_named(opts, "水平1")["data"][1]
    assert big["value"] == 4 and big["symbol"] == "arrow"
    assert "Z：+5.30" in big["tooltip"]["formatter"] and "超出" in big["tooltip"]["formatter"]
    assert big["itemStyle"]["color"] == RED
    assert series_named(opts, "水平2")["data"][1]["itemStyle"]["color"] == AMBER
    assert series_named(opts, "水平2")["data"][2]["value"] == "-"  # level 2 has no 11-03


def test_youden_draws_2_and_3_sd_squares_the_diagonal_and_status_colours():
    pairs = [("11-01", 0.5, 0.4, "accept"), ("11-02", 2.5, 2.3, "reject"),
             {"label": "11-03", "z1": -6, "z2": 1, "status": "warning"}]
    opts = options_from_html(charts.render(charts.youden(
        pairs, chart_id="y-1", title="Youden 图", level_names=["水平1", "水平2"])))
    runs = series_named(opts, "运行")
    segments = [(tuple(a["coord"]), tuple(b["coord"])) for a, b in runs["markLine"]["data"]]
    assert ((2, -2), (2, 2)) in segments and ((3, 3), (-3, 3)) in segments
    assert ((-4, -4), (4, 4)) in segments
    assert len(segments) == 9
    colours = [d["itemStyle"]["color"] for d in runs["data"]]
    assert colours == [GREEN, RED, AMBER]
    assert runs["data"][2]["value"] == [-4, 1] and "超出" in runs["data"][2]["tooltip"]["formatter"]
    assert opts["xAxis"][0]["name"] == "水平1 Z" and opts["yAxis"][0]["name"] == "水平2 Z"
    assert (opts["xAxis"][0]["min"], opts["xAxis"][0]["max"]) == (-4, 4)
    assert opts["legend"][0]["data"] == ["在控", "警告", "失控"]


@pytest.mark.parametrize(("first", "second", "merged"), [
    (["01", "02", "03"], ["01", "02", "04"], ["01", "02", "03", "04"]),
    (["02", "03"], ["01", "02"], ["01", "02", "03"]),
    (["01", "03"], ["01", "02", "03"], ["01", "02", "03"]),
])
def test_z_chart_merges_the_levels_labels_in_run_order(first, second, merged):
    by_level = {"L1": [(x, 0.1, "accept") for x in first],
                "L2": [(x, 0.1, "accept") for x in second]}
    opts = options_from_html(charts.render(charts.z_chart(by_level, chart_id="z-2")))
    assert opts["xAxis"][0]["data"] == merged


def test_z_chart_takes_the_run_labels_when_given():
    by_level = {"L1": [("02", 0.1, "accept"), ("04", 0.2, "accept")],
                "L2": [("01", 0.1, "accept"), ("03", 0.1, "accept")]}
    given = ["01", "02", "03", "04", "05"]
    opts = options_from_html(charts.render(charts.z_chart(by_level, chart_id="z-3",
                                                          labels=given)))
    assert opts["xAxis"][0]["data"] == given
    assert [d["value"] for d in series_named(opts, "L1")["data"]] == ["-", 0.1, "-", 0.2, "-"]


def test_lj_limit_steps_that_never_change_draw_constant_lines_at_the_steps_limits():
    pts = [point(f"d{i}", 0.2) for i in range(3)]
    opts = build(pts, mean=9.0, sd=1.0, limit_steps=[(0, 5.0, 0.2)])
    assert markline_values(series_named(opts, "测定值")) == pytest.approx(
        [4.4, 4.6, 4.8, 5.0, 5.2, 5.4, 5.6])


def test_status_labels_are_the_one_table_of_iqc_models():
    from qcwx.charts import STATUS_LABELS
    from qcwx.iqc.models import STATUS_LABEL

    assert STATUS_LABELS is STATUS_LABEL
