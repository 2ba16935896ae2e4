"""render() / options_json(): one safe, deterministic, self-hosted fragment per chart."""

from __future__ import annotations

import json

import pytest
from markupsafe import Markup

from qcwx import charts
from qcwx.charts.render import TEMPLATES_DIR, escape_json_for_html
from tests.charts import options_from_html

EVIL = "</script><script>alert(1)</script>"


def lj(title=EVIL, chart_id="lj-1"):
    points = [{"label": f"11-0{i}", "value": 5.0 + 0.1 * i, "z": 0.5 * i, "status": "accept",
               "rules": [], "handled": None, "detail": {"录入人": EVIL, "备注": "<!-- x -->"}}
              for i in range(1, 6)]
    return charts.levey_jennings(points, mean=5.0, sd=0.2, title=title, unit="mmol/L",
                                 decimals=2, chart_id=chart_id)


def every_chart():
    evil_labs = [{"code": EVIL, "mean": 5.1, "sdi": 0.5, "cvr": 1.1, "bias_pct": 1.0,
                  "cv_pct": 2.0, "highlight": False},
                 {"code": "<!--", "mean": 4.9, "sdi": -0.5, "cvr": 0.9, "bias_pct": -1.0,
                  "cv_pct": 1.5, "highlight": True}]
    return [
        lj(),
        charts.z_chart({EVIL: [("11-01", 0.3, "accept"), ("11-02", -1.0, "warning")]},
                       chart_id="z-1", title=EVIL),
        charts.youden([(EVIL, 0.3, 0.4, "accept")], chart_id="y-1", title=EVIL,
                      level_names=[EVIL, "<!--"]),
        charts.lab_comparison(evil_labs, 5.0, 0.1, chart_id="lc-1", title=EVIL, unit=EVIL),
        charts.sdi_cvr(evil_labs, chart_id="sc-1", title=EVIL),
        charts.histogram([4.9, 5.0, 5.1], 3, chart_id="h-1", title=EVIL, highlight_value=5.0,
                         unit=EVIL),
        charts.bias_cv(evil_labs, 7.0, chart_id="bc-1", title=EVIL),
        charts.trend(["2026-01", EVIL], {EVIL: [0.1, None]}, chart_id="t-1", title=EVIL,
                     bands=[(1.0, EVIL)]),
        charts.sparkline([1, None, 2], chart_id="s-1"),
    ]


@pytest.mark.parametrize("chart", every_chart(), ids=lambda c: c.chart_id)
def test_user_text_never_closes_the_script(chart):
    html = charts.render(chart)
    assert isinstance(html, Markup)
    assert html.count("</script>") == 1
    assert html.rstrip().endswith("</script>")
    assert "<!--" not in html
    assert "alert(1)</" not in html
    assert html.count('<script type="application/json"') == 1  # inert data, no inline code
    assert "setOption" not in html


@pytest.mark.parametrize("chart", every_chart(), ids=lambda c: c.chart_id)
def test_fragment_options_parse_as_json(chart):
    options = options_from_html(charts.render(chart))
    assert options["series"]
    assert options == json.loads(charts.options_json(chart))


@pytest.mark.parametrize("chart", every_chart(), ids=lambda c: c.chart_id)
def test_no_remote_url_in_output(chart):
    html = charts.render(chart).lower()
    assert "http" not in html and "cdn" not in html and "//" not in html.replace("<\\/", "")


def test_same_input_gives_byte_identical_html():
    assert str(charts.render(lj())) == str(charts.render(lj()))
    assert [str(charts.render(c)) for c in every_chart()] == [
        str(charts.render(c)) for c in every_chart()]


def test_fragment_places_one_div_with_the_fixed_id_and_height():
    html = str(charts.render(lj(chart_id="lj-7-2"), height="340px"))
    assert html.startswith('<div id="lj-7-2" class="qc-chart" style="width:100%;height:340px;">')
    assert '<script type="application/json" data-chart-for="lj-7-2">' in html


def test_the_static_drawing_script_draws_every_fragment_and_follows_resizes():
    script = (TEMPLATES_DIR.parent / "static" / charts.CHARTS_SCRIPT_PATH).read_text()
    assert "script[data-chart-for]" in script and "JSON.parse" in script
    assert "renderer: 'canvas'" in script and "chart.resize()" in script
    assert "DOMContentLoaded" in script


def test_default_height_is_the_builders_suggestion():
    assert "height:320px" in charts.render(lj())
    assert "height:32px" in charts.render(charts.sparkline([1, 2], chart_id="sp"))


@pytest.mark.parametrize("height", ["320", "1px;background:red", "calc(100%)", ""])
def test_bad_height_is_rejected(height):
    with pytest.raises(ValueError):
        charts.render(lj(), height=height or "x")


@pytest.mark.parametrize("chart_id", ["", "1abc", 'a"b', "a b", "<x>", "x" * 70])
def test_bad_chart_id_is_rejected(chart_id):
    with pytest.raises(ValueError):
        lj(chart_id=chart_id)


def test_json_escape_keeps_the_json_and_hides_markup():
    text = '{"t":"</script><!-- & >"}'
    safe = escape_json_for_html(text)
    assert "<" not in safe and ">" not in safe and "&" not in safe
    assert json.loads(safe) == json.loads(text)


def test_options_json_is_compact_pure_json_with_raw_text():
    text = charts.options_json(lj(title="葡萄糖 </b>"))
    assert "\n" not in text and "葡萄糖 </b>" in text
    assert json.loads(text)["title"]["text"] == "葡萄糖 </b>"
    assert charts.options_dict(lj())["series"][0]["name"] == "测定值"


def test_echarts_path_is_local_and_the_template_exists():
    assert charts.ECHARTS_SCRIPT_PATH == "vendor/echarts-qcwx.min.js"
    assert (TEMPLATES_DIR / "charts" / "_chart.html").is_file()


def test_line_separators_in_user_text_are_escaped_for_javascript():
    html = str(charts.render(lj(title="a\u2028b\u2029c")))
    assert "\u2028" not in html and "\u2029" not in html
    assert options_from_html(html)["title"]["text"] == "a\u2028b\u2029c"


def test_options_with_raw_jscode_are_refused():
    from pyecharts.commons.utils import JsCode

    chart = lj()
    chart.options["tooltip"]["formatter"] = JsCode("function (p) { return p.name; }")
    with pytest.raises(ValueError):
        charts.render(chart)  # a page draws from JSON, never from code (strict CSP)
    with pytest.raises(ValueError):
        charts.options_json(chart)


def test_fragment_options_are_compact_json():
    html = str(charts.render(lj()))
    assert '"type":"line"' in html and '"type": "line"' not in html
    assert len(html) < len(lj().dump_options())


def empty_charts():
    return [charts.levey_jennings([], mean=5, sd=0.2, title="t", chart_id="a"),
            charts.z_chart({}, chart_id="b"), charts.youden([], chart_id="c"),
            charts.lab_comparison([], 5, 0.1, chart_id="d", title="t"),
            charts.sdi_cvr([], chart_id="e"), charts.histogram([], 5, chart_id="f", title="t"),
            charts.bias_cv([], 7, chart_id="g"), charts.trend([], {}, chart_id="h", title="t"),
            charts.sparkline([], chart_id="i")]


@pytest.mark.parametrize("chart", empty_charts(), ids=lambda c: c.chart_id)
def test_every_builder_renders_with_no_data(chart):
    assert options_from_html(charts.render(chart))["series"] is not None
