"""The partial ECharts bundle has every chart type, component and feature the builders use.

``static/src/echarts-qcwx.js`` registers a chosen set from ``echarts/core``; ``make assets``
bundles it into ``static/vendor/echarts-qcwx.min.js``. One chart of every builder in
:mod:`qcwx.charts` (with data that takes every branch: verdicts, signed and open rejects,
clipped points, stepped limits, the own lab highlighted, bands) is drawn in Debian's Chromium:

* with a development build of the entry file, through ``static/js/charts.js`` as on the pages,
  ECharts prints no message that the full ECharts does not print for the same charts (a
  missing series type or component is "… is used but not imported"; ``grid.containLabel``
  without its feature is a hint to ``use(LegacyGridContainLabel)``);
* with the built bundle, every chart comes out pixel for pixel as the full ECharts draws it
  (a registered-but-silent part such as the label layout would differ in the picture).
"""

from __future__ import annotations

import inspect
import subprocess

import pytest

from qcwx import charts
from qcwx.config import PROJECT_ROOT
from tests.browser.conftest import PHONE
from tests.fixtures.app import IN_CI

pytestmark = pytest.mark.browser

ENTRY = PROJECT_ROOT / "static" / "src" / "echarts-qcwx.js"
BUNDLE = PROJECT_ROOT / "static" / "vendor" / "echarts-qcwx.min.js"
FULL_MIN = PROJECT_ROOT / "node_modules" / "echarts" / "dist" / "echarts.min.js"
FULL_ENTRY = PROJECT_ROOT / "node_modules" / "echarts" / "index.js"
ESBUILD = PROJECT_ROOT / "node_modules" / ".bin" / "esbuild"
CHARTS_JS = PROJECT_ROOT / "static" / "js" / "charts.js"
ORIGIN = "http://qcwx.test"
PAGE = """<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">
<script src="/echarts.js"></script><script src="/charts.js" defer></script></head>
<body style="margin:0">{body}</body></html>"""
#: Builders exported by qcwx.charts that are not chart builders.
NOT_BUILDERS = {"options_dict", "options_json", "render"}


def need(path) -> None:
    """Skip (locally) or fail (CI) when a built front-end file is missing."""
    if not path.exists():
        message = f"{path.relative_to(PROJECT_ROOT)} missing: run `make assets`"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)


def lj_points():
    rows = [(0.3, "accept", [], None), (-1.2, "accept", [], None), (2.4, "warning", ["1_2s"], None),
            (-3.4, "reject", ["1_3s"], False), (3.2, "reject", ["1_3s", "2_2s"], True),
            (7.5, "reject", ["1_3s"], True), (-8.0, "reject", ["1_3s"], False),
            (None, "pending", [], None), (0.1, "pending", [], None),
            # neighbours with long rule labels: they overlap unless the label layout moves them
            (3.3, "reject", ["1_3s", "2_2s", "R_4s"], True),
            (3.4, "reject", ["1_3s", "2_2s", "R_4s"], False),
            (3.2, "reject", ["1_3s", "2_2s", "4_1s"], True)]
    return [charts.LJPoint(label=f"11-{i + 1:02d} #1", value=None if z is None else 5 + 0.2 * z,
                           z=z, status=s, rules=r, handled=h, detail={"批号": "L1"})
            for i, (z, s, r, h) in enumerate(rows)]


def builder_charts() -> dict:
    """Return one chart per builder (by builder name), with data that takes every branch."""
    labs = [{"code": f"L{i:02d}", "mean": 5 + 0.05 * (i - 6), "highlight": i == 3,
             "sdi": (i - 6) / 2.5, "cvr": 0.4 + i / 6, "bias_pct": i - 6, "cv_pct": 1 + i / 4}
            for i in range(12)]
    z = {"水平1": [("a", 0.5, "accept"), ("b", 2.5, "warning"), ("c", 5.0, "reject")],
         "水平2": [("a", -0.4, "accept"), ("c", -4.6, "reject"), ("d", 0.2, "pending")]}
    return {
        "levey_jennings": [
            charts.levey_jennings(lj_points(), mean=5, sd=0.2, title="葡萄糖 水平1",
                                  unit="mmol/L", chart_id="lj"),
            charts.levey_jennings(lj_points(), mean=5, sd=0.2, title="葡萄糖 水平1 换批",
                                  chart_id="lj-steps", limit_steps=[(4, 5.1, 0.25)])],
        "z_chart": [charts.z_chart(z, "z")],
        "youden": [charts.youden([("a", 0.5, -0.3, "accept"), ("b", 2.4, 2.1, "warning"),
                                  ("c", 4.8, -1.0, "reject")], "youden")],
        "lab_comparison": [charts.lab_comparison(labs, 5.0, 0.1, "means", "均值比较", "mmol/L")],
        "sdi_cvr": [charts.sdi_cvr(labs, "sdi-cvr")],
        "histogram": [charts.histogram([x["mean"] for x in labs], 5, "hist", "均值分布",
                                       highlight_value=4.85, unit="mmol/L")],
        "bias_cv": [charts.bias_cv(labs, 10.0, "bias-cv")],
        "trend": [charts.trend(["01", "02", "03", "04"], {"水平1 SDI": [0.2, None, 1.6, -2.1],
                                                          "水平2 SDI": [0.1, 0.4, -0.3, 0.9]},
                               "trend", "SDI 月度趋势", charts.SDI_BANDS)],
        "sparkline": [charts.sparkline([1.0, 1.2, None, 0.9, 1.4], "spark")],
    }


