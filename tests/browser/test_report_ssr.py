"""A shared report shows its first charts before ECharts has arrived, then the interactive ones.

The first charts come drawn on the server as SVG inside the HTML (qcwx.charts.ssr); here the
ECharts bundle is held back by the browser test so the page is seen exactly as a phone on a slow
network sees it meanwhile: the SVG charts painted (their pixels, from a screenshot), no canvas
yet. Released, charts.js replaces every SVG with a drawn canvas chart and logs no error.
Screenshots at 390×844: ``report-ssr-before.png`` and ``report-ssr-after.png``.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from PIL import Image

from qcwx.reports import firstpaint, services
from tests.browser.test_report_share import DRAWN
from tests.reports.evaluation_world import build_evaluation_world

pytestmark = pytest.mark.browser
SHOTS = Path(os.environ.get("QCWX_SCREENSHOTS", "/tmp/qcwx-shots"))


@pytest.fixture(scope="module")
def shared_path(live_app):
    from qcwx.extensions import db

    with live_app.app_context():
        w = build_evaluation_world()
        created = services.share_report(None, w.labs["r1"], "evaluation", {"month": w.month},
                                        "30", w.today)
        db.session.commit()
        path = created.path
        db.session.remove()
    return path


def _inked(png: bytes) -> int:
    """Return how many pixels of a screenshot are ink (darker than light grey)."""
    return sum(Image.open(io.BytesIO(png)).convert("L").histogram()[:200])


def test_the_first_charts_paint_as_svg_before_echarts_and_become_canvas_charts(
        phone, live_server, shared_path):
    held = []
    phone.route("**/vendor/echarts-qcwx.min.js*", lambda route: held.append(route))
    phone.goto(live_server + shared_path, wait_until="commit")
    phone.wait_for_selector("svg.qc-chart__ssr")
    phone.wait_for_function("() => document.readyState !== 'loading'")  # HTML all parsed
    assert held, "the ECharts bundle was asked for and is being held"

    boxes = phone.locator(".qc-chart")
    n_charts = boxes.count()
    assert n_charts > firstpaint.SSR_CHARTS
    state = phone.evaluate("""() => Array.from(document.querySelectorAll('.qc-chart')).map(
        div => [!!div.querySelector('svg.qc-chart__ssr'), !!div.querySelector('canvas')])""")
    assert state == [[i < firstpaint.SSR_CHARTS, False] for i in range(n_charts)]
    assert phone.evaluate("() => typeof window.echarts") == "undefined"
    first = boxes.nth(0)
    first.scroll_into_view_if_needed()
    box = first.bounding_box()
    assert box["width"] > 300 and box["height"] >= 200
    assert _inked(first.screenshot()) > 2000  # axes, lines, points and text really painted
    title = phone.evaluate("""() => JSON.parse(document.querySelector(
        'script[data-chart-for]').textContent).title""")
    title = title[0] if isinstance(title, list) else title
    svg_text = phone.locator(".qc-chart svg.qc-chart__ssr").first.text_content()
    assert title["text"] and title["text"] in svg_text  # Chinese text, as SVG <text>
    SHOTS.mkdir(parents=True, exist_ok=True)
    phone.screenshot(path=str(SHOTS / "report-ssr-before.png"))

    held[0].continue_()
    phone.wait_for_function("() => window.qcwxChartsDone === true", timeout=30000)
    phone.wait_for_function(f"() => ({DRAWN})().filter(Boolean).length === {n_charts}",
                            timeout=30000)
    assert phone.locator("svg.qc-chart__ssr").count() == 0  # every SVG gave way to its chart
    # each canvas fills its box from the top: nothing left of the SVG pushes it down
    assert phone.evaluate("""() => Array.from(document.querySelectorAll('.qc-chart')).every(div => {
        const a = div.getBoundingClientRect();
        const b = div.querySelector('canvas').getBoundingClientRect();
        return Math.abs(a.top - b.top) < 1 && Math.abs(a.height - b.height) < 1;
    })""")
    first.scroll_into_view_if_needed()
    phone.screenshot(path=str(SHOTS / "report-ssr-after.png"))
    assert phone.console_errors == []
