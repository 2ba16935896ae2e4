"""A real report's chart drawn on the server: its title, limit lines, legend and axis are in
the SVG (the dynamic report of tests/reports/test_dynamic.py, its numbers recomputed there)."""

from __future__ import annotations

from xml.etree import ElementTree

import pytest

from qcwx.charts import ssr
from tests.fixtures.app import IN_CI
from tests.reports.test_dynamic import dyn, report  # noqa: F401 (fixtures: a real report)

pytestmark = pytest.mark.skipif(not ssr.BUNDLE.exists() and not IN_CI,
                                reason="make assets builds static/vendor/echarts-qcwx-ssr.js")


def _texts(svg: str) -> list[str]:
    root = ElementTree.fromstring(svg)
    return ["".join(el.itertext()) for el in root.iter("{http://www.w3.org/2000/svg}text")]


def test_a_real_report_chart_is_drawn_with_its_title_series_and_axis(report):  # noqa: F811
    chart = report.charts[0]
    options = chart.options
    svg = ssr.renderer.render(options, int(chart.height.removesuffix("px")))
    shown = _texts(svg)
    assert _one(options["title"])["text"] in shown
    labels = _fixed_labels(options["series"])  # the limit lines' labels, the rules fired
    assert {"+3SD", "均值", "-3SD"} <= labels
    for label in labels:
        assert label in shown, label
    for legend in _one(options["legend"])["data"]:
        assert (legend["name"] if isinstance(legend, dict) else legend) in shown
    y = _one(options["yAxis"])  # a tick every SD from mean - 4 SD to mean + 4 SD
    steps = round((y["max"] - y["min"]) / y["interval"])
    ticks = [f"{round(y['min'] + i * y['interval'], 10):g}" for i in range(steps + 1)]
    assert len(ticks) >= 5 and all(t in shown for t in ticks), (ticks, shown)
    categories = _one(options["xAxis"])["data"]
    assert str(categories[0]) in shown


def _fixed_labels(node) -> set[str]:
    """Return every shown label of fixed text (no ``{…}`` template) under ``node``."""
    found = set()
    if isinstance(node, list):
        for item in node:
            found |= _fixed_labels(item)
    elif isinstance(node, dict):
        for key, value in node.items():
            if (key in ("label", "endLabel") and isinstance(value, dict) and value.get("show")
                    and isinstance(value.get("formatter"), str) and value["formatter"]
                    and "{" not in value["formatter"]):
                found.add(value["formatter"])
            elif key != "data" or isinstance(value, list):
                found |= _fixed_labels(value)
    return found


def _one(component):
    """Return an option component given as an object or as a list of one."""
    return component[0] if isinstance(component, list) else component
