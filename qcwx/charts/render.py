"""Place a built chart in a page (HTML fragment) or hand its options to an API (JSON).

A fragment is a ``div`` and its options as inert JSON (``<script type="application/json">``);
no inline JavaScript, so pages can run under a strict CSP. The page that shows charts loads
ECharts and the drawing script once, in this order::

    <script src="{{ url_for('static', filename=ECHARTS_SCRIPT_PATH) }}"></script>
    <script src="{{ url_for('static', filename=CHARTS_SCRIPT_PATH) }}"></script>

``static/vendor/echarts-qcwx.min.js`` is ECharts with only what the builders use, bundled from
npm by ``make assets`` (``static/src/echarts-qcwx.js``); never a CDN.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from qcwx.charts.common import check_chart_id

#: Path of ECharts under ``static/`` (``url_for('static', filename=ECHARTS_SCRIPT_PATH)``).
ECHARTS_SCRIPT_PATH = "vendor/echarts-qcwx.min.js"
#: The script that draws every chart fragment of a page (``static/js/charts.js``).
CHARTS_SCRIPT_PATH = "js/charts.js"

TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "templates"
_TEMPLATE = "charts/_chart.html"
_HEIGHT = re.compile(r"^\d{1,4}(\.\d{1,2})?(px|vh|rem|em|%)$")
_env = Environment(loader=FileSystemLoader(str(TEMPLATES_DIR)),
                   autoescape=select_autoescape(["html"]), trim_blocks=True, lstrip_blocks=True)


def escape_json_for_html(text: str) -> str:
    r"""Make JSON text inert inside any HTML element: ``<``, ``>``, ``&`` as ``\u`` escapes.

    Still the same JSON (``JSON.parse`` and ``json.loads`` read the escapes back), and no
    user text can close the ``<script>`` or open a comment.
    """
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def options_json(chart) -> str:
    """Return the chart's ECharts options as compact JSON (for APIs and the mini-program).

    Raises ``ValueError`` if a builder ever put raw ``JsCode`` in the options.
    """
    return _compact(options_dict(chart))


def _compact(options: dict) -> str:
    text = json.dumps(options, ensure_ascii=False, separators=(",", ":"))
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def script_options(chart) -> str:
    """Return the options as compact JSON, inert inside a ``<script type="application/json">``.

    Raises ``ValueError`` for raw ``JsCode`` (a page draws from JSON, never from code).
    """
    return escape_json_for_html(options_json(chart))


def dict_script_options(options: dict) -> str:
    """Return stored options (a frozen report's chart) as inert JSON for a page."""
    return escape_json_for_html(_compact(options))


def options_dict(chart) -> dict:
    """Return the chart's ECharts options as a plain dict (``jsonify``-able)."""
    try:
        return json.loads(chart.dump_options())
    except json.JSONDecodeError as exc:  # JsCode is not JSON
        raise ValueError("chart options contain JavaScript code, not pure JSON") from exc


def render(chart, *, height: str | None = None) -> Markup:
    """Return the HTML fragment (a ``div`` + its JSON options) that ``charts.js`` draws.

    ``height`` is a CSS length (``"320px"``); ``None`` uses the builder's suggested height
    (320 px for most charts, more for square plots, 32 px for sparklines).
    """
    height = height or getattr(chart, "height", None) or "320px"
    if not _HEIGHT.match(str(height)):
        raise ValueError(f"height must be a CSS length like '320px': {height!r}")
    # Safe: JSON whose "<", ">", "&" are \u escapes; HTML escaping would break the JSON.
    options = Markup(script_options(chart))  # noqa: S704
    macro = _env.get_template(_TEMPLATE).module.chart
    html = macro(check_chart_id(chart.chart_id), options, str(height))
    return html if isinstance(html, Markup) else Markup(html)  # noqa: S704 (autoescaped)
