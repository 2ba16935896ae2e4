"""A report's first charts come drawn on the server (SVG in the HTML); the shared page carries
its stylesheets inline, so its first screen paints from the HTML alone."""

from __future__ import annotations

import re
from pathlib import Path
from xml.etree import ElementTree

import pytest

from qcwx.charts import ssr
from qcwx.reports import firstpaint, services
from tests.fixtures.app import IN_CI
from tests.reports.evaluation_world import build_evaluation_world

pytestmark = pytest.mark.skipif(not ssr.BUNDLE.exists() and not IN_CI,
                                reason="make assets builds static/vendor/echarts-qcwx-ssr.js")
MARK = '<g id="kept-on-disk"></g>'
SVG_OPEN = re.compile(r'<div id="([^"]+)" class="qc-chart"[^>]*>(<svg [^>]*>)?')


def _page_svgs(html: str) -> dict[str, bool]:
    return {m.group(1): m.group(2) is not None for m in SVG_OPEN.finditer(html)}


@pytest.fixture
def eval_world(session):
    built = build_evaluation_world()
    session.commit()
    return built


def _link(w):
    """Share the live evaluation report of lab r1 (its charts: comparison, method, trend)."""
    return services.share_report(None, w.labs["r1"], "evaluation", {"month": w.month}, "30",
                                 w.today)


def test_the_shared_page_paints_its_first_charts_and_styles_from_the_html(eval_world, client):
    created = _link(eval_world)
    res = client.get(created.path)
    assert res.status_code == 200
    html = res.get_data(as_text=True)
    drawn = _page_svgs(html)
    assert len(drawn) >= 3, "the report has several charts"
    first = list(drawn)[:firstpaint.SSR_CHARTS]
    assert [drawn[c] for c in drawn] == [c in first for c in drawn]
    for chart_id in first:  # each SVG sits in its box, ids its own, options still beside it
        box = html[html.index(f'<div id="{chart_id}"'):]
        svg = box[box.index("<svg"):box.index("</svg>") + 6]
        ElementTree.fromstring(svg)
        assert 'class="qc-chart__ssr"' in svg and 'width="100%"' in svg
        ids = re.findall(r' id="([^"]+)"', svg)
        assert all(i.startswith(f"{chart_id}-ssr-") for i in ids)
        assert f'data-chart-for="{chart_id}"' in html
    # the stylesheets are inline; only the print one stays a link (it blocks nothing)
    assert re.findall(r'<link rel="stylesheet"[^>]*>', html) == [
        re.search(r'<link rel="stylesheet" href="/static/css/report-print\.css[^>]*>',
                  html).group(0)]
    assert "/* static/vendor/weui.min.css */" in html and ".rp-chart" in html
    assert "<script>" not in html  # still no inline script


def test_the_signed_in_report_page_has_the_svgs_but_keeps_cached_stylesheets(eval_world,
                                                                            login):
    w = eval_world
    client = login(w.users["tech_r1"])
    res = client.get(f"/reports/labs/{w.labs['r1'].id}/evaluation?month={w.month}")
    assert res.status_code == 200
    html = res.get_data(as_text=True)
    assert sum(_page_svgs(html).values()) == firstpaint.SSR_CHARTS
    assert "weui.min.css" in html and "/* static/vendor/weui.min.css */" not in html


def test_chart_ssr_can_be_turned_off(eval_world, client, app, monkeypatch):
    monkeypatch.setitem(app.config, "CHART_SSR_CHARTS", 0)
    html = client.get(_link(eval_world).path).get_data(as_text=True)
    assert _page_svgs(html) and not any(_page_svgs(html).values())


def test_a_published_reports_svgs_are_kept_and_served_from_disk(eval_world, session, client,
                                                                app):
    w = eval_world
    lab = w.labs["r1"]
    services.publish_evaluation(lab, w.month, w.today)
    created = services.share_report(None, lab, "evaluation", {"month": w.month}, "0", w.today)
    session.commit()
    frozen = services.report_of_link(created.link, w.today)
    kept = [Path(app.instance_path) / "chart-svg" / (ssr.fingerprint(
        ssr.options_text(c.options), ssr.WIDTH, int(c.height.removesuffix("px"))) + ".svg")
        for c in frozen.charts[:firstpaint.SSR_CHARTS]]
    for path in kept:
        path.unlink(missing_ok=True)  # from an earlier run of this test
    html = client.get(created.path).get_data(as_text=True)
    assert sum(_page_svgs(html).values()) == firstpaint.SSR_CHARTS
    assert all(path.is_file() for path in kept)
    for path in kept:  # mark the kept files: a page drawn from them shows the mark
        path.write_text(path.read_text(encoding="utf-8").replace("</svg>", MARK + "</svg>"),
                        encoding="utf-8")
    ssr.renderer.forget()  # another process: nothing in memory, the files still serve
    again = client.get(created.path).get_data(as_text=True)
    assert again.count(MARK) == firstpaint.SSR_CHARTS