def page_html() -> str:
    return PAGE.format(body="".join(str(charts.render(c))
                                    for built in builder_charts().values() for c in built))


def esbuild(entry, out) -> None:
    """Bundle ``entry`` as the site does, but as a development build (ECharts' checks on)."""
    need(ESBUILD)
    subprocess.run([str(ESBUILD), str(entry), "--bundle", "--format=iife",  # noqa: S603
                    "--global-name=echarts", "--log-level=warning",
                    "--define:process.env.NODE_ENV=\"development\"", f"--outfile={out}"],
                   check=True, cwd=PROJECT_ROOT)


def open_page(browser, echarts_js: bytes, html: str):
    """Open ``html`` (served with ``echarts_js`` and charts.js); return the page and its log."""
    context = browser.new_context(viewport=PHONE, device_scale_factor=1, locale="zh-CN")
    files = {"/": (html.encode(), "text/html"), "/echarts.js": (echarts_js, "text/javascript"),
             "/charts.js": (CHARTS_JS.read_bytes(), "text/javascript")}

    def handle(route):
        path = "/" + route.request.url.removeprefix(ORIGIN).lstrip("/").split("?")[0]
        body, kind = files.get(path, (b"", "text/plain"))
        route.fulfill(status=200 if path in files else 404, body=body, content_type=kind)

    context.route(f"{ORIGIN}/**", handle)
    page = context.new_page()
    page.messages = []
    page.on("console", lambda m: page.messages.append(f"{m.type}: {m.text}"))
    page.on("pageerror", lambda e: page.messages.append(f"pageerror: {e}"))
    page.goto(f"{ORIGIN}/")
    return page


def drawn_page(browser, echarts_js: bytes):
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    page = open_page(browser, echarts_js, page_html())
    try:
        page.wait_for_function("() => window.qcwxChartsDone === true", timeout=10_000)
    except PlaywrightTimeout:
        pytest.fail("charts.js did not finish drawing:\n" + "\n".join(page.messages))
    page.wait_for_timeout(700)  # past the 500 ms grow-in animation
    return page


def test_every_chart_builder_is_drawn_here():
    exported = {name for name in charts.__all__
                if inspect.isfunction(getattr(charts, name)) and name not in NOT_BUILDERS}
    assert exported == set(builder_charts())


def test_the_bundle_registers_every_part_the_builders_use(browser, tmp_path):
    need(ENTRY)
    esbuild(ENTRY, tmp_path / "partial.js")
    esbuild(FULL_ENTRY, tmp_path / "full.js")
    logs = {}
    for name in ("partial", "full"):
        page = drawn_page(browser, (tmp_path / f"{name}.js").read_bytes())
        painted = page.evaluate("""() => [...document.querySelectorAll('.qc-chart')].map(el => {
            const c = el.querySelector('canvas');
            const d = c && c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            return !!d && d.some((v, i) => i % 4 === 3 && v > 0);
        })""")
        assert painted and all(painted), name
        logs[name] = set(page.messages)
        page.context.close()
    new = logs["partial"] - logs["full"]
    assert new == set(), "the partial ECharts is missing parts:\n" + "\n".join(sorted(new))
    assert not any("not imported" in m or "pageerror" in m for m in logs["partial"])


def test_the_built_bundle_draws_every_chart_as_the_full_echarts_does(browser):
    need(BUNDLE)
    need(FULL_MIN)
    pictures = {}
    for name, path in (("bundle", BUNDLE), ("full", FULL_MIN)):
        page = open_page(browser, path.read_bytes(), page_html().replace(
            '<script src="/charts.js" defer></script>', ""))  # drawn below, animation off
        pictures[name] = page.evaluate("""() => {
            const out = {};
            document.querySelectorAll('script[data-chart-for]').forEach(s => {
                const id = s.getAttribute('data-chart-for');
                const chart = echarts.init(document.getElementById(id), null,
                                           {renderer: 'canvas'});
                chart.setOption(Object.assign(JSON.parse(s.textContent), {animation: false}));
                out[id] = chart.getDataURL({type: 'png', pixelRatio: 1});
            });
            return out;
        }""")
        assert [m for m in page.messages if "error" in m] == [], name
        page.context.close()
    assert len(pictures["bundle"]) == sum(len(c) for c in builder_charts().values())
    differ = [cid for cid, png in pictures["bundle"].items() if png != pictures["full"][cid]]
    assert differ == [], "drawn differently: a part missing from static/src/echarts-qcwx.js?"
