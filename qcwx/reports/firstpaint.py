"""What lets a report page paint its first screen from the HTML alone, charts included.

A shared report is opened cold on a phone over mobile data, where each request costs a
round trip of half a second or more. Two things would keep its first screen waiting after
the HTML arrived: the charts (ECharts is ~180 KB) and the stylesheets (a page does not paint
before them). So the first charts come drawn on the server as SVG (:mod:`qcwx.charts.ssr`;
the browser swaps in the interactive chart once ECharts has loaded), and the shared page
carries its stylesheets inline (a cold visitor has none cached anyway; signed-in pages keep
the cached links).
"""

from __future__ import annotations

import functools
from pathlib import Path

from flask import current_app
from markupsafe import Markup

from qcwx.charts import ssr

#: Charts drawn on the server at the top of a report page: those of the first phone screen
#: and the next; the rest wait for ECharts. ``CHART_SSR_CHARTS`` in the app config overrides
#: it (0: none).
SSR_CHARTS = 2
STATIC = Path(__file__).resolve().parents[2] / "static"
#: The stylesheets the shared page would otherwise wait for (base_mobile.html, _head.html).
INLINE_CSS = ("vendor/weui.min.css", "css/app.css", "css/report.css")


def chart_svgs(report) -> dict[str, Markup]:
    """Return the first charts of ``report`` drawn as SVG (``{chart_id: markup}``).

    A published report's SVGs are kept on disk for good (its charts never change); a live
    report's in memory, by the fingerprint of their options.
    """
    count = current_app.config.get("CHART_SSR_CHARTS", SSR_CHARTS)
    keep = Path(current_app.instance_path) / "chart-svg" if report.frozen else None
    return ssr.chart_svgs(report.charts, count, keep)


def inline_styles() -> Markup:
    """Return the shared page's stylesheets as the text of one ``<style>`` element.

    Every ``url()`` in them is a ``data:`` URI, so they mean the same inline as linked.
    """
    return _styles(tuple((name, (STATIC / name).stat().st_mtime_ns) for name in INLINE_CSS))


@functools.lru_cache(maxsize=4)
def _styles(files: tuple[tuple[str, int], ...]) -> Markup:
    parts = []
    for name, _mtime in files:
        text = (STATIC / name).read_text(encoding="utf-8")
        if "</style" in text.lower():  # would close the <style> element
            raise ValueError(f"static/{name} cannot be inlined: it contains '</style'")
        parts.append(f"/* static/{name} */\n{text}")
    # Safe: this site's own stylesheets, checked above not to close the element.
    return Markup("\n".join(parts))  # noqa: S704
