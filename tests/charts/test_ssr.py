"""Server-side SVG of a chart (qcwx.charts.ssr): drawn by ECharts in an embedded V8, made safe
to inline, cached, and never in the way when it cannot be drawn."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from xml.etree import ElementTree

import pytest

from qcwx import charts
from qcwx.charts import ssr
from tests.fixtures.app import IN_CI

pytestmark = pytest.mark.skipif(not ssr.BUNDLE.exists() and not IN_CI,
                                reason="make assets builds static/vendor/echarts-qcwx-ssr.js")

EVIL = '"><script>alert(1)</script><svg onload="alert(2)">'


@dataclass(frozen=True)
class Chart:
    chart_id: str
    options: dict
    height: str = "320px"


def lj_options(title="葡萄糖 水平1", unit="mmol/L"):
    points = [{"label": f"11-{d:02d}", "value": 5.0 + z * 0.2, "z": z, "status": s,
               "rules": ["1-3s"] if s == "reject" else [], "handled": None}
              for d, (z, s) in enumerate([(0.3, "accept"), (-1.1, "accept"), (2.3, "warning"),
                                          (0.8, "accept"), (-3.2, "reject"), (0.1, "accept")],
                                         start=1)]
    chart = charts.levey_jennings(points, mean=5.0, sd=0.2, title=title, unit=unit,
                                  decimals=2, chart_id="lj-glu-1")
    return charts.options_dict(chart)


def texts(svg: str) -> list[str]:
    root = ElementTree.fromstring(svg)
    return ["".join(el.itertext()) for el in root.iter("{http://www.w3.org/2000/svg}text")]


def test_an_lj_chart_is_drawn_with_its_title_lines_axis_and_points():
    svg = ssr.renderer.render(lj_options(), 320)
    shown = texts(svg)
    assert "葡萄糖 水平1" in " ".join(shown)
    for label in ("+3SD", "+2SD", "均值", "-2SD", "-3SD", "1-3s"):
        assert label in shown, label
    # y axis from mean - 4 SD to mean + 4 SD, a tick every SD (the builder's contract)
    for tick in ("4.2", "4.6", "5", "5.4", "5.8"):
        assert tick in shown, tick
    assert "11-01" in shown
    assert re.match(r'<svg width="358" height="320" [^>]*viewBox="0 0 358 320"', svg)


def test_inline_svg_fills_the_box_and_names_its_ids_after_the_chart():
    svg = ssr.renderer.render(lj_options(), 320)
    assert 'clip-path="url(#zr' in svg and "<style" in svg  # what ECharts writes
    first = ssr.inline_svg(svg, "lj-a")
    second = ssr.inline_svg(svg, "lj-b")
    assert first.startswith('<svg width="100%" height="100%" ')
    assert 'class="qc-chart__ssr"' in first and "<style" not in first
    ids = set(re.findall(r' id="([^"]+)"', first))
    assert ids and all(i.startswith("lj-a-ssr-") for i in ids)
    assert not ids & set(re.findall(r' id="([^"]+)"', second))
    assert re.search(r'url\(#lj-a-ssr-[^)]+\)', first)


def test_user_text_stays_text_and_fonts_keep_the_style_attribute_intact():
    svg = ssr.renderer.render(lj_options(title=EVIL, unit=EVIL), 320)
    markup = str(ssr.inline_svg(svg, "lj-evil"))
    root = ElementTree.fromstring(markup)
    tags = {el.tag.split("}")[1] for el in root.iter()}
    assert "script" not in tags and not any(
        name.startswith("on") for el in root.iter() for name in el.attrib)
    assert any(EVIL in t for t in texts(markup))
    # "PingFang SC" of the builders' font stack is requoted: one style attribute, not three
    style = root.find(".//{http://www.w3.org/2000/svg}text").get("style")
    assert "font-family:-apple-system" in style and "'PingFang SC'" in style


@pytest.mark.parametrize("bad", [
    '<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
    '<svg xmlns="http://www.w3.org/2000/svg"><g onclick="alert(1)"></g></svg>',
    '<svg xmlns="http://www.w3.org/2000/svg"><a href="javascript:alert(1)"></a></svg>',
    '<!DOCTYPE svg [<!ENTITY a "aaaa">]><svg xmlns="http://www.w3.org/2000/svg">&a;</svg>',
    '<svg xmlns="http://www.w3.org/2000/svg"><text>unclosed</svg>',
])
def test_markup_that_is_not_plain_chart_svg_is_refused(bad):
    with pytest.raises(ssr.RenderError):
        ssr.inline_svg(bad, "lj-1")


def test_svgs_are_cached_by_options_and_size(tmp_path):
    renderer = ssr.Renderer()
    try:
        options = lj_options()
        first = renderer.render(options, 320)
        assert renderer.render(dict(options), 320) is first  # equal options: from the cache
        assert renderer.render(options, 300) is not first
        assert 'height="300"' in renderer.render(options, 300)
    finally:
        renderer.close()


def test_published_charts_are_kept_on_disk_and_reused(tmp_path):
    chart = Chart("lj-disk", lj_options())
    drawn = ssr.chart_svgs([chart], 1, tmp_path)
    kept = list(tmp_path.glob("*.svg"))
    assert len(kept) == 1 and "葡萄糖 水平1" in kept[0].read_text(encoding="utf-8")
    kept[0].write_text(kept[0].read_text(encoding="utf-8").replace("葡萄糖", "血糖"),
                       encoding="utf-8")
    again = ssr.chart_svgs([chart], 1, tmp_path)  # read back, not drawn again
    assert "血糖 水平1" in again["lj-disk"] and "葡萄糖" in drawn["lj-disk"]


def test_only_the_first_charts_and_pixel_heights_are_drawn():
    options = lj_options()
    out = ssr.chart_svgs([Chart("a", options), Chart("b", options, "40vh"),
                          Chart("c", options), Chart("d", options)], 3)
    assert sorted(out) == ["a", "c"]
    assert ssr.chart_svgs([Chart("a", options)], 0) == {}


def test_without_the_bundle_charts_are_left_to_the_browser(tmp_path, caplog, monkeypatch):
    missing = ssr.Renderer(tmp_path / "no-echarts.js")
    monkeypatch.setattr(ssr, "renderer", missing)
    with caplog.at_level(logging.WARNING, logger="qcwx.charts.ssr"):
        assert ssr.chart_svgs([Chart("a", lj_options())], 2) == {}
        assert ssr.chart_svgs([Chart("a", lj_options())], 2) == {}
    assert missing.broken and "no-echarts.js" in missing.broken
    warnings = [r for r in caplog.records if "disabled" in r.getMessage()]
    assert len(warnings) == 1  # said once per process, not per chart


def test_options_echarts_rejects_leave_that_chart_to_the_browser(caplog):
    bad = Chart("bad", {"xAxis": {}, "yAxis": {},  # an axis that does not exist
                        "series": [{"type": "line", "xAxisIndex": 5, "data": [1, 2]}]})
    good = Chart("good", lj_options())
    with caplog.at_level(logging.WARNING, logger="qcwx.charts.ssr"):
        out = ssr.chart_svgs([bad, good], 2)
    assert list(out) == ["good"]
    messages = [r.getMessage() for r in caplog.records]
    assert any("bad" in m and "TypeError" in m for m in messages)
    assert all(len(m) < 500 for m in messages)  # not V8's quote of the minified bundle


def test_a_chart_that_takes_too_long_is_given_up_and_the_next_one_is_drawn(monkeypatch):
    renderer = ssr.Renderer()
    monkeypatch.setattr(ssr, "TIMEOUT_S", 0.001)
    big = {"xAxis": {"type": "category"}, "yAxis": {},
           "series": [{"type": "scatter", "data": [[i % 97, i % 89] for i in range(60000)]}]}
    try:
        with pytest.raises(ssr.RenderError, match="Timeout"):
            renderer.render(big, 320)
        monkeypatch.setattr(ssr, "TIMEOUT_S", 10.0)
        assert "葡萄糖" in renderer.render(lj_options(), 320)  # V8 interrupted, still usable
    finally:
        renderer.close()


def test_charts_are_drawn_and_timed_out_when_the_caller_runs_an_asyncio_loop(monkeypatch):
    """Regression: a renderer first used under a running loop (Playwright's sync API in the
    test process, an async server) refused every call with a timeout, so no chart was drawn."""
    import asyncio

    async def inside_a_running_loop():
        renderer = ssr.Renderer()
        try:
            drawn = renderer.render(lj_options(), 320)
            monkeypatch.setattr(ssr, "TIMEOUT_S", 0.001)
            big = {"xAxis": {"type": "category"}, "yAxis": {},
                   "series": [{"type": "scatter",
                               "data": [[i % 97, i % 89] for i in range(60000)]}]}
            with pytest.raises(ssr.RenderError, match="Timeout"):
                renderer.render(big, 320)
            return drawn
        finally:
            renderer.close()

    # On a thread of its own: the browser tests may leave Playwright's loop running here.
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1) as pool:
        drawn = pool.submit(asyncio.run, inside_a_running_loop()).result()
    assert "葡萄糖" in drawn
